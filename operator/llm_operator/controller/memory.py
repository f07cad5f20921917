"""Giving a burst's memory back to the system.

A burst of LLMService events parses bodies, builds plans and renders router configs by the thousand;
once it is over, little of that is alive (at 1000 LLMServices: 122 MiB live of 470 MiB held, read with
gdb in bench/operator_scale). Python's own small-object allocator keeps a partly used arena whole, so
the operator's resident memory stayed at the burst's peak. `llm-operator run` therefore runs the
interpreter on the C allocator (PYTHONMALLOC=malloc, see cli.py), and this loop asks glibc to return
the free pages (malloc_trim) once a while: after a burst, not during one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading

TRIM_INTERVAL_SECONDS = 30.0


def _libc_malloc_trim():
    """glibc's malloc_trim, or None on another C library (musl has none; the loop then does nothing)."""
    name = ctypes.util.find_library("c")
    try:
        function = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if function is not None:
        function.argtypes, function.restype = [ctypes.c_size_t], ctypes.c_int
    return function


class TrimLoop(threading.Thread):
    def __init__(self, interval: float = TRIM_INTERVAL_SECONDS) -> None:
        super().__init__(name="memory-trim", daemon=True)
        self.interval = interval
        self.stopped = threading.Event()
        self.trim = _libc_malloc_trim()

    def run(self) -> None:
        while self.trim is not None and not self.stopped.wait(self.interval):
            gc.collect()
            self.trim(0)
