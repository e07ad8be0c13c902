"""The numeric platform a trial ran on: what decides its last bits besides its settings.

The same trial id run on another CPU type (AMD EPYC vs Intel AVX-512), another kernel ISA,
another MKL/oneDNN build, another thread count or a GPU gives other floating-point sums,
and the differences grow through training like a change of seed. So every trial row
records its platform, and the leaderboard flags a cell or a comparison that mixes two.

The platform is provenance, not identity: a trial's id hashes what was *asked for*
(settings, data, code version), and a rerun on another machine skips trials already done
instead of making new ones, so one store can be resumed anywhere. `kdbench run` says when
it reuses trials made on another platform, and the leaderboard's flags keep a mixed cell
from passing silently. A user who wants a platform's own numbers runs into a fresh store.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform as host_platform
import re
from pathlib import Path
from typing import Any

import torch

NUMERIC_FIELDS = (
    "device",
    "cpu_vendor",
    "cpu_model",
    "cpu_isa",
    "gpu_model",
    "torch",
    "cuda",
    "cudnn",
    "mkl",
    "onednn",
    "threads",
    "kernel_settings",
)
"""The fields that change a trial's bits; the fingerprint hashes these and nothing else."""

KERNEL_SETTINGS = (
    "ATEN_CPU_CAPABILITY",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "CUBLAS_WORKSPACE_CONFIG",
)
"""Environment variables that choose other kernels for the same CPU or GPU: measured to
change a trial's bits on one machine (BENCHMARKS.md, section 7), so they are part of it."""


def _backend_switches() -> dict[str, str]:
    """torch's process-wide kernel switches that are off their default, by their Python name.

    `torch.backends.mkldnn.enabled = False` (a user's sitecustomize, another library)
    makes convolutions run ATen's kernels instead of oneDNN's: measured to change Conv2d's
    bits (BENCHMARKS.md §7, "portable, no oneDNN"). No environment variable says so, so the
    switch is read here. Only a switch off its default is recorded, beside the environment
    variables, so every platform that leaves it alone keeps the fingerprint it had before
    the switch was recorded, and stores made then do not read as another platform."""
    return {} if torch.backends.mkldnn.enabled else {"torch.backends.mkldnn.enabled": "False"}


@functools.cache
def _cpu() -> tuple[str, str]:
    """(vendor, model) from /proc/cpuinfo where there is one, else what `platform` knows."""
    vendor, model = "", ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "vendor_id" and not vendor:
                vendor = value
            elif key in ("model name", "Model") and not model:
                model = value
    return vendor or host_platform.machine(), model or host_platform.processor() or "unknown"


@functools.cache
def _library_versions() -> dict[str, str]:
    """MKL and oneDNN versions as torch reports its build (no public API gives them)."""
    config = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version ([\w.\-]+)", config)
    onednn = re.search(r"MKL-DNN v([\d.]+)", config)
    return {
        "mkl": mkl.group(1) if mkl else "none",
        "onednn": onednn.group(1) if onednn else "none",
    }


def describe(device: torch.device | str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """The platform of work done on `device` in this process, with its fingerprint;
    `threads`: as a trial run here with that many torch threads would record it (a grid's
    workers run with fewer threads than the process that starts them)."""
    device = torch.device(device)
    vendor, model = _cpu()
    facts: dict[str, Any] = {
        "device": device.type,
        "cpu_vendor": vendor,
        "cpu_model": model,
        "cpu_isa": torch.backends.cpu.get_cpu_capability(),
        "gpu_model": "",
        "torch": torch.__version__,
        "cuda": "",
        "cudnn": "",
        "threads": torch.get_num_threads() if threads is None else threads,
        "kernel_settings": {
            **{name: os.environ[name] for name in KERNEL_SETTINGS if name in os.environ},
            **_backend_switches(),
        },
        **_library_versions(),
    }
    if device.type == "cuda":
        facts["gpu_model"] = torch.cuda.get_device_name(device)
        facts["cuda"] = torch.version.cuda or ""
        facts["cudnn"] = str(torch.backends.cudnn.version() or "")
    facts["fingerprint"] = fingerprint(facts)
    return facts


def fingerprint(facts: dict[str, Any]) -> str:
    """A short hash of the numeric fields: equal fingerprints, comparable last bits."""
    numeric = {name: facts.get(name, "") for name in NUMERIC_FIELDS}
    return hashlib.sha256(json.dumps(numeric, sort_keys=True).encode()).hexdigest()[:12]


def label(facts: dict[str, Any]) -> str:
    """One short human line: what a reader needs to tell two platforms apart."""
    if facts.get("device") == "cuda":
        where = f"{facts.get('gpu_model')} (CUDA {facts.get('cuda')})"
    else:
        where = f"{facts.get('cpu_model')} {facts.get('cpu_isa')}"
    settings = " ".join(f"{k}={v}" for k, v in (facts.get("kernel_settings") or {}).items())
    return (
        f"{where}, torch {facts.get('torch')}, {facts.get('threads')} thread(s)"
        + (f", {settings}" if settings else "")
    )
