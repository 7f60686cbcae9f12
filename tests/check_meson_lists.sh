#!/bin/sh
# meson.build names its sources explicitly; fail if it misses a file the Makefile builds.
cd "$(dirname "$0")/.." || exit 1
status=0
for f in lib/*.c; do
    grep -q "'$f'" meson.build || { echo "meson.build lacks $f"; status=1; }
done
for f in examples/mm-*.c tests/test_*.c; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .c)
    grep -q "'$name'" meson.build || { echo "meson.build lacks $name"; status=1; }
done
[ $status -eq 0 ] && echo "meson.build lists every source: ok"
exit $status
