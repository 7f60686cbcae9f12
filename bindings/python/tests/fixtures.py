"""Shared test material: the source tree's paths, the HF reference cases converted to GGUF once
per test run (with the tree's own converter), and their reference tensors."""
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
VECTORS_DIR = os.environ.get("MM_VECTORS_DIR") or os.path.join(ROOT, "tests", "vectors")
VECTORS = os.path.join(VECTORS_DIR, "hf")

_tmp = tempfile.mkdtemp(prefix="libmm-pytest-")
atexit.register(shutil.rmtree, _tmp, True)
_converted = {}


def tmp_path(name):
    return os.path.join(_tmp, name)


def converted(case, *extra):
    """{'model': path[, 'mmproj': path]} of the HF reference case `case` (tests/vectors/hf)
    converted to GGUF."""
    key = (case,) + extra
    if key not in _converted:
        out = tmp_path("-".join(key).replace("/", "_"))
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_hf_to_gguf.py"),
                        os.path.join(VECTORS, case), "-o", out, *extra],
                       check=True, capture_output=True)
        files = {"model": os.path.join(out, "model.gguf")}
        if os.path.exists(os.path.join(out, "mmproj.gguf")):
            files["mmproj"] = os.path.join(out, "mmproj.gguf")
        _converted[key] = files
    return _converted[key]


def case_json(case):
    with open(os.path.join(VECTORS, case, "case.json")) as f:
        return json.load(f)


def reference(case):
    """The case's io.safetensors as {name: numpy array}."""
    import numpy as np
    path = os.path.join(VECTORS, case, "io.safetensors")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4", "U8": "u1", "U16": "<u2"}
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        begin, end = e["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype=dtypes[e["dtype"]]).reshape(e["shape"])
    return out


def n_tensors(path):
    """Tensor count of a GGUF file, read with tools/gguf.py (the tree's independent reader)."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import gguf
    return len(gguf.GGUFReader(path).tensors)


def tiny_llama_with_vocab(vocab="ggml-vocab-llama-spm.gguf", n_embd=16, n_layer=1, n_ctx=256,
                          seed=0):
    """A tiny random-weight llama (written with tools/gguf.py) carrying the tokenizer of a
    llama.cpp vocabulary file from tests/vectors/tokenizer, so text, chat templates and
    detokenizing can run."""
    key = ("tiny", vocab, n_embd, n_layer, n_ctx, seed)
    if key in _converted:
        return _converted[key]
    import numpy as np
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import gguf
    src = gguf.GGUFReader(os.path.join(VECTORS_DIR, "tokenizer", vocab))
    n_vocab = len(src.kv["tokenizer.ggml.tokens"])
    path = tmp_path("tiny-%s-%d.gguf" % (vocab, seed))
    w = gguf.GGUFWriter(path, arch="llama")
    for k, v in src.kv.items():
        if k.startswith("tokenizer."):
            w.add(k, v, type=src.types[k])
    n_head, n_ff = 2, 2 * n_embd
    for k, v in [("vocab_size", n_vocab), ("context_length", n_ctx),
                 ("embedding_length", n_embd), ("block_count", n_layer),
                 ("feed_forward_length", n_ff), ("attention.head_count", n_head),
                 ("attention.head_count_kv", n_head), ("rope.dimension_count", n_embd // n_head)]:
        w.add("llama." + k, v, type="u32")
    w.add("llama.attention.layer_norm_rms_epsilon", 1e-5, type="f32")
    w.add("llama.rope.freq_base", 10000.0, type="f32")
    rng = np.random.default_rng(seed)

    def rand(*shape, center=0.0, scale=0.5):
        return (center + scale * rng.standard_normal(shape)).astype(np.float32)

    w.add_tensor("token_embd.weight", rand(n_vocab, n_embd))
    for i in range(n_layer):
        b = "blk.%d." % i
        w.add_tensor(b + "attn_norm.weight", rand(n_embd, center=1.0, scale=0.1))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(b + name + ".weight", rand(n_embd, n_embd))
        w.add_tensor(b + "ffn_norm.weight", rand(n_embd, center=1.0, scale=0.1))
        w.add_tensor(b + "ffn_gate.weight", rand(n_ff, n_embd))
        w.add_tensor(b + "ffn_up.weight", rand(n_ff, n_embd))
        w.add_tensor(b + "ffn_down.weight", rand(n_embd, n_ff))
    w.add_tensor("output_norm.weight", rand(n_embd, center=1.0, scale=0.1))
    w.add_tensor("output.weight", rand(n_vocab, n_embd, scale=2.0))
    w.write()
    _converted[key] = path
    return path
