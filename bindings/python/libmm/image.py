"""Image: a decoded picture (8-bit RGB) held by the library, and the float arrays that cross the
boundary (pixels in, embeddings out). numpy is optional: arrays are accepted and returned when it
is installed; bytes-like objects, lists and ctypes arrays work without it."""
import ctypes

from . import _native
from .options import as_options

_FORMATS = {"RGB": (1, 3), "RGBA": (2, 4), "BGR": (3, 3)}

try:
    import numpy as _np
except ImportError:  # optional
    _np = None


def _is_numpy(obj):
    return _np is not None and isinstance(obj, _np.ndarray)


class Image(_native.Handle):
    """A decoded image. Build one with Image.open(path), Image.from_bytes(data) (PNG or JPEG,
    sniffed) or Image.from_pixels(pixels, ...); the library copies what it is given.

    Decoding follows PIL's Image.open(...).convert('RGB') (alpha dropped, not composited), and
    applies JPEG EXIF orientation. options (Options or dict) may set image_max_side and
    image_max_pixels; larger images fail with Status.ERR_LIMIT before any pixel is decoded."""

    _free = staticmethod(_native.free_function("mm_image_free"))

    def __init__(self, handle):
        self._handle = handle

    @classmethod
    def open(cls, path, options=None):
        opts = as_options(options)
        return cls(_native.make_handle("mm_image_load_file", _native.encode_path(path), opts))

    @classmethod
    def from_bytes(cls, data, options=None):
        """From the bytes of a PNG or JPEG file (any bytes-like object)."""
        buf, n = byte_buffer(data)
        return cls(_native.make_handle("mm_image_load_memory", buf, n, as_options(options)))

    @classmethod
    def from_pixels(cls, pixels, width=None, height=None, format="RGB", stride=None):
        """From 8-bit pixels: a numpy array of shape (height, width, 3 or 4) (uint8; row
        strides are honoured, so slices and views work), or any bytes-like object with width,
        height and optionally stride (bytes per row). format: "RGB", "RGBA" (alpha dropped) or
        "BGR"; for a 4-channel array it defaults to RGBA."""
        if _is_numpy(pixels):
            if pixels.dtype != _np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
                raise ValueError("pixels: a uint8 array of shape (height, width, 3|4) expected, "
                                 "got %s %s" % (pixels.dtype, pixels.shape))
            if pixels.shape[2] == 4 and format == "RGB":
                format = "RGBA"
            channels = pixels.shape[2]
            # the library takes packed pixels within a row and a positive row stride
            if pixels.strides[1:] != (channels, 1) or pixels.strides[0] < channels * pixels.shape[1]:
                pixels = _np.ascontiguousarray(pixels)
            height, width = pixels.shape[:2]
            stride = pixels.strides[0]
            ptr = pixels.ctypes.data_as(ctypes.c_void_p)
            keep = pixels
        else:
            view = memoryview(pixels).cast("B")
            if width is None or height is None:
                raise ValueError("width and height are needed for raw pixel bytes")
            keep = (ctypes.c_ubyte * len(view)).from_buffer_copy(view) if len(view) else None
            ptr = keep
            bpp = _FORMATS[format][1] if format in _FORMATS else 3
            stride = width * bpp if stride is None else stride
            if height > 0 and len(view) < stride * (height - 1) + width * bpp:
                raise ValueError("pixels: %d bytes, %dx%d %s with stride %d needs %d"
                                 % (len(view), width, height, format, stride,
                                    stride * (height - 1) + width * bpp))
        if format not in _FORMATS:
            raise ValueError("format must be one of %s" % ", ".join(_FORMATS))
        handle = _native.make_handle("mm_image_from_pixels", ptr, width, height, stride,
                                     _FORMATS[format][0])
        del keep
        return cls(handle)

    @property
    def width(self):
        return _native.lib.mm_image_width(self)

    @property
    def height(self):
        return _native.lib.mm_image_height(self)

    @property
    def size(self):
        """(width, height), as PIL gives it."""
        return self.width, self.height

    def tobytes(self):
        """The RGB8 pixels, rows packed, top row first."""
        n = 3 * self.width * self.height
        return ctypes.string_at(_native.lib.mm_image_pixels(self), n)

    def to_numpy(self):
        """A (height, width, 3) uint8 copy of the pixels (needs numpy)."""
        if _np is None:
            raise ImportError("numpy is needed for to_numpy(); tobytes() works without it")
        return _np.frombuffer(self.tobytes(), _np.uint8).reshape(self.height, self.width, 3)

    def __repr__(self):
        return "Image(%dx%d)" % self.size if self._handle else "Image(closed)"


