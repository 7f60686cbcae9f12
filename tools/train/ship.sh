#!/bin/sh
# Ship a training run as the bundled model: the GGUF files in f16 and the parity reference.
#
#   tools/train/ship.sh RUN_DIR [OUT_DIR]        (from the repository root; OUT_DIR: models)
#
# RUN_DIR is a finished run after `tools/train/export.py --run RUN_DIR` (hf_llava/,
# hf_clip/, vocab.gguf, reference/). Writes
#   OUT_DIR/scenes-llava.gguf    language model (llama) with the scene vocabulary
#   OUT_DIR/scenes-mmproj.gguf   its vision tower + MLP projector (clip)
#   OUT_DIR/scenes-clip.gguf     the CLIP dual encoder (clip, both towers)
#   OUT_DIR/reference/           what tests/bundled_parity compares libmm against:
#       image.png, reference.safetensors (export's ref_f16: PyTorch with the f16-rounded
#       matrices these files hold), prompts.tsv (the training pipeline's token ids for some
#       questions and captions), answer.txt (PyTorch's greedy answer to "Describe the image."),
#       README.txt (export's notes and the run's commit)
# Needs /usr/bin/python3 with numpy and torch (the training modules read the run's vocabulary).
set -eu
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 RUN_DIR [OUT_DIR]" >&2; exit 2; }
RUN=$1
OUT=${2:-models}
PY=${PY:-/usr/bin/python3}
TOOLS=$(cd "$(dirname "$0")/.." && pwd)

for f in hf_llava hf_clip vocab.gguf vocab.json reference/image.png reference/ref_f16.safetensors; do
    [ -e "$RUN/$f" ] || { echo "ship.sh: $RUN/$f is missing: run tools/train/export.py --run $RUN" >&2; exit 1; }
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# The CLIP text tower reads <|startoftext|> text <|endoftext|> (docs/scenes.md), so its file's
# tokenizer names those as BOS and EOS and adds both, as HF's CLIPTokenizer does; the language
# model keeps <s> ... </s>.
"$PY" - "$TOOLS" "$RUN" "$TMP/vocab_clip.gguf" <<'EOF'
import json, os, sys
sys.path.insert(0, sys.argv[1])
from gguf import GGUFReader, GGUFWriter
run, out = sys.argv[2], sys.argv[3]
with open(os.path.join(run, "hf_clip", "config.json")) as f:
    text = json.load(f)["text_config"]
r = GGUFReader(os.path.join(run, "vocab.gguf"))
w = GGUFWriter(out)
for key, value in r.kv.items():
    value = {"tokenizer.ggml.bos_token_id": text["bos_token_id"],
             "tokenizer.ggml.eos_token_id": text["eos_token_id"],
             "tokenizer.ggml.add_eos_token": True}.get(key, value)
    w.add(key, value, type=r.types[key])
w.write()
EOF
"$PY" "$TOOLS/convert_hf_to_gguf.py" "$RUN/hf_llava" -o "$TMP/llava" --vocab "$RUN/vocab.gguf" --outtype f16
"$PY" "$TOOLS/convert_hf_to_gguf.py" "$RUN/hf_clip" -o "$TMP/clip" --vocab "$TMP/vocab_clip.gguf" --outtype f16

mkdir -p "$OUT/reference"
cp "$TMP/llava/model.gguf" "$OUT/scenes-llava.gguf"
cp "$TMP/llava/mmproj.gguf" "$OUT/scenes-mmproj.gguf"
cp "$TMP/clip/model.gguf" "$OUT/scenes-clip.gguf"
cp "$RUN/reference/image.png" "$OUT/reference/image.png"
cp "$RUN/reference/ref_f16.safetensors" "$OUT/reference/reference.safetensors"
{
    cat "$RUN/reference/README.txt"
    [ -f "$RUN/commit" ] && echo "Trained at commit $(cat "$RUN/commit")."
    echo "Shipped with tools/train/ship.sh as reference.safetensors = ref_f16.safetensors."
} > "$OUT/reference/README.txt"

# The training pipeline's own tokenization of the prompts and captions libmm must reproduce.
"$PY" - "$TOOLS/train" "$RUN" "$OUT/reference" <<'EOF'
import json, os, sys
sys.path.insert(0, sys.argv[1])
import data, safetensors_io, scenes, tokenizer as tk
run, out = sys.argv[2], sys.argv[3]
vocab = tk.Vocab.load(os.path.join(run, "vocab.json"))
with open(os.path.join(run, "hf_llava", "config.json")) as f:
    prompter = data.Prompter(vocab, json.load(f)["image_seq_length"])
questions = ["Describe the image.", "What is in the image?", "Is there an orange cross?"]
for i in range(4):  # every question type, on the first held-out scenes
    for _, q, _ in scenes.heldout_questions(scenes.scene_at(1001, i), 1001, i):
        if q not in questions:
            questions.append(q)
ref = safetensors_io.load(os.path.join(out, "reference.safetensors"))
with open(os.path.join(out, "prompts.tsv"), "w") as f:
    for q in questions:
        ids = [-1 if t == vocab.image_id else t for t in prompter.prompt(q)]
        f.write("llava\t%s\t%s\n" % (q, " ".join(map(str, ids))))
    for k in range(ref["clip_input_ids"].shape[0]):  # export's captions: held-out scenes 0..9
        caption = scenes.caption(scenes.scene_at(1001, k))
        row = [int(t) for t in ref["clip_input_ids"][k]]
        assert row[:len(prompter.clip_text(caption))] == prompter.clip_text(caption), caption
        f.write("clip\t%s\t%s\n" % (caption, " ".join(map(str, prompter.clip_text(caption)))))
with open(os.path.join(out, "answer.txt"), "w") as f:
    f.write(vocab.decode([int(t) for t in ref["generated"][0] if int(t) != tk.EOS]) + "\n")
EOF
ls -l "$OUT"/scenes-*.gguf "$OUT/reference"
