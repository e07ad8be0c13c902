#!/usr/bin/env bash
# Grid wall time and peak memory of `kdbench run --method cosine --pairs all` (quick preset),
# first from a cold cache, then warm. Not run in CI; the figures go under "## 4. Grid wall
# time" in BENCHMARKS.md by hand.
#
# cold: a fresh KDBENCH_CACHE and results store, so the corpus is generated and the teacher
#       trained before the students;
# warm: the same cache (corpus and teacher reused) with a fresh results store, so every
#       student trial and the reference evaluations run again.
#
# "Maximum resident set size" from GNU time is that of the largest single process (the
# main process or one worker), not the sum over the worker processes.
#
# Usage: benchmarks/bench_grid.sh [KDBENCH_BIN]   (default: kdbench on PATH)
set -euo pipefail

kdbench_bin="${1:-kdbench}"
work="$(mktemp -d "${TMPDIR:-/tmp}/kdbench-grid.XXXXXX")"
export KDBENCH_CACHE="$work/cache"
echo "cache and results under $work"

run() {
    local label="$1"
    local log="$work/$label.time"
    /usr/bin/time -v -o "$log" \
        "$kdbench_bin" run --method cosine --pairs all --results "$work/$label/results.db" \
        > "$work/$label.out" 2>&1
    printf '%-5s wall %s   max RSS %s kB\n' "$label" \
        "$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log")" \
        "$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")"
}

run cold
run warm
