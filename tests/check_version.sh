#!/bin/sh
# The version is written once, in include/mm.h. Places that cannot read the header carry a copy
# (meson's project(): it must come first; the Python package's metadata): each must agree, and
# the Makefile must take it from the header.
cd "$(dirname "$0")/.." || exit 1
define() { sed -n "s/^#define MM_$1 \([0-9][0-9]*\)$/\1/p" include/mm.h; }
version=$(define VERSION_MAJOR).$(define VERSION_MINOR).$(define VERSION_PATCH)
abi=$(define ABI_VERSION)
case "$version.$abi" in
    *[!0-9.]* | *..* | .* | *.) echo "include/mm.h: cannot read MM_VERSION_* / MM_ABI_VERSION"; exit 1 ;;
esac
status=0
agree() { # place, value found there, value wanted
    if [ "$2" != "$3" ]; then echo "$1 says '$2', include/mm.h says '$3'"; status=1; fi
}
agree "make version" "$(make -s --no-print-directory version)" "$version $abi"
agree "meson.build project()" \
    "$(sed -n "s/^  version : '\([^']*\)',$/\1/p" meson.build | head -1)" "$version"
for pyproject in bindings/python/pyproject.toml; do
    [ -f "$pyproject" ] &&
        agree "$pyproject" "$(sed -n 's/^version = "\([^"]*\)"$/\1/p' "$pyproject")" "$version"
done
agree "bindings/python/libmm/_native.py ABI_VERSION" \
    "$(sed -n 's/^ABI_VERSION = \([0-9]*\).*/\1/p' bindings/python/libmm/_native.py)" "$abi"
[ $status -eq 0 ] && echo "version $version (ABI $abi) from include/mm.h, copies agree: ok"
exit $status
