"""libmm's C GGUF reader/writer against the independent Python one (tools/gguf.py), run by
tests/check_gguf_interop.sh after `make` has built tests/gguf_tool.

1. Python writes files holding every metadata type (nested arrays included) and tensors of
   every supported type (f16 and bf16 rounded by numpy, Q8_0/Q4_0 made by Python's quantizers);
   `gguf_tool dump` (C getters and mmi_tensor_to_f32) must print exactly what Python's reader
   decodes: integers, strings' bytes, and every float's bit pattern.
2. `gguf_tool copy` (C reader -> C writer) must reproduce each file byte for byte, which checks
   the writer's layout (header, strings, tensor infos, offsets, padding) against Python's.
3. The same for the llama.cpp vocab files in tests/vectors/tokenizer and for the files
   tools/convert_hf_to_gguf.py makes (--outtype f16) from every case in tests/vectors/hf.
4. `gguf_tool halve` rounds 200k f32 values (random bit patterns over the whole range, plus
   every rounding edge) to f16 and bf16 with the C writer; the bits must equal numpy's
   float16 cast and torch's bfloat16 cast (NaNs: must stay NaN).
"""
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from gguf import GGUFReader, GGUFWriter, _pack_value  # noqa: E402

# MM_TEST_BIN: where the build put the test programs (meson: its build folder).
TOOL = os.path.join(os.environ.get("MM_TEST_BIN", os.path.join(ROOT, "tests")), "gguf_tool")
VECTORS = os.environ.get("MM_VECTORS_DIR") or os.path.join(ROOT, "tests", "vectors")


def expected_dump(path):
    """The dump gguf_tool should print, decoded by tools/gguf.py."""
    r = GGUFReader(path)
    lines = ["version %d" % r.version]
    for key, v in r.kv.items():
        t = r.types[key]
        if t == "str":
            text = "str s" + v.encode("utf-8", "surrogateescape").hex()
        elif t == "bool":
            text = "bool %d" % v
        elif t == "f32":
            text = "f32 %08x" % struct.unpack("<I", struct.pack("<f", v))[0]
        elif t == "f64":
            text = "f64 %016x" % struct.unpack("<Q", struct.pack("<d", v))[0]
        elif not t.startswith("["):
            text = "%s %d" % (t, v)
        elif t == "[str]":
            text = "[str]" + "".join(" s" + s.encode("utf-8", "surrogateescape").hex() for s in v)
        elif t.startswith("[[") or t in ("[bool]", "[f64]"):
            elem = "array" if t.startswith("[[") else t[1:-1]
            text = "[%s] raw %s" % (elem, _pack_value(v, t).hex())
        elif t == "[f32]":
            text = "[f32]" + "".join(" %08x" % struct.unpack("<I", struct.pack("<f", x))[0] for x in v)
        else:
            text = t + "".join(" %d" % x for x in v)
        lines.append("kv %s %s" % (key, text))
    for name, arr in r.tensors.items():
        bits = np.ascontiguousarray(np.asarray(arr, dtype=np.float32)).reshape(-1).view("<u4")
        lines.append("tensor %s %s %s%s" % (name, r.tensor_types[name].upper(),
                                            ",".join(str(n) for n in r.tensor_ne[name]),
                                            "".join(" %08x" % b for b in bits)))
    return lines


