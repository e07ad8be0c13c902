"""A conformance kit for KD method plugins, for use in a plugin author's own tests.

    from kdbench.testing import check_method

    def test_my_method_conforms():
        outcomes = check_method(MyMethod)
        assert outcomes["width"] == "ok"

`check_method` raises AssertionError naming the method, the shape case and what is wrong.
It checks what kdbench relies on and cannot check at run time without cost: declared
parameters that survive presets and `--set`; `build` that either works or raises
`NotApplicable`; a finite scalar loss at any point of the schedule, even on a short last
batch; gradients reaching the student and every adapter but never the teacher; adapters
counted by `extra_parameters`; and no host synchronisation (`.item()`, `float(tensor)`)
in `forward`, which would stall every training step on a GPU.

The default shapes are those of kdbench's UNet pairs, derived (not measured) by
`unet_latent_shapes`: 0.5 s at 16 kHz, 512-point STFT, hop 128, centred, gives a
257 x 63 magnitude; each encoder level is a stride-2 convolution with kernel 5 and
padding 2, so a size n becomes (n - 1) // 2 + 1 (257 -> 129 -> 65 -> 33 -> 17,
63 -> 32 -> 16 -> 8 -> 4). The bottleneck has the deepest level's shape; ``dec1`` ..
``dec{N-1}`` are the decoder outputs deepest first, ``decK`` on the grid and channels of
``enc{N-K}`` (as kdbench's UNet names them). A model family may differ; methods address
latents by name and must cope with any grid. `model_case` builds the case of two real
models, e.g. of different families, whose latents and magnitudes lie on different grids:

    check_method(MyMethod, cases=[model_case("unet_gtcrn", teacher, student)])

A method may find that it does not apply only from the outputs (two magnitudes on
incompatible STFTs): `NotApplicable` from the loss's first call is recorded as from `build`.

For dataset plugins, `prepare_dataset(plugin, {"only": "what the test sets"}, cache)` fills
in the declared defaults the way a preset does before calling `prepare`, which (like every
hook that takes params) receives them resolved: every declared key present and typed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from kdbench.api import (
    Batch,
    ConfigError,
    Dataset,
    Denoiser,
    DenoiserOutput,
    KDLoss,
    KDMethod,
    NotApplicable,
    Param,
    PreparedDataset,
    resolve_params,
)

__all__ = [
    "DEFAULT_CASES",
    "Grid",
    "ShapeCase",
    "check_declaration",
    "check_loss",
    "check_method",
    "model_case",
    "prepare_dataset",
    "unet_latent_shapes",
]

N_FFT = 512
HOP = 128
FREQ = N_FFT // 2 + 1
FRAMES = 63
BATCH = 4
SCHEDULE_POINTS = (0.0, 0.5, 0.999)
TOTAL_STEPS = 1000


def prepare_dataset(
    plugin: Dataset, params: Mapping[str, Any], cache_dir: Path
) -> PreparedDataset:
    """`plugin.prepare` with `params` resolved against its declaration, as kdbench's config
    does for a preset: the one place settings are checked, typed and defaulted."""
    return plugin.prepare(resolve_params(f"dataset.{plugin.name}", plugin.params, params), cache_dir)


def conv_out(size: int, kernel: int = 5, stride: int = 2, padding: int = 2) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def unet_latent_shapes(
    channels: Sequence[int], batch: int = BATCH, freq: int = FREQ, frames: int = FRAMES
) -> dict[str, torch.Size]:
    """Latent shapes of a UNet with one encoder level per entry of `channels`."""
    encoder: dict[str, torch.Size] = {}
    for level, width in enumerate(channels, start=1):
        freq, frames = conv_out(freq), conv_out(frames)
        encoder[f"enc{level}"] = torch.Size((batch, width, freq, frames))
    depth = len(channels)
    decoder = {f"dec{k}": encoder[f"enc{depth - k}"] for k in range(1, depth)}
    return {**encoder, "bottleneck": encoder[f"enc{depth}"], **decoder}


@dataclasses.dataclass(frozen=True)
class Grid:
    """The magnitude a model estimates: (freq, frames) and its STFT (n_fft, hop, window)."""

    freq: int = FREQ
    frames: int = FRAMES
    analysis: tuple[int, int, str] | None = (N_FFT, HOP, "hann")


@dataclasses.dataclass(frozen=True)
class ShapeCase:
    """A teacher/student latent layout, and the magnitude grid each model estimates (by
    default one grid for both, as within a family)."""

    name: str
    teacher: Mapping[str, torch.Size]
    student: Mapping[str, torch.Size]
    teacher_grid: Grid = Grid()
    student_grid: Grid | None = None

    @property
    def grids(self) -> tuple[Grid, Grid]:
        """(teacher, student) grids."""
        return self.teacher_grid, self.student_grid or self.teacher_grid


def model_case(name: str, teacher: Denoiser, student: Denoiser, samples: int = 8000) -> ShapeCase:
    """The case of two real models: their latents and magnitudes on `samples` of silence
    (0.5 s at 16 kHz by default), e.g. for a pair of different families."""

    def probe(model: Denoiser) -> tuple[dict[str, torch.Size], Grid]:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            output = model(torch.zeros(BATCH, samples))
        model.train(was_training)
        latents = {key: z.shape for key, z in output.latents.items()}
        return latents, Grid(*output.magnitude.shape[-2:], output.analysis)

    teacher_latents, teacher_grid = probe(teacher)
    student_latents, student_grid = probe(student)
    return ShapeCase(name, teacher_latents, student_latents, teacher_grid, student_grid)


TEACHER = unet_latent_shapes([16, 32, 64, 128])
DEFAULT_CASES = (
    ShapeCase("identical", TEACHER, TEACHER),
    ShapeCase("width", TEACHER, unet_latent_shapes([4, 8, 16, 32])),
    ShapeCase("depth", TEACHER, unet_latent_shapes([8, 16])),
)


def _fail(method_cls: type, where: str, message: str) -> AssertionError:
    return AssertionError(f"{getattr(method_cls, '__name__', method_cls)} [{where}]: {message}")


def _as_set_string(param: Param) -> str | None:
    """How a user would write the default on the command line, if it has a text form."""
    value = param.default
    if param.type is bool:
        return "true" if value else "false"
    if param.type in (list, tuple):
        return ",".join(map(str, value))
    if param.type in (int, float, str):
        return str(value)
    return None


def check_declaration(method_cls: type) -> None:
    """Class attributes and parameters: what `kdbench list`, presets and `--set` rely on."""
    if not (isinstance(method_cls, type) and issubclass(method_cls, KDMethod)):
        raise _fail(method_cls, "declaration", "is not a kdbench.api.KDMethod subclass")
    name = getattr(method_cls, "name", None)
    if not isinstance(name, str) or not name or any(c in name for c in " ,=\t\n"):
        raise _fail(method_cls, "declaration", f"name {name!r} must be one word (no , or =)")
    description = getattr(method_cls, "description", None)
    if not isinstance(description, str) or not description.strip() or "\n" in description:
        raise _fail(method_cls, "declaration", "description must be one non-empty line")
    if not isinstance(method_cls.needs_teacher, bool):
        raise _fail(method_cls, "declaration", "needs_teacher must be a bool")
    for key, param in method_cls.params.items():
        where = f"param {key}"
        if not isinstance(param, Param):
            raise _fail(method_cls, where, f"declared as {param!r}, not a kdbench.api.Param")
        if not param.help.strip():
            raise _fail(method_cls, where, "has no help text")
        if not isinstance(param.type, type):
            raise _fail(method_cls, where, f"type {param.type!r} is not a type")
        try:
            if param.coerce(key, param.default) != param.default:
                raise _fail(method_cls, where, "default changes when coerced to its type")
            text = _as_set_string(param)
            if text is not None and param.coerce(key, text) != param.default:
                raise _fail(method_cls, where, f"--set {key}={text} does not give the default")
        except ConfigError as exc:
            raise _fail(method_cls, where, f"default is rejected: {exc}") from exc
    defaults = {key: param.default for key, param in method_cls.params.items()}
    try:
        resolved = method_cls().hparams
        explicit = method_cls(**defaults).hparams
    except Exception as exc:
        raise _fail(method_cls, "params", f"cannot be built from its defaults: {exc!r}") from exc
    if explicit != resolved:
        raise _fail(method_cls, "params", "passing the defaults explicitly changes hparams")
    try:
        method_cls(__kdbench_unknown__=1)
    except ConfigError:
        pass
    else:
        raise _fail(method_cls, "params", "an unknown parameter is accepted, not a ConfigError")


def _random_output(
    shapes: Mapping[str, torch.Size],
    batch: int,
    grid: Grid,
    trainable: bool,
    generator: torch.Generator,
) -> DenoiserOutput:
    def tensor(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).requires_grad_(trainable)

    latents = {name: tensor(batch, *shape[1:]) for name, shape in shapes.items()}
    n_fft, hop, _ = grid.analysis or (2 * (grid.freq - 1), HOP, "hann")
    window = torch.hann_window(n_fft)
    length = (grid.frames - 1) * hop
    magnitude = tensor(batch, grid.freq, grid.frames).abs().detach().requires_grad_(trainable)
    shape = (batch, grid.freq, grid.frames)
    noisy_spec = torch.randn(*shape, dtype=torch.complex64, generator=generator)

    def synthesize() -> torch.Tensor:
        phase = noisy_spec / noisy_spec.abs().clamp_min(1e-8)
        return torch.istft(magnitude * phase, n_fft, hop, window=window, length=length)

    return DenoiserOutput(
        magnitude=magnitude,
        latents=latents,
        length=length,
        synthesize=synthesize,
        analysis=grid.analysis,
    )


@contextlib.contextmanager
def _no_host_sync() -> Iterator[None]:
    """Make `.item()`, `.tolist()` and `float(tensor)` raise while the loss runs."""

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("forward reads a tensor value on the host (.item/.tolist/float)")

    names = ("item", "tolist", "__float__")
    saved = {name: torch.Tensor.__dict__.get(name) for name in names}
    for name in names:
        setattr(torch.Tensor, name, refuse)
    try:
        yield
    finally:
        for name, original in saved.items():
            if original is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, original)


def check_loss(
    method_cls: type, loss: KDLoss, case: ShapeCase, where: str, seed: int = 0
) -> None:
    """Run a built loss on random latents and check values, gradients and the schedule."""
    generator = torch.Generator().manual_seed(seed)
    declared = next(iter(case.student.values()))[0] if case.student else BATCH
    batch_size = max(1, declared - 1)
    teacher_grid, student_grid = case.grids
    student = _random_output(case.student, batch_size, student_grid, True, generator)
    teacher = (
        _random_output(case.teacher, batch_size, teacher_grid, False, generator)
        if method_cls.needs_teacher
        else None
    )
    teacher_before = {k: v.clone() for k, v in teacher.named().items()} if teacher else {}
    student_before = {k: v.detach().clone() for k, v in student.named().items()}

    first: torch.Tensor | None = None
    for progress in SCHEDULE_POINTS:
        step = round(progress * TOTAL_STEPS)
        batch = Batch(
            noisy=torch.zeros(batch_size, student.length),
            clean=torch.zeros(batch_size, student.length),
            clean_magnitude=torch.zeros(batch_size, student_grid.freq, student_grid.frames),
            step=step,
            total_steps=TOTAL_STEPS,
        )
        at = f"{where}, step {step}/{TOTAL_STEPS}"
        with _no_host_sync():
            try:
                value = loss(student, teacher, batch)
            except AssertionError as exc:
                raise _fail(method_cls, at, str(exc)) from exc
        if not isinstance(value, torch.Tensor) or value.ndim != 0:
            raise _fail(method_cls, at, f"loss must be a 0-dim tensor, got {value!r}")
        if not value.is_floating_point() or not torch.isfinite(value):
            raise _fail(method_cls, at, f"loss is not a finite float: {value!r}")
        weight = loss.task_weight(batch)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise _fail(method_cls, at, f"task_weight must be a float, got {weight!r}")
        if not (math.isfinite(weight) and weight >= 0):
            raise _fail(method_cls, at, f"task_weight must be finite and >= 0, got {weight}")
        if first is None:
            first = value
    assert first is not None

    if first.requires_grad:
        first.backward()
    elif method_cls.needs_teacher:
        raise _fail(method_cls, where, "the loss at step 0 does not depend on the student")
    student_grads = [t.grad for t in student.named().values() if t.grad is not None]
    if method_cls.needs_teacher and not any(g.abs().sum() > 0 for g in student_grads):
        raise _fail(method_cls, where, "no gradient reaches the student's latents or estimate")
    for name, tensor in student.named().items():
        if tensor.grad is not None and not torch.isfinite(tensor.grad).all():
            raise _fail(method_cls, where, f"non-finite gradient on student {name}")
        if not torch.equal(tensor.detach(), student_before[name]):
            raise _fail(method_cls, where, f"student {name} was modified in place")
    if teacher is not None:
        for name, tensor in teacher.named().items():
            if tensor.requires_grad or tensor.grad is not None:
                raise _fail(method_cls, where, f"teacher {name} was made to require grad")
            if not torch.equal(tensor, teacher_before[name]):
                raise _fail(method_cls, where, f"teacher {name} was modified in place")
    for name, parameter in loss.named_parameters():
        if parameter.grad is None:
            raise _fail(method_cls, where, f"adapter {name} receives no gradient")
        if not torch.isfinite(parameter.grad).all():
            raise _fail(method_cls, where, f"adapter {name} has a non-finite gradient")
    counted = sum(p.numel() for p in loss.parameters())
    if loss.extra_parameters() != counted:
        raise _fail(
            method_cls,
            where,
            f"extra_parameters() reports {loss.extra_parameters()}, adapters hold {counted}",
        )


def check_method(
    method_cls: type,
    teacher_shapes: Mapping[str, torch.Size] | None = None,
    student_shapes: Mapping[str, torch.Size] | None = None,
    cases: Sequence[ShapeCase] = DEFAULT_CASES,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Run every check on `method_cls`; return each case's outcome.

    With `teacher_shapes` and `student_shapes`, that single case (named "custom") replaces
    `cases`. An outcome is "ok" or "not applicable: <reason>"; whether a method should
    apply to a case is the caller's to assert.
    """
    check_declaration(method_cls)
    if (teacher_shapes is None) != (student_shapes is None):
        raise ValueError("give both teacher_shapes and student_shapes, or neither")
    if teacher_shapes is not None and student_shapes is not None:
        cases = [ShapeCase("custom", teacher_shapes, student_shapes)]
    method = method_cls(**dict(overrides or {}))
    outcomes: dict[str, str] = {}
    for case in cases:
        where = f"case {case.name}"
        try:
            loss = method.build(dict(case.teacher), dict(case.student))
        except NotApplicable as exc:
            if not str(exc):
                raise _fail(method_cls, where, "NotApplicable without a reason") from exc
            outcomes[case.name] = f"not applicable: {exc}"
            continue
        if not isinstance(loss, KDLoss):
            raise _fail(method_cls, where, f"build returned {loss!r}, not a KDLoss")
        try:
            check_loss(method_cls, loss, case, where)
        except NotApplicable as exc:  # a loss may find out only from the outputs
            if not str(exc):
                raise _fail(method_cls, where, "NotApplicable without a reason") from exc
            outcomes[case.name] = f"not applicable: {exc}"
            continue
        outcomes[case.name] = "ok"
    return outcomes
