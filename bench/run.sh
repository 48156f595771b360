#!/usr/bin/env bash
# `make bench`: builds the release binaries, runs each loadgen workload three
# times at its default size, keeps the raw JSON lines in
# bench/results/<date>-<workload>.jsonl and writes the medians to
# docs/BENCH.md. A failed run keeps its relay log next to the results and
# makes the script exit 1; the other runs still happen.
set -euo pipefail

cd "$(dirname "$0")/.."

RUNS=3
WORKLOADS=(fanout rate)
LOADGEN=target/release/loadgen
RESULTS=bench/results
REPORT=docs/BENCH.md

command -v jq >/dev/null || {
    echo "bench/run.sh needs jq to summarise the results (apt-get install jq)" >&2
    exit 2
}

started=$(date +%s)
date=$(date +%Y-%m-%d)
cargo build --release --bin relay --bin loadgen
mkdir -p "$RESULTS"

failed=()
for workload in "${WORKLOADS[@]}"; do
    out="$RESULTS/$date-$workload.jsonl"
    : >"$out"
    for n in $(seq 1 "$RUNS"); do
        log="$RESULTS/$date-$workload-$n.relay.log"
        echo "== loadgen $workload, run $n of $RUNS" >&2
        if "$LOADGEN" "$workload" --relay-log "$log" >>"$out"; then
            rm -f "$log"
        else
            failed+=("$workload run $n (relay log: $log)")
        fi
        tail -n 1 "$out" >&2
    done
done
took=$(($(date +%s) - started))

# "median (min..max)" of a jq expression over a results file.
spread() {
    jq -rs "[.[] | $2] | sort
        | if length == 0 or .[0] == null then \"n/a\"
          else \"\(.[(length - 1) / 2 | floor]) (\(.[0])..\(.[-1]))\" end" "$1"
}

table() {
    local file="$RESULTS/$date-$1.jsonl"
    echo "| figure | median (min..max) |"
    echo "| --- | --- |"
    echo "| deliveries/s | $(spread "$file" '.deliveries_per_s | round') |"
    echo "| seconds (start to last delivery) | $(spread "$file" .seconds) |"
    echo "| deliveries | $(spread "$file" .deliveries) |"
    echo "| lost | $(spread "$file" .lost) |"
    echo "| duplicated | $(spread "$file" .duplicated) |"
    echo "| latency p50, ms | $(spread "$file" '.latency_us.p50 / 100 | round / 10') |"
    echo "| latency p99, ms | $(spread "$file" '.latency_us.p99 / 100 | round / 10') |"
    echo "| latency p99.9, ms | $(spread "$file" '.latency_us.p999 / 100 | round / 10') |"
    echo "| latency max, ms | $(spread "$file" '.latency_us.max / 100 | round / 10') |"
    echo "| relay CPU, s | $(spread "$file" .relay_cpu_s) |"
    echo "| relay peak RSS, MiB | $(spread "$file" 'if .relay_rss_kib == null then null else .relay_rss_kib / 1024 | round end') |"
    echo "| timed out | $(jq -s '[.[] | select(.timed_out)] | length' "$file") of $(jq -s length "$file") |"
}

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)

{
    cat <<EOF
# Benchmarks

Measured by \`make bench\` (\`bench/run.sh\`) on $date: each workload run $RUNS
times at its default size, every run against a fresh relay. Figures are the
median of the runs with the lowest and highest in brackets. The raw JSON
lines are in \`bench/results/$date-fanout.jsonl\` and
\`bench/results/$date-rate.jsonl\`; \`loadgen --help\` explains every field.
The script took ${took} s, release build included.

## Machine

- CPU: $(nproc) × $cpu
- memory: $mem
- kernel: $(uname -sr)
- compiler: $(rustc --version)

The relay and loadgen share these cores: loadgen's clients (QUIC, TLS,
decoding) compete with the relay for the same CPUs, so the figures are
those of the pair, not of the relay alone.

## Commands

\`\`\`sh
cargo build --release --bin relay --bin loadgen
target/release/loadgen fanout   # --clients 50 --messages 200 --bytes 100 --window 64
target/release/loadgen rate     # --clients 50 --rate 20 --seconds 10 --bytes 100
\`\`\`

Each run starts \`target/release/relay serve\` on a free loopback port with
a fresh certificate and data folder (SQLite, \`synchronous=FULL\`: every
acknowledged message is on disk) and the per-session rate limits lifted,
registers 50 accounts, waits until every client is in the lobby, then
starts the clock.

## fanout

50 clients in one room each send 200 messages of 100 bytes as fast as the
protocol allows (at most 64 awaiting their ack); everyone receives every
message, their own included: 10,000 messages in, 500,000 deliveries out.
Latency runs from the send call to the receiver's event, so under this
load it is mostly the time a message waits behind the others in flight.

$(table fanout)

## rate

The same room, each client sending 20 messages a second for 10 s: 1,000
messages a second into the relay, 50,000 deliveries a second out.

$(table rate)

## Reading the figures

- relay CPU counts user and system time from the start of the clock to the
  last delivery (\`/proc/PID/stat\`).
- relay peak RSS is sampled every 100 ms while the clock runs. It includes
  what the relay still holds from registering the 50 accounts just before
  (argon2id uses 19 MiB per hash), so it says little about the cost of the
  messages themselves.

## Not done yet

- the side-by-side comparison with \`nats-server\` under the same load;
- the idle, slow, history and ack workloads;
- the plot of latency against load.
EOF
    if ((${#failed[@]})); then
        echo
        echo "## Failed runs"
        echo
        for f in "${failed[@]}"; do
            echo "- $f"
        done
    fi
} >"$REPORT"

echo "wrote $REPORT in ${took} s" >&2
if ((${#failed[@]})); then
    printf 'failed: %s\n' "${failed[@]}" >&2
    exit 1
fi
