"""This machine's memory as the kernel reports it: the process's peak, and what is available."""

from __future__ import annotations

import os
import resource
from pathlib import Path


def _proc_kib(file: str, key: str) -> int | None:
    """Bytes on the ``key:  N kB`` line of a /proc file; None where there is no such file."""
    try:
        with Path(file).open(encoding="ascii") as lines:
            for line in lines:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss() -> int:
    """Bytes at the high-water mark. VmHWM starts afresh at exec, where ``ru_maxrss`` would
    carry a forking parent's size over, so a fresh subprocess measures only itself."""
    peak = _proc_kib("/proc/self/status", "VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def available() -> int | None:
    """Bytes a new allocation can have without swapping: the kernel's MemAvailable, else all the
    physical memory; None where neither can be read."""
    free = _proc_kib("/proc/meminfo", "MemAvailable")
    if free is not None:
        return free
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
