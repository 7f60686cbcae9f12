#!/bin/sh
# `make valgrind`: every C program of the test suite under valgrind memcheck — the Check suites,
# and the programs the runners call (tokenizer_vectors, and parity_dump through hf_parity and
# vision_layouts, reached through $MM_TEST_BIN wrappers). Any memcheck error or definite /
# indirect leak fails the program (--error-exitcode=1). Prints one line per program and a
# closing summary; the full valgrind reports go to $MM_VALGRIND_LOGS (default a temporary
# folder, kept when something failed). Slow: run it niced, not in CI.
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
logs=${MM_VALGRIND_LOGS:-$(mktemp -d /tmp/mm-valgrind.XXXXXX)}
mkdir -p "$logs/bin"
vg="valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect"
vg="$vg --show-leak-kinds=definite,indirect --track-origins=yes --num-callers=30"
# Time bounds in the tests stretch for valgrind's slowdown.
export MM_TEST_TIME_SCALE=100

# Wrappers the runners call instead of the programs themselves.
for prog in parity_dump tokenizer_vectors gguf_tool; do
    cat > "$logs/bin/$prog" <<EOF
#!/bin/sh
exec $vg --log-file="$logs/$prog.%p.log" "$root/tests/$prog" "\$@"
EOF
    chmod +x "$logs/bin/$prog"
done

passed=0
failed=0
failures=""
check() {
    name=$1
    shift
    start=$(date +%s)
    if "$@" > "$logs/$name.out" 2>&1; then
        passed=$((passed + 1))
        result=ok
    else
        failed=$((failed + 1))
        failures="$failures $name"
        result=FAILED
    fi
    echo "$name: $result ($(( $(date +%s) - start ))s)"
}

# One process per suite (no fork), so each suite gets one leak report at its end.
for suite in tests/test_*; do
    case "$suite" in *.*) continue ;; esac
    [ -x "$suite" ] || continue
    name=$(basename "$suite")
    CK_FORK=no check "$name" $vg --log-file="$logs/$name.log" "$suite"
done
MM_TEST_BIN="$logs/bin" check tokenizer_vectors tests/run_1.d/tokenizer_vectors
MM_TEST_BIN="$logs/bin" check hf_parity tests/run_2.d/hf_parity
MM_TEST_BIN="$logs/bin" check vision_layouts tests/run_2.d/vision_layouts

# Totals over every valgrind log.
errors=$(cat "$logs"/*.log | sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' \
         | awk '{s += $1} END {print s + 0}')
lost=$(cat "$logs"/*.log | sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' | tr -d , \
       | awk '{s += $1} END {print s + 0}')
runs=$(ls "$logs"/*.log | wc -l)
echo
echo "valgrind memcheck: $runs processes, $errors errors, $lost bytes definitely lost"
[ -n "$failures" ] && echo "failed:$failures (logs in $logs)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ -z "$MM_VALGRIND_LOGS" ] && rm -rf "$logs"
[ "$failed" -eq 0 ]
