#!/bin/sh
# `make install` into a temporary prefix, then build tests/install/app.c outside the tree with
# nothing but pkg-config (shared, then static with --static), and run both.
set -eu
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
make -s install PREFIX="$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
for f in include/mm.h lib/libmm.so lib/libmm.so.1 lib/libmm.a lib/pkgconfig/libmm.pc; do
    [ -e "$prefix/$f" ] || { echo "install: $prefix/$f missing"; exit 1; }
done
[ "$(ls "$prefix/include")" = "mm.h" ] || { echo "install: headers other than mm.h"; exit 1; }
# A sanitizer build of the library needs the program built with the same runtime.
san=""
if ldd lib/libmm.so.1 | grep -q libasan; then san="-fsanitize=address,undefined"; fi
mkdir "$tmp/app"
cp tests/install/app.c "$tmp/app/"
cd "$tmp/app"
CC=${CC:-cc}
# shellcheck disable=SC2046
$CC -std=c11 -Wall -Werror $san app.c -o app $(pkg-config --cflags --libs libmm)
LD_LIBRARY_PATH="$prefix/lib" ./app
[ "$(LD_LIBRARY_PATH="$prefix/lib" ldd ./app | grep -c "$prefix/lib/libmm.so.1")" -eq 1 ] \
    || { echo "install: app is not linked against $prefix/lib/libmm.so.1"; exit 1; }
# shellcheck disable=SC2046
$CC -std=c11 -Wall -Werror $san app.c -o app-static $(pkg-config --cflags libmm) \
    -Wl,-Bstatic $(pkg-config --libs-only-l libmm) -Wl,-Bdynamic \
    $(pkg-config --libs-only-L libmm) $(pkg-config --static --libs libmm | sed 's/-lmm\b//')
if ldd ./app-static | grep -q libmm; then echo "install: static app still needs libmm.so"; exit 1; fi
./app-static
echo "install + pkg-config (shared and static): ok"
