"""Options: the numbered, typed key/value bag every libmm call reads its settings from."""
import ctypes

from . import _native
from ._native import MMError, Status, byref, call


class ProgressStage(_native.Enum):
    MODEL_LOAD = 1
    IMAGE_ENCODE = 2


_TYPES = {1: int, 2: float, 3: str}


def _discover_keys():
    """name -> (key number, Python type), read from the library (keys 0..999)."""
    keys = {}
    t = ctypes.c_int()
    for key in range(1000):
        if _native.lib.mm_option_type(key, byref(t)) == Status.OK:
            keys[_native.lib.mm_option_name(key).decode()] = (key, _TYPES[t.value])
    return keys


KEYS = _discover_keys()


class _Progress:
    """A Python progress function as a C callback; remembers an exception it raised."""

    def __init__(self, fn=None):
        self.error = None
        if fn is None:
            self.c_callback = _native.PROGRESS_FN()  # NULL: no callback
            return

        def trampoline(user, stage, done, total):
            try:
                return 1 if fn(ProgressStage(stage), done, total) else 0
            except BaseException as e:  # KeyboardInterrupt too: stop cleanly, raise it later
                self.error = e
                return 1

        self.c_callback = _native.PROGRESS_FN(trampoline)


class Options(_native.Handle):
    """A bag of settings, e.g. Options(temperature=0.7, max_tokens=64, n_threads=4).

    Items: opts["top_p"] = 0.9; opts["top_p"] (the default when unset); del opts["top_p"].
    Names are those of mm_option_name() ("n_threads", "chat_template", ...); Options.KEYS lists
    them. progress=fn sets a progress callback fn(stage, done, total); a true return value, or an
    exception, stops the operation (the exception is then raised by the call that was stopped).
    """

    KEYS = KEYS
    _free = staticmethod(_native.lib.mm_options_free)

    def __init__(self, progress=None, **values):
        self._handle = _native.make_handle("mm_options_create")
        self._progress = _Progress()
        for name, value in values.items():
            self[name] = value
        if progress is not None:
            self.set_progress(progress)

    @staticmethod
    def _key(name):
        try:
            return KEYS[name]
        except KeyError:
            raise KeyError("unknown option %r (known: %s)" % (name, ", ".join(sorted(KEYS))))

    def __setitem__(self, name, value):
        key, kind = self._key(name)
        if kind is int:
            if not isinstance(value, int):
                raise TypeError("option %r takes an int" % name)
            call("mm_options_set_int", self, key, value)
        elif kind is float:
            call("mm_options_set_float", self, key, float(value))
        else:
            if not isinstance(value, str):
                raise TypeError("option %r takes a str" % name)
            call("mm_options_set_string", self, key, value.encode())

    def __getitem__(self, name):
        key, kind = self._key(name)
        if kind is int:
            v = ctypes.c_int64()
            call("mm_options_get_int", self, key, byref(v))
            return v.value
        if kind is float:
            v = ctypes.c_double()
            call("mm_options_get_float", self, key, byref(v))
            return v.value
        v = ctypes.c_char_p()
        call("mm_options_get_string", self, key, byref(v))
        return v.value.decode() if v.value is not None else None

    def __delitem__(self, name):
        call("mm_options_unset", self, self._key(name)[0])

    def set_progress(self, fn):
        """fn(stage: ProgressStage, done: int, total: int) -> bool (True stops); None removes."""
        progress = _Progress(fn)
        call("mm_options_set_progress", self, progress.c_callback, None)
        self._progress = progress  # the C side holds only the function pointer

    def raise_progress_error(self, error):
        """After a call with these options failed with `error`: if the progress callback raised,
        raise that instead (chained to the MMError)."""
        pending, self._progress.error = self._progress.error, None
        if pending is not None and isinstance(error, MMError) and \
                error.status == Status.ERR_CANCELLED:
            raise pending from error

    def copy(self):
        new = Options.__new__(Options)
        new._handle = _native.make_handle("mm_options_copy", self)
        new._progress = self._progress  # the copy calls the same callback
        return new

    def __repr__(self):
        return "Options(%s)" % ", ".join("%s=%r" % (n, self[n]) for n in sorted(KEYS))


def as_options(options):
    """None, an Options, or a dict of settings -> (Options or None)."""
    if options is None or isinstance(options, Options):
        return options
    if isinstance(options, dict):
        return Options(**options)
    raise TypeError("options must be an Options, a dict or None")
