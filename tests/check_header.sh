#!/bin/sh
# include/mm.h compiles on its own as C99 and C++98/C++17 with -Wpedantic -Werror.
cd "$(dirname "$0")/.." || exit 1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
printf '#include "mm.h"\nint main(void) { return mm_abi_version() == MM_ABI_VERSION ? 0 : 1; }\n' > "$tmp/h.c"
cp "$tmp/h.c" "$tmp/h.cpp"
status=0
for std in c99 c11; do
    ${CC:-cc} -std=$std -Wall -Wextra -Wpedantic -Werror -Iinclude -c "$tmp/h.c" -o "$tmp/h.o" \
        && echo "mm.h as $std: ok" || { echo "mm.h as $std: FAILED"; status=1; }
done
for std in c++98 c++17; do
    ${CXX:-c++} -std=$std -Wall -Wextra -Wpedantic -Werror -Iinclude -c "$tmp/h.cpp" -o "$tmp/h.o" \
        && echo "mm.h as $std: ok" || { echo "mm.h as $std: FAILED"; status=1; }
done
exit $status
