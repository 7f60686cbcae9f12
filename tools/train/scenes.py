#!/usr/bin/python3
"""Synthetic scenes: coloured shapes on a 3x3 grid, with captions and question/answer pairs.

The grammar (cells, shapes, colours, sizes, question templates, answer words) is documented in
docs/scenes.md; keep the two in step. Everything is a pure function of (seed, index), so a scene set
is reproducible: scene i of a set with seed s is drawn from np.random.default_rng([s, i]).

Command line: write a held-out set as PNG files plus a TSV of `image<TAB>question<TAB>answer`:
    tools/train/scenes.py --seed 1001 --count 500 --out DIR
"""
import argparse
import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 96            # pixels; equals the model's image_size, so no resize is ever needed
GRID = 3                   # 3x3 cells, one object at most per cell
CELL = IMAGE_SIZE // GRID  # 32 pixels: one ViT patch per cell
SUPERSAMPLE = 4            # shapes are drawn 4x larger, then box-filtered down (anti-aliasing)

SHAPES = ["circle", "square", "triangle", "star", "diamond", "cross"]
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars",
           "diamond": "diamonds", "cross": "crosses"}
COLOURS = {  # base RGB; each object jitters every channel by up to COLOUR_JITTER
    "red": (220, 40, 40), "orange": (245, 140, 20), "yellow": (240, 225, 40),
    "green": (40, 180, 60), "blue": (50, 100, 235), "purple": (150, 60, 200),
    "white": (240, 240, 240)}
COLOUR_JITTER = 15
SIZES = {"small": (6.0, 8.5), "big": (11.0, 14.5)}  # radius range in pixels (cell half is 16)
MAX_OFFSET = 4.0           # the most a shape's centre moves away from its cell's centre, in pixels
# cell index = row * 3 + col; name used in captions and answers
POSITIONS = ["top left", "top", "top right", "left", "centre", "right",
             "bottom left", "bottom", "bottom right"]
BACKGROUNDS = [(10, 10, 10), (40, 40, 40), (60, 60, 66), (18, 24, 58), (16, 50, 50),
               (56, 36, 22), (44, 48, 18), (50, 20, 40)]  # all dark, so every colour stands out
MAX_OBJECTS = 4
NUMBERS = ["zero", "one", "two", "three", "four"]

QUESTION_TYPES = ["caption", "count", "colour", "shape", "position", "exist"]


def article(word):
    return "an" if word[0] in "aeiou" else "a"


# ---------------------------------------------------------------- scene drawing

def sample_scene(rng):
    """A scene as plain data: background and objects (shape, colour, size, cell, geometry)."""
    n = int(rng.integers(1, MAX_OBJECTS + 1))
    cells = sorted(int(c) for c in rng.choice(GRID * GRID, size=n, replace=False))
    objects = []
    for cell in cells:
        size = str(rng.choice(list(SIZES)))
        lo, hi = SIZES[size]
        r = float(rng.uniform(lo, hi))
        slack = min(MAX_OFFSET, CELL / 2 - r - 1.0)  # the whole shape stays inside its cell
        row, col = divmod(cell, GRID)
        colour = str(rng.choice(list(COLOURS)))
        objects.append({
            "shape": str(rng.choice(SHAPES)),
            "colour": colour,
            "size": size,
            "cell": cell,
            "cx": (col + 0.5) * CELL + float(rng.uniform(-slack, slack)),
            "cy": (row + 0.5) * CELL + float(rng.uniform(-slack, slack)),
            "r": r,
            "angle": float(rng.uniform(-10.0, 10.0)),
            "rgb": [int(np.clip(v + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1), 0, 255))
                    for v in COLOURS[colour]],
        })
    background = {
        "rgb": [int(v) for v in BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]],
        "rgb2": [int(v) for v in BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]],
        "gradient": float(rng.uniform(0, 2 * math.pi)) if rng.random() < 0.5 else None,
        "noise": float(rng.uniform(0, 6)) if rng.random() < 0.5 else 0.0,
        "noise_seed": int(rng.integers(2**31)),
    }
    return {"background": background, "objects": objects}


