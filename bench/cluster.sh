#!/usr/bin/env bash
# Several relays on one NATS JetStream store: the same fanout and rate loads
# on one relay and on two relays sharing a nats-server (clients spread over
# both), side by side in one run. Each repetition gets a fresh nats-server
# store and fresh relays. Writes bench/results/<date>-cluster.jsonl (the
# loadgen lines with "relays" added), <date>-cluster-commands.txt, and the
# table bench/results/<date>-cluster.md that make bench puts in BENCH.md.
#
#   bench/cluster.sh            # 3 repetitions
#   RUNS=1 bench/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
TARGET=${CARGO_TARGET_DIR:-target}
LOADGEN=$TARGET/release/loadgen
RELAY=$TARGET/release/relay
RESULTS=bench/results
date=$(date +%Y-%m-%d)
out=$RESULTS/$date-cluster.jsonl
table=$RESULTS/$date-cluster.md
commands=$RESULTS/$date-cluster-commands.txt
NATS=.venv-nats/bin/nats-server
[[ -x $NATS ]] || NATS=$(command -v nats-server) || {
    echo "bench/cluster.sh needs nats-server (make test installs it into .venv-nats)" >&2
    exit 2
}
[[ -x $LOADGEN && -x $RELAY ]] || cargo build --release --bin relay --bin loadgen

tmp=$(mktemp -d)
pids=()
stop_all() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
trap 'stop_all; rm -rf "$tmp"' EXIT
"$RELAY" gen-cert --out "$tmp/certs" >/dev/null
: >"$out"
: >"$commands"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts nats-server and N relays on it; sets $servers and $relay_pid.
start_cluster() {
    local n=$1 port store i addr log
    port=$(free_port)
    store=$(mktemp -d -p "$tmp")
    "$NATS" -js -sd "$store" -a 127.0.0.1 -p "$port" >"$store/nats.log" 2>&1 &
    pids+=($!)
    echo "$NATS -js -sd \$TMP/store -a 127.0.0.1 -p $port &" >>"$commands"
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.05
    done
    servers=""
    relay_pid=""
    for i in $(seq "$n"); do
        log="$store/relay-$i"
        "$RELAY" serve --nats "nats://127.0.0.1:$port" --listen 127.0.0.1:0 \
            --cert "$tmp/certs/cert.pem" --key "$tmp/certs/key.pem" \
            --rate-limit 1000000 --request-rate 1000000 >"$log.out" 2>"$log.err" &
        pids+=($!)
        relay_pid=${relay_pid:-$!}
        echo "$RELAY serve --nats nats://127.0.0.1:$port --listen 127.0.0.1:0 --cert \$TMP/certs/cert.pem --key \$TMP/certs/key.pem --rate-limit 1000000 --request-rate 1000000 &" >>"$commands"
        for _ in $(seq 200); do
            addr=$(sed -n 's/^confab relay listening on \([^ ]*\).*/\1/p' "$log.out")
            [[ -n $addr ]] && break
            sleep 0.05
        done
        [[ -n $addr ]] || {
            echo "relay $i did not start:" >&2
            cat "$log.err" >&2
            exit 1
        }
        servers=${servers:+$servers,}$addr
    done
}

for workload in fanout rate; do
    for relays in 1 2; do
        for run in $(seq "$RUNS"); do
            start_cluster "$relays"
            echo "== $workload, $relays relay(s) on NATS, run $run/$RUNS" >&2
            args=("$workload" --server "$servers" --ca "$tmp/certs/cert.pem" --relay-pid "$relay_pid" --timeout 120)
            # 5 s of the rate load is plenty for a comparison and keeps
            # make bench within its 10 minutes.
            [[ $workload == rate ]] && args+=(--seconds 5)
            echo "$LOADGEN ${args[*]}" | sed "s#$tmp#\$TMP#g" >>"$commands"
            if line=$("$LOADGEN" "${args[@]}"); then
                jq -c --argjson relays "$relays" '. + {relays: $relays, store: "nats"}' <<<"$line" >>"$out"
            else
                echo "loadgen $workload on $relays relay(s) failed" >&2
            fi
            stop_all
        done
    done
done

median() {
    jq -s --arg w "$1" --argjson r "$2" "[.[] | select(.workload == \$w and .relays == \$r) | $3] | sort
        | if length == 0 then null else .[(length - 1) / 2 | floor] end" "$out"
}
span() {
    jq -rs --arg w "$1" --argjson r "$2" "[.[] | select(.workload == \$w and .relays == \$r) | $3]
        | if length == 0 then \"n/a\" else \"\(min)..\(max)\" end" "$out"
}
cell() { echo "$(median "$@") ($(span "$@"))"; }
ms() { echo "(.latency_us.$1 / 1000 | . * 10 | round / 10)"; }

{
    echo "| figure | one relay on NATS | two relays on NATS |"
    echo "| --- | --- | --- |"
    echo "| fanout deliveries/s | $(cell fanout 1 '.deliveries_per_s | round') | $(cell fanout 2 '.deliveries_per_s | round') |"
    echo "| fanout p99 ms | $(cell fanout 1 "$(ms p99)") | $(cell fanout 2 "$(ms p99)") |"
    echo "| fanout lost / duplicated | $(median fanout 1 .lost) / $(median fanout 1 .duplicated) | $(median fanout 2 .lost) / $(median fanout 2 .duplicated) |"
    echo "| rate p50 ms | $(cell rate 1 "$(ms p50)") | $(cell rate 2 "$(ms p50)") |"
    echo "| rate p99 ms | $(cell rate 1 "$(ms p99)") | $(cell rate 2 "$(ms p99)") |"
    echo "| rate ack p99 ms | $(cell rate 1 '(.ack_us.p99 // 0) / 1000 | . * 10 | round / 10') | $(cell rate 2 '(.ack_us.p99 // 0) / 1000 | . * 10 | round / 10') |"
} >"$table"
cat "$table"
