#!/usr/bin/env bash
# The prepared GPU check of issue 16 (see benchmarks/gpu_check.py for what it measures):
# CPU-vs-GPU agreement of a tiny trial grid, same-seed determinism on the GPU, paper-scale
# step times, trials per hour at 1, 4 and 8 trials per GPU, and the extrapolated GPU-hours
# of `--preset paper --method all` beside the dry run's estimate. About 5 minutes on one
# H200 from a bare machine (budget: 8).
#
# Usage, from anywhere (it works in the repository root):
#   benchmarks/gpu_check.sh                on the GPU machine: a bare Python 3.12 that has
#                                          torch; the other dependencies come as wheels from
#                                          .whl/ (carry it), kdbench is built from this tree
#   benchmarks/gpu_check.sh --cpu-smoke    anywhere, on the CPU with tiny sizes: checks the
#                                          script end to end (figures mean nothing); needs
#                                          kdbench installed in $PYTHON (default python3)
#   benchmarks/gpu_check.sh --fetch-wheels on a machine with the package registry: fill .whl/
#                                          for the GPU machine (cp312, manylinux x86-64);
#                                          pesq has no such wheel, so it is built here with
#                                          $PYTHON312 (default python3.12)
# The report is printed and, where $OUT is set (the device tool sets it), written to
# $OUT/gpu_check.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the GPU image lacks of kdbench's dependencies (KINDS.md in the device notes lists
# what it has: torch, torchaudio, numpy, scipy, pandas, click, rich, pluggy, filelock,
# matplotlib). Pinned to the versions the CPU results were made with.
WHEELS="pystoi==0.4.1 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 platformdirs==4.14.9"
PESQ="pesq==0.0.4"

fetch_wheels() {
    mkdir -p .whl
    for spec in $WHEELS; do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform manylinux1_x86_64 -d .whl "$spec"
    done
    # Built against the oldest glibc this machine has; pesq's extension needs only libc.
    "${PYTHON312:-python3.12}" -m pip wheel -q --no-deps -w .whl "$PESQ"
    ls -l .whl
}

case "${1:-}" in
    --fetch-wheels)
        fetch_wheels
        exit 0
        ;;
    --cpu-smoke)
        python="${PYTHON:-python3}"
        mode=cpu-smoke
        ;;
    "")
        ls .whl/*.whl > /dev/null 2>&1 || { echo "no .whl/: run $0 --fetch-wheels first and carry .whl" >&2; exit 2; }
        site="${TMPDIR:-/tmp}/kdbench-site"
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$site" .whl/*.whl
        # kdbench itself, built from this tree with the image's setuptools (no registry there).
        python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
            --upgrade --target "$site" .
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
        python=python3
        mode=gpu
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
        ;;
    *)
        echo "usage: $0 [--cpu-smoke | --fetch-wheels]" >&2
        exit 2
        ;;
esac

export PYTHONUNBUFFERED=1
work="$(mktemp -d "${TMPDIR:-/tmp}/kdbench-gpu-check.XXXXXX")"
export KDBENCH_CACHE="$work/cache"
"$python" benchmarks/gpu_check.py --mode "$mode" --work "$work" ${OUT:+--out "$OUT"}