def shape_polygon(shape, cx, cy, r, angle_deg):
    """Vertices of a shape inscribed in the circle (cx, cy, r), rotated by angle_deg."""
    def ring(radii, start_deg):
        k = len(radii)
        return [(cx + rad * math.cos(math.radians(start_deg + angle_deg + 360.0 * i / k)),
                 cy + rad * math.sin(math.radians(start_deg + angle_deg + 360.0 * i / k)))
                for i, rad in enumerate(radii)]
    if shape == "square":
        return ring([r] * 4, 45)
    if shape == "diamond":
        return ring([r] * 4, 0)
    if shape == "triangle":
        return ring([r] * 3, -90)
    if shape == "star":
        return ring([r, 0.45 * r] * 5, -90)
    if shape == "cross":  # plus sign: arms of half-width w reaching r
        w = 0.32 * r
        pts = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r),
               (-w, -r), (-w, -w), (-r, -w), (-r, w), (-w, w), (-w, r)]
        c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]
    raise ValueError(shape)


def render(scene):
    """The scene as an (IMAGE_SIZE, IMAGE_SIZE, 3) uint8 array (exactly what its PNG holds)."""
    bg = scene["background"]
    S = IMAGE_SIZE
    ys, xs = np.mgrid[0:S, 0:S].astype(np.float64) / (S - 1)
    if bg["gradient"] is None:
        t = np.zeros((S, S))
    else:
        t = (xs - 0.5) * math.cos(bg["gradient"]) + (ys - 0.5) * math.sin(bg["gradient"]) + 0.5
        t = np.clip(t, 0, 1)
    a, b = np.array(bg["rgb"], float), np.array(bg["rgb2"], float)
    base = a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]
    big = Image.fromarray(np.round(base).astype(np.uint8)).resize(
        (S * SUPERSAMPLE, S * SUPERSAMPLE), Image.NEAREST)
    draw = ImageDraw.Draw(big)
    k = SUPERSAMPLE
    for o in scene["objects"]:
        colour = tuple(o["rgb"])
        if o["shape"] == "circle":
            draw.ellipse([k * (o["cx"] - o["r"]), k * (o["cy"] - o["r"]),
                          k * (o["cx"] + o["r"]), k * (o["cy"] + o["r"])], fill=colour)
        else:
            pts = shape_polygon(o["shape"], k * o["cx"], k * o["cy"], k * o["r"], o["angle"])
            draw.polygon(pts, fill=colour)
    img = np.asarray(big.resize((S, S), Image.BOX), dtype=np.float64)
    if bg["noise"] > 0:
        noise = np.random.default_rng(bg["noise_seed"]).normal(0, bg["noise"], img.shape)
        img = img + noise
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- language

def describe_object(o):
    return f"a {o['size']} {o['colour']} {o['shape']} at the {POSITIONS[o['cell']]}"


def caption(scene):
    """Objects in reading order (top row first, left to right), joined by ', ' and ' and '."""
    parts = [describe_object(o) for o in sorted(scene["objects"], key=lambda o: o["cell"])]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def question_type(question):
    """The question type, read off the question's first words (the rule docs/scenes.md states)."""
    q = question.strip().lower()
    if q.startswith("describe") or q.startswith("what is in"):
        return "caption"
    if q.startswith("how many"):
        return "count"
    if q.startswith("what colour"):
        return "colour"
    if q.startswith("what shape"):
        return "shape"
    if q.startswith("where"):
        return "position"
    if q.startswith("is there"):
        return "exist"
    return "other"


