"""What every latent-based KD method shares: choosing which teacher and student latents
to compare, bringing a student map onto the teacher's grid, and matching channel counts.

Kept in one place so that every method pairs layers, resamples and projects the same way;
a leaderboard difference between two methods is then due to their losses, not to
incidental differences in plumbing.

A `latents` setting is a list whose items are:
- a group: ``encoder``, ``decoder``, or ``all`` (encoder, bottleneck, decoder and any other
  name both models have);
- a latent name present in both models, e.g. ``bottleneck`` (the deepest point of each
  model, whatever their depths: the relative-depth match);
- an explicit ``student:teacher`` pair, e.g. ``enc2:enc4``, to match levels across depths.
When depths differ, groups pair levels at the same distance from the spectrogram, hence
on the closest grids: ``encK`` with ``encK`` (counted from the input) and decoder levels
counted from the output. The latter assumes ``decK`` counts from the bottleneck, as
kdbench's UNet names them: a 4-level teacher's dec3 pairs with a 2-level student's dec1.
Anything else must be asked for with a pair.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.api.methods import Batch, KDLoss
from kdbench.api.models import DenoiserOutput
from kdbench.api.params import Param
from kdbench.errors import ConfigError, NotApplicable

LEVEL = re.compile(r"(enc|dec)(\d+)")
GROUPS = ("encoder", "decoder", "all")

LATENTS_HELP = (
    "latents to distil: groups encoder/decoder/all (names both models have), latent "
    "names, or student:teacher pairs such as enc2:enc4; comma-separated"
)


def latents_param(default: Sequence[str]) -> Param:
    return Param(list(default), LATENTS_HELP, list)


def resample_param() -> Param:
    return Param(
        "pool",
        "how a student map reaches the teacher's freq x frames grid when they differ: "
        "pool (adaptive average) or interpolate (bilinear)",
        str,
        ("pool", "interpolate"),
    )


def match_param() -> Param:
    return Param(
        "projection",
        "channel matching: projection (learned 1x1 conv, student to teacher channels, "
        "dropped after training) or pool (no parameters: both sides averaged over groups "
        "of adjacent channels down to the smaller channel count)",
        str,
        ("projection", "pool"),
    )


def _levels(shapes: Mapping[str, torch.Size], kind: str) -> list[str]:
    """Names of the `kind` ("enc" or "dec") levels, in increasing level order."""
    found = [(m, name) for name in shapes if (m := LEVEL.fullmatch(name)) and m[1] == kind]
    return [name for m, name in sorted(found, key=lambda item: int(item[0][2]))]


def _group(
    group: str, teacher: Mapping[str, torch.Size], student: Mapping[str, torch.Size]
) -> list[tuple[str, str]]:
    encoder = list(zip(_levels(student, "enc"), _levels(teacher, "enc")))
    decoder = list(zip(_levels(student, "dec")[::-1], _levels(teacher, "dec")[::-1]))[::-1]
    if group == "encoder":
        return encoder
    if group == "decoder":
        return decoder
    others = [(n, n) for n in teacher if n in student and not LEVEL.fullmatch(n)]
    bottleneck = [pair for pair in others if pair[0] == "bottleneck"]
    rest = [pair for pair in others if pair[0] != "bottleneck"]
    return encoder + bottleneck + decoder + rest


def match_latents(
    spec: Sequence[str],
    teacher: Mapping[str, torch.Size],
    student: Mapping[str, torch.Size],
) -> list[tuple[str, str]]:
    """(student name, teacher name) pairs selected by `spec`, in order, without repeats.

    Raises NotApplicable when a requested latent is missing on either side, so a pair
    whose models do not expose it is recorded as such instead of silently distilling less.
    """
    if not spec:
        raise ConfigError("latents: empty; name at least one latent or group")
    pairs: list[tuple[str, str]] = []
    for item in spec:
        if item in GROUPS:
            group = _group(item, teacher, student)
            if not group:
                raise NotApplicable(
                    f"no {item} latents common to teacher ({', '.join(teacher)}) and "
                    f"student ({', '.join(student)})"
                )
            pairs.extend(group)
            continue
        parts = item.split(":")
        if len(parts) > 2 or not all(parts):
            raise ConfigError(f"latents: {item!r} is not a name, a group or student:teacher")
        student_name, teacher_name = parts if len(parts) == 2 else (item, item)
        for side, name, shapes in (
            ("student", student_name, student),
            ("teacher", teacher_name, teacher),
        ):
            if name not in shapes:
                raise NotApplicable(
                    f"the {side} has no latent {name!r} (it has {', '.join(shapes)})"
                )
        pairs.append((student_name, teacher_name))
    return list(dict.fromkeys(pairs))


def resample(x: torch.Tensor, grid: Sequence[int], mode: str) -> torch.Tensor:
    """`x` (batch, channels, freq, frames) on `grid` (freq, frames); unchanged if already.

    Pooling averages the student over the teacher cell's span (and repeats when the
    student grid is coarser); interpolation is bilinear with half-pixel centres.
    """
    grid = tuple(grid)
    if mode not in _RESAMPLERS:
        raise ConfigError(f"resample: {mode!r} is not one of: pool, interpolate")
    if tuple(x.shape[-2:]) == grid:
        return x
    if x.is_cuda and torch.are_deterministic_algorithms_enabled():
        return resample_by_matrices(x, grid, mode)
    return _RESAMPLERS[mode](x, grid)


_RESAMPLERS = {
    "pool": F.adaptive_avg_pool2d,
    "interpolate": lambda x, grid: F.interpolate(x, size=grid, mode="bilinear", align_corners=False),
}
_AXIS_RESAMPLERS = {
    "pool": F.adaptive_avg_pool1d,
    "interpolate": lambda x, size: F.interpolate(x, size=size, mode="linear", align_corners=False),
}


@functools.lru_cache(maxsize=256)
def _axis_matrix(
    size_in: int, size_out: int, mode: str, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """(size_out, size_in): the 1-D resampling as a matrix, read off the op itself by
    applying it to the identity, so the weights are exactly the op's. Cached: made and
    copied to the device once per shape, not at every step."""
    if size_in == size_out:
        return torch.eye(size_in, dtype=dtype, device=device)
    identity = torch.eye(size_in, dtype=torch.float64)[:, None, :]  # size_in signals
    rows = _AXIS_RESAMPLERS[mode](identity, size_out)[:, 0, :]  # (size_in, size_out)
    return rows.T.contiguous().to(dtype=dtype, device=device)


def resample_by_matrices(x: torch.Tensor, grid: Sequence[int], mode: str) -> torch.Tensor:
    """`resample` as two matrix products (frequency, then frames). Adaptive pooling and
    bilinear interpolation are separable linear maps, so this is the same map; it is used
    on CUDA in deterministic mode because the backward passes of both ops there add with
    atomics (torch lists them as nondeterministic), while a matrix product's is fixed."""
    freq = _axis_matrix(x.shape[-2], grid[0], mode, x.dtype, x.device)
    frames = _axis_matrix(x.shape[-1], grid[1], mode, x.dtype, x.device)
    return freq @ x @ frames.T


