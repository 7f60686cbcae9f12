#!/usr/bin/python3
"""Export a finished run: HF-layout folders, the vocabulary GGUF and reference values for parity tests.

    tools/train/export.py --run DIR

writes
    DIR/hf_clip/    config.json, model.safetensors, preprocessor_config.json   (CLIPModel)
    DIR/hf_llava/   config.json, model.safetensors, preprocessor_config.json,
                    generation_config.json                                    (LlavaForConditionalGeneration)
    DIR/vocab.gguf  vocabulary only (tokenizer.ggml.* keys), for convert_hf_to_gguf.py --vocab
    DIR/reference/  image.png and ref_f32.safetensors / ref_f16.safetensors: inputs, intermediates
                    and outputs of both models for that image (see reference/README.txt)
The GGUF files then come from tools/convert_hf_to_gguf.py (see tools/train/README.md).
"""
import argparse
import json
import os
import re
import sys

import numpy as np
import torch
from PIL import Image

import data
import models
import safetensors_io
import scenes
import tokenizer as tk

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE_SEED, REFERENCE_INDEX = 1001, 0          # the first held-out scene
REFERENCE_QUESTION = "Describe the image."
# tensors the converter keeps in f32 in an f16 file (1-D ones too); see convert_hf_to_gguf.py
KEEP_F32 = re.compile(r"(position_embedding\.weight|class_embedding)$")


def preprocessor_config(size):
    return {"image_processor_type": "CLIPImageProcessor", "do_resize": True,
            "size": {"shortest_edge": size}, "resample": 3, "do_center_crop": True,
            "crop_size": {"height": size, "width": size}, "do_rescale": True,
            "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": data.IMAGE_MEAN,
            "image_std": data.IMAGE_STD, "do_convert_rgb": True}


def write_folder(folder, config, state, extra):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    for name, obj in extra.items():
        with open(os.path.join(folder, name), "w") as f:
            json.dump(obj, f, indent=2)
    safetensors_io.save(os.path.join(folder, "model.safetensors"),
                        {k: v.float() for k, v in state.items()}, {"format": "pt"})


def write_vocab_gguf(path, vocab):
    sys.path.insert(0, os.path.join(HERE, ".."))
    from gguf import GGUFWriter  # tools/gguf.py
    w = GGUFWriter(path, arch="llama")
    w.add("general.name", "libmm scenes vocab")
    w.add("tokenizer.ggml.model", "llama")
    w.add("tokenizer.ggml.pre", "default")
    w.add("tokenizer.ggml.tokens", vocab.pieces, type="[str]")
    w.add("tokenizer.ggml.scores", [float(s) for s in vocab.scores], type="[f32]")
    w.add("tokenizer.ggml.token_type", vocab.types, type="[i32]")
    w.add("tokenizer.ggml.bos_token_id", tk.BOS, type="u32")
    w.add("tokenizer.ggml.eos_token_id", tk.EOS, type="u32")
    w.add("tokenizer.ggml.unknown_token_id", tk.UNK, type="u32")
    w.add("tokenizer.ggml.padding_token_id", tk.UNK, type="u32")
    w.add("tokenizer.ggml.add_bos_token", True)
    w.add("tokenizer.ggml.add_eos_token", False)
    w.add("tokenizer.ggml.add_space_prefix", True)
    w.write()


def rounded_f16(model):
    """A copy of the model as an f16 GGUF holds it: matrices rounded to f16, the rest f32."""
    state = {k: (v.half().float() if v.dim() >= 2 and not KEEP_F32.search(k) else v.clone())
             for k, v in model.state_dict().items()}
    copy = type(model)(model.config)
    copy.load_state_dict(state)
    return copy.eval()


