#!/bin/sh
# docs/api.md is generated from include/mm.h (tools/gen_api_docs.py) and is current, and every
# exported symbol in tests/abi/libmm.symbols has an entry (a "### " heading) in it.
cd "$(dirname "$0")/.." || exit 1
status=0
tools/gen_api_docs.py --check || status=1
missing=$(while read -r sym; do
    grep -q "^### .*\`$sym\`" docs/api.md || echo "$sym"
done < tests/abi/libmm.symbols)
if [ -n "$missing" ]; then
    echo "exported symbols without an entry in docs/api.md:"; echo "$missing"; status=1
fi
[ $status -eq 0 ] && echo "docs/api.md is current and documents all $(wc -l < tests/abi/libmm.symbols) exported symbols: ok"
exit $status
