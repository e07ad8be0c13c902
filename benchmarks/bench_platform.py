"""Which CPU settings change a trial's bits: the `ci` grid under several kernel settings.

Issue 15 found that one trial id gives other numbers on another x86 CPU type (Intel
AVX-512 vs AMD EPYC). The suspects are the kernels torch and its libraries pick for the
CPU: ATen's own vectorised kernels (`ATEN_CPU_CAPABILITY`), MKL's code path (`MKL_CBWR`,
conditional numerical reproducibility) and oneDNN's ISA (`ONEDNN_MAX_CPU_ISA`). Each
setting here runs the same tiny grid from an empty cache in a fresh process and prints a
digest of every score (bit for bit) and the platform fingerprint. Two settings whose
digests agree made the same bits on this machine. The digests are recorded in
BENCHMARKS.md with the machine, one block per CPU vendor, so a session on another CPU type
can run this script with the same kdbench code and compare its digests with those: equal
digests there would show a setting that makes results bit-identical across vendors; this
machine alone cannot show that.

A grid digest only says *whether* two machines agree. The operation probe (`--ops`, run by
`main` under every setting too) says *where* they part: a digest per kernel family a trial
uses (the STFT, Conv2d, ConvTranspose2d, BatchNorm, sgemm, elementwise transcendental
functions; the backward kernels of the convolutions, BatchNorm and the inverse STFT; Adam's
update on fixed gradients, and split into its scalars, its square root and the rest; a real
student's forward, its gradients (all, and per level) and three Adam steps; and
the metrics' NumPy/SciPy/C code), each on fixed inputs drawn by NumPy's generator, which no
torch setting reaches (their digest is a row of its own, so inputs that differed between
machines would show).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _report import markdown_table, provenance, update_section

from kdbench.run.platform import describe

KDBENCH = str(Path(sys.executable).with_name("kdbench"))
NO_ONEDNN = "BENCH_PLATFORM_NO_ONEDNN"
"""Not a torch setting (torch has no environment variable for it): this script's own
switch, which a `sitecustomize` module on the subprocesses' path turns into
`torch.backends.mkldnn.enabled = False`, so that convolutions run ATen's own kernels instead
of oneDNN's, whose blocking depends on the CPU's cache sizes."""
SITECUSTOMIZE = f"""import os
if os.environ.get("{NO_ONEDNN}") == "1":
    import torch
    torch.backends.mkldnn.enabled = False
"""

SETTINGS = {
    "default": {},
    "aten avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "all avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "all baseline ISA": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_CBWR": "COMPATIBLE",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
    },
    "portable, no oneDNN": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_CBWR": "COMPATIBLE,STRICT",
        NO_ONEDNN: "1",
    },
}

OPS_THREADS = 2
"""Threads of the operation probe: the grid's trials run with this machine's cores divided
among jobs, 2 on the 2-core VMs these digests were made on; the probe pins it so that a
machine with more cores computes the same partition of every sum."""


def run_grid(environment: dict[str, str], folder: Path) -> tuple[str, str, str]:
    """(digest of every score, platform fingerprint, platform label) of the `ci` grid."""
    env = _environment(environment, folder)
    env["KDBENCH_CACHE"] = str(folder / "cache")
    results = folder / "results.db"
    subprocess.run(
        [KDBENCH, "run", "--preset", "ci", "--results", str(results)],
        env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    with sqlite3.connect(results) as db:
        rows = db.execute(
            "SELECT trial_id, test_set, utterance, metric, value FROM scores ORDER BY 1, 2, 3, 4"
        ).fetchall()
        details = db.execute("SELECT details FROM trials WHERE role = 'teacher'").fetchone()[0]
    text = "\n".join(f"{a}|{b}|{c}|{d}|{float(v).hex() if v is not None else 'nan'}"
                     for a, b, c, d, v in rows)
    facts = json.loads(details)["platform"]
    label = f"{facts['cpu_model']} {facts['cpu_isa']}, MKL {facts['mkl']}, oneDNN {facts['onednn']}"
    return hashlib.sha256(text.encode()).hexdigest()[:16], facts["fingerprint"], label


def _environment(setting: dict[str, str], folder: Path) -> dict[str, str]:
    """This process's environment with `setting` on top, and the oneDNN switch on the path."""
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, **setting, "PYTHONPATH": path}


