#!/bin/sh
# The shared library exports exactly the symbols listed in tests/abi/libmm.symbols.
# Adding a function means adding it to the list in the same commit; removing one is an ABI break.
cd "$(dirname "$0")/../.." || exit 1
lib=${1:-lib/libmm.so}
expected=tests/abi/libmm.symbols
actual=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sed 's/@.*//' | sort -u)
removed=$(printf '%s\n' "$actual" | comm -13 - "$expected")
added=$(printf '%s\n' "$actual" | comm -23 - "$expected")
status=0
if [ -n "$removed" ]; then
    echo "ABI break: symbols listed in $expected are no longer exported:"; echo "$removed"; status=1
fi
if [ -n "$added" ]; then
    echo "new exported symbols missing from $expected:"; echo "$added"; status=1
fi
bad=$(printf '%s\n' "$actual" | grep -v '^mm_')
if [ -n "$bad" ]; then
    echo "exported symbols without the mm_ prefix:"; echo "$bad"; status=1
fi
[ $status -eq 0 ] && echo "exported symbols match $expected ($(printf '%s\n' "$actual" | wc -l) symbols)"
soname=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
if [ "$soname" != "libmm.so.$(sed -n 's/^#define MM_ABI_VERSION \([0-9]*\).*/\1/p' include/mm.h)" ]; then
    echo "soname is '$soname', expected libmm.so.<MM_ABI_VERSION>"; status=1
fi
exit $status
