"""Points: a point cloud held by the library (x, y, z with optional colours and normals), read
from PLY or copied from arrays. numpy is optional: arrays are accepted and returned when it is
installed; float32 buffers and sequences of numbers work without it."""
import ctypes

from . import _native
from .image import _is_numpy, _np, float_buffer
from .options import as_options


class Points(_native.Handle):
    """A point cloud. Build one with Points.open(path) or Points.from_bytes(data) (PLY: ASCII
    or binary, either byte order) or Points.from_array(xyz, rgb=None); the library copies what
    it is given. options (Options or dict) may set points_max_count; more points fail with
    Status.ERR_LIMIT before any is read."""

    _free = staticmethod(_native.free_function("mm_points_free"))

    def __init__(self, handle):
        self._handle = handle

    @classmethod
    def open(cls, path, options=None):
        opts = as_options(options)
        return cls(_native.make_handle("mm_points_load_file", _native.encode_path(path), opts))

    @classmethod
    def from_bytes(cls, data, options=None):
        """From the bytes of a PLY file (any bytes-like object)."""
        view = memoryview(data).cast("B")
        buf = (ctypes.c_ubyte * len(view)).from_buffer_copy(view) if len(view) else None
        opts = as_options(options)
        return cls(_native.make_handle("mm_points_load_memory", buf, len(view), opts))

    @classmethod
    def from_array(cls, xyz, rgb=None):
        """From n rows of x, y, z: a numpy array of shape (n, 3) (any float or int dtype,
        converted to float32), or 3n floats as a buffer or sequence; rgb likewise, colours in
        [0, 1]. Non-finite coordinates and colours outside [0, 1] are refused (Status.ERR_ARG)."""
        if _is_numpy(xyz) and (xyz.ndim != 2 or xyz.shape[1] != 3):
            raise ValueError("xyz: shape (n, 3) expected, got %s" % (xyz.shape,))
        ptr, n, keep = float_buffer(xyz, what="xyz")
        if n % 3:
            raise ValueError("xyz: %d floats are not rows of 3" % n)
        rgb_ptr, keep_rgb = None, None
        if rgb is not None:
            rgb_ptr, _, keep_rgb = float_buffer(rgb, n, "rgb")
        handle = _native.make_handle("mm_points_from_arrays", ptr, rgb_ptr, n // 3)
        del keep, keep_rgb
        return cls(handle)

    def __len__(self):
        return _native.lib.mm_points_count(self)

    def _rows(self, fn):
        address = fn(self)
        if not address:
            return None
        n = 3 * len(self)
        values = (ctypes.c_float * n).from_address(address)
        if _np is not None:
            return _np.array(values, dtype=_np.float32).reshape(-1, 3)
        flat = list(values)
        return [flat[i:i + 3] for i in range(0, n, 3)]

    @property
    def xyz(self):
        """The coordinates: a (n, 3) float32 copy (rows of 3 floats without numpy)."""
        return self._rows(_native.lib.mm_points_xyz)

    @property
    def rgb(self):
        """The colours in [0, 1] as xyz, or None when the cloud has none."""
        return self._rows(_native.lib.mm_points_rgb)

    @property
    def normals(self):
        """The normals as xyz, or None when the cloud has none."""
        return self._rows(_native.lib.mm_points_normals)

    def __repr__(self):
        return "Points(%d)" % len(self) if self._handle else "Points(closed)"
