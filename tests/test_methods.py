"""The built-in KD methods: conformance, known values, invariances and failure modes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdbench.api import (
    Batch,
    ConfigError,
    DenoiserOutput,
    KDLoss,
    KDMethod,
    NotApplicable,
    Param,
    channel_pooling,
    match_latents,
)
from kdbench.plugin.registry import get_registry
from kdbench.testing import DEFAULT_CASES, TEACHER, check_method, model_case, unet_latent_shapes

REGISTRY = get_registry()
METHODS = REGISTRY.all("methods")
STUDENT = unet_latent_shapes([4, 8, 16, 32])
SHALLOW = unet_latent_shapes([8, 16])


def method(name: str, **overrides: Any) -> KDMethod:
    return REGISTRY.get("methods", name)(**overrides)


def output(
    latents: Mapping[str, torch.Tensor], magnitude: torch.Tensor | None = None
) -> DenoiserOutput:
    if magnitude is None:
        magnitude = torch.zeros(1, 1, 1)
    return DenoiserOutput(
        magnitude=magnitude,
        latents=dict(latents),
        length=0,
        synthesize=lambda: torch.zeros(1),
    )


def batch(progress: float = 0.0) -> Batch:
    return Batch(
        noisy=torch.zeros(1),
        clean=torch.zeros(1),
        clean_magnitude=torch.zeros(1),
        step=round(progress * 100),
        total_steps=100,
    )


def kd(
    loss: KDLoss,
    student: Mapping[str, torch.Tensor],
    teacher: Mapping[str, torch.Tensor],
    progress: float = 0.0,
) -> float:
    return loss(output(student), output(teacher), batch(progress)).item()


def shapes(**latents: torch.Tensor) -> dict[str, torch.Size]:
    return {name: z.shape for name, z in latents.items()}


def random_latents(layout: Mapping[str, torch.Size], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(*shape, generator=generator) for name, shape in layout.items()}


def identity_projection(loss: KDLoss) -> None:
    with torch.no_grad():
        for aligner in loss.aligners:
            weight = aligner.projection.weight
            weight.copy_(torch.eye(weight.shape[0]).view_as(weight))


# --------------------------------------------------------------------------- conformance


@pytest.mark.parametrize("name", sorted(METHODS))
def test_builtin_passes_the_kit_on_every_default_case(name: str) -> None:
    outcomes = check_method(METHODS[name].obj)
    assert outcomes == {case.name: "ok" for case in DEFAULT_CASES}


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("cosine", {"match": "pool", "axis": "channel", "resample": "interpolate"}),
        ("cosine", {"axis": "flat", "latents": "encoder,decoder,enc2:enc4"}),
        ("mse", {"match": "pool", "latents": "all"}),
        ("fgspkd", {"two_step": True, "latents": "all", "resample": "interpolate"}),
        ("attention", {"p": 1.0, "latents": "encoder,bottleneck"}),
        ("similarity", {"latents": "all"}),
    ],
)
def test_builtin_passes_the_kit_with_options(name: str, overrides: dict[str, Any]) -> None:
    assert set(check_method(METHODS[name].obj, overrides=overrides).values()) == {"ok"}


def _model(spec) -> torch.nn.Module:
    return REGISTRY.get("models", spec.family).build(spec.params)


CROSS_FAMILY = [
    model_case(pair.name, _model(pair.teacher), _model(pair.student))
    for pair in (REGISTRY.get("pairs", name) for name in REGISTRY.names("pairs"))
    if pair.teacher.family != pair.student.family
]


def test_cross_family_cases_differ_in_grid_bands_and_frames() -> None:
    by_name = {case.name: case for case in CROSS_FAMILY}
    assert set(by_name) == {"unet_gtcrn", "unet_gtcrn8", "gtcrn_unet"}
    case = by_name["unet_gtcrn"]
    teacher_grid, student_grid = case.grids
    assert (teacher_grid.frames, student_grid.frames) == (63, 32)  # hop 128 against 256
    assert case.teacher["bottleneck"][1:] == (128, 17, 4)
    assert case.student["bottleneck"][1:] == (16, 33, 32)  # ERB bands, not bins


@pytest.mark.parametrize("name", sorted(METHODS))
def test_builtin_passes_the_kit_on_every_cross_family_pair(name: str) -> None:
    outcomes = check_method(METHODS[name].obj, cases=CROSS_FAMILY)
    assert outcomes == {case.name: "ok" for case in CROSS_FAMILY}


def test_kit_rejects_a_loss_that_syncs_leaks_or_hides_adapters() -> None:
    class Base(KDMethod):
        name = "broken"
        description = "a deliberately broken method"

    class SyncsHost(KDLoss):
        def forward(self, student, teacher, batch):
            z = student.latents["bottleneck"]
            return z.mean() * float(z.abs().max())

    class MutatesTeacher(KDLoss):
        def forward(self, student, teacher, batch):
            teacher.latents["bottleneck"].mul_(2)
            return student.latents["bottleneck"].mean()

    class DeadAdapter(KDLoss):
        def __init__(self) -> None:
            super().__init__()
            self.unused = torch.nn.Linear(2, 2)

        def forward(self, student, teacher, batch):
            return student.latents["bottleneck"].mean()

    for loss_cls, message in [
        (SyncsHost, "host"),
        (MutatesTeacher, "teacher bottleneck was modified"),
        (DeadAdapter, "receives no gradient"),
    ]:
        broken = type("Broken", (Base,), {"build": lambda self, t, s, c=loss_cls: c()})
        with pytest.raises(AssertionError, match=message):
            check_method(broken)


def test_kit_rejects_a_default_that_does_not_round_trip() -> None:
    class BadDefault(KDMethod):
        name = "bad"
        description = "a default of the wrong type"
        params = {"weight": Param("heavy", "not a number", float)}

    with pytest.raises(AssertionError, match="param weight"):
        check_method(BadDefault)


# --------------------------------------------------------------------------- cosine


def test_cosine_equals_one_minus_cos_for_hand_computed_vectors() -> None:
    flat = method("cosine", match="pool", axis="flat")
    s, t = torch.tensor([1.0, 2.0]).view(1, 1, 2, 1), torch.tensor([2.0, 1.0]).view(1, 1, 2, 1)
    loss = flat.build(shapes(bottleneck=t), shapes(bottleneck=s))
    assert kd(loss, {"bottleneck": s}, {"bottleneck": t}) == pytest.approx(1 - 4 / 5)

    # two frames of (channels x freq) = 2 x 1 vectors: (1,0) vs (1,1), then (0,1) vs (0,-1)
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2)
    t = torch.tensor([[1.0, 0.0], [1.0, -1.0]]).view(1, 2, 1, 2)
    frame = method("cosine", match="pool").build(shapes(bottleneck=t), shapes(bottleneck=s))
    expected = ((1 - 1 / math.sqrt(2)) + 2) / 2
    assert kd(frame, {"bottleneck": s}, {"bottleneck": t}) == pytest.approx(expected)


@pytest.mark.parametrize("match", ["projection", "pool"])
def test_cosine_is_zero_when_aligned_or_scaled_and_two_when_opposite(match: str) -> None:
    z = torch.randn(2, 8, 5, 4)
    loss = method("cosine", match=match).build(shapes(bottleneck=z), shapes(bottleneck=z))
    if match == "projection":
        identity_projection(loss)
    assert kd(loss, {"bottleneck": z}, {"bottleneck": z}) == pytest.approx(0.0, abs=1e-6)
    assert kd(loss, {"bottleneck": 3.5 * z}, {"bottleneck": z}) == pytest.approx(0.0, abs=1e-6)
    assert kd(loss, {"bottleneck": -z}, {"bottleneck": 0.1 * z}) == pytest.approx(2.0)


@pytest.mark.parametrize("axis", ["frame", "channel", "flat"])
@pytest.mark.parametrize("student_layout", [STUDENT, SHALLOW], ids=["width", "depth"])
def test_cosine_ignores_positive_scaling_of_either_side(
    axis: str, student_layout: Mapping[str, torch.Size]
) -> None:
    loss = method("cosine", axis=axis, latents="encoder,bottleneck").build(TEACHER, student_layout)
    student, teacher = random_latents(student_layout, 1), random_latents(TEACHER, 2)
    reference = kd(loss, student, teacher)
    scaled_student = {name: 7.0 * z for name, z in student.items()}
    scaled_teacher = {name: 0.02 * z for name, z in teacher.items()}
    assert kd(loss, scaled_student, teacher) == pytest.approx(reference, rel=1e-5)
    assert kd(loss, student, scaled_teacher) == pytest.approx(reference, rel=1e-5)


def test_mse_is_not_scale_invariant() -> None:
    loss = method("mse").build(TEACHER, STUDENT)
    student, teacher = random_latents(STUDENT, 1), random_latents(TEACHER, 2)
    scaled = {name: 3.0 * z for name, z in student.items()}
    assert kd(loss, scaled, teacher) != pytest.approx(kd(loss, student, teacher), rel=1e-3)


small_maps = st.tuples(
    st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)
)


@settings(max_examples=40, deadline=None)
@given(
    dims=small_maps,
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(1e-3, 1e3),
    axis=st.sampled_from(["frame", "channel", "flat"]),
    match=st.sampled_from(["projection", "pool"]),
)
def test_cosine_term_lies_between_zero_and_two(
    dims: tuple[int, int, int, int], seed: int, scale: float, axis: str, match: str
) -> None:
    generator = torch.Generator().manual_seed(seed)
    s = torch.randn(*dims, generator=generator)
    t = scale * torch.randn(dims[0], dims[1] + 1, dims[2], dims[3], generator=generator)
    loss = method("cosine", axis=axis, match=match).build(
        shapes(bottleneck=t), shapes(bottleneck=s)
    )
    assert -1e-6 <= kd(loss, {"bottleneck": s}, {"bottleneck": t}) <= 2 + 1e-6


# --------------------------------------------------------------------------- similarity, fgspkd


def test_similarity_matches_a_hand_computed_gram_example() -> None:
    # teacher samples (1,0) and (0,1): G_t = I. Student samples (1,0,0) and (2,0,0):
    # G_s = [[1,2],[2,4]], both rows normalise to (1,2)/sqrt(5).
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 1, 2, 1)
    s = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]).view(2, 1, 3, 1)
    loss = method("similarity").build(shapes(bottleneck=t), shapes(bottleneck=s))
    r = 1 / math.sqrt(5)
    expected = ((1 - r) ** 2 + (2 * r) ** 2 + r**2 + (1 - 2 * r) ** 2) / 4
    assert kd(loss, {"bottleneck": s}, {"bottleneck": t}) == pytest.approx(expected)


def test_fgspkd_matches_a_hand_computed_frame_gram_example() -> None:
    # one sample, two frames. Teacher frames (1,0), (0,1): G_t = I. Student frames (1,0),
    # (1,0): rows of G_s normalise to (1,1)/sqrt(2). ||G_t - G_s||^2 = 4 - 2 sqrt(2), / T^2.
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    s = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    loss = method("fgspkd", latents="bottleneck").build(
        shapes(bottleneck=t), shapes(bottleneck=s)
    )
    expected = (4 - 2 * math.sqrt(2)) / 4
    assert kd(loss, {"bottleneck": s}, {"bottleneck": t}) == pytest.approx(expected)
    assert kd(loss, {"bottleneck": t}, {"bottleneck": t}) == pytest.approx(0.0, abs=1e-7)


def test_fgspkd_pools_the_student_along_time_onto_the_teacher_frames() -> None:
    # student frames (1,0),(1,0),(0,1),(0,1) pool pairwise to the teacher's (1,0),(0,1)
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    s = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]).view(1, 1, 2, 4)
    loss = method("fgspkd", latents="bottleneck").build(
        shapes(bottleneck=t), shapes(bottleneck=s)
    )
    assert kd(loss, {"bottleneck": s}, {"bottleneck": t}) == pytest.approx(0.0, abs=1e-7)


def test_fgspkd_two_step_trains_on_kd_alone_then_on_the_task_alone() -> None:
    loss = method("fgspkd", two_step="true", pretrain_fraction="0.3").build(TEACHER, STUDENT)
    student, teacher = random_latents(STUDENT, 1), random_latents(TEACHER, 2)
    assert loss.task_weight(batch(0.1)) == 0.0
    assert kd(loss, student, teacher, progress=0.1) > 0
    assert loss.task_weight(batch(0.3)) == 1.0
    assert kd(loss, student, teacher, progress=0.3) == 0.0
    mixed = method("fgspkd").build(TEACHER, STUDENT)
    assert mixed.task_weight(batch(0.1)) == 1.0
    assert kd(mixed, student, teacher, progress=0.9) > 0


def test_fgspkd_rejects_a_pretrain_fraction_outside_zero_one() -> None:
    with pytest.raises(ConfigError, match="pretrain_fraction"):
        method("fgspkd", pretrain_fraction=1.5)


# --------------------------------------------------------------------------- matching, params


@pytest.mark.parametrize(
    ("name", "latents"),
    [
        ("cosine", "enc3"),
        ("mse", "nosuch"),
        ("attention", "enc1:enc9"),
        ("fgspkd", "bottleneck,dec4"),
        ("similarity", "enc4"),
    ],
)
def test_missing_latents_are_not_applicable(name: str, latents: str) -> None:
    with pytest.raises(NotApplicable, match="has no latent"):
        method(name, latents=latents).build(TEACHER, SHALLOW)


def test_a_group_neither_model_has_is_not_applicable() -> None:
    plain = {"bottleneck": TEACHER["bottleneck"]}
    with pytest.raises(NotApplicable, match="no encoder latents"):
        method("fgspkd").build(plain, plain)


def test_groups_pair_levels_at_the_same_resolution_and_pairs_cross_depths() -> None:
    pairs = match_latents(["encoder", "bottleneck", "enc2:enc4", "enc1"], TEACHER, SHALLOW)
    assert pairs == [
        ("enc1", "enc1"), ("enc2", "enc2"), ("bottleneck", "bottleneck"), ("enc2", "enc4")
    ]
    assert match_latents(["decoder"], TEACHER, SHALLOW) == [("dec1", "dec3")]
    assert match_latents(["all"], TEACHER, STUDENT) == [(n, n) for n in TEACHER]
    for student_name, teacher_name in match_latents(["all"], TEACHER, SHALLOW):
        if student_name != "bottleneck":
            assert SHALLOW[student_name][-2:] == TEACHER[teacher_name][-2:]
    with pytest.raises(ConfigError):
        match_latents(["enc1:enc2:enc3"], TEACHER, SHALLOW)


def test_channel_pooling_averages_adjacent_channels() -> None:
    assert torch.equal(channel_pooling(3, 3).flatten(1), torch.eye(3))
    x = torch.arange(4.0).view(1, 4, 1, 1)
    pooled = torch.nn.functional.conv2d(x, channel_pooling(4, 2))
    assert pooled.flatten().tolist() == [0.5, 2.5]


def test_set_style_strings_are_coerced() -> None:
    cosine = method("cosine", weight="0.5", latents="enc1, bottleneck", axis="channel")
    assert cosine.hparams["weight"] == 0.5
    assert cosine.hparams["latents"] == ["enc1", "bottleneck"]
    fgspkd = method("fgspkd", two_step="yes", pretrain_fraction="0.25")
    assert fgspkd.hparams["two_step"] is True
    assert fgspkd.hparams["pretrain_fraction"] == 0.25
    with pytest.raises(ConfigError, match="axis"):
        method("cosine", axis="diagonal")
    with pytest.raises(ConfigError, match="unknown parameter"):
        method("mse", temperature=2)


def test_weight_scales_every_kd_term() -> None:
    student, teacher = random_latents(STUDENT, 1), random_latents(TEACHER, 2)
    for name in ("cosine", "mse", "attention", "similarity", "fgspkd"):
        torch.manual_seed(0)
        one = kd(method(name).build(TEACHER, STUDENT), student, teacher)
        torch.manual_seed(0)
        half = kd(method(name, weight=0.5).build(TEACHER, STUDENT), student, teacher)
        assert half == pytest.approx(one / 2, rel=1e-5), name


def test_output_is_l1_between_estimates() -> None:
    loss = method("output", weight=2.0).build(TEACHER, STUDENT)
    s, t = torch.tensor([[[1.0, 3.0]]]), torch.tensor([[[2.0, 0.0]]])
    value = loss(output({}, s), output({}, t), batch()).item()
    assert value == pytest.approx(2.0 * (1 + 3) / 2)


def test_output_compares_two_hops_on_the_frames_they_share() -> None:
    """A UNet (hop 128) and a GTCRN (hop 256) estimating the same signal: every second
    UNet frame is a GTCRN frame, so the loss is zero, and an STFT of another size is not
    comparable."""
    wave = torch.randn(1, 8000)
    window = torch.hann_window(512)
    fine, coarse = (
        torch.stft(wave, 512, hop, window=window, return_complex=True).abs() for hop in (128, 256)
    )
    loss = method("output").build(TEACHER, STUDENT)

    def estimate(magnitude: torch.Tensor, hop: int, n_fft: int = 512) -> DenoiserOutput:
        return DenoiserOutput(magnitude, {}, 8000, analysis=(n_fft, hop, "hann"))

    for student, teacher in ((coarse, 256), (fine, 128)), ((fine, 128), (coarse, 256)):
        value = loss(estimate(*student), estimate(*teacher), batch()).item()
        assert value == pytest.approx(0, abs=1e-6)
    with pytest.raises(NotApplicable, match="share no frames"):
        loss(estimate(coarse, 256), estimate(fine[:, :129], 128, n_fft=256), batch())
