#!/usr/bin/python3
"""GGUF v3 reader and writer in pure Python + numpy (libmm tooling).

Writing
    from gguf import GGUFWriter
    w = GGUFWriter("out.gguf", arch="llama")          # sets general.architecture
    w.add("llama.block_count", 2)                       # type inferred (see below)
    w.add("llama.rope.freq_base", 1e4, type="f32")      # or given explicitly
    w.add("clip.vision.feature_layer", [23], type="[i32]")
    w.add_tensor("token_embd.weight", emb, "f16")       # numpy array in HF (row-major) shape
    w.write()

    Metadata types are named "u8" "i8" "u16" "i16" "u32" "i32" "u64" "i64" "f32" "f64" "bool"
    "str"; an array is written "[T]", nested arrays "[[T]]" and so on. Without `type`, a value's
    type is inferred: bool -> bool, int -> u32 (i32 if negative, u64/i64 if it does not fit),
    float -> f32, str -> str, list -> array whose elements follow the same rules except that
    ints become i32 (llama.cpp's choice for token types and layer lists).

    A tensor is stored with ne = reversed(array.shape) (ggml order: ne[0] fastest), so an HF
    Linear weight [out, in] becomes ne = [in, out] with no transpose. Tensor types: "f32",
    "f16", "bf16" (round to nearest even), "q8_0", "q4_0" (ggml's reference quantizers; the
    last dimension must be a multiple of 32). `add_tensor_raw` writes bytes as given, for tests.
    Data are aligned to `general.alignment` (default 32; set it with w.add(...,"u32")).

Reading
    from gguf import GGUFReader
    r = GGUFReader("out.gguf")
    r.version            # 2 or 3
    r.kv[key]            # python value (lists for arrays, str for strings)
    r.types[key]         # type name in the notation above, e.g. "u32", "[str]"
    r.tensors[name]      # numpy array, shape = reversed(ne): F32 -> float32 (a read-only view
                         # of the mapped file), F16 -> float16, BF16/Q8_0/Q4_0 -> float32,
                         # I8..I64/F64 -> their numpy type; other quantized types ->
                         # the raw blocks as a flat uint8 array
    r.tensor_types[name] # "f32", "f16", "bf16", "q8_0", "q4_0", ...
    r.tensor_ne[name]    # ne list as stored
    r.tensor_offsets[name] # absolute byte offset of the data in the file

    Malformed files raise GGUFError (a ValueError) naming the problem and the byte offset.

Dump a file: tools/gguf.py FILE.gguf

Strings are UTF-8; bytes that are not valid UTF-8 round-trip through 'surrogateescape'.
Only little-endian files are supported (as llama.cpp writes them).
"""

import mmap
import struct
import sys

import numpy as np

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32

# GGUF metadata value types (spec numbering)
_VT = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6, "bool": 7,
       "str": 8, "array": 9, "u64": 10, "i64": 11, "f64": 12}
_VT_NAME = {v: k for k, v in _VT.items()}
_SCALAR_FMT = {"u8": "<B", "i8": "<b", "u16": "<H", "i16": "<h", "u32": "<I", "i32": "<i",
               "f32": "<f", "bool": "<?", "u64": "<Q", "i64": "<q", "f64": "<d"}
_INT_RANGE = {t: (-(1 << (b - 1)), (1 << (b - 1)) - 1) if t[0] == "i" else (0, (1 << b) - 1)
              for t, b in (("u8", 8), ("i8", 8), ("u16", 16), ("i16", 16), ("u32", 32),
                           ("i32", 32), ("u64", 64), ("i64", 64))}
_SCALAR_NP = {"u8": "<u1", "i8": "<i1", "u16": "<u2", "i16": "<i2", "u32": "<u4",
              "i32": "<i4", "f32": "<f4", "bool": "<u1", "u64": "<u8", "i64": "<i8",
              "f64": "<f8"}

# ggml tensor types: name -> (id, elements per block, bytes per block)
GGML_TYPES = {"f32": (0, 1, 4), "f16": (1, 1, 2), "q4_0": (2, 32, 18), "q4_1": (3, 32, 20),
              "q5_0": (6, 32, 22), "q5_1": (7, 32, 24), "q8_0": (8, 32, 34),
              "q8_1": (9, 32, 36), "q2_k": (10, 256, 84), "q3_k": (11, 256, 110),
              "q4_k": (12, 256, 144), "q5_k": (13, 256, 176), "q6_k": (14, 256, 210),
              "q8_k": (15, 256, 292), "iq4_nl": (20, 32, 18), "iq4_xs": (23, 256, 136),
              "i8": (24, 1, 1), "i16": (25, 1, 2), "i32": (26, 1, 4),
              "i64": (27, 1, 8), "f64": (28, 1, 8), "bf16": (30, 1, 2)}
