#!/usr/bin/python3
"""An independent reference of LLaVA-NeXT-Video for parity cases, in PyTorch float64.

Written from HF transformers' documented behaviour (LlavaNextVideoImageProcessor and
LlavaNextVideoForConditionalGeneration 4.45), reading only the HF checkpoint folder
(config.json, preprocessor_config.json, model.safetensors, frame_NN.png) -- never libmm, its
converter or its GGUF files. The image half is llava_next_ref.py's (CLIP steps, tower, Llama);
what video adds:
  - sampling N of the T frames: np.arange(0, T, T / N).astype(int), as HF's examples;
  - every sampled frame through the CLIP steps (shortest edge, centre crop) and the tower;
  - vision_feature_layer, class token dropped, the patch grid pooled by spatial_pool_stride
    windows (torch avg_pool2d / max_pool2d as spatial_pool_mode says), then the projector;
  - the rows frame after frame at the video token's positions, no image_newline.

    llava_next_video_ref.py OUT_DIR --seed N --frames T --sample N --size WxH --tile S
                            --patch P --stride K --mode average|max
writes a complete case folder (random weights in HF naming, the frames, io.safetensors with
every tensor the shared llava_next_video case has, case.json) that tests/hf_parity then runs.
"""

import argparse
import glob
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llava_next_ref as ref  # noqa: E402


def sample(total, n):
    return np.arange(0, total, total / n).astype(int)[:n]


def video_features(W, cfg, px):
    """Feature-layer states [N][T][D], pooled features [N][n][D], projected rows [N][n][E]."""
    vc = cfg["vision_config"]
    hidden = ref.vision_hidden_states(W, vc, px)[cfg.get("vision_feature_layer", -2)]
    side = vc["image_size"] // vc["patch_size"]
    grid = hidden[:, 1:].view(-1, side, side, vc["hidden_size"]).permute(0, 3, 1, 2)
    k = cfg.get("spatial_pool_stride", 2)
    pool = {"average": torch.nn.functional.avg_pool2d,
            "max": torch.nn.functional.max_pool2d}[cfg.get("spatial_pool_mode", "average")]
    pooled = pool(grid, kernel_size=k, stride=k).flatten(2).transpose(1, 2)
    mp = "multi_modal_projector."
    x = pooled @ W[mp + "linear_1.weight"].T + W[mp + "linear_1.bias"]
    x = ref.act(cfg.get("projector_hidden_act", "gelu"), x)
    x = x @ W[mp + "linear_2.weight"].T + W[mp + "linear_2.bias"]
    return hidden, pooled, x


def read_frames(folder):
    return np.stack([np.asarray(Image.open(p).convert("RGB"))
                     for p in sorted(glob.glob(os.path.join(folder, "frame_*.png")))])


