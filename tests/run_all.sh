#!/bin/sh
# Runs every test of the tree (called by `make test`): the Check suites, then the checks that
# are scripts or runners. Prints one line per test and a closing "N passed, N failed" line.
cd "$(dirname "$0")/.." || exit 1
passed=0
failed=0
failures=""

run() {
    name=$1
    shift
    echo "== $name"
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures="$failures $name"
    fi
}

for suite in tests/test_*; do
    case "$suite" in *.*) continue ;; esac
    [ -x "$suite" ] && run "$suite" "$suite"
done
for check in tests/check_*.sh tests/abi/check_*.sh; do
    [ -f "$check" ] && run "$check" sh "$check"
done
for runner in tests/run_*.d/*; do
    [ -x "$runner" ] && run "$runner" "$runner"
done
# The server's checks, where it is built (the Makefile and meson.build build it when
# libmicrohttpd is found).
pkg-config --exists libmicrohttpd && run tests/server/run.sh tests/server/run.sh

echo
[ -n "$failures" ] && echo "failed:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
