#!/bin/sh
# Fuzz one target (or `all`, one after another) for SECONDS each:
#   tests/fuzz/run.sh TARGET|all SECONDS
# Targets: gguf image tokenizer chatjson audio video points (tests/fuzz/targets.h). Builds them with
# `make fuzz` (clang, libFuzzer, ASan+UBSan). Each run starts from the committed seeds
# (tests/fuzz/corpus/TARGET) and a working corpus kept between runs in
# $MM_FUZZ_WORK/TARGET (default /tmp/mm-fuzz); crashing inputs land in
# $MM_FUZZ_WORK/TARGET-crashes/. The run is niced (the machine is shared). The last lines
# give libFuzzer's totals: executions (#N DONE), coverage (cov: edges, ft: features).
# After a fix, copy each crasher into tests/fuzz/regressions/TARGET/: the test suite replays it.
set -e
cd "$(dirname "$0")/../.."
[ $# -eq 2 ] || { echo "usage: $0 gguf|image|tokenizer|chatjson|audio|video|points|all SECONDS" >&2; exit 2; }
targets=$1
[ "$targets" = all ] && targets="gguf image tokenizer chatjson audio video points"
seconds=$2
work=${MM_FUZZ_WORK:-/tmp/mm-fuzz}
export MM_VECTORS_DIR="${MM_VECTORS_DIR:-$(pwd)/tests/vectors}"

make -s fuzz
status=0
for target in $targets; do
    [ -d "tests/fuzz/corpus/$target" ] || { echo "unknown target $target" >&2; exit 2; }
    mkdir -p "$work/$target" "$work/$target-crashes"
    log="$work/$target.log"
    touch "$log.start"
    echo "== fuzz_$target for ${seconds}s (log $log)"
    # Resource limits make a blow-up a finding (a size taken from a file without a check, a
    # request that costs far more than its bytes): every target runs with small image limits
    # and a tiny model, so one input never needs 256 MiB in one allocation, 1 GiB of RSS
    # (ASan's shadow included) or 10 s.
    nice -n 19 "tests/fuzz/build/fuzz_$target" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=1024 -malloc_limit_mb=256 -print_final_stats=1 \
        -artifact_prefix="$work/$target-crashes/" "$work/$target" "tests/fuzz/corpus/$target" \
        > "$log" 2>&1 || status=1
    grep -E '^#[0-9]+[[:space:]]+(DONE|INITED)|^Done|^stat::number_of_executed_units|ERROR|SUMMARY' "$log" \
        | tail -n 6
    find "$work/$target-crashes" -type f -newer "$log.start" | sed 's/^/  finding: /'
done
exit $status
