"""libmm for Python: run multimodal language models (image, audio, video + text -> text) and CLIP
through the libmm C library with ctypes. No compiled extension: the package finds the shared
library ($MM_LIBRARY_PATH, else one beside the package, the source tree's lib/libmm.so.1, or the
system's) and refuses to load one whose ABI version differs from the one it was written for.

    import libmm
    model = libmm.Model("model.gguf", mmproj="mmproj.gguf")
    session = libmm.Session(model, {"max_tokens": 128})
    session.add_messages([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}},
        {"type": "text", "text": "What is in this picture?"}]}])
    for piece in session.generate():
        print(piece, end="", flush=True)
"""
from ._native import ABI_VERSION, LibraryNotFound, MMError, Status, lib as _lib
from .audio import Audio, resampling_available
from .video import Video, files_available as video_files_available
from .image import Embeddings, Image
from .log import logger, set_log_level
from .model import Model
from .options import Options, ProgressStage
from .points import Points
from .session import Session, StopReason

__all__ = ["ABI_VERSION", "Audio", "Embeddings", "Image", "LibraryNotFound", "MMError", "Model",
           "Options", "Points", "ProgressStage", "Session", "Status", "StopReason", "Video",
           "logger", "resampling_available", "set_log_level", "version", "version_number",
           "video_files_available"]


def version():
    """The loaded library's version string, "MAJOR.MINOR.PATCH"."""
    return _lib.mm_version_string().decode()


def version_number():
    """MAJOR*10000 + MINOR*100 + PATCH of the loaded library."""
    return _lib.mm_version_number()
