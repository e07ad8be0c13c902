"""Teacher/student UNet pairs, from mild to severe mismatch, at two scales.

Suite ``cpu``: every pair shares one teacher (4 levels, 16…128 channels, kernel 5), so a
grid over all pairs trains a single teacher; the students differ in width, depth and
kernel, alone and combined, so a leaderboard can tell whether a method keeps its gain as
the mismatch grows. The ``cpu`` students keep at least a tenth of every bin's magnitude
(``mask_floor`` 0.1: at most 20 dB of attenuation, a usual limit of hearing-aid noise
reduction), the two 2-level students a fifth (0.2: at most 14 dB). Without a floor these
few-hundred-step students removed parts of speech they had not heard in training and lowered
STOI on unseen voices; 0.1 was chosen on the procedural and eSpeak validation splits, and the
2-level students' 0.2 on the real-speech dev set (`realspeech_dev`), where 0.1 still lowered
width_depth's STOI (BENCHMARKS.md §11), never on a test set. The teacher has no floor: it is
the shipped one, trained without. Suite ``paper`` scales the
same five mismatches up to the house-style teacher of the paper's group (6 levels, 16…512
channels, Dropout2d 0.5 in the decoder).
"""

from __future__ import annotations

from kdbench.api import ArchitecturePair, ModelSpec, hookimpl

TEACHER = ModelSpec("unet", {"channels": [16, 32, 64, 128], "kernel": 5})
STUDENT_FLOOR = {"mask_floor": 0.1}
SHALLOW_STUDENT_FLOOR = {"mask_floor": 0.2}
"""The 2-level students' floor: their coarse latent grid sees less context, and real speech
needed more of each bin kept (chosen on `realspeech_dev`, BENCHMARKS.md §11)."""

PAIRS = (
    ArchitecturePair(
        name="width",
        description="student 4 levels, channels ÷4 (4…32)",
        teacher=TEACHER,
        student=ModelSpec("unet", {"channels": [4, 8, 16, 32], "kernel": 5, **STUDENT_FLOOR}),
        varies="width",
        mismatch=1,
    ),
    ArchitecturePair(
        name="kernel",
        description="student kernel 3 instead of 5, channels ÷2 (8…64)",
        teacher=TEACHER,
        student=ModelSpec("unet", {"channels": [8, 16, 32, 64], "kernel": 3, **STUDENT_FLOOR}),
        varies="kernel, width",
        mismatch=1,
    ),
    ArchitecturePair(
        name="depth",
        description="student 2 levels (8, 16): a coarser latent grid than the teacher's",
        teacher=TEACHER,
        student=ModelSpec("unet", {"channels": [8, 16], "kernel": 5, **SHALLOW_STUDENT_FLOOR}),
        varies="depth",
        mismatch=2,
    ),
    ArchitecturePair(
        name="width8",
        description="student 4 levels, channels ÷8 (2…16)",
        teacher=TEACHER,
        student=ModelSpec("unet", {"channels": [2, 4, 8, 16], "kernel": 5, **STUDENT_FLOOR}),
        varies="width",
        mismatch=3,
    ),
    ArchitecturePair(
        name="width_depth",
        description="student 2 levels and channels ÷4 (4, 8): width and depth together",
        teacher=TEACHER,
        student=ModelSpec("unet", {"channels": [4, 8], "kernel": 5, **SHALLOW_STUDENT_FLOOR}),
        varies="width, depth",
        mismatch=4,
    ),
)


PAPER_TEACHER = ModelSpec(
    "unet", {"channels": [16, 32, 64, 128, 256, 512], "kernel": 5, "dropout": 0.5}
)

PAPER_STUDENTS = (
    ("width", [4, 8, 16, 32, 64, 128], 5, "channels ÷4", 1),
    ("kernel", [8, 16, 32, 64, 128, 256], 3, "kernel 3, channels ÷2", 1),
    ("depth", [16, 32, 64, 128], 5, "4 levels instead of 6", 2),
    ("width8", [2, 4, 8, 16, 32, 64], 5, "channels ÷8", 3),
    ("width_depth", [4, 8, 16, 32], 5, "4 levels and channels ÷4", 4),
)

PAPER_PAIRS = tuple(
    ArchitecturePair(
        name=f"paper_{name}",
        description=f"paper scale: student {description}",
        teacher=PAPER_TEACHER,
        student=ModelSpec("unet", {"channels": channels, "kernel": kernel, "dropout": 0.5}),
        varies=PAIRS[[p.name for p in PAIRS].index(name)].varies,
        mismatch=mismatch,
        suite="paper",
    )
    for name, channels, kernel, description, mismatch in PAPER_STUDENTS
)


@hookimpl
def kdbench_register_pairs(register) -> None:
    for pair in (*PAIRS, *PAPER_PAIRS):
        register.add(pair)