def questions_of_type(scene, qtype, rng):
    """One (question, answer) pair of the given type, drawn so answers stay balanced."""
    objs = scene["objects"]
    shapes = [o["shape"] for o in objs]
    colours = [o["colour"] for o in objs]
    pairs = [(o["colour"], o["shape"]) for o in objs]
    if qtype == "caption":
        q = "Describe the image." if rng.random() < 0.5 else "What is in the image?"
        return q, caption(scene)
    if qtype == "count":
        kind = rng.random()
        if kind < 0.2:
            return "How many objects are there?", NUMBERS[len(objs)]
        if kind < 0.6:
            # half the time a shape that is present, so counts above zero are common
            s = str(rng.choice(shapes)) if rng.random() < 0.7 else str(rng.choice(SHAPES))
            return f"How many {PLURALS[s]} are there?", NUMBERS[shapes.count(s)]
        c = str(rng.choice(colours)) if rng.random() < 0.7 else str(rng.choice(list(COLOURS)))
        return f"How many {c} objects are there?", NUMBERS[colours.count(c)]
    if qtype == "colour":
        unique = [o for o in objs if shapes.count(o["shape"]) == 1]
        if unique and rng.random() < 0.5:
            o = unique[int(rng.integers(len(unique)))]
            return f"What colour is the {o['shape']}?", o["colour"]
        o = objs[int(rng.integers(len(objs)))]
        return f"What colour is the object at the {POSITIONS[o['cell']]}?", o["colour"]
    if qtype == "shape":
        unique = [o for o in objs if colours.count(o["colour"]) == 1]
        if unique and rng.random() < 0.5:
            o = unique[int(rng.integers(len(unique)))]
            return f"What shape is the {o['colour']} object?", o["shape"]
        o = objs[int(rng.integers(len(objs)))]
        return f"What shape is at the {POSITIONS[o['cell']]}?", o["shape"]
    if qtype == "position":
        unique_shape = [o for o in objs if shapes.count(o["shape"]) == 1]
        unique_pair = [o for o in objs if pairs.count((o["colour"], o["shape"])) == 1]
        if unique_shape and rng.random() < 0.5:
            o = unique_shape[int(rng.integers(len(unique_shape)))]
            return f"Where is the {o['shape']}?", POSITIONS[o["cell"]]
        o = unique_pair[int(rng.integers(len(unique_pair)))] if unique_pair else objs[0]
        if pairs.count((o["colour"], o["shape"])) == 1:
            return f"Where is the {o['colour']} {o['shape']}?", POSITIONS[o["cell"]]
        return f"Where is the {o['shape']}?", POSITIONS[o["cell"]]  # unreachable in practice
    if qtype == "exist":
        kind = rng.random()
        if kind < 0.2:
            cell = int(rng.integers(GRID * GRID))
            present = any(o["cell"] == cell for o in objs)
            return f"Is there anything at the {POSITIONS[cell]}?", "yes" if present else "no"
        want_yes = rng.random() < 0.5
        if kind < 0.45:  # shape only
            if want_yes:
                s = str(rng.choice(shapes))
            else:
                absent = [s for s in SHAPES if s not in shapes]
                s = str(rng.choice(absent))
            return f"Is there a {s}?", "yes" if s in shapes else "no"
        # colour + shape; negatives are hard ones when possible (colour or shape present elsewhere)
        if want_yes:
            c, s = pairs[int(rng.integers(len(pairs)))]
        else:
            for _ in range(20):
                c = str(rng.choice(colours)) if rng.random() < 0.5 else str(rng.choice(list(COLOURS)))
                s = str(rng.choice(shapes)) if rng.random() < 0.5 else str(rng.choice(SHAPES))
                if (c, s) not in pairs:
                    break
        return f"Is there {article(c)} {c} {s}?", "yes" if (c, s) in pairs else "no"
    raise ValueError(qtype)


def scene_at(seed, index):
    return sample_scene(np.random.default_rng([seed, index]))


def heldout_questions(scene, seed, index):
    """One question of every type for a held-out scene (deterministic)."""
    rng = np.random.default_rng([seed, index, 1])
    return [(t,) + questions_of_type(scene, t, rng) for t in QUESTION_TYPES]


def write_set(seed, count, out):
    """PNG files, questions.tsv (image, question, answer), captions.tsv and scenes.jsonl."""
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    with open(os.path.join(out, "questions.tsv"), "w") as tsv, \
         open(os.path.join(out, "captions.tsv"), "w") as caps, \
         open(os.path.join(out, "scenes.jsonl"), "w") as meta:
        for i in range(count):
            scene = scene_at(seed, i)
            name = f"images/scene_{seed}_{i:05d}.png"
            Image.fromarray(render(scene)).save(os.path.join(out, name))
            for _, q, a in heldout_questions(scene, seed, i):
                tsv.write(f"{name}\t{q}\t{a}\n")
            caps.write(f"{name}\t{caption(scene)}\n")
            meta.write(json.dumps({"image": name, **scene}) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    write_set(args.seed, args.count, args.out)


if __name__ == "__main__":
    main()
