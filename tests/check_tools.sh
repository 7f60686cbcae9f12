#!/bin/sh
# The programs in tools/ say how to run them (tools/README.md): each has its interpreter line,
# is executable and has a row in tools/README.md's table; no document tells the reader to run a
# tool with a bare `python3` (whose modules are unknown); and the documented dump command
# (`tools/gguf.py FILE.gguf`, docs/model-format.md) runs as written.
cd "$(dirname "$0")/.." || exit 1
status=0
files=$(git ls-files --cached --others --exclude-standard tools 2>/dev/null) || files=$(find tools -type f)
for f in $files; do
    case "$f" in
        *.py) grep -q '^if __name__ == "__main__":' "$f" || continue ;;  # a module
        *.sh) ;;
        *) continue ;;
    esac
    name=${f#tools/}
    head -1 "$f" | grep -q '^#!' || { echo "$f: no interpreter line"; status=1; }
    [ -x "$f" ] || { echo "$f: not executable"; status=1; }
    grep -q "^| \`$name\` |" tools/README.md || { echo "$f: no row in tools/README.md"; status=1; }
done
bare=$(grep -rnE '(^|[^/[:alnum:]_.-])python3 tools/' README.md docs models bindings tools tests \
       --include='*.md' --include='*.py' --include='*.sh' --include=Makefile 2>/dev/null |
       grep -v '^tests/check_tools\.sh:')
[ -z "$bare" ] || { printf '%s\n' "$bare"; echo "run tools by their path (their first line" \
    "names the interpreter) or with /usr/bin/python3"; status=1; }
out=$(tools/gguf.py models/scenes-clip.gguf 2>&1) || { printf '%s\n' "$out"; status=1; }
printf '%s\n' "$out" | grep -q '^GGUF v3, [0-9]* keys, [0-9]* tensors' &&
    printf '%s\n' "$out" | grep -q 'general.architecture  *str  *clip' ||
    { echo "tools/gguf.py models/scenes-clip.gguf did not print the file's keys"; status=1; }
[ $status -eq 0 ] && echo "tools/: interpreter lines, README rows, documented commands: ok"
exit $status
