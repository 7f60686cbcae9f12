#!/bin/sh
# A plain clone must need nothing outside itself: fail if a tracked text file names the
# developers' workspace (../shared) or an absolute path of the machine it was written on (home,
# workspace or mount folders). System paths (/usr, /tmp, /dev, /proc, /etc) are fine.
cd "$(dirname "$0")/.." || exit 1
pattern='(^|[^[:alnum:]_.~$})])/(work|home|root|Users|mnt|media|scratch|srv|data|opt|shared)/|\.\./shared'
# Tracked files and new ones not ignored (in a git checkout; else the source folders), without
# binary files; this file names the pattern.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    hits=$(git ls-files --cached --others --exclude-standard -z |
           xargs -0 grep -nIE "$pattern" -- 2>/dev/null)
else
    hits=$(grep -rnIE "$pattern" -- README.md Makefile meson.build bindings docs examples include \
           lib models pkgconfig tests tools .ci 2>/dev/null)
fi
hits=$(printf '%s\n' "$hits" | grep -v '^tests/check_paths\.sh:')
if [ -n "$hits" ]; then
    printf '%s\n' "$hits"
    echo "check_paths: the lines above read outside the repository or name a machine's own paths"
    exit 1
fi
echo "no ../shared and no machine-specific absolute paths in the tree: ok"
