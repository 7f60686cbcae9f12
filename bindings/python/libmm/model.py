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

    # ---- tokenizer (any thread: the model is read-only) ----

    def tokenize(self, text, add_special=True, parse_special=False):
        """Token ids of `text` (str or UTF-8 bytes). add_special adds BOS/EOS as the model file
        asks; parse_special turns control-token text such as "</s>" into those tokens."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        flags = (1 if add_special else 0) | (2 if parse_special else 0)
        buf, n = _native.call_sized("mm_tokenize", lambda c: (ctypes.c_int32 * c)(),
                                    len(data) + 8, self, data, len(data), flags)
        return list(buf[:n])

    def detokenize(self, ids, render_special=False, keep_leading_space=False):
        """Text of token ids (always valid UTF-8: broken sequences become U+FFFD)."""
        ids = list(ids)
        arr = (ctypes.c_int32 * len(ids))(*ids)
        flags = (1 if render_special else 0) | (2 if keep_leading_space else 0)
        buf, n = _native.call_sized("mm_detokenize", ctypes.create_string_buffer,
                                    8 * len(ids) + 16, self, arr, len(ids), flags)
        return buf.raw[:n].decode("utf-8")

    def token_to_piece(self, token):
        """The raw bytes one token stands for (may be part of a UTF-8 character)."""
        buf, n = _native.call_sized("mm_token_to_piece", ctypes.create_string_buffer, 32,
                                    self, token)
        return buf.raw[:n]

    @property
    def n_vocab(self):
        return _native.need("mm_n_vocab")(self)

    @property
    def bos(self):
        """Begin-of-sequence id, or None."""
        t = _native.need("mm_token_bos")(self)
        return None if t < 0 else t

    @property
    def eos(self):
        """End-of-sequence id, or None."""
        t = _native.need("mm_token_eos")(self)
        return None if t < 0 else t

    def is_eog(self, token):
        """Whether generating `token` ends a turn."""
        return bool(_native.need("mm_token_is_eog")(self, token))

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
