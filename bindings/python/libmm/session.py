"""Session: one conversation with a model's language model (KV cache, chat state, sampler)."""
import ctypes
import json

from . import _native
from ._native import MMError, byref, call
from .audio import Audio, Media
from .image import Embeddings, Image, float_buffer
from .options import Options, as_options


class StopReason(_native.Enum):
    """Why the last generation ended (mm_stop_reason)."""
    NONE = 0
    EOG = 1
    MAX_TOKENS = 2
    STRING = 3
    CALLBACK = 4


class Session(_native.Handle):
    """Session(model, options=None): a conversation on `model`.

    options (Options or dict): n_ctx, chat_template and the generation settings (max_tokens,
    temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed). The session keeps
    its model alive (the C session holds a reference, and so does this object), so the model
    may be closed or dropped first. One thread at a time may use a session; cancel() may be
    called from any thread (ctypes releases the GIL while the library works)."""

    _free = staticmethod(_native.free_function("mm_session_free"))

    def __init__(self, model, options=None):
        self._handle = _native.make_handle("mm_session_create", model, as_options(options))
        self.model = model

    def set_options(self, options=None, **settings):
        """Replace the generation settings (absent keys take their defaults)."""
        opts = as_options(options)
        if settings:
            opts = opts.copy() if opts is not None else Options()
            for name, value in settings.items():
                opts[name] = value
        call("mm_session_set_options", self, opts)

    # ---- input ----

    def add_text(self, text, parse_special=False):
        """Append text as it is (no chat template)."""
        data = text.encode("utf-8")
        call("mm_session_add_text", self, data, len(data), 2 if parse_special else 0)

    def add_message(self, role, text, images=()):
        """Append a chat message ("system", "user" or "assistant") in the session's template;
        a user message ends with the answer prompt, so generate() answers it. images: Image and
        Audio objects (encoded by the session, after it knows the message fits; cancel() reaches
        the encoding) or Embeddings from Model.encode_image / encode_audio, placed at the
        "<image>" / "<audio>" / "<media>" markers of the text, or at its start (each followed by
        a newline) when it has none."""
        data = text.encode("utf-8")
        if not images:
            call("mm_session_add_message", self, role.encode(), data, len(data))
            return
        items = list(images)
        if all(isinstance(im, (Image, Audio)) for im in items):
            media = [Media(im) for im in items]
            handles = (ctypes.c_void_p * len(media))(*[m._as_parameter_.value for m in media])
            call("mm_session_add_message_media", self, role.encode(), data, len(data), handles,
                 len(media))
            for m in media:
                m.close()
            return
        # some are encoded already: encode the rest the same way
        items = [im if isinstance(im, Embeddings) else self.model.encode_audio(im)
                 if isinstance(im, Audio) else self.model.encode_image(im) for im in items]
        handles = (ctypes.c_void_p * len(items))(*[im._as_parameter_.value for im in items])
        call("mm_session_add_message_embeddings", self, role.encode(), data, len(data),
             handles, len(items))

    def add_messages(self, messages, options=None):
        """Append a conversation in the OpenAI or Anthropic chat shape: a list of
        {"role", "content"} dicts (content a str or a list of parts: {"type": "text"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}},
        {"type": "image", "source": {"type": "base64", ...}}), a {"messages": [...],
        "system": ...} dict, or the same as JSON text/bytes. Images are decoded and encoded
        with the model's vision tower and placed in their message."""
        if isinstance(messages, (list, dict)):
            messages = json.dumps(messages)
        data = messages.encode("utf-8") if isinstance(messages, str) else bytes(messages)
        call("mm_session_add_messages_json", self, data, len(data), as_options(options))

    def respond(self, request, options=None):
        """Answer a whole OpenAI or Anthropic chat request (a dict, or JSON text/bytes): its
        messages are added, the answer generated with its settings (max_tokens, temperature,
        top_p, top_k, seed, stop) over `options`, and the API's response object returned as a
        dict (chat.completion, or an Anthropic message for an Anthropic-shaped request)."""
        if isinstance(request, (list, dict)):
            request = json.dumps(request)
        data = request.encode("utf-8") if isinstance(request, str) else bytes(request)
        handle = ctypes.c_void_p()
        call("mm_chat_request_parse", data, len(data), byref(handle))
        try:
            opts = as_options(options)
            call("mm_session_add_chat_request", self, handle, opts)
            text, n = ctypes.c_char_p(), ctypes.c_size_t()
            call("mm_session_generate_response", self, handle, opts, None, None, byref(text),
                 byref(n))
            return json.loads(ctypes.string_at(text, n.value).decode("utf-8"))
        finally:
            _native.lib.mm_chat_request_free(handle)

    def add_tokens(self, ids):
        ids = [int(t) for t in ids]
        call("mm_session_add_tokens", self, (ctypes.c_int32 * len(ids))(*ids), len(ids))

    def add_embeddings(self, embeddings, n_embd=None):
        """Append input embeddings: an Embeddings from Model.encode_image, a (rows, n_embd)
        numpy array, or a flat float sequence with n_embd."""
        if isinstance(embeddings, Embeddings):
            ptr, n = _native.lib.mm_embeddings_data(embeddings), embeddings.n_tokens
            call("mm_session_add_embeddings", self, ptr, n, embeddings.n_embd)
            return
        shape = getattr(embeddings, "shape", None)
        if n_embd is None and shape is not None and len(shape) == 2:
            n_embd = shape[1]
        if not n_embd:
            raise ValueError("n_embd is needed for flat embeddings")
        ptr, n, keep = float_buffer(embeddings)
        if n % n_embd:
            raise ValueError("%d floats are not rows of %d" % (n, n_embd))
        call("mm_session_add_embeddings", self, ptr, n // n_embd, n_embd)

    def add_stop_string(self, stop):
        call("mm_session_add_stop_string", self, stop.encode("utf-8"))

    def clear_stop_strings(self):
        _native.need("mm_session_clear_stop_strings")(self)

    # ---- output ----

    def tokens(self, options=None, **settings):
        """Generate, yielding (token id, text piece) pairs as the model produces them (the
        pull API, mm_session_next). Settings given here stay in force afterwards. Stopping the
        iteration early leaves the tokens produced so far in the conversation."""
        if options is not None or settings:
            self.set_options(options, **settings)
        fn = _native.need("mm_session_next")
        token, piece, n = ctypes.c_int32(), ctypes.c_void_p(), ctypes.c_size_t()
        while True:
            st = fn(self, byref(token), byref(piece), byref(n))
            if st != _native.Status.OK:
                raise MMError(st, _native.last_error(), "mm_session_next")
            if not piece.value:
                return
            yield token.value, ctypes.string_at(piece.value, n.value).decode("utf-8")

    def generate(self, options=None, **settings):
        """Generate, yielding pieces of text (whole UTF-8 characters) as they come:
        ``for piece in session.generate(max_tokens=64): print(piece, end="")``."""
        for _, piece in self.tokens(options, **settings):
            if piece:
                yield piece

    def ask(self, text, **settings):
        """add_message("user", text), then the whole answer as one str."""
        self.add_message("user", text)
        return "".join(self.generate(**settings))

    @property
    def stop_reason(self):
        return StopReason(_native.need("mm_session_stop_reason")(self))

    def logits(self):
        """Logits of the last evaluated position: a float32 numpy array, or a list."""
        ptr, n = ctypes.c_void_p(), ctypes.c_size_t()
        call("mm_session_logits", self, byref(ptr), byref(n))
        arr = (ctypes.c_float * n.value).from_address(ptr.value)
        try:
            import numpy
            return numpy.array(arr, dtype=numpy.float32)
        except ImportError:
            return list(arr)

    @property
    def n_ctx(self):
        return _native.need("mm_session_n_ctx")(self)

    @property
    def n_past(self):
        return _native.need("mm_session_n_past")(self)

    @property
    def chat_template(self):
        name = _native.need("mm_session_chat_template")(self)
        return name.decode() if name is not None else None

    def cancel(self):
        """Stop the call in progress on this session (from any thread); it raises MMError
        with Status.ERR_CANCELLED and the session stays as it was before that call."""
        if self._handle:
            _native.need("mm_session_cancel")(self._handle)

    def reset(self):
        """Forget the conversation; settings and stop strings stay."""
        _native.need("mm_session_reset")(self)
