"""Export a student's mask network to ONNX, verify it against PyTorch, describe it in JSON.

What the graph is: magnitude (batch, 1, n_fft/2 + 1, frames) → mask of the same shape,
with batch and frames dynamic. The STFT analysis and the noisy-phase resynthesis stay
outside the graph, described in the JSON sidecar, because with torch 2.14 neither
exporter handles them: the TorchScript exporter rejects complex `stft` output ("STFT does
not currently support complex types") and the dynamo exporter needs `onnxscript`, which
is not a kdbench dependency (and ONNX has no inverse STFT operator). Every runtime has an
STFT; the sidecar says exactly which one to compute.

Only the student is exported: a student checkpoint holds no KD adapters, which exist
only during training.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdbench import __version__
from kdbench.api import MaskDenoiser
from kdbench.deploy.streaming import StreamingDenoiser
from kdbench.errors import KdbenchError

OPSET = 17
TOLERANCE = 1e-4
INSTALL_HINT = "ONNX export needs onnx and onnxruntime: pip install 'kdbench[onnx]'"


class MaskGraph(nn.Module):
    """The part of a `MaskDenoiser` that is exported: magnitude in, mask out.

    It starts in eval mode: `torch.onnx.export` restores the wrapper's mode afterwards,
    recursively, and a wrapper left in the default train mode would silently switch the
    student's BatchNorm to batch statistics.
    """

    def __init__(self, model: MaskDenoiser) -> None:
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        return self.model.mask_network(magnitude)[0]


def _runtime() -> Any:
    try:
        import onnx  # noqa: F401 - the exporter needs it importable
        import onnxruntime
    except ImportError as exc:
        raise KdbenchError(f"{INSTALL_HINT} ({exc})") from None
    return onnxruntime


def speech_like(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A voiced, syllabic test signal with noise: a random magnitude alone would not show
    whether the graph is right on the spectra it will actually see."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 130 + 30 * np.sin(2 * np.pi * 0.8 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25) if k * f0.max() < sample_rate / 2)
    envelope = np.clip(np.sin(2 * np.pi * 2.0 * t), 0, None) ** 2
    clean = 0.1 * voiced * envelope
    return (clean + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The TorchScript exporter warns that it is deprecated on every call; that is known."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def _session(path: Path) -> Any:
    runtime = _runtime()
    options = runtime.SessionOptions()
    options.intra_op_num_threads = 1
    return runtime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def verify(
    model: MaskDenoiser,
    onnx_path: Path,
    sample_rate: int,
    frame_counts: Sequence[int] = (1, 37, 250),
) -> dict[str, Any]:
    """Max abs differences between ONNX Runtime and PyTorch: the mask on random magnitudes
    of several lengths (including odd ones, which exercise the decoder's crops) and on a
    speech-like signal's spectrum, and the resynthesised waveform of that signal."""
    session = _session(onnx_path)
    graph = MaskGraph(model)
    generator = torch.Generator().manual_seed(0)
    freq = model.n_fft // 2 + 1
    magnitudes = [
        torch.rand(2, 1, freq, frames, generator=generator) * 3 for frames in frame_counts
    ]
    wave = torch.from_numpy(speech_like(2.0, sample_rate))[None]
    spec = model.stft(wave)
    magnitudes.append(spec.abs()[:, None])
    errors = []
    with torch.inference_mode():
        for magnitude in magnitudes:
            got = session.run(["mask"], {"magnitude": magnitude.numpy()})[0]
            errors.append(float(np.abs(got - graph(magnitude).numpy()).max()))
        speech = session.run(["mask"], {"magnitude": magnitudes[-1].numpy()})[0]
        speech_mask = torch.from_numpy(speech)
        estimate = model.istft(speech_mask[:, 0] * spec.abs(), spec, wave.shape[-1])
        waveform_error = float((estimate - model.denoise(wave)).abs().max())
    return {
        "mask_max_abs_error": max(errors),
        "waveform_max_abs_error": waveform_error,
        "inputs": [f"random magnitude, {n} frames" for n in frame_counts]
        + ["speech-like signal with white noise, 2 s"],
        "tolerance": TOLERANCE,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(out_path: Path) -> Path:
    return Path(out_path).with_suffix(".json")


def export_onnx(
    model: MaskDenoiser,
    out_path: Path | str,
    sample_rate: int,
    spec: dict[str, Any] | None = None,
    trial_id: str | None = None,
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Write `out_path` (the mask network) and `<out_path>.json` (how to run it), after
    checking ONNX Runtime reproduces PyTorch within `TOLERANCE`; returns the sidecar.

    A graph that fails the check is deleted rather than left for someone to deploy.
    """
    runtime = _runtime()
    import onnx

    from kdbench.run.trial import provenance

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.rand(1, 1, model.n_fft // 2 + 1, 64)
    axes = {0: "batch", 3: "frames"}
    with _quiet(), torch.inference_mode():
        torch.onnx.export(
            MaskGraph(model),
            (example,),
            str(out_path),
            dynamo=False,
            input_names=["magnitude"],
            output_names=["mask"],
            dynamic_axes={"magnitude": axes, "mask": axes},
            opset_version=OPSET,
        )
    parity = verify(model, out_path, sample_rate)
    if parity["mask_max_abs_error"] > TOLERANCE or parity["waveform_max_abs_error"] > TOLERANCE:
        out_path.unlink(missing_ok=True)
        raise KdbenchError(
            f"ONNX export does not reproduce PyTorch within {TOLERANCE}: mask error "
            f"{parity['mask_max_abs_error']:.3g}, waveform error "
            f"{parity['waveform_max_abs_error']:.3g}; nothing written"
        )
    streamer = StreamingDenoiser(model)
    sidecar = {
        "format": "kdbench-onnx",
        "graph": {
            "inputs": {
                "magnitude": "float32 (batch, 1, n_fft/2+1, frames): |STFT| of the noisy input"
            },
            "outputs": {"mask": "float32, same shape, in [0, 1]"},
            "dynamic_axes": ["batch", "frames"],
            "opset": OPSET,
            "exporter": f"torch.onnx TorchScript exporter, torch {torch.__version__}",
        },
        "stft": {
            "sample_rate": sample_rate,
            "n_fft": model.n_fft,
            "win_length": model.n_fft,
            "hop": model.hop,
            "window": "hann",
            "window_periodic": True,
            "center": True,
            "pad_mode": "reflect",
            "normalized": False,
            "onesided": True,
        },
        "resynthesis": (
            "estimate = istft(mask * |X| * X / max(|X|, 1e-8)) with the same window, "
            "n_fft, hop, center=True and length = input length (noisy-phase resynthesis, "
            "window-envelope normalised overlap-add as torch.istft)"
        ),
        "streaming": {
            "time_reach_frames": streamer.reach.frames,
            "stride_period_frames": streamer.reach.period,
            "exact_lookahead_frames": streamer.lookahead,
            "block_frames": streamer.block,
            "latency_ms": streamer.latency_ms(sample_rate),
        },
        "model": spec,
        "trial": trial_id,
        "checkpoint": None
        if checkpoint is None
        else {"path": str(checkpoint), "sha256": _sha256(Path(checkpoint))},
        "onnx_sha256": _sha256(out_path),
        "kdbench_version": __version__,
        "parity": parity,
        "provenance": {
            **provenance(),
            "onnx": onnx.__version__,
            "onnxruntime": runtime.__version__,
        },
    }
    sidecar_path(out_path).write_text(json.dumps(sidecar, indent=2) + "\n")
    return sidecar
