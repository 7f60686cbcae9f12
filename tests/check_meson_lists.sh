#!/bin/sh
# meson.build names its sources explicitly; fail if it misses a file the Makefile builds.
cd "$(dirname "$0")/.." || exit 1
status=0
for f in lib/*.c lib/*/*.c; do
    grep -q "'$f'" meson.build || { echo "meson.build lacks $f"; status=1; }
done
for f in examples/mm-*.c examples/cpp/mm-*.cpp; do
    [ -f "$f" ] || continue
    name=$(basename "${f%.*}")
    grep -q "'$name'" examples/meson.build || { echo "examples/meson.build lacks $name"; status=1; }
done
for f in server/*.c; do
    grep -q "'$(basename "$f")'" server/meson.build || { echo "server/meson.build lacks $f"; status=1; }
done
for f in tests/*.c; do
    name=$(basename "$f" .c)
    grep -q "'$name'" tests/meson.build || { echo "tests/meson.build lacks $name"; status=1; }
done
# run_4.d checks `make install` itself, so meson leaves it out.
for f in tests/check_*.sh tests/run_[0-35-9].d/*; do
    name=${f#tests/}
    grep -q "'$name'" tests/meson.build || { echo "tests/meson.build does not run $name"; status=1; }
done
[ $status -eq 0 ] && echo "meson.build lists every source and test: ok"
exit $status
