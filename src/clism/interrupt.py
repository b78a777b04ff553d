"""Ctrl-C that cannot be lost.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be when SIGINT arrives.
If that is inside a ``__del__``, a garbage-collector or weakref callback, the exception is
printed as "Exception ignored in ..." and dropped, and the command runs on to the end (seen on a
busy machine: a grid given Ctrl-C finished with status 0). The CLI's handler
(``recording_ctrl_c``) still raises at once, so a Ctrl-C usually stops the command where it is,
and it also records the request: the long loops call ``stop_if_requested`` at points where
stopping is safe (each training step, each inference batch, each grid cell), so an interrupt that
was swallowed stops the run there instead. Library callers outside that block keep Python's
default behaviour.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

_requested = False


def _on_sigint(signum, frame) -> None:
    global _requested
    _requested = True
    raise KeyboardInterrupt


@contextlib.contextmanager
def recording_ctrl_c() -> Iterator[None]:
    """Route SIGINT through the recording handler for the block, then restore the one before
    (main thread only, as ``signal`` requires; elsewhere the block runs unchanged)."""
    global _requested
    _requested = False
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_if_requested() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C came and was swallowed on its way."""
    if _requested:
        raise KeyboardInterrupt
