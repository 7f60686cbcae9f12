#!/usr/bin/python3
"""Checks models.py against HF transformers' outputs in the reference vectors.

    /usr/bin/python3 tools/train/check_models.py [HF_DIR]   (default tests/vectors/hf)
Loads each case's config.json + model.safetensors into our modules, runs the case's inputs and
compares every output tensor with the tolerance the case advises (1e-4 * max(1, |ref|)).
"""
import json
import os
import sys

import torch

import models
import safetensors_io

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_case(folder, cls):
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    model = cls(config)
    weights = {k: torch.from_numpy(v) for k, v in safetensors_io.load(os.path.join(folder, "model.safetensors")).items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    io = {k: torch.from_numpy(v) for k, v in safetensors_io.load(os.path.join(folder, "io.safetensors")).items()}
    return model.eval(), io


def compare(name, got, ref):
    err = ((got - ref).abs() / ref.abs().clamp(min=1)).max().item()
    ok = err <= 1e-4
    print(f"  {name:28s} max rel err {err:.2e} {'ok' if ok else 'FAIL'}")
    return ok


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "vectors", "hf")
    ok = True
    with torch.no_grad():
        print("clip")
        m, io = load_case(os.path.join(root, "clip"), models.CLIPModel)
        last, pooled = m.vision_model(io["pixel_values"])
        tlast, tpooled = m.text_model(io["input_ids"])
        ok &= compare("vision_last_hidden_state", last, io["vision_last_hidden_state"])
        ok &= compare("vision_pooled", pooled, io["vision_pooled"])
        ok &= compare("image_embeds", m.image_embeds(io["pixel_values"]), io["image_embeds"])
        ok &= compare("text_last_hidden_state", tlast, io["text_last_hidden_state"])
        ok &= compare("text_pooled", tpooled, io["text_pooled"])
        ok &= compare("text_embeds", m.text_embeds(io["input_ids"]), io["text_embeds"])
        ok &= compare("logits_per_image", m(io["pixel_values"], io["input_ids"]), io["logits_per_image"])

        print("llava")
        m, io = load_case(os.path.join(root, "llava"), models.LlavaForConditionalGeneration)
        states = m.vision_tower.vision_model.hidden_states(io["pixel_values"])
        ok &= compare("vision_embeddings", states[0], io["vision_embeddings"])
        ok &= compare("vision_hidden_states", states[-2], io["vision_hidden_states"])
        ok &= compare("image_features", m.image_features(io["pixel_values"])[0], io["image_features"])
        ok &= compare("logits", m(io["input_ids"], io["pixel_values"]), io["logits"])
        # greedy continuation without a cache must reproduce HF's generate()
        ids = io["input_ids"]
        for _ in range(io["generated"].shape[1]):
            nxt = m(ids, io["pixel_values"])[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
        same = torch.equal(ids[:, io["input_ids"].shape[1]:], io["generated"])
        print(f"  {'generated':28s} {'ok' if same else 'FAIL'}")
        ok &= same
    print("ALL OK" if ok else "SOME FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
