"""The public plugin API: everything a KD method, pair, model, metric, dataset or executor
plugin is written against.

Built-in plugins import only from this module (and `kdbench.errors`), exactly as a
third-party package would, so anything they need that is missing here is missing for
everyone and belongs here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from kdbench.audio import AudioInfo, audio_info, read_audio, write_audio
from kdbench.cache import staged_directory
from kdbench.errors import AudioError, ConfigError, MetricUndefined, NotApplicable
from kdbench.hookspecs import hookimpl

__all__ = [
    "ArchitecturePair",
    "AudioError",
    "AudioInfo",
    "Batch",
    "ConfigError",
    "Dataset",
    "Denoiser",
    "DenoiserOutput",
    "Executor",
    "KDLoss",
    "KDMethod",
    "MaskDenoiser",
    "Metric",
    "MetricUndefined",
    "ModelFamily",
    "ModelSpec",
    "NotApplicable",
    "Param",
    "PreparedDataset",
    "TimeReach",
    "Utterance",
    "audio_info",
    "hookimpl",
    "read_audio",
    "resolve_params",
    "staged_directory",
    "write_audio",
]


# --------------------------------------------------------------------------- parameters


@dataclasses.dataclass(frozen=True)
class Param:
    """One declared hyper-parameter: presets and `--set` overrides are checked against it."""

    default: Any
    help: str
    type: type = float
    choices: tuple[Any, ...] | None = None
    item_type: type = str

    def coerce(self, key: str, value: Any) -> Any:
        """Turn a preset or command-line value into this parameter's type, or say why not."""
        if self.type is bool and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                raise ConfigError(f"{key}: expected true or false, got {value!r}")
            value = lowered in {"true", "1", "yes"}
        elif self.type in (list, tuple) and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        try:
            coerced = self.type(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"{key}: expected {self.type.__name__}, got {value!r}"
            ) from exc
        if self.type in (list, tuple):
            try:
                coerced = [self.item_type(item) for item in coerced]
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"{key}: expected a list of {self.item_type.__name__}, got {value!r}"
                ) from exc
        if self.choices is not None:
            items = coerced if isinstance(coerced, list) else [coerced]
            for item in items:
                if item not in self.choices:
                    allowed = ", ".join(map(str, self.choices))
                    raise ConfigError(f"{key}: {item!r} is not one of: {allowed}")
        return coerced


def resolve_params(
    owner: str, declared: Mapping[str, Param], given: Mapping[str, Any]
) -> dict[str, Any]:
    """Defaults overlaid with `given`; an unknown name is an error naming the allowed ones."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        allowed = ", ".join(sorted(declared)) or "(none)"
        raise ConfigError(f"{owner}.{unknown[0]}: unknown parameter; allowed: {allowed}")
    resolved = {name: param.default for name, param in declared.items()}
    for name, value in given.items():
        resolved[name] = declared[name].coerce(f"{owner}.{name}", value)
    return resolved


# --------------------------------------------------------------------------- models


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

    def forward(self, noisy: torch.Tensor) -> DenoiserOutput:
        spec = self.stft(noisy)
        magnitude = spec.abs()
        mask, latents = self.mask_network(magnitude.unsqueeze(1))
        estimate = mask.squeeze(1) * magnitude
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


# --------------------------------------------------------------------------- KD methods


@dataclasses.dataclass
class Batch:
    """One training batch and where training stands, for methods with a schedule."""

    noisy: torch.Tensor
    clean: torch.Tensor
    clean_magnitude: torch.Tensor
    step: int
    total_steps: int

    @property
    def progress(self) -> float:
        return self.step / max(self.total_steps, 1)


class KDLoss(nn.Module):
    """The KD term for one (teacher, student) pair; its parameters are the adapters.

    Adapters are trained with the student and dropped for deployment, so they never count
    toward the student's size; `extra_parameters` reports what they add during training.
    """

    def forward(  # noqa: D102 - documented on the class
        self, student: DenoiserOutput, teacher: DenoiserOutput | None, batch: Batch
    ) -> torch.Tensor:
        raise NotImplementedError

    def teacher_reads(self) -> frozenset[str] | None:
        """The teacher outputs this loss reads: latent names, or ``"magnitude"``.

        Declaring them lets the trainer keep exactly those per training crop and skip the
        teacher's forward pass on crops it has already seen; the teacher output a loss then
        receives holds only these. `None` (the default) runs the teacher at every step.
        """
        return None

    def task_weight(self, batch: Batch) -> float:
        """Weight of the task loss at this step; a schedule (KD-only warm-up) overrides it."""
        return 1.0

    def extra_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class KDMethod:
    """A knowledge-distillation method: its name, declared hyper-parameters, and a factory
    for the loss module given the shapes of both models' latents.

    Subclasses set the class attributes and implement `build`. A method that cannot match a
    pair's latents raises `NotApplicable` with the reason, never crashes.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    needs_teacher: ClassVar[bool] = True
    params: ClassVar[Mapping[str, Param]] = {}

    def __init__(self, **overrides: Any) -> None:
        self.hparams = resolve_params(f"method.{self.name}", self.params, overrides)

    def build(
        self,
        teacher_latents: Mapping[str, torch.Size],
        student_latents: Mapping[str, torch.Size],
    ) -> KDLoss:
        """Return the KD loss module for latents of these shapes (batch dimension included)."""
        raise NotImplementedError


# --------------------------------------------------------------------------- metrics


class Metric:
    """A per-utterance quality measure of an estimate against the clean reference.

    `compute` raises `MetricUndefined` when the utterance cannot be scored; the evaluator
    stores NaN with the reason and goes on.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[tuple[float, float]] = (float("-inf"), float("inf"))
    unit: ClassVar[str] = ""

    def compute(self, clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
        raise NotImplementedError

    def provenance(self) -> dict[str, str]:
        """Versions and settings that make this metric's numbers comparable to others'."""
        return {}


# --------------------------------------------------------------------------- datasets


@dataclasses.dataclass
class Utterance:
    """A clean reference and its noisy mixture, mono float32 at the dataset's rate."""

    id: str
    clean: np.ndarray
    noisy: np.ndarray
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PreparedDataset:
    """A dataset ready to use: its splits and an identity that changes with its content."""

    name: str
    identity: str
    sample_rate: int
    splits: Mapping[str, Sequence[Utterance]]
    description: str = ""


class Dataset:
    """A source of (clean, noisy) pairs for the train, valid and test splits."""

    name: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[Mapping[str, Param]] = {}

    def prepare(self, params: Mapping[str, Any], cache_dir: Path) -> PreparedDataset:
        """Load or generate the splits (caching under `cache_dir`) for resolved `params`."""
        raise NotImplementedError


# --------------------------------------------------------------------------- executors


class Executor:
    """Runs trials somewhere and yields their outcomes as they finish.

    `work` is a picklable top-level function; an executor yields exactly one result per
    item, in any order. `work` already turns a trial's own exception into a failed result;
    when the executor itself loses an item (a worker process killed, a node gone), it
    yields `lost(item, reason)` instead, so the grid records that trial and goes on.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[Mapping[str, Param]] = {}

    def run(
        self,
        work: Callable[[Any], Any],
        items: Sequence[Any],
        jobs: int,
        params: Mapping[str, Any],
        lost: Callable[[Any, str], Any],
    ) -> Iterator[Any]:
        raise NotImplementedError
