#!/bin/sh
# Every complete C program in docs/*.md and README.md (a ```c block with a main function)
# compiles with -Werror and links against lib/libmm.so, so the documentation cannot drift from
# the API.
cd "$(dirname "$0")/.." || exit 1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
status=0
count=0
for doc in README.md docs/*.md; do
    awk -v out="$tmp/$(basename "$doc" .md)" '
        /^```c$/ { n++; f = out "-" n ".c"; inblock = 1; next }
        /^```$/  { inblock = 0; next }
        inblock  { print > f }' "$doc"
done
for src in "$tmp"/*.c; do
    [ -f "$src" ] && grep -q 'int main' "$src" || continue
    count=$((count + 1))
    if ! ${CC:-cc} -std=c11 -Wall -Wextra -Werror -Iinclude "$src" -o "$tmp/a.out" -Llib -lmm \
            2>"$tmp/err"; then
        echo "$(basename "$src"): does not build:"; cat "$tmp/err"; status=1
    fi
done
[ $status -eq 0 ] && echo "the $count C programs in the docs build: ok"
exit $status
