"""Export a student's network to ONNX, verify it against PyTorch, describe it in JSON.

What the graph is, for every model family: the noisy spectrum (batch, 2, n_fft/2 + 1,
frames), real and imaginary parts as channels, → the estimate's spectrum in the same
layout (`Denoiser.enhance` from the start of the signal), with batch and frames dynamic.
A mask model's graph applies its mask inside; a complex-mask or mapping model's graph
returns its estimate; so the resynthesis outside is one inverse STFT for all. The STFT
analysis and resynthesis stay outside the graph, described in the JSON sidecar, because
with torch 2.14 neither exporter handles them: the TorchScript exporter rejects complex
`stft` output ("STFT does not currently support complex types") and the dynamo exporter
needs `onnxscript`, which is not a kdbench dependency (and ONNX has no inverse STFT
operator). Every runtime has an STFT; the sidecar says exactly which one to compute.

Only the student is exported: a student checkpoint holds no KD adapters, which exist
only during training.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdbench import __version__
from kdbench.api import Denoiser
from kdbench.deploy.streaming import StreamingDenoiser, time_reach
from kdbench.errors import KdbenchError
from kdbench.run.identity import file_sha256

OPSET = 17
TOLERANCE = 1e-4
INSTALL_HINT = "ONNX export needs onnx and onnxruntime: pip install 'kdbench[onnx]'"


class EnhanceGraph(nn.Module):
    """The part of a `Denoiser` that is exported: noisy spectrum in, estimate out.

    It starts in eval mode: `torch.onnx.export` restores the wrapper's mode afterwards,
    recursively, and a wrapper left in the default train mode would silently switch the
    student's BatchNorm to batch statistics.
    """

    def __init__(self, model: Denoiser) -> None:
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, spectrum: torch.Tensor) -> torch.Tensor:
        return self.model.enhance(spectrum)[0]


def _as_channels(spec: torch.Tensor) -> torch.Tensor:
    """A complex (batch, freq, frames) spectrum as (batch, 2, freq, frames) real/imag."""
    return torch.stack([spec.real, spec.imag], dim=1)


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
    """The TorchScript exporter warns that it is deprecated on every call, and tracing
    `nn.GRU` warns about its own shape checks (constant for a given model); both are
    known."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
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
    model: Denoiser,
    onnx_path: Path,
    sample_rate: int,
    frame_counts: Sequence[int] = (1, 37, 250),
) -> dict[str, Any]:
    """Max abs differences between ONNX Runtime and PyTorch: the estimate on random spectra
    of several lengths (including odd ones, which exercise the UNet decoder's crops) and on
    a speech-like signal's spectrum, and the resynthesised waveform of that signal against
    offline `model.denoise`."""
    session = _session(onnx_path)
    graph = EnhanceGraph(model)
    generator = torch.Generator().manual_seed(0)
    freq = model.n_fft // 2 + 1
    spectra = [torch.randn(2, 2, freq, frames, generator=generator) for frames in frame_counts]
    wave = torch.from_numpy(speech_like(2.0, sample_rate))[None]
    spectra.append(_as_channels(model.stft(wave)))
    errors = []
    with torch.inference_mode():
        for spectrum in spectra:
            got = session.run(["estimate"], {"spectrum": spectrum.numpy()})[0]
            errors.append(float(np.abs(got - graph(spectrum).numpy()).max()))
        speech = torch.from_numpy(session.run(["estimate"], {"spectrum": spectra[-1].numpy()})[0])
        estimate = model.istft(torch.complex(speech[:, 0], speech[:, 1]), wave.shape[-1])
        waveform_error = float((estimate - model.denoise(wave)).abs().max())
    return {
        "estimate_max_abs_error": max(errors),
        "waveform_max_abs_error": waveform_error,
        "inputs": [f"random spectrum, {n} frames" for n in frame_counts]
        + ["speech-like signal with white noise, 2 s"],
        "tolerance": TOLERANCE,
    }


def sidecar_path(out_path: Path) -> Path:
    return Path(out_path).with_suffix(".json")


def export_onnx(
    model: Denoiser,
    out_path: Path | str,
    sample_rate: int,
    spec: dict[str, Any] | None = None,
    trial_id: str | None = None,
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Write `out_path` (the network on STFT frames) and `<out_path>.json` (how to run it), after
    checking ONNX Runtime reproduces PyTorch within `TOLERANCE`; returns the sidecar.

    A graph that fails the check is deleted rather than left for someone to deploy.
    """
    runtime = _runtime()
    import onnx

    from kdbench.run.trial import provenance

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    streamer = StreamingDenoiser(model)  # refuses, naming why, a model it cannot stream
    example = torch.randn(1, 2, model.n_fft // 2 + 1, 64)
    axes = {0: "batch", 3: "frames"}
    with _quiet(), torch.inference_mode():
        torch.onnx.export(
            EnhanceGraph(model),
            (example,),
            str(out_path),
            dynamo=False,
            input_names=["spectrum"],
            output_names=["estimate"],
            dynamic_axes={"spectrum": axes, "estimate": axes},
            opset_version=OPSET,
        )
    parity = verify(model, out_path, sample_rate)
    worst = max(parity["estimate_max_abs_error"], parity["waveform_max_abs_error"])
    if worst > TOLERANCE:
        out_path.unlink(missing_ok=True)
        raise KdbenchError(
            f"ONNX export does not reproduce PyTorch within {TOLERANCE}: estimate error "
            f"{parity['estimate_max_abs_error']:.3g}, waveform error "
            f"{parity['waveform_max_abs_error']:.3g}; nothing written"
        )
    reach = time_reach(model)
    sidecar = {
        "format": "kdbench-onnx",
        "graph": {
            "inputs": {
                "spectrum": "float32 (batch, 2, n_fft/2+1, frames): real and imaginary parts "
                "of the STFT of the noisy input"
            },
            "outputs": {"estimate": "float32, same shape: the enhanced STFT"},
            "dynamic_axes": ["batch", "frames"],
            "opset": OPSET,
            "exporter": f"torch.onnx TorchScript exporter, torch {torch.__version__}",
        },
        "stft": {
            "sample_rate": sample_rate,
            "n_fft": model.n_fft,
            "win_length": model.n_fft,
            "hop": model.hop,
            "window": model.window_name,
            "window_periodic": True,
            "center": True,
            "pad_mode": "reflect",
            "normalized": False,
            "onesided": True,
        },
        "resynthesis": (
            "waveform = istft(estimate[:, 0] + 1j * estimate[:, 1]) with the same window, "
            "n_fft, hop, center=True and length = input length (window-envelope normalised "
            "overlap-add as torch.istft)"
        ),
        "streaming": {
            "past_frames": reach.past,
            "future_frames": reach.future,
            "recurrent_state": reach.past is None,
            "stride_period_frames": reach.period,
            "exact_lookahead_frames": streamer.lookahead,
            "block_frames": streamer.block,
            "latency_ms": streamer.latency_ms(sample_rate),
        },
        "model": spec,
        "trial": trial_id,
        "checkpoint": None
        if checkpoint is None
        else {"path": str(checkpoint), "sha256": file_sha256(Path(checkpoint))},
        "onnx_sha256": file_sha256(out_path),
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
