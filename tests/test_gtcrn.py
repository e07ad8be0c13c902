"""The GTCRN family: its size and cost at the published configuration, causality, exact
streaming, ONNX parity, the polar mask's phase under magnitude and waveform losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from kdbench.api import Batch
from kdbench.cli import main
from kdbench.deploy.cost import model_cost
from kdbench.plugin.registry import get_registry
from kdbench.deploy.streaming import StreamingDenoiser, stream_denoise
from kdbench.train.task_losses import TASK_LOSSES
from kdbench_plugins.models.gtcrn import build_gtcrn
from kdbench_plugins.models.gtcrn_blocks import erb_weights

RATE = 16000
PUBLISHED_PARAMS = 23.7e3  # Rong et al., ICASSP 2024
PUBLISHED_MACS = 33.0e6  # per second, the authors' repository (ERB low bins concatenated)
NO_ONNX = "onnxruntime missing: pip install 'kdbench[onnx]'"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def untrained(**params) -> torch.nn.Module:
    """A model with BatchNorm statistics far from the identity, so that no test passes
    only because normalisation does nothing."""
    torch.manual_seed(0)
    model = build_gtcrn(params).eval()
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(0.1 * torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=generator))
    return model


def test_size_and_cost_at_the_published_configuration() -> None:
    cost = model_cost(build_gtcrn({}), RATE, rtf_repeats=1)
    assert cost["params"] == 23_669
    assert abs(cost["params"] / PUBLISHED_PARAMS - 1) < 0.2
    assert abs(cost["macs_per_second"] / PUBLISHED_MACS - 1) < 0.2
    assert 0 < cost["rtf"] < 1


def test_latents_are_named_like_the_unets_on_bands_and_the_models_frames() -> None:
    output = build_gtcrn({}).eval()(torch.zeros(2, RATE))
    shapes = {name: tuple(z.shape) for name, z in output.latents.items()}
    frames = RATE // 256 + 1
    assert list(shapes) == [
        "enc1", "enc2", "enc3", "enc4", "enc5", "bottleneck", "dec1", "dec2", "dec3", "dec4",
    ]
    assert shapes["enc1"] == shapes["dec4"] == (2, 16, 65, frames)
    assert shapes["bottleneck"] == shapes["dec1"] == (2, 16, 33, frames)
    assert tuple(output.magnitude.shape) == (2, 257, frames)


def test_erb_bands_interpolate_each_bin_from_two_bands() -> None:
    weights = erb_weights(257, 65, 64, RATE)
    assert weights.shape == (192, 64)
    assert torch.allclose(weights.sum(1), torch.ones(192))
    assert int((weights > 0).sum(1).max()) <= 2
    assert bool((weights.sum(0) > 0).all())
    with pytest.raises(ValueError, match="narrower than one bin"):
        erb_weights(257, 65, 190, RATE)


def test_bad_parameters_name_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="allowed: .*channels"):
        build_gtcrn({"width": 8})
    with pytest.raises(ValueError, match="4k \\+ 1"):
        build_gtcrn({"erb_bands": 63})
    with pytest.raises(ValueError, match="polar, cartesian"):
        build_gtcrn({"mask": "ideal"})


def test_it_is_causal_an_output_frame_never_reads_a_later_input_frame() -> None:
    model = untrained(mask="cartesian")
    spectrum = torch.randn(1, 2, 257, 40)
    bumped = spectrum.clone()
    bumped[..., 25] += 3.0
    with torch.no_grad():
        changed = (model.enhance(bumped)[0] - model.enhance(spectrum)[0]).abs().amax((0, 1, 2))
    assert float(changed[:25].max()) == 0.0
    assert float(changed[25]) > 0 and float(changed[30:].max()) > 0  # the state carries it


@pytest.mark.parametrize("mask", ["polar", "cartesian"])
@pytest.mark.parametrize(("chunk", "block"), [(256, None), (100, 1), (3000, 7)])
def test_streaming_equals_offline(mask: str, chunk: int, block: int | None) -> None:
    model = untrained(mask=mask)
    noisy = (0.1 * np.random.default_rng(3).standard_normal(20_807)).astype(np.float32)
    with torch.inference_mode():
        offline = model.denoise(torch.from_numpy(noisy)[None])[0].numpy()
    streamed = stream_denoise(model, noisy, chunk=chunk, block=block)
    assert streamed.shape == offline.shape
    assert float(np.abs(streamed - offline).max()) <= 1e-5
    streamer = StreamingDenoiser(model)
    assert streamer.exact and streamer.lookahead == 0
    assert streamer.latency_ms(RATE) == pytest.approx(1000 * 511 / RATE)  # one window


def test_onnx_reproduces_pytorch_and_the_sidecar_says_how_to_stream(tmp_path) -> None:
    pytest.importorskip("onnxruntime", reason=NO_ONNX)
    from kdbench.deploy.onnx import export_onnx

    sidecar = export_onnx(untrained(), tmp_path / "gtcrn.onnx", RATE)
    assert sidecar["parity"]["estimate_max_abs_error"] <= 1e-4
    assert sidecar["parity"]["waveform_max_abs_error"] <= 1e-4
    assert sidecar["streaming"]["recurrent_state"] and sidecar["streaming"]["future_frames"] == 0
    assert sidecar["stft"]["hop"] == 256 and sidecar["stft"]["window"] == "hann"


def _phase_gradient(task_loss: str) -> float:
    """Gradient reaching the polar mask's phase map after one backward pass."""
    torch.manual_seed(0)
    model = build_gtcrn({}).train()
    noisy, clean = 0.1 * torch.randn(2, 8000), 0.1 * torch.randn(2, 8000)
    batch = Batch(noisy, clean, model.stft(clean).abs(), 1, 10)
    TASK_LOSSES[task_loss](model(noisy), batch).backward()
    last_conv, last_norm = model.up[-1]
    return float(
        last_conv.weight.grad[:, 1].abs().sum() + last_conv.bias.grad[1].abs()
        + last_norm.weight.grad[1].abs() + last_norm.bias.grad[1].abs()
    )


def test_the_polar_phase_is_untouched_by_a_magnitude_loss_and_trained_by_waveform_ones() -> None:
    assert _phase_gradient("magnitude_l1") == 0.0
    assert _phase_gradient("si_sdr") > 0.0
    assert _phase_gradient("mr_stft") > 0.0


def test_kdbench_lists_both_families() -> None:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["list", "models"])
    assert result.exit_code == 0, result.output
    assert "unet" in result.output and "gtcrn" in result.output
    assert set(get_registry().names("models")) >= {"unet", "gtcrn"}