_GGML_NAME = {v[0]: k for k, v in GGML_TYPES.items()}
_PLAIN_NP = {"f32": "<f4", "f16": "<f2", "i8": "<i1", "i16": "<i2", "i32": "<i4",
             "i64": "<i8", "f64": "<f8"}
MAX_DIMS = 4

FILE_TYPE = {"f32": 0, "f16": 1, "q8_0": 7, "bf16": 32}   # general.file_type values


class GGUFError(ValueError):
    pass


# ------------------------------------------------------------------------------------------
# element conversions shared by reader and writer

def f32_to_bf16_bits(a):
    """float32 array -> uint16 bf16 bits, round to nearest even, NaN kept quiet."""
    u = np.ascontiguousarray(a, dtype="<f4").view("<u4")
    rounded = ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype("<u2")
    nan = np.isnan(a.astype(np.float32, copy=False))
    return np.where(nan, ((u >> 16) | 64).astype("<u2"), rounded)


def bf16_bits_to_f32(bits):
    return (np.asarray(bits, dtype="<u2").astype("<u4") << 16).view("<f4")


def quantize_q8_0(a):
    """float32 [..., K] (K % 32 == 0) -> bytes: per 32 values an f16 scale d = amax/127 and
    32 int8 q = round(x/d)."""
    x = np.asarray(a, dtype=np.float32).reshape(-1, 32)
    d = np.abs(x).max(axis=1) / 127.0
    inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0).astype(np.float32)
    v = x * inv[:, None]
    q = (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int8)   # C roundf: half away from 0
    out = np.empty((x.shape[0], 34), np.uint8)
    out[:, :2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out.tobytes()


def dequantize_q8_0(buf, n):
    b = np.frombuffer(buf, np.uint8).reshape(-1, 34)[: n // 32]
    d = b[:, :2].copy().view("<f2").astype(np.float32)
    q = b[:, 2:].view(np.int8).astype(np.float32)
    return (q * d).reshape(-1)


def quantize_q4_0(a):
    """float32 [..., K] -> bytes: per 32 values an f16 scale d = m/-8 (m: the value of largest
    magnitude) and 16 bytes of 4-bit q = min(15, trunc(x/d + 8.5)); value j in the low nibble
    of byte j, value j+16 in the high nibble."""
    x = np.asarray(a, dtype=np.float32).reshape(-1, 32)
    m = x[np.arange(x.shape[0]), np.abs(x).argmax(axis=1)]
    d = m / -8.0
    inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0).astype(np.float32)
    q = np.minimum(15, (x * inv[:, None] + 8.5).astype(np.int8)).astype(np.uint8)
    out = np.empty((x.shape[0], 18), np.uint8)
    out[:, :2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
    return out.tobytes()


def dequantize_q4_0(buf, n):
    b = np.frombuffer(buf, np.uint8).reshape(-1, 18)[: n // 32]
    d = b[:, :2].copy().view("<f2").astype(np.float32)
    lo = (b[:, 2:] & 15).astype(np.float32) - 8
    hi = (b[:, 2:] >> 4).astype(np.float32) - 8
    return (np.concatenate([lo, hi], axis=1) * d).reshape(-1)


# ------------------------------------------------------------------------------------------
# writer

def _to_f16(a):
    with np.errstate(over="ignore"):        # beyond +-65504 becomes inf, as in C
        return np.ascontiguousarray(a, dtype="<f4").astype("<f2")


_ENCODERS = {
    "f32": lambda a: np.ascontiguousarray(a, dtype="<f4").tobytes(),
    "f16": lambda a: _to_f16(a).tobytes(),
    "bf16": lambda a: f32_to_bf16_bits(np.asarray(a, dtype=np.float32)).tobytes(),
    "q8_0": quantize_q8_0,
    "q4_0": quantize_q4_0,
}
for _t in ("i8", "i16", "i32", "i64", "f64"):
    _ENCODERS[_t] = (lambda npt: lambda a: np.ascontiguousarray(a, dtype=npt).tobytes())(_PLAIN_NP[_t])

def _infer_type(v, in_array=False):
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, (int, np.integer)):
        v = int(v)
        if in_array:
            return "i32" if -2**31 <= v < 2**31 else "i64"
        if 0 <= v < 2**32:
            return "u32"
        if -2**31 <= v < 2**31:
            return "i32"
        return "u64" if v >= 0 else "i64"
    if isinstance(v, (float, np.floating)):
        return "f32"
    if isinstance(v, str):
        return "str"
    if isinstance(v, (list, tuple, np.ndarray)):
        if len(v) == 0:
            raise GGUFError("cannot infer the element type of an empty array; give type=")
        sub = {_infer_type(e, True) for e in v}
        if sub == {"i32", "i64"}:
            sub = {"i64"}
        if len(sub) != 1:
            raise GGUFError("array elements of mixed types %s; give type=" % sorted(sub))
        return "[" + sub.pop() + "]"
    raise GGUFError("no GGUF type for a value of Python type %s" % type(v).__name__)


def _check_type_name(t):
    if t.startswith("["):
        if not t.endswith("]"):
            raise GGUFError("bad type name %r" % t)
        _check_type_name(t[1:-1])
    elif t not in _SCALAR_FMT and t != "str":
        raise GGUFError("unknown GGUF type name %r" % t)


def _pack_str(s):
    b = s.encode("utf-8", "surrogateescape") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _pack_value(v, t):
    if t == "str":
        return _pack_str(v)
    if t.startswith("["):
        sub = t[1:-1]
        head = struct.pack("<IQ", _VT["array"] if sub.startswith("[") else _VT[sub], len(v))
        if sub in _SCALAR_NP:
            if sub in _INT_RANGE:
                lo, hi = _INT_RANGE[sub]
                bad = [x for x in v if not lo <= int(x) <= hi]
                if bad:
                    raise GGUFError("array value %r does not fit type %s" % (bad[0], sub))
                return head + np.array([int(x) for x in v], dtype=_SCALAR_NP[sub]).tobytes()
            arr = np.asarray(v, dtype=bool if sub == "bool" else np.float64)
            return head + arr.astype(_SCALAR_NP[sub]).tobytes()
        return head + b"".join(_pack_value(e, sub) for e in v)
    if t == "bool":
        return struct.pack("<?", bool(v))
    try:
        return struct.pack(_SCALAR_FMT[t], v)
    except struct.error as e:
        raise GGUFError("value %r does not fit type %s: %s" % (v, t, e))


def _type_code(t):
    return _VT["array"] if t.startswith("[") else _VT[t]


class GGUFWriter:
    """Collects metadata and tensors, then writes one GGUF v3 file with write()."""

    def __init__(self, path, arch=None):
        self.path = path
        self.kv = {}                 # key -> (type name, value), in insertion order
        self.tensors = []            # (name, ne, ggml type id, byte size, producer of bytes)
        self._names = set()
        if arch is not None:
            self.add("general.architecture", arch, type="str")

    def add(self, key, value, type=None):
        if key in self.kv:
            raise GGUFError("duplicate metadata key %r" % key)
        t = type or _infer_type(value)
        _check_type_name(t)
        _pack_value(value, t)   # fail now on values that do not fit
        self.kv[key] = (t, value)

    def add_tensor(self, name, array, dtype="f32", shape=None):
        """array: a numpy array in HF/row-major shape, or a zero-argument function returning
        one (then `shape` is required and the data are produced only in write(), which keeps
        one tensor in memory at a time)."""
        if callable(array):
            if shape is None:
                raise GGUFError("tensor %s: a lazy tensor needs shape=" % name)
            get = array
        else:
            a = np.asarray(array)
            shape = a.shape
            get = lambda: a
        shape = tuple(int(d) for d in shape) or (1,)
        if len(shape) > MAX_DIMS:
            raise GGUFError("tensor %s has %d dims (at most %d)" % (name, len(shape), MAX_DIMS))
        if dtype not in _ENCODERS:
            raise GGUFError("tensor %s: cannot write type %r" % (name, dtype))
        if dtype in ("q8_0", "q4_0") and shape[-1] % 32:
            raise GGUFError("tensor %s: %s needs ne[0] %% 32 == 0, got %d"
                            % (name, dtype, shape[-1]))

        def produce():
            a = np.asarray(get())
            if a.size != int(np.prod(shape)):
                raise GGUFError("tensor %s: got %s, declared %s" % (name, a.shape, shape))
            return _ENCODERS[dtype](a)
        self._add(name, list(reversed(shape)), dtype, produce)

    def add_tensor_raw(self, name, ne, ggml_type, data):
        """Bytes exactly as given, or a function returning them when the file is written (one
        tensor in memory at a time); ne in ggml order; ggml_type a GGML_TYPES name or an id
        (with an id, data must be bytes)."""
        if callable(data):
            self._add(name, list(ne), ggml_type, data)
            return
        data = bytes(data)
        self._add(name, list(ne), ggml_type, lambda: data, len(data))

    def _add(self, name, ne, ggml_type, produce, nbytes=None):
        if name in self._names:
            raise GGUFError("duplicate tensor name %r" % name)
        self._names.add(name)
        if isinstance(ggml_type, int):
            tid = ggml_type
        else:
            tid, blk, bsize = GGML_TYPES[ggml_type]
            nbytes = int(np.prod(ne)) // blk * bsize
        self.tensors.append((name, [int(n) for n in ne], tid, nbytes, produce))

    def alignment(self):
        t, v = self.kv.get("general.alignment", ("u32", DEFAULT_ALIGNMENT))
        if t != "u32" or v <= 0 or v % 8:
            raise GGUFError("general.alignment must be a u32, a positive multiple of 8")
        return v

    def header_bytes(self):
        """Everything before the tensor data (header, metadata, tensor infos, padding)."""
        align = self.alignment()
        out = [GGUF_MAGIC, struct.pack("<IQQ", GGUF_VERSION, len(self.tensors), len(self.kv))]
        for key, (t, v) in self.kv.items():
            out += [_pack_str(key), struct.pack("<I", _type_code(t)), _pack_value(v, t)]
        offset = 0
        for name, ne, tid, nbytes, _ in self.tensors:
            out += [_pack_str(name), struct.pack("<I", len(ne)),
                    struct.pack("<%dQ" % len(ne), *ne), struct.pack("<IQ", tid, offset)]
            offset += -(-nbytes // align) * align
        head = b"".join(out)
        if not self.tensors:        # llama.cpp writes no padding when there is no data
            return head
        return head + b"\0" * (-len(head) % align)

    def write(self):
        align = self.alignment()
        with open(self.path, "wb") as f:
            f.write(self.header_bytes())
            for name, _, _, nbytes, produce in self.tensors:
                data = produce()
                if len(data) != nbytes:
                    raise GGUFError("tensor %s: %d bytes, expected %d" % (name, len(data), nbytes))
                f.write(data)
                f.write(b"\0" * (-nbytes % align))


# ------------------------------------------------------------------------------------------
# reader

class GGUFReader:
    """Parses a whole GGUF v2/v3 file; tensor data stay in the memory-mapped file."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            try:
                self._buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:          # empty file
                self._buf = b""
        self._pos = 0
        self.kv, self.types = {}, {}
        self.tensors, self.tensor_types, self.tensor_ne, self.tensor_offsets = {}, {}, {}, {}
        self._parse()

    # low-level reads, all bounds-checked
    def _take(self, n, what):
        if n < 0 or self._pos + n > len(self._buf):
            raise GGUFError("truncated file: %s needs %d bytes at offset %d, file has %d"
                            % (what, n, self._pos, len(self._buf)))
        b = self._buf[self._pos:self._pos + n]
        self._pos += n
        return b

    def _u(self, fmt, what):
        return struct.unpack(fmt, self._take(struct.calcsize(fmt), what))[0]

    def _str(self, what):
        n = self._u("<Q", what + " length")
        return self._take(n, what).decode("utf-8", "surrogateescape")

    def _value(self, code, what, depth=0):
        name = _VT_NAME.get(code)
        if name is None:
            raise GGUFError("%s: unknown value type %d at offset %d" % (what, code, self._pos - 4))
        if name == "str":
            return "str", self._str(what)
        if name != "array":
            v = self._u(_SCALAR_FMT[name], what)
            return name, (bool(v) if name == "bool" else v)
        if depth > 8:
            raise GGUFError("%s: arrays nested too deep at offset %d" % (what, self._pos))
        sub_code = self._u("<I", what + " array type")
        n = self._u("<Q", what + " array count")
        sub = _VT_NAME.get(sub_code)
        if sub is None:
            raise GGUFError("%s: unknown array element type %d" % (what, sub_code))
        if sub in _SCALAR_NP:
            size = np.dtype(_SCALAR_NP[sub]).itemsize
            if n > (len(self._buf) - self._pos) // size:
                raise GGUFError("%s: array of %d x %s runs past the end of the file (offset %d)"
                                % (what, n, sub, self._pos))
            arr = np.frombuffer(self._take(n * size, what), _SCALAR_NP[sub])
            vals = [bool(x) for x in arr] if sub == "bool" else arr.tolist()
            return "[" + sub + "]", vals
        if n > len(self._buf) - self._pos:      # every element needs at least one byte
            raise GGUFError("%s: array count %d exceeds the file size (offset %d)"
                            % (what, n, self._pos))
        vals, sub_t = [], None
        for _ in range(n):
            sub_t, v = self._value(sub_code, what, depth + 1)
            vals.append(v)
        if sub_t is None:    # empty array of arrays: element type unknown below this level
            sub_t = "[]" if sub == "array" else sub
        return "[" + sub_t + "]", vals

    def _parse(self):
        if self._take(4, "magic") != GGUF_MAGIC:
            raise GGUFError("not a GGUF file (bad magic at offset 0)")
        self.version = self._u("<I", "version")
        if self.version not in (2, 3):
            raise GGUFError("unsupported GGUF version %d (2 and 3 are read)" % self.version)
        n_tensors = self._u("<Q", "tensor count")
        n_kv = self._u("<Q", "metadata count")
        for i in range(n_kv):
            key = self._str("metadata key %d" % i)
            if key in self.kv:
                raise GGUFError("duplicate metadata key %r at offset %d" % (key, self._pos))
            code = self._u("<I", "type of " + key)
            self.types[key], self.kv[key] = self._value(code, key)
        align = self.kv.get("general.alignment", DEFAULT_ALIGNMENT)
        if self.types.get("general.alignment", "u32") != "u32" or align <= 0 or align % 8:
            raise GGUFError("bad general.alignment %r" % (align,))
        infos = []
        for i in range(n_tensors):
            name = self._str("tensor name %d" % i)
            if name in self.tensor_types:
                raise GGUFError("duplicate tensor name %r" % name)
            nd = self._u("<I", name + " n_dims")
            if not 1 <= nd <= MAX_DIMS:
                raise GGUFError("tensor %s: %d dimensions (1..%d allowed)" % (name, nd, MAX_DIMS))
            ne = [self._u("<Q", name + " dims") for _ in range(nd)]
            tid = self._u("<I", name + " type")
            off = self._u("<Q", name + " offset")
            tname = _GGML_NAME.get(tid)
            if tname is None:
                raise GGUFError("tensor %s: unknown ggml type %d" % (name, tid))
            if off % align:
                raise GGUFError("tensor %s: offset %d not a multiple of alignment %d"
                                % (name, off, align))
            self.tensor_types[name], self.tensor_ne[name] = tname, ne
            infos.append((name, ne, tname, off))
        data_start = self._pos + (-self._pos % align)
        for name, ne, tname, off in infos:
            self.tensors[name] = self._tensor(name, ne, tname, data_start + off)

    def _tensor(self, name, ne, tname, start):
        n = 1
        for d in ne:
            if d <= 0 or d >= 2**62:
                raise GGUFError("tensor %s: bad dimension %d" % (name, d))
            n *= d
        _, blk, bsize = GGML_TYPES[tname]
        if n % blk or ne[0] % blk:
            raise GGUFError("tensor %s: ne[0]=%d not a multiple of the %s block size %d"
                            % (name, ne[0], tname, blk))
        nbytes = n // blk * bsize
        if start + nbytes > len(self._buf):
            raise GGUFError("tensor %s: data [%d, %d) past the end of the file (%d bytes)"
                            % (name, start, start + nbytes, len(self._buf)))
        self.tensor_offsets[name] = start
        raw = memoryview(self._buf)[start:start + nbytes]
        shape = tuple(reversed(ne))
        if tname in _PLAIN_NP:
            return np.frombuffer(raw, _PLAIN_NP[tname]).reshape(shape)
        if tname == "bf16":
            return bf16_bits_to_f32(np.frombuffer(raw, "<u2")).reshape(shape)
        if tname == "q8_0":
            return dequantize_q8_0(raw, n).reshape(shape)
        if tname == "q4_0":
            return dequantize_q4_0(raw, n).reshape(shape)
        return np.frombuffer(raw, np.uint8)     # other quantized types: raw blocks


def _dump(path):
    """`tools/gguf.py FILE.gguf`: print the keys and tensor table."""
    r = GGUFReader(path)
    print("GGUF v%d, %d keys, %d tensors" % (r.version, len(r.kv), len(r.tensors)))
    for k, v in r.kv.items():
        if isinstance(v, list) and len(v) > 8:
            v = "%s ... (%d values)" % (v[:8], len(v))
        print("  %-50s %-8s %s" % (k, r.types[k], v))
    for name in r.tensors:
        print("  %-50s %-5s ne=%s" % (name, r.tensor_types[name], r.tensor_ne[name]))


if __name__ == "__main__":
    for p in sys.argv[1:]:
        _dump(p)
