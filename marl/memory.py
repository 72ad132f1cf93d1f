"""Keep freed CPU memory for reuse instead of handing it back to the OS after every training step.

glibc's malloc serves allocations above a threshold (at most 32 MB) with fresh `mmap` pages and unmaps them
when they are freed, so every minibatch step pays page faults and kernel zeroing for its large temporaries
(gradients, optimizer scratch). A hypernetwork's generated-weight layers are tens of MB: measured on a
9M-parameter hypernetwork layer, one forward/backward/clip/Adam step took 24% less CPU time and caused 6x
fewer page faults with the pages kept. The cost is that the process's resident memory stays at its peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
_done = False


def reuse_freed_memory() -> bool:
    """Ask glibc to serve large allocations from its heap and never trim it (once per process). Returns
    whether it applied: False on other C libraries and platforms, where nothing changes."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    _done = bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
    return _done