def _digest(*arrays: Any) -> str:
    """The first 12 hex digits of the bytes of every array, in order."""
    hasher = hashlib.sha256()
    for array in arrays:
        hasher.update(np.ascontiguousarray(array).tobytes())
    return hasher.hexdigest()[:12]


def _backward_digests(rng: np.random.Generator, x: Any, window: Any) -> dict[str, str]:
    """The backward kernels of a training step and the optimiser, each on inputs of its
    own: on the two vendors every forward kernel above agreed under the portable settings
    while three Adam steps of a student did not, so the difference is in these."""
    import torch

    def gradients(module: Any, inputs: Any) -> str:
        inputs = inputs.clone().requires_grad_(True)
        output = module(inputs)
        upstream = torch.from_numpy(rng.standard_normal(output.shape).astype(np.float32))
        output.backward(upstream)
        return _digest(inputs.grad.numpy(), *(p.grad.numpy() for p in module.parameters()))

    torch.manual_seed(1)
    digests = {
        "Conv2d backward": gradients(torch.nn.Conv2d(8, 16, 5, stride=2, padding=2), x),
        "ConvTranspose2d backward": gradients(
            torch.nn.ConvTranspose2d(8, 4, 5, stride=2, padding=2, output_padding=1), x
        ),
        "BatchNorm2d backward": gradients(torch.nn.BatchNorm2d(8).train(), x),
    }
    frames = rng.standard_normal((16, 257, 126, 2)).astype(np.float32)
    spectrum = torch.view_as_complex(torch.from_numpy(frames)).requires_grad_(True)
    torch.istft(spectrum, 512, 128, window=window).abs().mean().backward()
    digests["inverse STFT backward (L1)"] = _digest(torch.view_as_real(spectrum.grad).numpy())
    params = [torch.from_numpy(rng.standard_normal(n).astype(np.float32)) for n in (37, 4096)]
    grads = [torch.from_numpy(rng.standard_normal(p.shape).astype(np.float32)) for p in params]
    weights = [p.clone().requires_grad_(True) for p in params]
    optimiser = torch.optim.Adam(weights, lr=0.002)
    for _ in range(3):
        for weight, grad in zip(weights, grads):
            weight.grad = grad.clone()
        optimiser.step()
    digests["Adam, 3 steps on fixed gradients"] = _digest(*(w.detach().numpy() for w in weights))
    digests.update(_adam_parts(rng))
    return digests


