"""Loading libmm with ctypes: finding the shared object, the ABI handshake, the C prototypes, and
turning a failed status into an exception.

Only integer constants and opaque pointers cross the boundary (the C API has no public structs),
so nothing here mirrors a struct layout."""
import ctypes
import enum
import os

ABI_VERSION = 1  # the MM_ABI_VERSION this package was written for (soname libmm.so.1)
SONAME = "libmm.so.%d" % ABI_VERSION


class Enum(enum.IntEnum):
    """An IntEnum that prints as `Class.NAME` on every Python (from 3.11 on, str() and format()
    of an IntEnum give the bare number). A format spec other than "" formats the number."""

    def __str__(self):
        return "%s.%s" % (type(self).__name__, self.name)

    def __format__(self, spec):
        return str(self) if not spec else int.__format__(self, spec)


class Status(Enum):
    """mm_status codes (numbers fixed by the ABI; names as in mm.h without MM_). The library
    exports no names, only descriptions: `description` is mm_status_str()."""
    OK = 0
    ERR_ARG = 1
    ERR_NOMEM = 2
    ERR_IO = 3
    ERR_FORMAT = 4
    ERR_UNSUPPORTED = 5
    ERR_CTX_FULL = 6
    ERR_CANCELLED = 7
    ERR_STATE = 8
    ERR_LIMIT = 9

    @property
    def description(self):
        return lib.mm_status_str(self).decode()


class MMError(Exception):
    """A libmm call failed. `status` is the Status (or the raw int if unknown), `detail` the text
    of mm_last_error() at the time, `function` the C function that failed."""

    def __init__(self, status, detail, function=None):
        try:
            status = Status(status)
        except ValueError:
            pass
        self.status, self.detail, self.function = status, detail, function
        name = status.name if isinstance(status, Status) else "status %d" % status
        where = "%s: " % function if function else ""
        super().__init__("%s%s (%s)" % (where, detail or "no detail", name))


class LibraryNotFound(ImportError):
    pass


def _candidates():
    """Where to look for the library, in order: $MM_LIBRARY_PATH alone when set; else a copy
    beside the package's files, the source tree's lib/ when the package runs from the tree,
    and the system loader's search path (ldconfig, LD_LIBRARY_PATH; `make install`)."""
    env = os.environ.get("MM_LIBRARY_PATH")
    if env:
        # MM_LIBRARY_PATH names the library file or the directory that holds it
        return [os.path.join(env, SONAME) if os.path.isdir(env) else env]
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(here, SONAME)]
    tree = os.path.normpath(os.path.join(here, "..", "..", ".."))
    if os.path.exists(os.path.join(tree, "include", "mm.h")):
        candidates.append(os.path.join(tree, "lib", SONAME))
    return candidates + [SONAME]


def _load():
    errors = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            errors.append("%s: no such file" % path)
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            errors.append(str(e))
    raise LibraryNotFound("libmm not found (set MM_LIBRARY_PATH to the library file or its "
                          "directory); tried: " + "; ".join(errors))


lib = _load()
lib.mm_abi_version.restype = ctypes.c_int
lib.mm_abi_version.argtypes = []
if lib.mm_abi_version() != ABI_VERSION:
    raise ImportError("libmm at %s has ABI version %d; this package needs %d"
                      % (lib._name, lib.mm_abi_version(), ABI_VERSION))

c_void_p, c_char_p, c_int, c_size_t = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t
POINTER, byref = ctypes.POINTER, ctypes.byref
status_t = ctypes.c_int
LOG_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_char_p)
PROGRESS_FN = ctypes.CFUNCTYPE(c_int, c_void_p, c_int, ctypes.c_uint64, ctypes.c_uint64)

