"""The model contract does not assume a mask: a time-domain family trains with every task
loss and KD method against a UNet teacher, scores and denoises; streaming and export, which
need the network on STFT frames, refuse it and say why."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kdbench.api import Denoiser, DenoiserOutput, Utterance
from kdbench.config import TRAIN_PARAMS
from kdbench.deploy.streaming import StreamingDenoiser
from kdbench.errors import KdbenchError
from kdbench.plugin.registry import get_registry
from kdbench.train.task_losses import TASK_LOSSES
from kdbench.train.trainer import train

RATE = 16000

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class WaveNetlet(Denoiser):
    """A strided 1-D convolutional encoder and its transposed decoder on the waveform."""

    def __init__(self) -> None:
        super().__init__(n_fft=512, hop=128)
        self.down = nn.Conv1d(1, 8, 32, stride=16, padding=8)
        self.up = nn.ConvTranspose1d(8, 1, 32, stride=16, padding=8)

    def forward(self, noisy: torch.Tensor) -> DenoiserOutput:
        code = torch.relu(self.down(noisy.unsqueeze(1)))
        wave = self.up(code).squeeze(1)[..., : noisy.shape[-1]]
        return DenoiserOutput(
            magnitude=self.stft(wave).abs(),
            latents={"enc1": code.unsqueeze(2), "bottleneck": code.unsqueeze(2)},
            length=noisy.shape[-1],
            synthesize=lambda: wave,
            analysis=self.analysis,
        )


def _utterances(count: int) -> list[Utterance]:
    rng = np.random.default_rng(0)
    t = np.arange(RATE // 2) / RATE
    clean = [
        (0.3 * np.sin(2 * np.pi * (200 + 30 * k) * t)).astype(np.float32) for k in range(count)
    ]
    return [
        Utterance(f"u{k}", c, (c + 0.05 * rng.standard_normal(c.shape)).astype(np.float32))
        for k, c in enumerate(clean)
    ]


SETTINGS = {
    **{name: param.default for name, param in TRAIN_PARAMS.items()},
    "steps": 2, "batch_size": 2, "crop_seconds": 0.25, "crop_grid_seconds": 0.125, "valid_every": 2,
}


@pytest.mark.parametrize("task_loss", sorted(TASK_LOSSES))
@pytest.mark.parametrize("method", ["output", "cosine", "fgspkd"])
def test_a_time_domain_student_trains_with_every_task_loss_and_kd_method(
    task_loss: str, method: str
) -> None:
    torch.manual_seed(0)
    teacher = get_registry().get("models", "unet").build({"channels": [4, 8]}).eval()
    student = WaveNetlet()
    probe = torch.zeros(1, int(SETTINGS["crop_seconds"] * RATE))
    with torch.no_grad():
        shapes = [
            {k: v.shape for k, v in model(probe).latents.items()} for model in (teacher, student)
        ]
    kd_loss = get_registry().get("methods", method)().build(*shapes)
    before = {name: value.clone() for name, value in student.state_dict().items()}
    data = _utterances(4)
    result = train(
        student, data, data[:1], {**SETTINGS, "task_loss": task_loss}, seed=0,
        sample_rate=RATE, kd_loss=kd_loss, teacher=teacher,
    )
    assert np.isfinite(result.final_loss)
    assert any(not torch.equal(before[name], value) for name, value in student.state_dict().items())
    with torch.inference_mode():
        estimate = student.denoise(torch.from_numpy(data[0].noisy)[None])
    assert estimate.shape == (1, RATE // 2)


def test_streaming_refuses_a_model_without_a_network_on_frames_and_says_why() -> None:
    with pytest.raises(KdbenchError, match="does not declare its receptive field"):
        StreamingDenoiser(WaveNetlet())


@pytest.mark.parametrize("family", sorted(get_registry().names("models")))
def test_every_family_gives_forward_s_bits_for_any_outputs_asked_of_forward_to(family: str) -> None:
    """A teacher table filled through `forward_to` serves the same trials as one filled by
    `forward`, so an override that stops early must not move a bit."""
    torch.manual_seed(0)
    model = get_registry().get("models", family).build({}).eval()
    noisy = torch.from_numpy(_utterances(1)[0].noisy[None, :4000])
    with torch.no_grad():
        full = model(noisy)
        named = full.named()
        asked = [frozenset({name}) for name in named]
        asked += [frozenset(n for n in named if n.startswith("enc")), frozenset(named)]
        for names in asked:
            got = model.forward_to(noisy, names)
            assert got.keys() == names
            for name in names:
                assert torch.equal(got[name], named[name]), (family, sorted(names), name)
