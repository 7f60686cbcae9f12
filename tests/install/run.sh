#!/bin/sh
# `make install` into a temporary (non-system) prefix, then, outside the tree, with nothing but
# pkg-config:
#   - tests/install/app.c built as docs/getting-started.md shows, with
#     -Wl,-rpath,$(pkg-config --variable=libdir libmm), runs with no LD_LIBRARY_PATH and loads the
#     installed libmm.so.1; built with --static it needs no libmm.so at all;
#   - tests/install/app.cpp compiles against the installed <mm.hpp> and runs;
#   - the installed command-line programs run and load the installed library;
# then `make uninstall` removes every file it installed.
set -eu
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
make -s install PREFIX="$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
unset LD_LIBRARY_PATH
programs=$(cd examples && ls mm-*.c | sed 's/\.c$//')
for f in include/mm.h include/mm.hpp lib/libmm.so lib/libmm.so.1 lib/libmm.a \
         lib/pkgconfig/libmm.pc $(for p in $programs; do echo "bin/$p"; done); do
    [ -e "$prefix/$f" ] || { echo "install: $prefix/$f missing"; exit 1; }
done
[ "$(ls "$prefix/include" | tr '\n' ' ')" = "mm.h mm.hpp " ] ||
    { echo "install: headers other than mm.h and mm.hpp"; exit 1; }
[ "$(pkg-config --variable=libdir libmm)" = "$prefix/lib" ] ||
    { echo "install: pkg-config libdir is not $prefix/lib"; exit 1; }
# A sanitizer build of the library needs the programs built with the same runtime.
san=""
if ldd lib/libmm.so.1 | grep -q libasan; then san="-fsanitize=address,undefined"; fi
loads_installed() { # program: its libmm.so.1 must resolve to the prefix's
    [ "$(ldd "$1" | grep -c "libmm.so.1 => $prefix/lib/libmm.so.1")" -eq 1 ] ||
        { echo "install: $1 does not load $prefix/lib/libmm.so.1"; ldd "$1"; exit 1; }
}
mkdir "$tmp/app"
cp tests/install/app.c tests/install/app.cpp "$tmp/app/"
cd "$tmp/app"
CC=${CC:-cc}
CXX=${CXX:-c++}
rpath="-Wl,-rpath,$(pkg-config --variable=libdir libmm)"
# shellcheck disable=SC2046
$CC -std=c11 -Wall -Werror $san app.c -o app $(pkg-config --cflags --libs libmm) $rpath
loads_installed ./app
./app
# shellcheck disable=SC2046
$CXX -std=c++17 -Wall -Wextra -Werror $san app.cpp -o app-cpp $(pkg-config --cflags --libs libmm) \
    $rpath
loads_installed ./app-cpp
./app-cpp
# shellcheck disable=SC2046
$CC -std=c11 -Wall -Werror $san app.c -o app-static $(pkg-config --cflags libmm) \
    -Wl,-Bstatic $(pkg-config --libs-only-l libmm) -Wl,-Bdynamic \
    $(pkg-config --libs-only-L libmm) $(pkg-config --static --libs libmm | sed 's/-lmm\b//')
if ldd ./app-static | grep -q libmm; then echo "install: static app still needs libmm.so"; exit 1; fi
./app-static
# The installed programs: those linking libmm.so find it through their rpath (mm-bench and
# mm-quantize reach internals and link the static library).
for p in $programs; do
    case "$p" in mm-bench | mm-quantize) ;; *) loads_installed "$prefix/bin/$p" ;; esac
done
"$prefix/bin/mm-info" --help >"$tmp/mm-info.out" 2>&1 ||
    { cat "$tmp/mm-info.out"; echo "install: $prefix/bin/mm-info --help failed"; exit 1; }
grep -q 'libmm\|mm-info' "$tmp/mm-info.out" ||
    { cat "$tmp/mm-info.out"; echo "install: mm-info --help printed neither its name nor libmm's"; exit 1; }
cd - >/dev/null
make -s uninstall PREFIX="$prefix" >/dev/null
left=$(find "$prefix" ! -type d)
[ -z "$left" ] || { printf 'uninstall left:\n%s\n' "$left"; exit 1; }
echo "install + pkg-config (rpath, static, mm.hpp), installed programs, uninstall: ok"
