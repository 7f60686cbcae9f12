#!/bin/sh
# Library code never writes to stdout/stderr: it logs through the user's callback only.
cd "$(dirname "$0")/.." || exit 1
hits=$(grep -nE '\b(printf|puts|putchar|perror|fputs|fputc|fwrite|vprintf)\s*\(|\bfprintf\s*\(|\b(stdout|stderr)\b' lib/*.c lib/*.h lib/*/*.c lib/*/*.h \
       | grep -vE '^\S+:\s*(/\*|\*|//)' | grep -vE '\b(v?snprintf)\s*\(' )
if [ -n "$hits" ]; then
    echo "library code writes to stdio:"
    echo "$hits"
    exit 1
fi
echo "no stdio in lib/: ok"