# name: (restype, argtypes). Functions absent from the loaded library are left out; calling a
# feature that needs one raises NotImplementedError naming it (the API grows by addition only).
PROTOTYPES = {
    "mm_status_str": (c_char_p, [c_int]),
    "mm_last_error": (c_char_p, []),
    "mm_set_log": (None, [LOG_FN, c_void_p, c_int]),
    "mm_version_number": (ctypes.c_uint, []),
    "mm_version_string": (c_char_p, []),
    "mm_options_create": (status_t, [POINTER(c_void_p)]),
    "mm_options_copy": (status_t, [c_void_p, POINTER(c_void_p)]),
    "mm_options_free": (None, [c_void_p]),
    "mm_options_set_int": (status_t, [c_void_p, c_int, ctypes.c_int64]),
    "mm_options_set_float": (status_t, [c_void_p, c_int, ctypes.c_double]),
    "mm_options_set_string": (status_t, [c_void_p, c_int, c_char_p]),
    "mm_options_unset": (status_t, [c_void_p, c_int]),
    "mm_options_get_int": (status_t, [c_void_p, c_int, POINTER(ctypes.c_int64)]),
    "mm_options_get_float": (status_t, [c_void_p, c_int, POINTER(ctypes.c_double)]),
    "mm_options_get_string": (status_t, [c_void_p, c_int, POINTER(c_char_p)]),
    "mm_option_name": (c_char_p, [c_int]),
    "mm_option_type": (status_t, [c_int, POINTER(c_int)]),
    "mm_options_set_progress": (status_t, [c_void_p, PROGRESS_FN, c_void_p]),
    "mm_model_load": (status_t, [c_char_p, c_char_p, c_void_p, POINTER(c_void_p)]),
    "mm_model_free": (None, [c_void_p]),
    "mm_tokenize": (status_t, [c_void_p, c_char_p, c_size_t, ctypes.c_uint,
                               POINTER(ctypes.c_int32), c_size_t, POINTER(c_size_t)]),
    "mm_detokenize": (status_t, [c_void_p, POINTER(ctypes.c_int32), c_size_t, ctypes.c_uint,
                                 c_char_p, c_size_t, POINTER(c_size_t)]),
    "mm_token_to_piece": (status_t, [c_void_p, ctypes.c_int32, c_char_p, c_size_t,
                                     POINTER(c_size_t)]),
    "mm_n_vocab": (ctypes.c_int32, [c_void_p]),
    "mm_token_bos": (ctypes.c_int32, [c_void_p]),
    "mm_token_eos": (ctypes.c_int32, [c_void_p]),
    "mm_token_is_eog": (c_int, [c_void_p, ctypes.c_int32]),
    # images
    "mm_image_load_file": (status_t, [c_char_p, c_void_p, POINTER(c_void_p)]),
    "mm_image_load_memory": (status_t, [c_void_p, c_size_t, c_void_p, POINTER(c_void_p)]),
    "mm_image_from_pixels": (status_t, [c_void_p, c_int, c_int, c_size_t, c_int,
                                        POINTER(c_void_p)]),
    "mm_image_width": (c_int, [c_void_p]),
    "mm_image_height": (c_int, [c_void_p]),
    "mm_image_pixels": (c_void_p, [c_void_p]),
    "mm_image_free": (None, [c_void_p]),
    # audio and media
    "mm_audio_load_file": (status_t, [c_char_p, c_void_p, POINTER(c_void_p)]),
    "mm_audio_load_memory": (status_t, [c_void_p, c_size_t, c_void_p, POINTER(c_void_p)]),
    "mm_audio_from_samples": (status_t, [c_void_p, c_size_t, c_int, c_int, POINTER(c_void_p)]),
    "mm_audio_sample_rate": (c_int, [c_void_p]),
    "mm_audio_n_samples": (c_size_t, [c_void_p]),
    "mm_audio_samples": (c_void_p, [c_void_p]),
    "mm_audio_free": (None, [c_void_p]),
    "mm_audio_resampling_available": (c_int, []),
    "mm_media_from_image": (status_t, [c_void_p, POINTER(c_void_p)]),
    "mm_media_from_audio": (status_t, [c_void_p, POINTER(c_void_p)]),
    "mm_media_from_video": (status_t, [c_void_p, POINTER(c_void_p)]),
    # video
    "mm_video_from_frames": (status_t, [c_void_p, c_void_p, c_size_t, c_void_p,
                                        POINTER(c_void_p)]),
    "mm_video_load_file": (status_t, [c_char_p, c_void_p, POINTER(c_void_p)]),
    "mm_video_load_memory": (status_t, [c_void_p, c_size_t, c_void_p, POINTER(c_void_p)]),
    "mm_video_files_available": (c_int, []),
    "mm_video_n_frames": (c_size_t, [c_void_p]),
    "mm_video_frame_time": (ctypes.c_double, [c_void_p, c_size_t]),
    "mm_video_free": (None, [c_void_p]),
    "mm_media_free": (None, [c_void_p]),
    "mm_media_n_tokens": (status_t, [c_void_p, c_void_p, POINTER(c_size_t)]),
    "mm_media_encode": (status_t, [c_void_p, c_void_p, c_void_p, POINTER(c_void_p)]),
    # point clouds
    "mm_points_load_file": (status_t, [c_char_p, c_void_p, POINTER(c_void_p)]),
    "mm_points_load_memory": (status_t, [c_void_p, c_size_t, c_void_p, POINTER(c_void_p)]),
    "mm_points_from_arrays": (status_t, [c_void_p, c_void_p, c_size_t, POINTER(c_void_p)]),
    "mm_points_count": (c_size_t, [c_void_p]),
    "mm_points_xyz": (c_void_p, [c_void_p]),
    "mm_points_rgb": (c_void_p, [c_void_p]),
    "mm_points_normals": (c_void_p, [c_void_p]),
    "mm_points_free": (None, [c_void_p]),
    # vision encoding and CLIP
    "mm_image_encode": (status_t, [c_void_p, c_void_p, c_void_p, POINTER(c_void_p)]),
    "mm_image_encode_pixels": (status_t, [c_void_p, c_void_p, c_int, c_int, c_void_p,
                                          POINTER(c_void_p)]),
    "mm_embeddings_n_tokens": (c_size_t, [c_void_p]),
    "mm_embeddings_n_embd": (c_size_t, [c_void_p]),
    "mm_embeddings_data": (c_void_p, [c_void_p]),
    "mm_embeddings_free": (None, [c_void_p]),
    "mm_clip_embedding_size": (c_size_t, [c_void_p]),
    "mm_clip_logit_scale": (status_t, [c_void_p, POINTER(ctypes.c_float)]),
    "mm_clip_image_embedding": (status_t, [c_void_p, c_void_p, c_void_p, c_size_t]),
    "mm_clip_image_embedding_pixels": (status_t, [c_void_p, c_void_p, c_int, c_int, c_void_p,
                                                  c_size_t]),
    "mm_clip_text_embedding": (status_t, [c_void_p, c_char_p, c_void_p, c_size_t]),
    "mm_clip_text_embedding_tokens": (status_t, [c_void_p, POINTER(ctypes.c_int32), c_size_t,
                                                 c_void_p, c_size_t]),
    "mm_clip_similarity": (ctypes.c_float, [c_void_p, c_void_p, c_size_t]),
    "mm_clip_classify": (status_t, [c_void_p, c_void_p, POINTER(c_char_p), c_size_t, c_void_p]),
    # sessions
    "mm_session_create": (status_t, [c_void_p, c_void_p, POINTER(c_void_p)]),
    "mm_session_free": (None, [c_void_p]),
    "mm_session_set_options": (status_t, [c_void_p, c_void_p]),
    "mm_session_add_text": (status_t, [c_void_p, c_char_p, c_size_t, ctypes.c_uint]),
    "mm_session_add_message": (status_t, [c_void_p, c_char_p, c_char_p, c_size_t]),
    "mm_session_add_message_images": (status_t, [c_void_p, c_char_p, c_char_p, c_size_t,
                                                 POINTER(c_void_p), c_size_t]),
    "mm_session_add_message_embeddings": (status_t, [c_void_p, c_char_p, c_char_p, c_size_t,
                                                     POINTER(c_void_p), c_size_t]),
    "mm_session_add_message_media": (status_t, [c_void_p, c_char_p, c_char_p, c_size_t,
                                                POINTER(c_void_p), c_size_t]),
    "mm_session_add_messages_json": (status_t, [c_void_p, c_char_p, c_size_t, c_void_p]),
    "mm_session_add_tokens": (status_t, [c_void_p, POINTER(ctypes.c_int32), c_size_t]),
    "mm_session_add_embeddings": (status_t, [c_void_p, c_void_p, c_size_t, c_size_t]),
    "mm_session_add_stop_string": (status_t, [c_void_p, c_char_p]),
    "mm_session_clear_stop_strings": (None, [c_void_p]),
    "mm_session_next": (status_t, [c_void_p, POINTER(ctypes.c_int32), POINTER(c_void_p),
                                   POINTER(c_size_t)]),
    "mm_session_stop_reason": (c_int, [c_void_p]),
    "mm_session_logits": (status_t, [c_void_p, POINTER(c_void_p), POINTER(c_size_t)]),
    "mm_session_n_ctx": (c_int, [c_void_p]),
    "mm_session_n_past": (c_int, [c_void_p]),
    "mm_session_chat_template": (c_char_p, [c_void_p]),
    "mm_session_cancel": (None, [c_void_p]),
    "mm_session_reset": (None, [c_void_p]),
    # chat requests and responses
    "mm_chat_request_parse": (status_t, [c_char_p, c_size_t, POINTER(c_void_p)]),
    "mm_chat_request_free": (None, [c_void_p]),
    "mm_session_add_chat_request": (status_t, [c_void_p, c_void_p, c_void_p]),
    "mm_session_generate_response": (status_t, [c_void_p, c_void_p, c_void_p, c_void_p,
                                                c_void_p, POINTER(c_char_p),
                                                POINTER(c_size_t)]),
}

