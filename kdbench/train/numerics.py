"""The arithmetic a trial trains in: fp32 or bf16 autocast, and CUDA's deterministic mode.

`train.precision` is identity (asked for, and it changes the numbers); whether CUDA runs
deterministic kernels (`run.deterministic`) is a run setting: it decides whether a seed
repeats its bits on one GPU model, not what the trial is.
"""

from __future__ import annotations

import contextlib
import os

import torch

CUBLAS_WORKSPACE = ":4096:8"
"""cuBLAS's deterministic workspace setting (CUDA docs, "Results reproducibility")."""


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context a training forward and its losses run in; fp32 is no context at all,
    so CPU training stays exactly what it was before precision was a setting."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def configure_cuda(deterministic: bool) -> None:
    """Process-wide CUDA settings for trials on a GPU.

    fp32 means fp32: TF32 convolutions and matrix products are off (bf16 is the setting
    that trades precision for speed, and it is identity). With `deterministic`, kernels
    that have a deterministic variant use it, cuDNN stops benchmarking (its choice varies
    between runs), and cuBLAS gets a fixed workspace — which it reads when its first
    handle is made, so this runs before a trial touches the GPU. An op with no
    deterministic variant warns instead of failing the trial (`warn_only`).
    """
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
