#!/bin/sh
# libmm against llama.cpp on the same GGUF files, in alternated rounds (docs/performance.md):
#   LLAMA_CPP_DIR=DIR tools/bench-peer.sh MODELS [ROUNDS] [THREADS]
# MODELS holds tools/bench_models.py's llama-1b-f16.gguf and vit-b16.gguf (the decoder carries a
# vocabulary, so llama.cpp loads it); DIR is a llama.cpp build (DIR/bin/llama-bench, or DIR
# itself holding it). Each round runs, one after the other:
#   libmm     examples/mm-bench --text (prefill PROMPT tokens, default 512; decode 64 from an
#             empty context) and
#             --vision (preprocess + encode of a 640x480 picture), one timed run each;
#   llama.cpp llama-bench -p PROMPT and -n 64 (one repetition each), and llama-llava-cli on the
#             same picture (its "image encoded in" time; it includes no preprocessing).
# and prints per round, then as median [min, max] over rounds, libmm's speed ÷ llama.cpp's per
# stage (above 1: libmm faster). Both use THREADS threads (default 2). The OpenBLAS core libmm
# used is printed: the environment's OPENBLAS_CORETYPE is left as it is.
set -e
models=${1:?usage: LLAMA_CPP_DIR=DIR tools/bench-peer.sh MODELS [ROUNDS] [THREADS]}
rounds=${2:-3}
threads=${3:-2}
prompt=${PROMPT:-512}
peer=${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to a llama.cpp build}
[ -x "$peer/bin/llama-bench" ] && peer=$peer/bin
for tool in llama-bench llama-llava-cli; do
    [ -x "$peer/$tool" ] || { echo "bench-peer: no $peer/$tool" >&2; exit 1; }
done
text=$models/llama-1b-f16.gguf
vision=$models/vit-b16.gguf
for f in "$text" "$vision"; do
    [ -f "$f" ] || { echo "bench-peer: no $f (tools/bench_models.py $models)" >&2; exit 1; }
done
cd "$(dirname "$0")/.."
[ -x examples/mm-bench ] || { echo "bench-peer: build examples/mm-bench first" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The picture mm-bench encodes (its pattern), as a PNG for llama-llava-cli.
/usr/bin/python3 - "$work/picture.png" <<'EOF'
import sys
import numpy as np
from PIL import Image
w, h = 640, 480
i = np.arange(w * h * 3)
Image.fromarray((((i * 7) + (i // (3 * w)) * 13) & 0xff).astype(np.uint8).reshape(h, w, 3)).save(sys.argv[1])
EOF

# llama-bench's CSV: the avg_ts of the test with n_prompt = $1 and n_gen = $2.
peer_speed() {
    awk -F, -v p="$1" -v g="$2" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        { gsub(/"/, "") } $col["n_prompt"] == p && $col["n_gen"] == g { print $col["avg_ts"] }'
}

printf 'round | libmm core | decode (empty ctx) | prefill %s | image encode\n' "$prompt" > "$work/rounds"
for r in $(seq "$rounds"); do
    examples/mm-bench --text "$text" -t "$threads" -r 1 --prompt "$prompt" --gen 64 > "$work/mt"
    examples/mm-bench --vision "$vision" -t "$threads" -r 1 > "$work/mv"
    "$peer/llama-bench" -m "$text" -t "$threads" -r 1 -p "$prompt" -n 64 -o csv > "$work/pt" 2>/dev/null
    "$peer/llama-llava-cli" -m "$text" --mmproj "$vision" --image "$work/picture.png" \
        -t "$threads" -p "x" -n 1 --temp 0 > "$work/pv" 2>&1 || true
    core=$(sed -n 's/.*OpenBLAS core \([A-Za-z0-9]*\).*/\1/p' "$work/mt")
    m_dec=$(awk '$1 == "decode" && / after 1 token / { print $2 }' "$work/mt")
    m_pre=$(awk '$1 == "prefill" { print $2; exit }' "$work/mt")
    m_img=$(awk '$1 == "vision" { print $2; exit }' "$work/mv")
    p_dec=$(peer_speed 0 64 < "$work/pt")
    p_pre=$(peer_speed "$prompt" 0 < "$work/pt")
    p_img=$(sed -n 's/.*image encoded in *\([0-9.]*\) ms.*/\1/p' "$work/pv" | head -n 1)
    echo "round $r: libmm ($core) decode $m_dec tok/s, prefill $m_pre tok/s, image $m_img ms;" \
         "llama.cpp decode ${p_dec:-?} tok/s, prefill ${p_pre:-?} tok/s, image ${p_img:-?} ms;" \
         "load $(cut -d' ' -f1 /proc/loadavg)"
    awk -v r="$r" -v c="$core" -v md="$m_dec" -v pd="$p_dec" -v mp="$m_pre" -v pp="$p_pre" \
        -v mi="$m_img" -v pi="$p_img" 'function q(a, b) { return a > 0 && b > 0 ? sprintf("%.2f", a / b) : "?" }
        BEGIN { printf "%s | %s | %s | %s | %s\n", r, c, q(md, pd), q(mp, pp), q(pi, mi) }' \
        >> "$work/rounds"
done
echo
echo "libmm speed ÷ llama.cpp speed per round ($threads threads; image: llama.cpp's encode alone"
echo "against libmm's preprocess + encode):"
cat "$work/rounds"
awk -F' [|] ' 'NR > 1 { for (i = 3; i <= 5; i++) if ($i != "?") v[i, ++n[i]] = $i + 0 }
    function summary(i,   k, j, t, m) {
        if (!n[i]) return "?"
        for (k = 1; k <= n[i]; k++) for (j = k + 1; j <= n[i]; j++)
            if (v[i, j] < v[i, k]) { t = v[i, k]; v[i, k] = v[i, j]; v[i, j] = t }
        m = n[i] % 2 ? v[i, (n[i] + 1) / 2] : (v[i, n[i] / 2] + v[i, n[i] / 2 + 1]) / 2
        return sprintf("%.2f [%.2f, %.2f]", m, v[i, 1], v[i, n[i]])
    }
    END { printf "median [min, max] | decode %s | prefill %s | image %s\n", summary(3),
          summary(4), summary(5) }' "$work/rounds"
