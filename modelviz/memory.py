"""Peak resident memory of this process, for the scale tests and the memory benchmarks."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss() -> int:
    """Bytes at the high-water mark. VmHWM starts afresh at exec, where ``ru_maxrss`` would
    carry a forking parent's size over, so a fresh subprocess measures only itself."""
    try:
        with Path("/proc/self/status").open(encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
