#!/bin/sh
# libmm as a meson subproject: copy tests/install/meson-subproject/ and the source tree (as
# subprojects/libmm) to a temporary directory, then `meson setup`, build, and run the program
# (tests/install/app.c). Needs meson and ninja: a missing tool is a failure, not a skip.
set -eu
cd "$(dirname "$0")/../.."
for tool in meson ninja; do
    command -v $tool >/dev/null || { echo "meson-subproject: $tool not found"; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r tests/install/meson-subproject "$tmp/project"
cp tests/install/app.c "$tmp/project/"
mkdir "$tmp/project/subprojects"
# The tracked and new source files only: no build outputs of this tree.
git ls-files --cached --others --exclude-standard -z |
    tar --null -T - -cf - | tar -xf - -C "$tmp/project/subprojects" --one-top-level=libmm
cd "$tmp/project"
meson setup build >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log"; exit 1; }
ninja -C build app >"$tmp/build.log" 2>&1 || { tail -40 "$tmp/build.log"; exit 1; }
meson test -C build app --print-errorlogs >"$tmp/test.log" 2>&1 || { cat "$tmp/test.log"; exit 1; }
./build/app
echo "libmm as a meson subproject: ok"