def channel_pooling(channels_in: int, channels_out: int) -> torch.Tensor:
    """A fixed (out, in, 1, 1) averaging kernel over adaptive-pooling channel windows.

    Applied as a 1x1 convolution it pools channels without moving the channel axis last,
    which would copy the whole map.
    """
    weight = torch.zeros(channels_out, channels_in, 1, 1)
    for i in range(channels_out):
        start = (i * channels_in) // channels_out
        end = -((-(i + 1) * channels_in) // channels_out)
        weight[i, start:end] = 1.0 / (end - start)
    return weight


class Aligner(nn.Module):
    """Brings one student latent onto its teacher latent's channels and grid.

    ``projection`` is the paper's linear inverted bottleneck: a bias-free 1x1 convolution
    (a bias would break the cosine's invariance to the student's scale). ``pool`` is its
    parameter-free ablation: adjacent channels of the wider side are averaged down to the
    narrower width. With equal widths it compares the raw latents; across widths it
    assumes only that neighbouring channels may be grouped, which independently trained
    networks do not guarantee, so read it as a "no adapter" reference. A channel-energy
    map was the alternative; it is non-negative (cosine confined to [0, 1]) and is what
    `attention` already measures.

    Channel mapping and resampling are both linear, so their order does not change the
    result; the cheaper order is taken (resample first when it shrinks the map).
    """

    def __init__(
        self, student: torch.Size, teacher: torch.Size, match: str, resample_mode: str
    ) -> None:
        super().__init__()
        c_s, c_t = student[1], teacher[1]
        self.grid = tuple(teacher[-2:])
        self.resample_mode = resample_mode
        self.resample_first = student[-2] * student[-1] >= teacher[-2] * teacher[-1]
        self.projection: nn.Module | None = None
        if match == "projection":
            self.projection = nn.Conv2d(c_s, c_t, kernel_size=1, bias=False)
        common = min(c_s, c_t)
        self.register_buffer(
            "student_pool",
            channel_pooling(c_s, common) if match == "pool" and c_s > common else None,
            persistent=False,
        )
        self.register_buffer(
            "teacher_pool",
            channel_pooling(c_t, common) if match == "pool" and c_t > common else None,
            persistent=False,
        )

    def _channels(self, z: torch.Tensor) -> torch.Tensor:
        if self.projection is not None:
            return self.projection(z)
        if self.student_pool is not None:
            return F.conv2d(z, self.student_pool)
        return z

    def forward(
        self, z_s: torch.Tensor, z_t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.resample_first:
            z_s = self._channels(resample(z_s, self.grid, self.resample_mode))
        else:
            z_s = resample(self._channels(z_s), self.grid, self.resample_mode)
        if self.teacher_pool is not None:
            z_t = F.conv2d(z_t, self.teacher_pool)
        return z_s, z_t


def build_aligners(
    pairs: Sequence[tuple[str, str]],
    teacher: Mapping[str, torch.Size],
    student: Mapping[str, torch.Size],
    match: str,
    resample_mode: str,
) -> nn.ModuleList:
    """One `Aligner` per matched pair: its parameters are the method's adapters."""
    return nn.ModuleList(
        Aligner(student[s], teacher[t], match, resample_mode) for s, t in pairs
    )


def paired_tensors(
    pairs: Sequence[tuple[str, str]],
    student: Mapping[str, torch.Tensor],
    teacher: Mapping[str, torch.Tensor],
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (student, teacher) tensors of matched latents, the teacher's detached.

    Detaching costs nothing and keeps the teacher frozen even if a trainer forgot
    `torch.no_grad` when running it.
    """
    return [(student[s], teacher[t].detach()) for s, t in pairs]


class LatentPairLoss(KDLoss):
    """A KD loss over matched (student, teacher) latent pairs.

    It declares the teacher latents it reads, so the trainer can cache just those per
    training crop instead of running the teacher at every step.
    """

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self.pairs = list(pairs)

    def teacher_reads(self) -> frozenset[str]:
        return frozenset(teacher for _, teacher in self.pairs)


class AlignedLatentLoss(LatentPairLoss):
    """A distance between aligned latent pairs (student projected or pooled, and resampled
    onto the teacher's grid), averaged over the pairs and scaled by the KD weight.

    Methods that differ only in the distance (cosine, MSE) subclass this and implement
    `distance`, so alignment, averaging and weighting cannot drift apart between them.
    """

    def __init__(
        self, pairs: Sequence[tuple[str, str]], aligners: nn.ModuleList, weight: float
    ) -> None:
        super().__init__(pairs)
        self.aligners = aligners
        self.weight = weight

    def distance(self, z_s: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, student: DenoiserOutput, teacher: DenoiserOutput | None, batch: Batch
    ) -> torch.Tensor:
        assert teacher is not None, f"{type(self).__name__} needs the teacher's latents"
        total = sum(
            self.distance(*align(z_s, z_t))
            for align, (z_s, z_t) in zip(
                self.aligners, paired_tensors(self.pairs, student.latents, teacher.latents)
            )
        )
        return self.weight / len(self.pairs) * total


def aligned_pairs(
    hparams: Mapping[str, object],
    teacher_latents: Mapping[str, torch.Size],
    student_latents: Mapping[str, torch.Size],
) -> tuple[list[tuple[str, str]], nn.ModuleList]:
    """The latent pairs a method's `latents` setting selects, and their aligners."""
    pairs = match_latents(hparams["latents"], teacher_latents, student_latents)
    aligners = build_aligners(
        pairs, teacher_latents, student_latents, hparams["match"], hparams["resample"]
    )
    return pairs, aligners