@torch.no_grad()
def reference(llava, clip, vocab, image_u8, captions):
    """Every value a C port is checked against, for one image and the caption prompt."""
    pix = data.pixels(image_u8[None])
    prompter = data.Prompter(vocab, llava.config["image_seq_length"])
    ids = torch.tensor([prompter.prompt(REFERENCE_QUESTION)])
    states = llava.vision_tower.vision_model.hidden_states(pix)
    out = {"pixel_values": pix, "input_ids": ids,
           "vision_embeddings": states[0], "vision_hidden_states": states[llava.config["vision_feature_layer"]],
           "image_features": llava.image_features(pix)[0], "logits": llava(ids, pix)}
    gen, step_logits = [], []
    seq = ids
    for _ in range(64):  # greedy, no cache: the definition the C loop must reproduce
        last = llava(seq, pix)[:, -1]
        nxt = int(last.argmax())
        gen.append(nxt)
        step_logits.append(last[0])
        if nxt == tk.EOS:
            break
        seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
    out["generated"] = torch.tensor([gen])
    out["generated_step_logits"] = torch.stack(step_logits)[None]
    cap_ids = data.clip_batch(data.Prompter(vocab, 0), captions, vocab.clip_eos)
    out["clip_input_ids"] = cap_ids
    out["clip_image_embeds"] = clip.image_embeds(pix)
    out["clip_text_embeds"] = clip.text_embeds(cap_ids)
    out["clip_logits_per_image"] = clip(pix, cap_ids)
    return out, vocab.decode([g for g in gen if g != tk.EOS])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    args = ap.parse_args()
    vocab = tk.Vocab.load(os.path.join(args.run, "vocab.json"))

    ck = torch.load(os.path.join(args.run, "clip.pt"))
    clip = models.CLIPModel(ck["config"])
    clip.load_state_dict(ck["state"])
    clip.eval()
    size = ck["config"]["vision_config"]["image_size"]
    write_folder(os.path.join(args.run, "hf_clip"), ck["config"], ck["state"],
                 {"preprocessor_config.json": preprocessor_config(size)})

    ck = torch.load(os.path.join(args.run, "llava_instruct.pt"))
    llava = models.LlavaForConditionalGeneration(ck["config"])
    llava.load_state_dict(ck["state"])
    llava.eval()
    write_folder(os.path.join(args.run, "hf_llava"), ck["config"], ck["state"],
                 {"preprocessor_config.json": preprocessor_config(size),
                  "generation_config.json": {"bos_token_id": tk.BOS, "eos_token_id": tk.EOS,
                                             "pad_token_id": tk.UNK}})
    write_vocab_gguf(os.path.join(args.run, "vocab.gguf"), vocab)

    ref_dir = os.path.join(args.run, "reference")
    os.makedirs(ref_dir, exist_ok=True)
    scene = scenes.scene_at(REFERENCE_SEED, REFERENCE_INDEX)
    image = scenes.render(scene)
    Image.fromarray(image).save(os.path.join(ref_dir, "image.png"))
    captions = [scenes.caption(scenes.scene_at(REFERENCE_SEED, REFERENCE_INDEX + k)) for k in range(10)]
    notes = {}
    for name, (lm, cm) in {"f32": (llava, clip), "f16": (rounded_f16(llava), rounded_f16(clip))}.items():
        out, text = reference(lm, cm, vocab, image, captions)
        safetensors_io.save(os.path.join(ref_dir, f"ref_{name}.safetensors"), out)
        notes[name] = text
    with open(os.path.join(ref_dir, "README.txt"), "w") as f:
        f.write(f"""Reference values of the run's models for image.png (held-out scene {REFERENCE_SEED}/{REFERENCE_INDEX}).
ref_f32: the f32 weights; ref_f16: the same model with every matrix except position/class embeddings
rounded to f16 (what an --outtype f16 GGUF holds). Tensors (float32 unless stated):
  pixel_values (1,3,S,S)            normalised image (rescale 1/255, CLIP mean/std; no resize)
  input_ids (1,T) int64             prompt: [BOS] tok("USER: ") <image>*N tok("\\n{REFERENCE_QUESTION} ASSISTANT:")
  vision_embeddings (1,N+1,D)       pre_layrnorm(class + patches + positions)
  vision_hidden_states (1,N+1,D)    hidden_states[vision_feature_layer], CLS first
  image_features (N,E)              projector output for the patch tokens
  logits (1,T,V)                    language-model logits at every prompt position
  generated (1,G) int64             greedy tokens, up to and including EOS
  generated_step_logits (1,G,V)     the logits that chose each generated token
  clip_input_ids (10,L) int64       CLIP captions: <|startoftext|> tok(caption) <|endoftext|>, padded with <|endoftext|>;
                                    row 0 is this image's caption, rows 1-9 those of the next held-out scenes
  clip_image_embeds (1,P), clip_text_embeds (10,P), clip_logits_per_image (1,10)
Greedy answers: f32: {notes['f32']!r}
                f16: {notes['f16']!r}
Caption of the scene: {captions[0]!r}
""")
    print("greedy caption f32:", notes["f32"])
    print("greedy caption f16:", notes["f16"])
    print("true caption      :", captions[0])


if __name__ == "__main__":
    main()
