"""What this machine lets a process use: CPUs after affinity and the cgroup quota.

No torch here: ``streams`` sizes its worker processes with it, and the upscale engine its
torch threads.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def cpu_quota(affinity: int, cfs: str | None) -> int:
    """Threads worth running: CPUs this process may use, capped by a cgroup CPU quota.

    ``cfs`` is cgroup v2's ``cpu.max`` text (``"200000 100000"`` or ``"max 100000"``);
    a quota of 1.5 CPUs gives 2 threads, never fewer than 1.
    """
    threads = max(1, affinity)
    if cfs:
        quota, _, period = cfs.strip().partition(" ")
        if quota != "max" and period:
            threads = min(threads, max(1, math.ceil(int(quota) / int(period))))
    return threads


def read_text(path: str) -> str | None:
    """A /proc or /sys file's text, or None where this system has none."""
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _cfs_text() -> str | None:
    """cgroup v2 ``cpu.max``, or the same built from cgroup v1's two files."""
    v2 = read_text("/sys/fs/cgroup/cpu.max")
    if v2 is not None:
        return v2
    quota, period = read_text("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), read_text("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
    if quota is None or period is None or int(quota) < 0:
        return None
    return f"{quota.strip()} {period.strip()}"


def usable_cpus() -> int:
    """CPUs this process may use: its affinity, capped by its cgroup's CPU quota."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cpu_quota(affinity, _cfs_text())