missing = set()
for _name, (_restype, _argtypes) in PROTOTYPES.items():
    try:
        _fn = getattr(lib, _name)
    except AttributeError:
        missing.add(_name)
        continue
    _fn.restype, _fn.argtypes = _restype, _argtypes


def need(name):
    """The C function `name`, or NotImplementedError if this build of libmm lacks it."""
    if name in missing:
        raise NotImplementedError("this libmm (%s) has no %s"
                                  % (lib.mm_version_string().decode(), name))
    return getattr(lib, name)


def last_error():
    return lib.mm_last_error().decode("utf-8", "replace")


def call(name, *args):
    """Call a status-returning function; raise MMError with mm_last_error() on failure."""
    try:
        st = need(name)(*args)
    except ctypes.ArgumentError as e:  # e.g. a closed object passed as a handle
        raise ValueError("%s: %s" % (name, e)) from None
    if st != Status.OK:
        raise MMError(st, last_error(), name)


def call_sized(name, make_buffer, capacity, *args):
    """Call a function that fills a caller buffer and reports the size it needs in its last
    argument (the mm.h convention: MM_ERR_ARG when the buffer is too small): grow and retry.
    make_buffer(capacity) -> ctypes buffer; returns (buffer, size)."""
    fn = need(name)
    while True:
        buf, n = make_buffer(capacity), c_size_t()
        st = fn(*args, buf, capacity, byref(n))
        if st == Status.OK:
            return buf, n.value
        if st == Status.ERR_ARG and n.value >= capacity:
            capacity = n.value + 1  # room for a NUL where the function writes one
            continue
        raise MMError(st, last_error(), name)


class Handle:
    """Base of the classes that own one C object: `_free` (a staticmethod set by the subclass)
    releases it exactly once, at close(), at the end of a with block, or when collected."""

    _free = None
    _handle = ctypes.c_void_p()

    @property
    def _as_parameter_(self):
        if not self._handle:
            raise ValueError("%s used after close()" % type(self).__name__)
        return self._handle

    def close(self):
        if self._handle:
            handle, self._handle = self._handle, ctypes.c_void_p()
            self._free(handle)

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def make_handle(name, *args):
    """Call a constructor `name(*args, &out)`; return the new handle."""
    handle = ctypes.c_void_p()
    call(name, *args, byref(handle))
    return handle


def free_function(name):
    """The C free function `name`, or a no-op when the library lacks it."""
    return getattr(lib, name) if name not in missing else (lambda handle: None)


def encode_path(path):
    return os.fsencode(path) if path is not None else None
