"""The model contract: a spec that names a family and its parameters, the teacher/student
pair built from two specs, and what a denoiser returns so that KD methods can read its
latents by name without reaching into its modules."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model family's name and the JSON-able parameters that build one model of it."""

    family: str
    params: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "params": json.loads(json.dumps(dict(self.params)))}


@dataclasses.dataclass(frozen=True)
class ArchitecturePair:
    """A teacher and a smaller student, and what differs between them.

    `mismatch` orders pairs from mild to severe so a leaderboard can show whether a method
    keeps its gain as the teacher/student gap grows. `suite` groups pairs of one scale
    (``cpu`` for CPU presets, ``paper`` for paper-scale models): `--pairs all` means every
    pair of the preset's suite, so CPU presets never pick up GPU-sized teachers.
    """

    name: str
    description: str
    teacher: ModelSpec
    student: ModelSpec
    varies: str
    mismatch: int = 1
    suite: str = "cpu"


@dataclasses.dataclass
class DenoiserOutput:
    """What a denoiser returns, whatever it estimates (a real mask, a complex mask, a complex
    spectrum, a waveform): the estimate's magnitude, the named latents KD methods read, and
    the waveform on demand.

    `magnitude` is |STFT| of the estimate on the model's own analysis (`Denoiser.stft`),
    (batch, freq, frames): what spectral task losses compare with the clean magnitude and
    output distillation compares between models. `latents` is ordered (encoder levels,
    bottleneck, decoder levels); each entry is (batch, channels, freq, frames), where freq
    may be bins or bands and frames follow the model's own hop. KD methods address latents
    by name only. `synthesize` computes the time-domain estimate (batch, samples); it is
    None for an output that holds only what a KD loss declared it reads (a teacher output
    served from its per-crop table). `analysis` is (n_fft, hop, window) of the STFT that
    `magnitude` is on (`Denoiser.analysis`), so that two models' magnitudes are compared
    only where they mean the same thing.
    """

    magnitude: torch.Tensor
    latents: dict[str, torch.Tensor]
    length: int
    synthesize: Callable[[], torch.Tensor] | None = None
    analysis: tuple[int, int, str] | None = None

    def named(self) -> dict[str, torch.Tensor]:
        """Every output a KD loss may read, by the name it reads it under."""
        return {**self.latents, "magnitude": self.magnitude}

    def waveform(self) -> torch.Tensor:
        """The time-domain estimate (batch, samples)."""
        if self.synthesize is None:
            raise ValueError(
                "this denoiser output holds no waveform (it holds only the outputs a KD loss "
                "declared in teacher_reads)"
            )
        return self.synthesize()


@dataclasses.dataclass(frozen=True)
class TimeReach:
    """How far along time one output frame depends on the input frames.

    `future` is the lookahead exact streaming waits for. `past` is how many earlier frames
    the output reads, or None when a recurrent state carries the whole past: such a model
    is streamed by carrying its state from block to block (`Denoiser.enhance`) instead of
    re-reading a window of old frames. `period` is the frame period on which the network
    computes the same function (2^depth for stride-2 levels along time, 1 when nothing
    along time is strided).
    """

    past: int | None
    future: int
    period: int = 1


WINDOWS = ("hann", "sqrt_hann")


