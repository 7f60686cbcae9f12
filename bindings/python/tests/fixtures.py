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
SHARED = os.environ.get("MM_SHARED_DIR") or os.path.join(os.path.dirname(ROOT), "shared")
VECTORS = os.path.join(SHARED, "vectors", "hf")

sys.path.insert(0, os.path.join(ROOT, "tools"))
import gguf  # noqa: E402  (tools/gguf.py: the tree's independent GGUF reader/writer)

_tmp = tempfile.mkdtemp(prefix="libmm-pytest-")
atexit.register(shutil.rmtree, _tmp, True)
_converted = {}


def tmp_path(name):
    return os.path.join(_tmp, name)


def converted(case, *extra):
    """{'model': path[, 'mmproj': path]} of the shared HF case `case` converted to GGUF."""
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
    return len(gguf.GGUFReader(path).tensors)
