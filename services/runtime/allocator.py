"""The C allocator's settings for a process: how many malloc arenas it may use.

glibc gives each thread that allocates while the others hold the arenas one of its own, up to
eight per core, and memory freed in one arena is not reused by another. gRPC's threads and the
event loop then each keep partly used arenas: the facade holding 5,000 sockets measured 212 MB
with glibc's default and 203 MB with two arenas (issue 4 wants it under 200 MB). Two is what
MALLOC_ARENA_MAX=2 sets; set here, it holds however the process is started."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 2


def limit_malloc_arenas(count: int = ARENAS) -> bool:
    """Whether the limit now holds: False where the C library is not glibc (nothing to do)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(M_ARENA_MAX, count))
    if not applied:
        log.warning("malloc arenas not limited", extra={"arenas": count})
    return applied
