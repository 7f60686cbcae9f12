"""Audio: a clip held by the library as mono float samples at its own rate, and the media
handles that let images and clips share one message."""
import ctypes

from . import _native
from .image import Image, byte_buffer, float_buffer
from .options import as_options

try:
    import numpy as _np
except ImportError:  # optional
    _np = None


class Audio(_native.Handle):
    """An audio clip. Build one with Audio.open(path) or Audio.from_bytes(data) (WAV: PCM
    8/16/24/32-bit or float, RIFF or RIFX, any channel count averaged into one; other formats
    raise MMError with Status.ERR_UNSUPPORTED), or Audio.from_samples(samples, sample_rate,
    channels=1) (float samples, interleaved when channels > 1). options (Options or dict) may
    set audio_max_seconds; a longer file fails with Status.ERR_LIMIT before it is read."""

    _free = staticmethod(_native.free_function("mm_audio_free"))

    def __init__(self, handle):
        self._handle = handle

    @classmethod
    def open(cls, path, options=None):
        opts = as_options(options)
        return cls(_native.make_handle("mm_audio_load_file", _native.encode_path(path), opts))

    @classmethod
    def from_bytes(cls, data, options=None):
        """From the bytes of a WAV file (any bytes-like object)."""
        buf, n = byte_buffer(data)
        return cls(_native.make_handle("mm_audio_load_memory", buf, n, as_options(options)))

    @classmethod
    def from_samples(cls, samples, sample_rate, channels=1):
        """From float samples (numpy array, float32 buffer or sequence), `channels` of them
        interleaved per frame."""
        ptr, n, keep = float_buffer(samples, what="samples")
        if channels < 1 or n % channels:
            raise ValueError("samples: %d values are not whole frames of %d channels"
                             % (n, channels))
        handle = _native.make_handle("mm_audio_from_samples", ptr, n // channels, channels,
                                     sample_rate)
        del keep
        return cls(handle)

    @property
    def sample_rate(self):
        return _native.lib.mm_audio_sample_rate(self)

    def __len__(self):
        return _native.lib.mm_audio_n_samples(self)

    @property
    def seconds(self):
        return len(self) / self.sample_rate

    def samples(self):
        """The mono samples: a float32 numpy array, or a list without numpy."""
        n = len(self)
        arr = (ctypes.c_float * n).from_address(_native.lib.mm_audio_samples(self))
        return _np.array(arr, dtype=_np.float32) if _np is not None else list(arr)

    def __repr__(self):
        if not self._handle:
            return "Audio(closed)"
        return "Audio(%.2f s at %d Hz)" % (self.seconds, self.sample_rate)


class Media(_native.Handle):
    """One image or clip as a media item (it keeps the object alive while it lives)."""

    _free = staticmethod(_native.free_function("mm_media_free"))

    def __init__(self, item):
        if isinstance(item, Audio):
            name = "mm_media_from_audio"
        elif isinstance(item, Image):
            name = "mm_media_from_image"
        else:
            raise TypeError("media: an Image or an Audio expected, got %s" % type(item).__name__)
        self._item = item
        self._handle = _native.make_handle(name, item)


def resampling_available():
    """Whether this libmm resamples clips to an encoder's rate (built with libsoxr)."""
    return bool(_native.need("mm_audio_resampling_available")())