def _adam_parts(rng: np.random.Generator) -> dict[str, str]:
    """Adam's step split where its arithmetic could part: the Python scalars of its bias
    corrections (`pow` of the C library), the square root, which ATen hands to MKL's vector
    maths (not correctly rounded: up to 1 ulp from NumPy's IEEE `sqrt` on an Intel VM, and
    its bits move with `MKL_CBWR`), and the rest of the update (`lerp_`, `mul_`, `addcmul_`,
    `addcdiv_`) with the square root taken by NumPy. The step is rebuilt as
    `torch.optim.Adam`'s single-tensor CPU path does it, and checked against it, so a part
    that agrees across vendors clears that part of the optimiser."""
    import torch

    squares = np.abs(rng.standard_normal(4096)).astype(np.float32) + np.float32(1e-3)
    rooted = torch.from_numpy(squares).sqrt().numpy()
    ieee = np.sqrt(squares)
    off = np.abs(rooted.view(np.int32).astype(np.int64) - ieee.view(np.int32).astype(np.int64))
    start = rng.standard_normal(4096).astype(np.float32)
    grads = [torch.from_numpy(rng.standard_normal(4096).astype(np.float32)) for _ in range(3)]

    def rebuilt(root: Any) -> tuple[Any, list[float]]:
        param = torch.from_numpy(start.copy())
        exp_avg, exp_avg_sq, scalars = torch.zeros_like(param), torch.zeros_like(param), []
        for step, grad in enumerate(grads, start=1):
            exp_avg.lerp_(grad, 1 - 0.9)
            exp_avg_sq.mul_(0.999).addcmul_(grad, grad, value=1 - 0.999)
            correction = (1 - 0.999**step) ** 0.5
            step_size = 0.002 / (1 - 0.9**step)
            scalars += [correction, step_size]
            param.addcdiv_(exp_avg, (root(exp_avg_sq) / correction).add_(1e-8), value=-step_size)
        return param, scalars

    weight = torch.from_numpy(start.copy()).requires_grad_(True)
    optimiser = torch.optim.Adam([weight], lr=0.002)
    for grad in grads:
        weight.grad = grad.clone()
        optimiser.step()
    by_torch, scalars = rebuilt(torch.sqrt)
    by_numpy, _ = rebuilt(lambda t: torch.from_numpy(np.sqrt(t.numpy())))
    return {
        "Adam rebuilt op by op = torch.optim.Adam": str(torch.equal(by_torch, weight.detach())),
        "Adam's scalars (the C library's pow)": _digest(np.array(scalars, dtype=np.float64)),
        "sqrt (ATen: MKL vector maths)": _digest(rooted),
        "sqrt: ulps from IEEE (NumPy)": f"max {off.max()}, {np.count_nonzero(off)} of {off.size}",
        "Adam rebuilt, square root by NumPy": _digest(by_numpy.numpy()),
    }


def _gradients_by_block(student: Any) -> dict[str, str]:
    """The student's gradients digested per encoder and decoder level, so that the first
    level (counted from the output, the order backward runs in) whose gradient differs
    between two machines names the layer whose backward parts them."""
    blocks: dict[str, list[Any]] = {}
    for name, parameter in student.named_parameters():
        level = ".".join(name.split(".")[:2])
        blocks.setdefault(level, []).append(parameter.grad.numpy())
    return {f"student gradients: {level}": _digest(*grads) for level, grads in blocks.items()}


