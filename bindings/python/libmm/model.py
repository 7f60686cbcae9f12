"""Model: the weights of a language model and/or vision encoder (or a CLIP pair), read-only
after loading and shareable by any number of sessions and threads."""
import ctypes
import operator

from . import _native
from ._native import MMError, byref, call, encode_path
from .audio import Media
from .image import Embeddings, Image, float_buffer, floats_out, planar_pixels
from .options import as_options


def _describe_type(value):
    """'int', or 'a list holding int' for a list or tuple whose items are not all str."""
    if isinstance(value, (list, tuple)):
        other = next(t for t in value if not isinstance(t, str))
        return "a %s holding %s" % (type(value).__name__, type(other).__name__)
    return type(value).__name__


class Model(_native.Handle):
    """Model(path, mmproj=None, options=None): load GGUF files as llama.cpp lays them out.

    `path` is a language model or a CLIP file, `mmproj` the vision file of a language model.
    `options` (an Options or a dict) may carry use_mmap and a progress callback. Use as a context
    manager or call close(); otherwise the garbage collector frees it. Sessions keep the model
    alive (in C and in Python), so objects may be dropped in any order."""

    _free = staticmethod(_native.lib.mm_model_free)

    def __init__(self, path, mmproj=None, options=None):
        opts = as_options(options)
        try:
            self._handle = _native.make_handle("mm_model_load", encode_path(path),
                                               encode_path(mmproj), opts)
        except MMError as e:
            if opts is not None:
                opts.raise_progress_error(e)
            raise
        self.path, self.mmproj = path, mmproj

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

    # ---- vision (any thread) ----

    def encode_image(self, image, options=None, width=None, height=None):
        """Image embeddings (an Embeddings) of an Image, preprocessed as the model file says,
        or of normalised planar float pixels (numpy (3, H, W), or a buffer with width/height)."""
        opts = as_options(options)
        if isinstance(image, Image):
            return Embeddings(_native.make_handle("mm_image_encode", self, image, opts))
        ptr, w, h, keep = planar_pixels(image, width, height)
        return Embeddings(_native.make_handle("mm_image_encode_pixels", self, ptr, w, h, opts))

    # ---- any media (any thread) ----

    def n_tokens(self, item):
        """Positions an Image or Audio takes in a message, known without encoding it."""
        n = _native.c_size_t()
        with Media(item) as m:
            _native.call("mm_media_n_tokens", self, m, _native.byref(n))
        return n.value

    def encode_audio(self, audio, options=None):
        """The embeddings (an Embeddings) an Audio clip takes in a message: resampled to the
        encoder's rate, encoded chunk by chunk, projected into the language model's space."""
        with Media(audio) as m:
            return Embeddings(_native.make_handle("mm_media_encode", self, m,
                                                  as_options(options)))

    # ---- CLIP (any thread) ----

    @property
    def clip_embedding_size(self):
        """Size of the joint embedding space; 0 for a model that is not a CLIP dual encoder."""
        return _native.need("mm_clip_embedding_size")(self)

    @property
    def logit_scale(self):
        """exp(logit_scale): the factor on cosines before the softmax of classify()."""
        v = ctypes.c_float()
        call("mm_clip_logit_scale", self, byref(v))
        return v.value

    def embed_image(self, image, width=None, height=None):
        """Unit-length CLIP embedding of an Image, or of normalised planar float pixels."""
        out, result = floats_out(self.clip_embedding_size)
        if isinstance(image, Image):
            call("mm_clip_image_embedding", self, image, out, len(out))
        else:
            ptr, w, h, keep = planar_pixels(image, width, height)
            call("mm_clip_image_embedding_pixels", self, ptr, w, h, out, len(out))
        return result()

    def embed_text(self, text):
        """Unit-length CLIP embedding of a str (the model's tokenizer adds start and end
        tokens); for a list or tuple of strs, the list of their embeddings. Anything else
        (token ids, bytes, None) is a TypeError: ids go to embed_tokens."""
        if isinstance(text, str):
            out, result = floats_out(self.clip_embedding_size)
            call("mm_clip_text_embedding", self, text.encode("utf-8"), out, len(out))
            return result()
        if isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
            return [self.embed_text(t) for t in text]
        raise TypeError("embed_text takes a str or a list of str, not %s (token ids: "
                        "embed_tokens)" % _describe_type(text))

    def embed_tokens(self, ids):
        """Unit-length CLIP embedding of a sequence of token ids, used as given (no start or end
        token added)."""
        if isinstance(ids, (str, bytes)):
            raise TypeError("embed_tokens takes token ids, not %s (text: embed_text)"
                            % type(ids).__name__)
        ids = [operator.index(t) for t in ids]
        arr = (ctypes.c_int32 * len(ids))(*ids)
        out, result = floats_out(self.clip_embedding_size)
        call("mm_clip_text_embedding_tokens", self, arr, len(ids), out, len(out))
        return result()

    def classify(self, image, labels):
        """Zero-shot probabilities of `labels` (strs) for an Image: a list in label order,
        softmax of logit_scale * cosine."""
        labels = list(labels)
        arr = (ctypes.c_char_p * len(labels))(*[l.encode("utf-8") for l in labels])
        out, result = floats_out(len(labels))
        call("mm_clip_classify", self, image, arr, len(labels), out)
        return [float(p) for p in result()]

    @staticmethod
    def similarity(a, b):
        """Cosine similarity of two embeddings of the same length."""
        pa, n, keep_a = float_buffer(a)
        pb, _, keep_b = float_buffer(b, n, "b")
        return _native.need("mm_clip_similarity")(pa, pb, n)

    def __repr__(self):
        return "Model(%r, mmproj=%r)" % (self.path, self.mmproj)
