#!/usr/bin/env bash
# The window's benchmark (client-gui/benches/window.rs), RUNS times (3):
# keypress-to-frame latency and heap with 1,000 / 10,000 / 100,000 lines in
# a room, each walked through from the newest line to the first and back,
# while lines arrive at 50 a second. Raw lines go to
# bench/results/<date>-window.jsonl, the medians (min..max) as a markdown
# table to bench/results/<date>-window.md, which bench/run.sh puts in
# docs/BENCH.md. Exit 1 if a run fails.
set -euo pipefail

cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
RESULTS=bench/results
date=$(date +%Y-%m-%d)
raw="$RESULTS/$date-window.jsonl"
table="$RESULTS/$date-window.md"
mkdir -p "$RESULTS"
: >"$raw"

command -v jq >/dev/null || {
    echo "bench/window.sh needs jq to summarise the results (apt-get install jq)" >&2
    exit 2
}

cargo bench -p client-gui --bench window --no-run >&2
for run in $(seq 1 "$RUNS"); do
    echo "== window run $run of $RUNS" >&2
    cargo bench -q -p client-gui --bench window -- --json --walk-seconds 240 >>"$raw"
done

{
    echo "| lines in room | walked to the first line | keypress→frame p50 (ms) | p99 (ms) | max (ms) | heap after the walk (MiB) | peak heap (MiB) |"
    echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"
    jq -rs '
      def med: sort | .[(length - 1) / 2 | floor];
      def fig(f): (map(f) | "\(med) (\(min)..\(max))");
      group_by(.lines)[]
      | "| \(.[0].lines) | \(if all(.reached_first) then "yes" else "not in every run" end) | \(fig(.p50_ms)) | \(fig(.p99_ms)) | \(fig(.max_ms)) | \(fig(.heap_mib)) | \(fig(.peak_mib)) |"
    ' "$raw"
} >"$table"
cat "$table"
