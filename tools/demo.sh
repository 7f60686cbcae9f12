#!/bin/sh
# `make demo`: the bundled scenes model describes the bundled held-out images and answers two
# questions about each (models/images/questions.tsv, the scene generator's own questions and
# answers), through examples/mm-describe. Prints each answer and whether it is the expected one.
#   tools/demo.sh [MODELS_DIR]        (default: models)
cd "$(dirname "$0")/.." || exit 1
m=${1:-models}
for f in scenes-llava.gguf scenes-mmproj.gguf images/questions.tsv; do
    [ -f "$m/$f" ] || { echo "demo: $m/$f is missing; the model is shipped by tools/train/ship.sh (models/README.md)" >&2; exit 1; }
done
tab=$(printf '\t')
right=0
total=0
# per image: its caption line asked as "Describe the image.", then the k-th and (k+2)-th of its
# other questions (k: the image's index mod 5), so that every question type appears
awk -F '\t' '
    $1 != image { image = $1; k = n++; j = 0 }
    $2 ~ /^(Describe|What is in)/ { print $1 "\tDescribe the image.\t" $3; next }
    { if (j == k % 5 || j == (k + 2) % 5) print; j++ }' "$m/images/questions.tsv" > "${TMPDIR:-/tmp}/mm-demo.$$"
last=
while IFS="$tab" read -r image question expected; do
    [ "$image" = "$last" ] || { echo; echo "$m/images/$image"; last=$image; }
    answer=$(examples/mm-describe -m "$m/scenes-llava.gguf" --mmproj "$m/scenes-mmproj.gguf" \
        --image "$m/images/$image" -p "$question" 2>"${TMPDIR:-/tmp}/mm-demo-err.$$") ||
        answer="(failed: $(cat "${TMPDIR:-/tmp}/mm-demo-err.$$"))"
    total=$((total + 1))
    if [ "$answer" = "$expected" ]; then
        right=$((right + 1))
        verdict="right"
    else
        verdict="expected: $expected"
    fi
    printf '  Q: %s\n  A: %s   (%s)\n' "$question" "$answer" "$verdict"
done < "${TMPDIR:-/tmp}/mm-demo.$$"
rm -f "${TMPDIR:-/tmp}/mm-demo.$$" "${TMPDIR:-/tmp}/mm-demo-err.$$"
echo
echo "demo: $right of $total answers as expected"
