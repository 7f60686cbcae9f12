"""Video: a clip held by the library as its sampled frames, each a picture for the vision
tower (LLaVA-NeXT-Video pools each frame's features before the projector)."""
import ctypes

from . import _native
from .image import Image, byte_buffer
from .options import as_options


class Video(_native.Handle):
    """A video clip. Video.from_frames(images, times=None) takes Image frames (times in
    seconds, default frame i at i s); Video.open(path) and Video.from_bytes(data) read a file
    through FFmpeg (a build without it raises MMError with Status.ERR_UNSUPPORTED, see
    files_available()). The frames are sampled when the clip is made, as options (Options or
    dict) say: video_frames (N uniformly, default 8), video_interval (one every S seconds),
    video_max_frames, video_max_seconds."""

    _free = staticmethod(_native.free_function("mm_video_free"))

    def __init__(self, handle):
        self._handle = handle

    @classmethod
    def from_frames(cls, frames, times=None, options=None):
        frames = list(frames)
        if not frames or not all(isinstance(f, Image) for f in frames):
            raise TypeError("frames: a non-empty sequence of Image expected")
        handles = (ctypes.c_void_p * len(frames))(*[f._as_parameter_.value for f in frames])
        stamps = None
        if times is not None:
            times = [float(t) for t in times]
            if len(times) != len(frames):
                raise ValueError("times: %d for %d frames" % (len(times), len(frames)))
            stamps = (ctypes.c_double * len(times))(*times)
        return cls(_native.make_handle("mm_video_from_frames", handles, stamps, len(frames),
                                       as_options(options)))

    @classmethod
    def open(cls, path, options=None):
        return cls(_native.make_handle("mm_video_load_file", _native.encode_path(path),
                                       as_options(options)))

    @classmethod
    def from_bytes(cls, data, options=None):
        """From the bytes of a video file (any bytes-like object)."""
        buf, n = byte_buffer(data)
        return cls(_native.make_handle("mm_video_load_memory", buf, n, as_options(options)))

    def __len__(self):
        return _native.lib.mm_video_n_frames(self)

    def times(self):
        """The sampled frames' times in seconds."""
        return [_native.lib.mm_video_frame_time(self, i) for i in range(len(self))]

    def __repr__(self):
        if not self._handle:
            return "Video(closed)"
        return "Video(%d frames)" % len(self)


def files_available():
    """Whether this libmm reads video files (built with FFmpeg)."""
    return bool(_native.need("mm_video_files_available")())
