#!/bin/sh
# libmm as a meson subproject: copy tests/install/meson-subproject/ and the source tree (as
# subprojects/libmm) to a temporary directory, then `meson setup`, build, and run the program
# (tests/install/app.c). The parent's build and test list must hold nothing of libmm's own
# (tests, examples); -Dlibmm:tests=enabled registers them again. Needs meson and ninja: a missing
# tool is a failure, not a skip.
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
tests=$(meson test -C build --list --no-rebuild 2>/dev/null)
[ "$tests" = app ] || { printf 'parent test list is not just "app":\n%s\n' "$tests"; exit 1; }
ninja -C build >"$tmp/build.log" 2>&1 || { tail -40 "$tmp/build.log"; exit 1; }
for f in build/subprojects/libmm/tests build/subprojects/libmm/examples; do
    [ ! -e "$f" ] || { echo "the parent's build made $f"; exit 1; }
done
meson test -C build --print-errorlogs >"$tmp/test.log" 2>&1 || { cat "$tmp/test.log"; exit 1; }
./build/app
# Asked for, the tests come back (each listed as "libmm / NAME"), so the guard is what removed them.
meson setup --reconfigure build -Dlibmm:tests=enabled >"$tmp/setup.log" 2>&1 ||
    { cat "$tmp/setup.log"; exit 1; }
n=$(meson test -C build --list --no-rebuild 2>/dev/null | grep -c '^libmm / ' || true)
[ "$n" -gt 0 ] || { echo "-Dlibmm:tests=enabled registered no libmm test"; exit 1; }
echo "libmm as a meson subproject: ok (parent lists 1 test; $n with -Dlibmm:tests=enabled)"
