#!/bin/sh
# examples/mm-quantize against llama-quantize: requantize the Q8_0 tiny LLaMA of
# tests/vectors/quant/model to each type llama.cpp's files there were made with, and check that
# every tensor gets the type and shape llama-quantize gave it (the Q4_K_M / Q5_K_M mixes
# included), that the metadata is llama.cpp's (general.file_type too), that the file has
# llama.cpp's size (same layout and alignment), and that libmm reads every tensor back. Then the
# bundled scenes model (text model and mmproj) quantized to Q8_0 must describe two pictures as
# the f16 files do (those answers are checked against PyTorch by tests/run_5.d/bundled_parity).
cd "$(dirname "$0")/.." || exit 1
models=${MM_VECTORS_DIR:-tests/vectors}/quant/model
bin=${MM_TEST_BIN:-tests} # meson: its build folder's tests/, beside examples/
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for type in Q4_0 Q8_0 Q4_K_M Q5_K_M Q6_K; do
    out="$tmp/$type.gguf"
    if ! "$bin/../examples/mm-quantize" "$models/tiny-llama-Q8_0.gguf" "$out" "$type" > /dev/null; then
        echo "FAIL $type: mm-quantize failed"; status=1; continue
    fi
    "$bin/gguf_tool" dump "$out" > /dev/null || { echo "FAIL $type: libmm cannot read it"; status=1; }
    /usr/bin/python3 - "$out" "$models/tiny-llama-$type.gguf" "$type" <<'PY' || status=1
import os, sys
sys.path.insert(0, "tools")
from gguf import GGUFReader
ours, theirs, name = GGUFReader(sys.argv[1]), GGUFReader(sys.argv[2]), sys.argv[3]
problems = []
for t, ref in theirs.tensor_types.items():
    if ours.tensor_types.get(t) != ref or ours.tensor_ne.get(t) != theirs.tensor_ne[t]:
        problems.append("%s: %s %s, llama.cpp %s %s" % (t, ours.tensor_types.get(t),
                        ours.tensor_ne.get(t), ref, theirs.tensor_ne[t]))
problems += ["extra tensor %s" % t for t in ours.tensor_types if t not in theirs.tensor_types]
for k, v in theirs.kv.items():
    if ours.kv.get(k) != v:
        problems.append("key %s: %r, llama.cpp %r" % (k, ours.kv.get(k), v))
sizes = os.path.getsize(sys.argv[1]), os.path.getsize(sys.argv[2])
if sizes[0] != sizes[1]:
    problems.append("%d bytes, llama.cpp %d" % sizes)
for p in problems:
    print("FAIL %s: %s" % (name, p))
if not problems:
    print("PASS %s: %d tensors with llama-quantize's types, %d bytes" % (name, len(theirs.tensor_types), sizes[0]))
sys.exit(1 if problems else 0)
PY
done
"$bin/../examples/mm-quantize" models/scenes-llava.gguf "$tmp/llava.gguf" Q8_0 > /dev/null &&
    "$bin/../examples/mm-quantize" models/scenes-mmproj.gguf "$tmp/mmproj.gguf" Q8_0 > /dev/null ||
    { echo "FAIL: mm-quantize on the bundled model"; exit 1; }
for image in models/images/scene_3003_00000.png models/images/scene_3003_00001.png; do
    want=$("$bin/../examples/mm-describe" -m models/scenes-llava.gguf \
           --mmproj models/scenes-mmproj.gguf -i "$image" 2>/dev/null | tail -n 1)
    got=$("$bin/../examples/mm-describe" -m "$tmp/llava.gguf" --mmproj "$tmp/mmproj.gguf" \
          -i "$image" 2>/dev/null | tail -n 1)
    if [ -n "$want" ] && [ "$got" = "$want" ]; then
        echo "PASS bundled model in Q8_0 on $image: $got"
    else
        echo "FAIL bundled model in Q8_0 on $image: \"$got\", f16 files: \"$want\""; status=1
    fi
done
exit $status
