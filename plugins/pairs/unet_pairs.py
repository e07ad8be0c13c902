"""Teacher/student UNet pairs sized for CPU presets, from mild to severe mismatch.

Every pair shares one teacher (4 levels, 16…128 channels, kernel 5), so a grid over all
pairs trains a single teacher; the students differ in width, depth and kernel, alone and
combined, so a leaderboard can tell whether a method keeps its gain as the mismatch grows.
"""

from __future__ import annotations

from kdbench.api import ArchitecturePair, ModelSpec, hookimpl

TEACHER = ModelSpec("unet", {"channels": [16, 32, 64, 128], "kernel": 5})

PAIRS = (
    ArchitecturePair(
        name="width",
        description="student 4 levels, channels ÷4 (4…32)",
        teacher=TEACHER,
        student=ModelSpec("unet", {"channels": [4, 8, 16, 32], "kernel": 5}),
        varies="width",
        mismatch=1,
    ),
    ArchitecturePair(
        name="kernel",
        description="student kernel 3 instead of 5, channels ÷2 (8…64)",
        teacher=TEACHER,
        student=ModelSpec("unet", {"channels": [8, 16, 32, 64], "kernel": 3}),
        varies="kernel, width",
        mismatch=1,
    ),
    ArchitecturePair(
        name="depth",
        description="student 2 levels (8, 16): a coarser latent grid than the teacher's",
        teacher=TEACHER,
        student=ModelSpec("unet", {"channels": [8, 16], "kernel": 5}),
        varies="depth",
        mismatch=2,
    ),
    ArchitecturePair(
        name="width8",
        description="student 4 levels, channels ÷8 (2…16)",
        teacher=TEACHER,
        student=ModelSpec("unet", {"channels": [2, 4, 8, 16], "kernel": 5}),
        varies="width",
        mismatch=3,
    ),
    ArchitecturePair(
        name="width_depth",
        description="student 2 levels and channels ÷4 (4, 8): width and depth together",
        teacher=TEACHER,
        student=ModelSpec("unet", {"channels": [4, 8], "kernel": 5}),
        varies="width, depth",
        mismatch=4,
    ),
)


@hookimpl
def kdbench_register_pairs(register) -> None:
    for pair in PAIRS:
        register.add(pair)
