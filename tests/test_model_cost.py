"""model_cost on a module small enough to count by hand."""

from __future__ import annotations

import torch
from torch import nn

from kdbench.deploy.cost import model_cost

RATE = 8000


class TinyConv(nn.Module):
    """Conv1d(1→4, k=9, stride 4, bias) then Conv1d(4→1, k=1, no bias), plus a BatchNorm
    whose statistics must survive the measurement."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv1d(1, 4, kernel_size=9, stride=4, padding=4)
        self.norm = nn.BatchNorm1d(4)
        self.out = nn.Conv1d(4, 1, kernel_size=1, bias=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.norm(self.down(wave.unsqueeze(1))))).squeeze(1)


def test_params_and_macs_match_hand_count() -> None:
    model = TinyConv()
    cost = model_cost(model, RATE, seconds=1.0, rtf_repeats=2)
    # down: 4·1·9 weights + 4 biases; norm: 4 weights + 4 biases; out: 1·4·1 weights.
    assert cost["params"] == 36 + 4 + 8 + 4
    # 1 s at 8 kHz → 2000 output frames of `down` (stride 4, padding 4, k 9):
    # 2000·4·9 MACs, then 2000·4 MACs for `out`. Bias, BatchNorm and ReLU are not counted.
    assert cost["macs_per_second"] == 2000 * 4 * 9 + 2000 * 4
    assert cost["size_bytes"] > 4 * cost["params"]
    assert 0 < cost["rtf"] < 1


def test_macs_are_per_second_of_audio() -> None:
    short = model_cost(TinyConv(), RATE, seconds=1.0, rtf_repeats=1)
    long = model_cost(TinyConv(), RATE, seconds=2.0, rtf_repeats=1)
    assert long["macs_per_second"] == short["macs_per_second"]


def test_measurement_leaves_model_and_threads_untouched() -> None:
    model = TinyConv().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    threads = torch.get_num_threads()
    model_cost(model, RATE, rtf_repeats=1)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.get_num_threads() == threads


class TinyGRU(nn.Module):
    """A GRU over 100-sample frames: its MACs are those of its matrix products."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(100, 6, batch_first=True)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.gru(wave.unflatten(-1, (-1, 100)))[0]


def test_recurrent_layers_are_counted() -> None:
    """On CPU a GRU runs as matrix products, which the counter sees: per frame, three
    gates of input (100 → 6) and hidden (6 → 6) weights, 80 frames per second at 8 kHz."""
    cost = model_cost(TinyGRU(), RATE, seconds=1.0, rtf_repeats=1)
    assert cost["macs_per_second"] == 80 * 3 * (100 * 6 + 6 * 6)