def write_samples(directory):
    rng = np.random.default_rng(1234)
    w = GGUFWriter(os.path.join(directory, "every_type.gguf"), arch="llama")
    for t, v in (("u8", 255), ("i8", -128), ("u16", 65535), ("i16", -32768), ("u32", 4294967295),
                 ("i32", -2147483648), ("u64", 2**63 - 1), ("i64", -2**63), ("f32", 0.1),
                 ("f64", -1e-300), ("bool", True), ("str", "h\u00e9llo \u2581world")):
        w.add("s." + t, v, type=t)
    w.add("s.false", False, type="bool")
    w.add("s.empty", "", type="str")
    for t, v in (("u8", [0, 7, 255]), ("i8", [-128, 127]), ("u16", [1, 65535]),
                 ("i16", [-32768, 5]), ("u32", [0, 4294967295]), ("i32", [-1, 2**31 - 1]),
                 ("u64", [0, 2**63 - 1]), ("i64", [-2**63, 2**63 - 1]), ("f32", [1.5, -0.0, 1e-40]),
                 ("f64", [3.141592653589793, 1e300]), ("bool", [True, False, True]),
                 ("str", ["<unk>", "", "\u2581the", "\u00e9"]), ("i32", [])):
        w.add("a." + t + (".empty" if not v else ""), v, type="[%s]" % t)
    w.add("n.nested", [[1, 2], [], [3]], type="[[u16]]")
    w.add("n.strings", [["a", "bc"], ["d"]], type="[[str]]")
    w.add("n.deep", [[[1.0, 2.0]], [[-1.0]]], type="[[[f32]]]")
    w.add("n.empty", [], type="[[u8]]")
    f16 = rng.standard_normal((3, 5)).astype(np.float32)
    f16[0, :4] = [65504.0, 70000.0, 3e-8, -6e-5]        # max, overflow to inf, subnormals
    w.add_tensor("t.f32", rng.standard_normal((2, 3, 4)).astype(np.float32), "f32")
    w.add_tensor("t.f16", f16, "f16")
    w.add_tensor("t.bf16", rng.standard_normal((7,)).astype(np.float32) * 1e20, "bf16")
    w.add_tensor("t.q8_0", rng.standard_normal((3, 64)).astype(np.float32), "q8_0")
    w.add_tensor("t.q4_0", rng.standard_normal((2, 2, 32)).astype(np.float32), "q4_0")
    w.add_tensor("t.row", rng.standard_normal((1, 1, 1, 9)).astype(np.float32), "f32")
    w.write()

    w = GGUFWriter(os.path.join(directory, "align64.gguf"), arch="clip")
    w.add("clip.has_vision_encoder", True)
    w.add_tensor("v.a", rng.standard_normal((5,)).astype(np.float32), "f16")
    w.add_tensor("v.b", rng.standard_normal((2, 32)).astype(np.float32), "q8_0")
    w.add("general.alignment", 64, type="u32")        # last, where libmm's writer puts it
    w.write()
    return [os.path.join(directory, n) for n in ("every_type.gguf", "align64.gguf")]


def check(path, directory):
    """Returns a list of problems with one file."""
    problems = []
    out = subprocess.run([TOOL, "dump", path], capture_output=True)
    if out.returncode != 0:
        return ["%s: gguf_tool dump failed: %s" % (path, out.stderr.decode())]
    got = out.stdout.decode().splitlines()
    want = expected_dump(path)
    if got != want:
        for i, (g, e) in enumerate(zip(got + [""] * len(want), want + [""] * len(got))):
            if g != e:
                problems.append("%s: dump line %d differs:\n  C:      %s\n  Python: %s"
                                % (path, i + 1, g[:300], e[:300]))
                break
    copy = os.path.join(directory, "copy.gguf")
    out = subprocess.run([TOOL, "copy", path, copy], capture_output=True)
    if out.returncode != 0:
        problems.append("%s: gguf_tool copy failed: %s" % (path, out.stderr.decode()))
    else:
        a, b = open(path, "rb").read(), open(copy, "rb").read()
        if a != b:
            first = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
            problems.append("%s: copy differs from the original at byte %d (sizes %d, %d)"
                            % (path, first, len(a), len(b)))
    print("%-60s %d keys, %d tensors: %s" % (os.path.relpath(path, directory) if path.startswith(directory) else os.path.basename(path), len(want) - 1 - sum(
        l.startswith("tensor") for l in want), sum(l.startswith("tensor") for l in want),
        "ok" if not problems else "FAILED"))
    return problems


