"""Facts about the machine the kernel runner measures: caches, memory, CPU, load.

Everything here is read from Linux pseudo-files (/sys, /proc) so that calibration
describes the machine it really ran on. Missing files (another OS, a container
hiding /sys) fall back to stated defaults that the caller records as such.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

from ..units import parse_quantity

_CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")
# A generous LLC guess when /sys does not tell (large enough that rotating buffers
# of 2x this size defeats any current desktop/server LLC per socket).
DEFAULT_LLC = 64 * 2**20


@dataclass(frozen=True)
class CacheLevel:
    level: int
    capacity: int        # bytes per instance
    shared_cpus: int     # CPUs sharing one instance (1 = private per core)


def caches(root: Path = _CACHE_DIR) -> tuple[CacheLevel, ...]:
    """Data/unified caches of cpu0, innermost first (instruction caches skipped)."""
    out = []
    if not root.is_dir():
        return ()
    for d in sorted(root.glob("index*")):
        try:
            kind = (d / "type").read_text().strip()
            if kind == "Instruction":
                continue
            level = int((d / "level").read_text())
            size = int(parse_quantity((d / "size").read_text().strip().replace("K", " KiB")
                                      .replace("M", " MiB"), "bytes"))
            shared = _count_cpus((d / "shared_cpu_list").read_text().strip())
        except (OSError, ValueError):
            continue
        out.append(CacheLevel(level, size, shared))
    return tuple(sorted(out, key=lambda c: c.level))


def _count_cpus(cpulist: str) -> int:
    """'0-1,4' -> 3."""
    n = 0
    for part in cpulist.split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return max(n, 1)


def llc_bytes() -> int:
    """Last-level cache size (bytes per instance), or DEFAULT_LLC if /sys does not say."""
    c = caches()
    return c[-1].capacity if c else DEFAULT_LLC


def memory_bytes() -> int:
    """Installed memory from /proc/meminfo (MemTotal)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> frozenset:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _proc_stat_busy() -> tuple[float, float] | None:
    """(busy jiffies, total jiffies) summed over all CPUs, or None off Linux."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    vals = [float(x) for x in first[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0.0)     # idle + iowait
    return sum(vals) - idle, sum(vals)


class LoadProbe:
    """CPU time other processes used while a measurement ran, as a fraction of one core.

    busy_others = (all CPUs' busy time - this process's CPU time) / wall time, from
    /proc/stat and os.times(); 0.3 means another process kept 30% of a core busy. A
    measurement taken while others were busy is flagged, not silently scored.
    """

    def __init__(self):
        self._t0 = time.perf_counter()
        self._stat0 = _proc_stat_busy()
        t = os.times()
        self._self0 = t.user + t.system

    def others(self) -> float | None:
        stat1 = _proc_stat_busy()
        if self._stat0 is None or stat1 is None:
            return None
        wall = time.perf_counter() - self._t0
        if wall <= 0.05:      # /proc/stat ticks at 100 Hz: too short to say
            return None
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        busy_all = (stat1[0] - self._stat0[0]) / hz
        t = os.times()
        mine = t.user + t.system - self._self0
        return max(busy_all - mine, 0.0) / wall


def environment(backend: str = "numpy") -> dict:
    """What decides kernel speed besides the hardware: library builds, threads, variables.

    OPENBLAS_CORETYPE and friends silently change the BLAS kernel, so they are recorded
    with every calibration (see shared/notes/host-kernels.md).
    """
    env = {k: v for k, v in os.environ.items()
           if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "GOTO", "BLIS_", "KMP_", "DNNL_", "ONEDNN_"))}
    info = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": [{k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                 for p in threadpool_info() if p.get("user_api") == "blas"],
        "env": env,
    }
    if backend == "torch":
        try:
            import torch  # optional dependency: recorded when installed (kernels.py imports this module)
            info["torch"] = torch.__version__
            info["torch_threads"] = torch.get_num_threads()
            info["torch_cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        except ImportError:
            pass
    return info


def fingerprint(info: dict) -> str:
    """A short stable key for an environment dict (for caching calibrations)."""
    return hashlib.sha256(json.dumps(info, sort_keys=True, default=str).encode()).hexdigest()[:12]
