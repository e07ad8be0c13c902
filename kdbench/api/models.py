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
    """What a denoiser returns: the estimate, the named latents KD methods read, and what is
    needed to resynthesise a waveform.

    `latents` is ordered (encoder levels, bottleneck, decoder levels); each entry is
    (batch, channels, freq, frames). KD methods address latents by name only.
    """

    magnitude: torch.Tensor
    latents: dict[str, torch.Tensor]
    noisy_spec: torch.Tensor
    length: int
    synthesize: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]

    def waveform(self) -> torch.Tensor:
        """The time-domain estimate (batch, samples), using the noisy phase."""
        return self.synthesize(self.magnitude, self.noisy_spec, self.length)


class MaskDenoiser(nn.Module):
    """An STFT magnitude-mask denoiser: analysis, a mask network, resynthesis with the
    noisy phase. A model family subclasses this and implements `mask_network`.
    """

    def __init__(self, n_fft: int = 512, hop: int = 128) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop = hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    @property
    def device(self) -> torch.device:
        """Where the model's tensors are (its STFT window moves with its weights)."""
        return self.window.device

    def stft(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.stft(
            wave, self.n_fft, self.hop, window=self.window, return_complex=True, center=True
        )

    def istft(self, magnitude: torch.Tensor, noisy_spec: torch.Tensor, length: int) -> torch.Tensor:
        phase = noisy_spec / noisy_spec.abs().clamp_min(1e-8)
        return torch.istft(
            magnitude * phase, self.n_fft, self.hop, window=self.window, length=length
        )

    def mask_network(self, magnitude: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Map a (batch, 1, freq, frames) magnitude to a mask of the same shape and latents."""
        raise NotImplementedError

    def time_reach(self) -> tuple[int, int]:
        """(frames, period): how many STFT frames on either side one mask frame depends on,
        and the frame period on which the network computes the same function (2^depth for
        stride-2 levels). Exact streaming needs both; a family that cannot say leaves this
        unimplemented and streaming refuses the model."""
        raise NotImplementedError

    def forward(self, noisy: torch.Tensor) -> DenoiserOutput:
        spec = self.stft(noisy)
        magnitude = spec.abs()
        mask, latents = self.mask_network(magnitude.unsqueeze(1))
        return DenoiserOutput(
            magnitude=mask.squeeze(1) * magnitude,
            latents=latents,
            noisy_spec=spec,
            length=noisy.shape[-1],
            synthesize=self.istft,
        )

    def denoise(self, noisy: torch.Tensor) -> torch.Tensor:
        """Waveform in, waveform out: the deployment path."""
        return self(noisy).waveform()


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """A kind of denoiser (UNet first): builds a `MaskDenoiser` from a spec's parameters."""

    name: str
    description: str
    build: Callable[[Mapping[str, Any]], MaskDenoiser]