def check_rounding(directory):
    rng = np.random.default_rng(99)
    bits = rng.integers(0, 2**32, 200000, dtype=np.uint64).astype(np.uint32)
    # Dense coverage of f16's subnormal/normal/overflow range: exponents 2^-27 .. 2^17.
    bits[:100000] = ((rng.integers(100, 145, 100000) << 23) | rng.integers(0, 2**23, 100000)
                     | (rng.integers(0, 2, 100000) << 31)).astype(np.uint32)
    # Ties and near-ties for both roundings.
    base = rng.integers(0, 2**32, 2000, dtype=np.uint64).astype(np.uint32)
    bits[100000:102000] = (base & ~np.uint32(0x1fff)) | 0x1000
    bits[102000:104000] = (base & ~np.uint32(0xffff)) | 0x8000
    values = bits.view(np.float32)
    src, out = os.path.join(directory, "f32.gguf"), os.path.join(directory, "halved.gguf")
    w = GGUFWriter(src)
    w.add_tensor("x", values, "f32")
    w.write()
    run = subprocess.run([TOOL, "halve", src, out], capture_output=True)
    if run.returncode != 0:
        return ["gguf_tool halve failed: %s" % run.stderr.decode()]
    raw = open(out, "rb").read()
    r = GGUFReader(out)
    problems = []
    nan = np.isnan(values)
    import torch
    with np.errstate(over="ignore"):
        want = {"x.f16": values.astype("<f2").view("<u2"),
                "x.bf16": torch.from_numpy(values.copy()).to(torch.bfloat16).view(torch.int16)
                .numpy().view("<u2")}
    for name, expect in want.items():
        start = r.tensor_offsets[name]
        got = np.frombuffer(raw[start:start + 2 * len(values)], "<u2")
        exp_mask = 0x7c00 if name == "x.f16" else 0x7f80
        got_nan = ((got & exp_mask) == exp_mask) & ((got & (0x7fff & ~exp_mask)) != 0)
        bad = np.flatnonzero(np.where(nan, ~got_nan, got != expect))
        print("%-60s %d values: %d differ" % ("f32 -> " + name[2:] + " rounding", len(values), len(bad)))
        if len(bad):
            i = bad[0]
            problems.append("%s: f32 0x%08x -> 0x%04x, expected 0x%04x (%d values differ)"
                            % (name, bits[i], got[i], expect[i], len(bad)))
    return problems


def main():
    vocab_dir = os.path.join(VECTORS, "tokenizer")
    vocab = sorted(os.path.join(vocab_dir, n) for n in os.listdir(vocab_dir) if n.endswith(".gguf")) \
        if os.path.isdir(vocab_dir) else []
    if not vocab:
        print("no llama.cpp vocab files under %s" % vocab_dir)
        return 1
    hf = os.path.join(VECTORS, "hf")
    cases = sorted(n for n in os.listdir(hf) if os.path.isfile(os.path.join(hf, n, "model.safetensors")))
    # Only the model classes the converter knows: a case of a family libmm does not convert yet is
    # named, not counted (tests/hf_parity checks that each supported class converts).
    import convert_hf_to_gguf as conv
    unknown = [c for c in cases if not conv.supports(os.path.join(hf, c))]
    for c in unknown:
        print("%-60s not converted: the converter does not support its model class" % c)
    cases = [c for c in cases if c not in unknown]
    with tempfile.TemporaryDirectory() as directory:
        problems = []
        converted = []
        for case in cases:
            out = os.path.join(directory, case)
            run = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_hf_to_gguf.py"),
                                  "-o", out, "--outtype", "f16", os.path.join(hf, case)],
                                 capture_output=True)
            if run.returncode != 0:
                problems.append("converting %s failed: %s" % (case, run.stderr.decode()[-500:]))
                continue
            converted += sorted(os.path.join(out, n) for n in os.listdir(out) if n.endswith(".gguf"))
        for path in write_samples(directory) + vocab + converted:
            problems += check(path, directory)
        problems += check_rounding(directory)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
