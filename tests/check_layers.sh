#!/bin/sh
# lib/ is grouped by layer: each folder's README.md has a line "May include: FOLDER ..." and
# every #include "…" of a file in that folder must name a header of one of those folders
# (lib/README.md). Files in lib/ itself may include anything.
cd "$(dirname "$0")/.." || exit 1
status=0
for dir in lib/*/; do
    dir=${dir%/}
    allowed=$(sed -n 's/^May include: //p' "$dir/README.md" 2>/dev/null)
    if [ -z "$allowed" ]; then
        echo "$dir/README.md has no 'May include:' line"
        status=1
        continue
    fi
    for f in "$dir"/*.c "$dir"/*.h; do
        [ -f "$f" ] || continue
        for h in $(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f"); do
            [ "$h" = mm.h ] && continue
            home=$(for d in lib/*/; do [ -f "$d$h" ] && echo "${d#lib/}"; done | tr -d /)
            [ -n "$home" ] || home=lib # the pipeline's own headers
            case " $allowed " in
                *" $home "*) ;;
                *) echo "$f includes $h (from $home/), outside its layers: $allowed"; status=1 ;;
            esac
        done
    done
done
[ $status -eq 0 ] && echo "lib/ layers include only what their READMEs allow: ok"
exit $status
