"""Where a model runs: the `run.device` setting, resolved on the machine that runs a trial.

Design (decided for issue 16): the device and the numeric platform are *provenance, not
identity*. `run.device` is a run setting like `run.jobs`: it never enters a trial id, so
`--set run.device=cpu` and `auto` on a machine without a GPU make the same trials and the
same numbers, and a store can be resumed on another machine. Where a trial actually ran is
recorded with it (`kdbench.run.platform.describe(device)`), and the leaderboard flags a
cell that mixes platforms; asked-for numeric choices that change results on purpose (such
as `train.precision`) are identity and live in the `train` section instead.

The setting is resolved where the trial runs, not where the grid is built: a Ray node may
have a GPU that the driver lacks. Executors place trials over GPUs by giving each worker
its own `CUDA_VISIBLE_DEVICES`, so inside a worker `auto` and `cuda` mean "the first
visible GPU", i.e. the one the executor assigned; `cuda:N` pins a device and is left alone.
"""

from __future__ import annotations

import os
import re

import torch

from kdbench.errors import ConfigError

DEVICE_HELP = "where models run: auto (the first visible CUDA device, else cpu), cpu, cuda, cuda:N"
_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
VISIBLE_DEVICES_ENV = "CUDA_VISIBLE_DEVICES"


def check_device_setting(setting: str, key: str = "run.device") -> str:
    """The setting if it is well formed (nothing is asked of the hardware yet)."""
    if not _PATTERN.match(setting):
        raise ConfigError(f"{key}: {setting!r} is not one of: auto, cpu, cuda, cuda:N")
    return setting


def resolve_device(setting: str, key: str = "run.device") -> torch.device:
    """The torch device `setting` names on this machine; asking for a GPU this machine does
    not have is a one-line error that says what is visible."""
    check_device_setting(setting, key)
    if setting == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if setting == "auto":
        return torch.device("cuda", 0) if available else torch.device("cpu")
    if not available:
        hidden = os.environ.get(VISIBLE_DEVICES_ENV)
        raise ConfigError(
            f"{key}={setting}: no CUDA device is visible here (torch {torch.__version__}"
            + (f", {VISIBLE_DEVICES_ENV}={hidden!r}" if hidden is not None else "")
            + "); use cpu or auto"
        )
    index = int(setting.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(
            f"{key}={setting}: only {count} CUDA device(s) are visible here (cuda:0…cuda:{count - 1})"
        )
    return torch.device("cuda", index)


def places_over_gpus(setting: str) -> bool:
    """Whether an executor may choose the GPU (auto, cuda) rather than the user (cuda:N)."""
    return setting in ("auto", "cuda")


def visible_gpus() -> list[str]:
    """The GPUs this process may hand to workers, as `CUDA_VISIBLE_DEVICES` entries (the
    parent's own list when it has one, so a restricted driver never widens its workers)."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    given = os.environ.get(VISIBLE_DEVICES_ENV)
    if given is not None:
        return [entry.strip() for entry in given.split(",") if entry.strip()][:count]
    return [str(index) for index in range(count)]