def probe_ops() -> dict[str, str]:
    """A digest per kernel family a trial's arithmetic goes through (see the module text)."""
    import pesq
    import torch
    from kdbench_plugins.metrics.stoi_metrics import stoi_score
    from kdbench_plugins.models.unet import build_unet
    from scipy.signal import resample_poly

    torch.set_num_threads(OPS_THREADS)
    rng = np.random.default_rng(20261203)
    audio = rng.standard_normal((16, 16000)).astype(np.float32) * 0.1
    images = rng.standard_normal((16, 8, 129, 63)).astype(np.float32)
    left = rng.standard_normal((256, 512)).astype(np.float32)
    right = rng.standard_normal((512, 256)).astype(np.float32)
    wave, x = torch.from_numpy(audio), torch.from_numpy(images)
    window = torch.hann_window(512)
    spectrum = torch.stft(wave, 512, 128, window=window, return_complex=True)
    magnitude = spectrum.abs()
    digests = {
        "inputs (NumPy's generator)": _digest(audio, images, left, right),
        "STFT": _digest(torch.view_as_real(spectrum).numpy()),
        "complex magnitude": _digest(magnitude.numpy()),
        "inverse STFT": _digest(torch.istft(spectrum, 512, 128, window=window).numpy()),
        "log1p": _digest(torch.log1p(magnitude).numpy()),
        "sigmoid": _digest(torch.sigmoid(x).numpy()),
    }
    torch.manual_seed(0)
    with torch.no_grad():
        conv = torch.nn.Conv2d(8, 16, 5, stride=2, padding=2)
        transposed = torch.nn.ConvTranspose2d(8, 4, 5, stride=2, padding=2, output_padding=1)
        norm = torch.nn.BatchNorm2d(8).train()
        digests["Conv2d"] = _digest(conv(x).numpy())
        digests["ConvTranspose2d"] = _digest(transposed(x).numpy())
        digests["BatchNorm2d (training)"] = _digest(norm(x).numpy())
        digests["sgemm"] = _digest((torch.from_numpy(left) @ torch.from_numpy(right)).numpy())
    digests.update(_backward_digests(rng, x, window))
    torch.manual_seed(0)
    student = build_unet({"channels": [4, 8, 16, 32], "kernel": 5, "mask_floor": 0.1})
    optimiser = torch.optim.Adam(student.parameters(), lr=0.002)
    clean = torch.from_numpy(audio * 0.5)
    estimate = student(wave).synthesize()
    digests["student: forward"] = _digest(estimate.detach().numpy())
    (estimate - clean).abs().mean().backward()
    digests["student: gradients of one step"] = _digest(
        *(p.grad.numpy() for p in student.parameters())
    )
    digests.update(_gradients_by_block(student))
    for _ in range(3):
        optimiser.zero_grad()
        estimate = student(wave).synthesize()
        loss = (estimate - clean).abs().mean()
        loss.backward()
        optimiser.step()
    digests["student: 3 Adam steps"] = _digest(
        *(p.detach().numpy() for p in student.parameters())
    )
    digests["NumPy rfft"] = _digest(np.fft.rfft(audio.astype(np.float64), axis=-1))
    digests["SciPy resample_poly"] = _digest(resample_poly(audio[0].astype(np.float64), 5, 8))
    speech = np.ascontiguousarray(audio[:2, :].reshape(-1) * np.hanning(32000), dtype=np.float64)
    noisy = speech + 0.05 * audio[2:4].reshape(-1)
    digests["PESQ-WB (C)"] = float(pesq.pesq(16000, speech, noisy, "wb")).hex()
    digests["STOI (pystoi)"] = float(stoi_score(speech, noisy, 16000, extended=False)).hex()
    return digests


def run_probe(environment: dict[str, str], folder: Path) -> dict[str, str]:
    """`probe_ops` in a fresh process under `environment` (the settings act at import)."""
    done = subprocess.run(
        [sys.executable, __file__, "--ops"], env=_environment(environment, folder),
        check=True, capture_output=True, text=True,
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--ops", action="store_true",
                        help="print this process's operation digests as JSON, and stop")
    args = parser.parse_args()
    if args.ops:
        print(json.dumps(probe_ops()))
        return
    rows, digests, probes = [], {}, {}
    for name in args.settings:
        with tempfile.TemporaryDirectory() as folder:
            digest, fingerprint, label = run_grid(SETTINGS[name], Path(folder))
            probes[name] = run_probe(SETTINGS[name], Path(folder))
        digests[name] = digest
        same = "—" if name == "default" else ("yes" if digest == digests.get("default") else "no")
        env = " ".join(f"{k}={v}" for k, v in SETTINGS[name].items()) or "(none)"
        rows.append([name, f"`{env}`", f"`{digest}`", same, f"`{fingerprint}`", label])
        print(f"{name}: scores {digest}, platform {fingerprint} ({label})", flush=True)
    table = markdown_table(
        ["setting", "environment", "score digest", "same bits as default", "platform", "kernels"],
        rows,
    )
    operations = markdown_table(
        ["operation", *args.settings],
        [[op, *(f"`{probes[name][op]}`" for name in args.settings)] for op in probes[args.settings[0]]],
    )
    update_section(
        "7. Numeric platforms: which settings change the bits",
        f"bench_platform {describe()['cpu_vendor']}",
        f"{provenance()}\n\n{table}\n\nOperation digests ({OPS_THREADS} torch threads):\n\n"
        f"{operations}",
    )


if __name__ == "__main__":
    main()
