#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each (default 60)
# and prints the executions of each. Usage: fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain,
# RUSTC_BOOTSTRAP=1 lets it use the nightly-only flags it needs. Set
# FUZZ_SANITIZER=none if AddressSanitizer does not link on this machine.
# FUZZ_ARGS adds libFuzzer flags (e.g. "-fork=1 -ignore_crashes=1" to go on
# past a crash). Corpora grow in fuzz/corpus/<target>; crashes land in
# fuzz/artifacts/<target>.
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(frame_decode room_sync hub_ops send_gate session_frames)
fi
sanitizer=${FUZZ_SANITIZER:-address}
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || {
    echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
}
for t in "${targets[@]}"; do cargo fuzz build -s "$sanitizer" "$t"; done

# libFuzzer flags of one target. session_frames runs a whole relay: every
# input touches tens of thousands of coverage features, and the relay keeps
# memory between inputs by design. With entropic scheduling libFuzzer spent
# most of its time on that bookkeeping (75 against 203 exec/s over 90 s),
# and leak detection re-ran each of the first thousand new inputs to look
# for leaks in what is the relay's state.
target_args() {
    case $1 in
    session_frames) echo "-entropic=0 -detect_leaks=0" ;;
    esac
}

status=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    seeds=()
    [ -d "seeds/$t" ] && seeds=("seeds/$t")
    log="artifacts/$t/last-run.log"
    touch "$log.start"
    echo "== $t: ${secs}s"
    if cargo fuzz run -s "$sanitizer" "$t" "corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -print_final_stats=1 $(target_args "$t") ${FUZZ_ARGS:-} >"$log" 2>&1; then
        result=ok
    else
        result="FAILED (see $log and artifacts/$t/)"
        status=1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if [ -z "$execs" ]; then # fork mode prints no final stats
        execs=$(sed -n 's/^#\([0-9]*\):* .*/\1/p' "$log" | tail -1)
        [ -n "$execs" ] && rate=$((execs / secs))
    fi
    crashes=$(find "artifacts/$t" -name 'crash-*' -newer "$log.start" | wc -l)
    if [ "$crashes" -gt 0 ] && [ "$result" = ok ]; then
        result="CRASHED (artifacts/$t/)"
        status=1
    fi
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    line=$(printf '%-13s %12s execs %8s exec/s  cov %6s  crash files %4s  %s' \
        "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$crashes" "$result")
    echo "$line"
    summary+=("$line")
done
echo
echo "== summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
exit $status