def byte_buffer(data):
    """A C copy of any bytes-like object (None when empty) and its length."""
    view = memoryview(data).cast("B")
    return (ctypes.c_ubyte * len(view)).from_buffer_copy(view) if len(view) else None, len(view)


def float_buffer(values, expected=None, what="values"):
    """A C float array holding `values` (numpy array, a buffer of float32 such as array('f') or
    the bytes of float32 values, or a sequence of numbers), its length, and the object that
    keeps it alive."""
    if _is_numpy(values):
        arr = _np.ascontiguousarray(values, dtype=_np.float32)
        ptr, n = arr.ctypes.data_as(ctypes.c_void_p), arr.size
        keep = arr
    else:
        try:
            view = memoryview(values)
        except TypeError:
            view = None
        if view is not None and view.format in ("f", "B", "b", "c") and view.c_contiguous:
            # float32 values, or raw bytes holding them (e.g. numpy's tobytes())
            if view.nbytes % 4:
                raise ValueError("%s: %d bytes are not float32 values" % (what, view.nbytes))
            n = view.nbytes // 4
            keep = (ctypes.c_float * n).from_buffer_copy(view)
        else:
            flat = list(values)
            n = len(flat)
            keep = (ctypes.c_float * n)(*flat)
        ptr = ctypes.cast(keep, ctypes.c_void_p)
    if expected is not None and n != expected:
        raise ValueError("%s: %d floats, expected %d" % (what, n, expected))
    return ptr, n, keep


def planar_pixels(pixels, width=None, height=None):
    """Normalised planar float pixels -> (pointer, width, height, keep-alive). A numpy array of
    shape (3, H, W) (or (1, 3, H, W)) gives its own size; anything else needs width, height."""
    if _is_numpy(pixels):
        if pixels.ndim == 4 and pixels.shape[0] == 1:
            pixels = pixels[0]
        if pixels.ndim != 3 or pixels.shape[0] != 3:
            raise ValueError("pixels: shape (3, height, width) expected, got %s"
                             % (pixels.shape,))
        height, width = pixels.shape[1:]
    if width is None or height is None:
        raise ValueError("width and height are needed for planar pixels given as a buffer")
    ptr, _, keep = float_buffer(pixels, 3 * width * height, "planar pixels")
    return ptr, width, height, keep


def floats_out(n):
    """A C float array for a result, and a function giving it back as numpy or a list."""
    arr = (ctypes.c_float * n)()

    def result():
        if _np is not None:
            return _np.array(arr, dtype=_np.float32)
        return list(arr)

    return arr, result


class Embeddings(_native.Handle):
    """Image embeddings from Model.encode_image: n_tokens rows of n_embd floats, owned by the
    library. Feed them to Session.add_embeddings, or read them with to_numpy() / tolist()."""

    _free = staticmethod(_native.free_function("mm_embeddings_free"))

    def __init__(self, handle):
        self._handle = handle
        self.n_tokens = _native.lib.mm_embeddings_n_tokens(self)
        self.n_embd = _native.lib.mm_embeddings_n_embd(self)

    @property
    def shape(self):
        return (self.n_tokens, self.n_embd)

    def _array(self):
        n = self.n_tokens * self.n_embd
        return (ctypes.c_float * n).from_address(_native.lib.mm_embeddings_data(self))

    def to_numpy(self):
        """A (n_tokens, n_embd) float32 copy (needs numpy)."""
        if _np is None:
            raise ImportError("numpy is needed for to_numpy(); tolist() works without it")
        return _np.array(self._array(), dtype=_np.float32).reshape(self.shape)

    def tolist(self):
        flat = list(self._array())
        return [flat[i * self.n_embd:(i + 1) * self.n_embd] for i in range(self.n_tokens)]

    def __repr__(self):
        return "Embeddings(%d x %d)" % self.shape