class Denoiser(nn.Module):
    """The model contract every family implements: waveform in, `DenoiserOutput` out.

    The trainer, the task losses, the KD methods, evaluation and `denoise` use `forward`
    only, so a family is free in what it estimates. Its analysis STFT (`n_fft`, `hop`,
    `window`, centred) is the grid of `DenoiserOutput.magnitude` and of the clean target
    the spectral losses compare it with; a time-domain family declares one for its losses.

    Streaming and ONNX export need the network on STFT frames as real tensors: `enhance`
    maps the noisy spectrum (batch, 2, freq, frames), real and imaginary parts as channels,
    to the estimate's spectrum in the same layout, and `time_reach` says which frames one
    output frame depends on. A family that cannot provide them (a time-domain model) leaves
    them unimplemented, and streaming and export refuse it with that reason.
    """

    def __init__(self, n_fft: int = 512, hop: int = 128, window: str = "hann") -> None:
        super().__init__()
        if window not in WINDOWS:
            raise ValueError(f"window {window!r} is not one of: {', '.join(WINDOWS)}")
        self.n_fft = n_fft
        self.hop = hop
        self.window_name = window
        periodic_hann = torch.hann_window(n_fft)
        self.register_buffer(
            "window", periodic_hann.sqrt() if window == "sqrt_hann" else periodic_hann,
            persistent=False,
        )

    @property
    def device(self) -> torch.device:
        """Where the model's tensors are (its STFT window moves with its weights)."""
        return self.window.device

    @property
    def analysis(self) -> tuple[int, int, str]:
        """(n_fft, hop, window) of the analysis STFT, as `DenoiserOutput.analysis`."""
        return (self.n_fft, self.hop, self.window_name)

    def stft(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.stft(
            wave, self.n_fft, self.hop, window=self.window, return_complex=True, center=True
        )

    def istft(self, spectrum: torch.Tensor, length: int) -> torch.Tensor:
        """The waveform of a complex (batch, freq, frames) spectrum on this analysis."""
        return torch.istft(spectrum, self.n_fft, self.hop, window=self.window, length=length)

    def forward(self, noisy: torch.Tensor) -> DenoiserOutput:  # noqa: D102 - on the class
        raise NotImplementedError

    def forward_to(self, noisy: torch.Tensor, names: frozenset[str]) -> dict[str, torch.Tensor]:
        """The named outputs of `forward` (latent names, or ``"magnitude"``), bit for bit.

        A frozen teacher's per-crop table holds only what a KD loss reads, often an encoder
        latent; a family that can stop its network early there overrides this so the table
        fills without the cost of the layers after it. An override must give exactly
        `forward`'s bits, since a table filled either way serves the same trials; the
        default runs `forward`.
        """
        outputs = self(noisy).named()
        return {name: outputs[name] for name in names}

    def enhance(self, spectrum: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """The estimate's spectrum for a noisy (batch, 2, freq, frames) spectrum, and the
        state to pass with the frames that follow (None for a model without recurrent
        state). With `state` None the frames are taken as the start of the signal."""
        raise NotImplementedError

    def time_reach(self) -> TimeReach:
        """The model's receptive field along time (see `TimeReach`)."""
        raise NotImplementedError

    def denoise(self, noisy: torch.Tensor) -> torch.Tensor:
        """Waveform in, waveform out: the deployment path."""
        return self(noisy).waveform()


class MaskDenoiser(Denoiser):
    """An STFT magnitude-mask denoiser: analysis, a mask network, resynthesis with the
    noisy phase. A family subclasses this and implements `mask_network` and `time_reach`.
    """

    def mask_network(self, magnitude: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Map a (batch, 1, freq, frames) magnitude to a mask of the same shape and latents."""
        raise NotImplementedError

    def resynthesize(
        self, magnitude: torch.Tensor, noisy_spec: torch.Tensor, length: int
    ) -> torch.Tensor:
        """The waveform of an estimated magnitude with the noisy phase."""
        phase = noisy_spec / noisy_spec.abs().clamp_min(1e-8)
        return self.istft(magnitude * phase, length)

    def analyse(self, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The noisy spectrum and the (batch, 1, freq, frames) magnitude the mask network
        reads. One place for both, so that a family's `forward_to` that stops its network
        early feeds it the very bits `forward` does."""
        spec = self.stft(noisy)
        return spec, spec.abs().unsqueeze(1)

    def forward(self, noisy: torch.Tensor) -> DenoiserOutput:
        spec, magnitude = self.analyse(noisy)
        mask, latents = self.mask_network(magnitude)
        estimate = (mask * magnitude).squeeze(1)
        length = noisy.shape[-1]
        return DenoiserOutput(
            magnitude=estimate,
            latents=latents,
            length=length,
            synthesize=lambda: self.resynthesize(estimate, spec, length),
            analysis=self.analysis,
        )

    def enhance(self, spectrum: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """The mask applied to the noisy spectrum: the noisy phase is kept. The magnitude is
        computed from the real and imaginary parts, as an ONNX graph must (no complex type)."""
        magnitude = (spectrum[:, 0].square() + spectrum[:, 1].square()).sqrt()
        mask = self.mask_network(magnitude.unsqueeze(1))[0].squeeze(1)
        gain = mask * magnitude / magnitude.clamp_min(1e-8)
        return spectrum * gain.unsqueeze(1), None


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """A kind of denoiser (the mask UNet, GTCRN, ...): builds a `Denoiser` from a spec's
    parameters."""

    name: str
    description: str
    build: Callable[[Mapping[str, Any]], Denoiser]
