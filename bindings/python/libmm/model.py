"""Model: the weights of a language model and/or vision encoder (or a CLIP pair), read-only
after loading and shareable by any number of sessions and threads."""
import ctypes

from . import _native
from ._native import MMError, byref, call, encode_path
from .options import as_options


class Model:
    """Model(path, mmproj=None, options=None): load GGUF files as llama.cpp lays them out.

    `path` is a language model or a CLIP file, `mmproj` the vision file of a language model.
    `options` (an Options or a dict) may carry use_mmap and a progress callback. Use as a context
    manager or call close(); otherwise the garbage collector frees it. Sessions keep the model
    alive (in C and in Python), so objects may be dropped in any order."""

    _free = staticmethod(_native.lib.mm_model_free)

    def __init__(self, path, mmproj=None, options=None):
        self._handle = ctypes.c_void_p()
        opts = as_options(options)
        handle = ctypes.c_void_p()
        try:
            call("mm_model_load", encode_path(path), encode_path(mmproj), opts, byref(handle))
        except MMError as e:
            if opts is not None:
                opts.raise_progress_error(e)
            raise
        self._handle = handle
        self.path, self.mmproj = path, mmproj

    @property
    def _as_parameter_(self):
        if not self._handle:
            raise ValueError("Model used after close()")
        return self._handle

    def close(self):
        """Drop this reference now (sessions made from the model keep their own)."""
        if self._handle:
            self._free(self._handle)
            self._handle = ctypes.c_void_p()

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "Model(%r, mmproj=%r)" % (self.path, self.mmproj)
