#!/usr/bin/env bash
# Grid wall time and peak memory of `kdbench run --method METHOD --pairs all` (quick preset,
# its default 3 seeds), first from a cold cache, then warm. Not run in CI; the figures go
# under "## 4. Grid wall time" in BENCHMARKS.md by hand.
#
# cold: a fresh KDBENCH_CACHE and results store, so the corpus is generated, the teacher
#       trained and its output table filled before or while the students train;
# warm: the same cache (corpus, teacher and teacher-output table reused) with a fresh
#       results store, so every student trial and the reference evaluations run again.
#
# "Maximum resident set size" from GNU time is that of the largest single process (the
# main process or one worker), not the sum over the worker processes; it includes the
# pages of the teacher-output table a worker has mapped (shared with the other worker).
#
# Usage: benchmarks/bench_grid.sh [METHOD] [KDBENCH_BIN] [RUNS]
#        (defaults: cosine, the README's main job; kdbench on PATH; "cold warm")
set -euo pipefail

method="${1:-cosine}"
kdbench_bin="${2:-kdbench}"
runs="${3:-cold warm}"
work="$(mktemp -d "${TMPDIR:-/tmp}/kdbench-grid.XXXXXX")"
export KDBENCH_CACHE="$work/cache"
echo "method $method; cache and results under $work"

run() {
    local label="$1"
    local log="$work/$label.time"
    /usr/bin/time -v -o "$log" \
        "$kdbench_bin" run --method "$method" --pairs all --results "$work/$label/results.db" \
        > "$work/$label.out" 2> "$work/$label.err"
    printf '%-5s wall %s   max RSS %s kB   %s   teacher-output table %s\n' "$label" \
        "$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log")" \
        "$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")" \
        "$(grep -o 'ran [0-9]* trial(s) in [0-9]* s.*' "$work/$label.err" | tail -1)" \
        "$(du -sh "$KDBENCH_CACHE/teacher_outputs" 2>/dev/null | cut -f1)"
}

for label in $runs; do
    run "$label"
done
