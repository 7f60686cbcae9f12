"""libmm's log callback bridged to Python's `logging` (logger name "libmm").

At import, messages at WARNING and above are routed to the logger; set_log_level() changes the
threshold the library applies before calling back (so DEBUG costs nothing unless asked for)."""
import atexit
import logging

from . import _native

logger = logging.getLogger("libmm")

_TO_PYTHON = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}


def _to_c_level(level):
    if level <= logging.DEBUG:
        return 0
    if level <= logging.INFO:
        return 1
    if level <= logging.WARNING:
        return 2
    return 3


@_native.LOG_FN
def _bridge(user, level, message):
    logger.log(_TO_PYTHON.get(level, logging.ERROR), "%s", message.decode("utf-8", "replace"))


def set_log_level(level):
    """Pass libmm messages at or above `level` (a logging level such as logging.DEBUG) to the
    "libmm" logger, and set that logger's level to match. None silences the library."""
    if level is None:
        _native.lib.mm_set_log(_native.LOG_FN(), None, 0)
        return
    logger.setLevel(level)
    _native.lib.mm_set_log(_bridge, None, _to_c_level(level))


def _silence_at_exit():
    # Objects freed during interpreter shutdown must not call back into a dying interpreter.
    _native.lib.mm_set_log(_native.LOG_FN(), None, 0)


set_log_level(logging.WARNING)
atexit.register(_silence_at_exit)
