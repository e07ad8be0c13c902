"""Pairs with GTCRN students or teachers: across families, and GTCRN at two sizes.

Each suite has one teacher, so a grid over a suite trains one teacher and its leaderboard's
teacher row is that teacher:

- ``families``: the ``cpu`` suite's UNet teacher (the same spec, so the same cached teacher)
  distilled into GTCRN at the published size (16 channels, 23.7 k parameters) and at half
  width. The latents differ in every axis: ERB bands against linear bins, hop 256 against
  128 (half the frames), 16 or 8 channels against 16…128.
- ``gtcrn``: a GTCRN twice as wide (32 channels) distilled into the published GTCRN
  (one family, two sizes) and into the ``cpu`` suite's width student (a UNet).

They are not in the ``cpu`` suite because the README's main job (`--pairs all` on the
quick preset) would no longer fit its 10 minutes on 2 cores: a GTCRN training step costs
about 1.7 times the UNet teacher's and 5.6 times the width student's on one CPU thread (its GRUs
run frame by frame). Run them with one thread per trial (`--jobs` = cores, as `quick`
does): on a busy machine two threads per trial make those many small steps several times
slower, not faster.
"""

from __future__ import annotations

from kdbench.api import ArchitecturePair, ModelSpec, hookimpl
from kdbench_plugins.pairs.unet_pairs import PAIRS as UNET_PAIRS
from kdbench_plugins.pairs.unet_pairs import TEACHER as UNET_TEACHER

GTCRN = ModelSpec("gtcrn", {"channels": 16})
GTCRN_HALF = ModelSpec("gtcrn", {"channels": 8})
GTCRN_WIDE = ModelSpec("gtcrn", {"channels": 32})
UNET_WIDTH_STUDENT = next(pair.student for pair in UNET_PAIRS if pair.name == "width")

PAIRS = tuple(
    ArchitecturePair(
        name=name, description=description, teacher=teacher, student=student,
        varies=varies, mismatch=mismatch, suite=suite,
    )
    for name, description, teacher, student, varies, mismatch, suite in (
        (
            "unet_gtcrn", "UNet teacher (16…128) → GTCRN at the published size (16 channels)",
            UNET_TEACHER, GTCRN, "family", 2, "families",
        ),
        (
            "unet_gtcrn8", "UNet teacher (16…128) → GTCRN at half width (8 channels)",
            UNET_TEACHER, GTCRN_HALF, "family, width", 3, "families",
        ),
        (
            "gtcrn_width", "GTCRN 32 channels → GTCRN at the published size (16 channels)",
            GTCRN_WIDE, GTCRN, "width", 1, "gtcrn",
        ),
        (
            "gtcrn_unet", "GTCRN 32 channels → UNet student (4…32, the width pair's)",
            GTCRN_WIDE, UNET_WIDTH_STUDENT, "family", 2, "gtcrn",
        ),
    )
)


@hookimpl
def kdbench_register_pairs(register) -> None:
    for pair in PAIRS:
        register.add(pair)