def run_case(folder, input_ids, n_generate, n_sample):
    """Every tensor of a llava_next_video case for the folder's checkpoint and frames."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(folder, "preprocessor_config.json")) as f:
        pp = json.load(f)
    W = {k: torch.tensor(v.astype(np.float64))
         for k, v in ref.read_safetensors(os.path.join(folder, "model.safetensors")).items()}
    frames = read_frames(folder)
    picked = sample(len(frames), n_sample)
    S, crop = pp["size"]["shortest_edge"], pp["crop_size"]["height"]
    px = np.stack([ref.clip_steps(frames[i], S, crop, pp["image_mean"], pp["image_std"],
                                  pp.get("resample", 3)) for i in picked])
    hidden, pooled, feats = video_features(W, cfg, px)
    ids = list(input_ids)
    out = {"video_frames": frames, "frame_indices": picked.astype(np.int64),
           "pixel_values_videos": px[None].astype(np.float32),
           "input_ids": np.array([ids], np.int64),
           "vision_hidden_states": hidden.numpy().astype(np.float32),
           "pooled_features": pooled.numpy().astype(np.float32),
           "video_features": feats.numpy().astype(np.float32)}
    out.update(ref.language_model(W, cfg["text_config"], ids, cfg["video_token_index"],
                                  feats.flatten(0, 1), n_generate))
    return out


def make_case(outdir, seed, n_frames, n_sample, size_wh, tile, patch, stride, mode):
    rng = np.random.default_rng(seed)
    vc = dict(hidden_size=24, image_size=tile, intermediate_size=40,
              model_type="clip_vision_model", num_attention_heads=4, num_hidden_layers=2,
              patch_size=patch, projection_dim=64, hidden_act="quick_gelu")
    tc = dict(head_dim=12, hidden_size=48, intermediate_size=96, max_position_embeddings=512,
              model_type="llama", num_attention_heads=4, num_hidden_layers=2,
              num_key_value_heads=2, pad_token_id=0, rms_norm_eps=1e-5, vocab_size=99)
    cfg = dict(architectures=["LlavaNextVideoForConditionalGeneration"], ignore_index=-100,
               image_grid_pinpoints=[[tile, 2 * tile], [2 * tile, tile]], image_token_index=97,
               video_token_index=98, model_type="llava_next_video", pad_token_id=0,
               projector_hidden_act="gelu", spatial_pool_mode=mode, spatial_pool_stride=stride,
               text_config=tc, tie_word_embeddings=False, torch_dtype="float32",
               vision_config=vc, vision_feature_layer=-2,
               vision_feature_select_strategy="default")
    pp = dict(crop_size=dict(height=tile, width=tile), do_center_crop=True, do_convert_rgb=True,
              do_normalize=True, do_rescale=True, do_resize=True,
              image_mean=[0.48145466, 0.4578275, 0.40821073],
              image_processor_type="LlavaNextVideoImageProcessor",
              image_std=[0.26862954, 0.26130258, 0.27577711], resample=3,
              rescale_factor=1 / 255, size=dict(shortest_edge=tile))
    W = ref.random_weights(rng, vc, tc)
    os.makedirs(outdir, exist_ok=True)
    for name, obj in (("config.json", cfg), ("preprocessor_config.json", pp),
                      ("generation_config.json", dict(bos_token_id=1, eos_token_id=2,
                                                      pad_token_id=0))):
        with open(os.path.join(outdir, name), "w") as f:
            json.dump(obj, f, indent=1)
    ref.write_safetensors(os.path.join(outdir, "model.safetensors"), W)
    w, h = size_wh
    yy, xx = np.mgrid[0:h, 0:w]
    for t in range(n_frames):  # a square moving right over a gradient, a flickering corner
        img = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1),
                        (xx + yy + 11 * t) % 256], -1).astype(np.uint8)
        x0 = t * (w - h // 3) // max(1, n_frames - 1)
        img[h // 3:2 * h // 3, x0:x0 + h // 3] = rng.integers(0, 256, 3).astype(np.uint8)
        img[:4, :4] = 255 * (t % 2)
        Image.fromarray(img).save(os.path.join(outdir, "frame_%02d.png" % t))
    per_frame = ((tile // patch) // stride) ** 2
    probe = run_case(outdir, [1, 5, 6] + [98] * (n_sample * per_frame) + [7, 8, 9], 8, n_sample)
    ref.write_safetensors(os.path.join(outdir, "io.safetensors"), probe)
    case = dict(case=os.path.basename(os.path.normpath(outdir)), seed=seed,
                model_class="transformers.LlavaNextVideoForConditionalGeneration",
                description="LLaVA-NeXT-Video variant made by tests/python/"
                            "llava_next_video_ref.py (an independent PyTorch float64 "
                            "reference, not HF transformers): %d frames of %dx%d (WxH) sampled "
                            "to %d (indices %s), tile %d, patch %d, spatial_pool_mode '%s' "
                            "stride %d; %d video tokens." %
                            (n_frames, w, h, n_sample, probe["frame_indices"].tolist(), tile,
                             patch, mode, stride, n_sample * per_frame),
                tolerance=dict(advice="float32 port vs float64 reference: |c - ref| <= 1e-4 * "
                                      "max(1, |ref|); token ids exact"),
                tensors={k: dict(dtype=str(v.dtype), shape=list(v.shape))
                         for k, v in probe.items()},
                files=sorted(os.listdir(outdir)) + ["case.json"])
    with open(os.path.join(outdir, "case.json"), "w") as f:
        json.dump(case, f, indent=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--frames", type=int, default=11)
    ap.add_argument("--sample", type=int, default=3)
    ap.add_argument("--size", default="30x45")
    ap.add_argument("--tile", type=int, default=24)
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--stride", type=int, default=3)
    ap.add_argument("--mode", default="max", choices=["average", "max"])
    a = ap.parse_args(argv)
    make_case(a.outdir, a.seed, a.frames, a.sample, [int(x) for x in a.size.split("x")],
              a.tile, a.patch, a.stride, a.mode)


if __name__ == "__main__":
    sys.exit(main())
