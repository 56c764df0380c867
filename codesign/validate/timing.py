"""Timing a kernel properly: warm-up, adaptive repetitions, spread, cold inputs, threads.

Protocol (see shared/notes/host-kernels.md for why each step is there):

1. Inputs come from a pool of independent input sets, rotated on every call, whose
   total size is at least ``2 x LLC``: each call reads operands that are not in any
   cache, as in a real forward pass where weights/KV stream from DRAM.
2. Warm-up calls (page faults, BLAS buffer allocation, lazy init) are not timed.
3. A *sample* repeats the kernel ``inner`` times so that it lasts ~``sample_s``
   (default 20 ms); kernels of a few microseconds are otherwise dominated by timer
   and loop noise. The sample's value is its time divided by ``inner``.
4. Samples are taken until the median is known to about +-3% (relative standard
   error of the median, 1.2533 x sigma / sqrt(n), sigma from the MAD), at least
   ``min_samples`` and at most ``max_samples``, or until ``max_time`` runs out.
5. Wall time (``perf_counter_ns``) and this thread's CPU time (``thread_time_ns``)
   are recorded for every sample; CPU time is robust to the scheduler lending the
   core to another process, wall time is what the model predicts. With more than one
   BLAS thread the CPU time only counts the calling thread.
6. glibc malloc is put in its long-running steady state first (see settle_allocator).
7. Other processes' load during the measurement is read from /proc/stat and
   recorded (``busy``), so noisy runs are flagged instead of silently scored.

On a GPU (a backend with a ``capture`` hook: CUDA graphs) the protocol differs where a GPU
differs: a kernel of a few microseconds is shorter than its host dispatch, so timing
launches from Python measures Python. ``inner`` calls, rotating through the whole pool
(sized from the L2, so each call's operands come from HBM), are captured once as a CUDA
graph and the *replays* are timed with CUDA events: device time per call, including the
short gap between graph-launched kernels that a captured decode step also pays. The
host's dispatch time per eager call is measured apart (``dispatch_s``). Before the first
sample the graph is replayed for ``RAMP_S`` so the clocks have left idle.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from threadpoolctl import threadpool_limits

from .host import LoadProbe
from .kernels import require_torch


@dataclass(frozen=True)
class Timing:
    """Seconds per kernel call."""
    median_s: float
    p10_s: float
    p90_s: float
    min_s: float
    max_s: float
    cv: float                 # coefficient of variation of the samples
    rel_err: float            # estimated relative standard error of the median
    samples: int
    inner: int                # calls per sample
    cpu_median_s: float       # this thread's CPU time per call (median over samples)
    busy: float | None        # other processes' CPU use during the run, in cores
    threads: int
    pool: int                 # input sets rotated
    dispatch_s: float | None = None   # GPU: host time to dispatch one eager call (not in median_s)
    graph: bool = False               # GPU: timed as CUDA-graph replays (device time)

    def as_dict(self) -> dict:
        return asdict(self)


def median_rel_err(x: np.ndarray) -> float:
    """Relative standard error of the median: 1.2533 * 1.4826 * MAD / sqrt(n) / median."""
    if len(x) < 2:
        return math.inf
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med)))
    return 1.2533 * 1.4826 * mad / math.sqrt(len(x)) / med if med > 0 else math.inf


# Bytes touched between two uses of an input set, in LLCs. Strict LRU would need just
# over 1; real LLCs (pseudo-LRU, AMD's victim L3) keep part of a cyclic working set
# that is only 2x their size, so the pool is made 4x.
COLD_FACTOR = 4.0


def pool_size(set_bytes: float, llc: int, *, factor: float = COLD_FACTOR, cap: int = 32768) -> int:
    """How many input sets to rotate so that a set is evicted before it is reused.

    Rotating n sets of size s touches n*s bytes between two uses of the same set; with
    n*s >= factor x LLC the set has left the cache.
    """
    if set_bytes <= 0:
        return 1
    return int(min(cap, max(2, math.ceil(factor * llc / set_bytes) + 1)))


# glibc malloc's steady state in a long-running process: its mmap threshold adapts upward
# to the largest freed chunk up to 32 MiB (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit), with the
# heap trimmed past twice that. A fresh process starts at 128 KiB, so temporaries of a
# few MiB are page-faulted in on every call until some larger op has run: the same
# kernel measured 5x slower depending on what ran before it. The runner fixes the
# thresholds at their steady-state values (mallopt), so a measurement does not depend on
# history; outputs >= 32 MiB are still freshly mapped per call, as in real runs.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20


@lru_cache(maxsize=1)
def settle_allocator() -> bool:
    """Put glibc malloc in its long-running steady state; False where that is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        return bool(ok and libc.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD) == 1)
    except (OSError, AttributeError):
        return False


@contextmanager
def thread_limit(threads: int, backend: str = "numpy"):
    """Limit BLAS/OpenMP threads (threadpoolctl) and torch's intra-op threads.

    torch's bundled MKL/oneDNN pool is not visible to threadpoolctl, hence
    ``torch.set_num_threads``.
    """
    old_torch = None
    torch = require_torch() if backend == "torch" else None
    if torch is not None:
        old_torch = torch.get_num_threads()
        torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        if torch is not None and old_torch is not None:
            torch.set_num_threads(old_torch)


def measure(fn: Callable, pool: Sequence[tuple], *, sync: Callable | None = None,
            event_timer: Callable | None = None, capture: Callable | None = None, threads: int = 1, warmup: int = 2,
            sample_s: float = 0.02, min_samples: int = 5, max_samples: int = 30,
            max_time: float = 1.0, target_rel_err: float = 0.03) -> Timing:
    """Time ``fn(*pool[i])`` rotating through ``pool``; see the module docstring.

    ``sync`` (e.g. ``torch.cuda.synchronize``) is called before reading a host timer.
    ``event_timer(run)`` (CUDA events) returns the device seconds of ``run()``.
    ``capture(work)`` (CUDA graphs) records ``work()`` once and returns a function that
    replays it and returns the replay's device seconds, or None where capture fails
    (then the events path is used).
    """
    if capture is not None:
        t = _measure_graph(fn, pool, capture=capture, sync=sync, threads=threads, warmup=warmup, sample_s=sample_s,
                           min_samples=min_samples, max_samples=max_samples, max_time=max_time,
                           target_rel_err=target_rel_err)
        if t is not None:
            return t
    settle_allocator()
    n_pool = len(pool)
    idx = 0

    def run(k: int):
        nonlocal idx
        for _ in range(k):
            fn(*pool[idx])
            idx = idx + 1 if idx + 1 < n_pool else 0
        if sync is not None:
            sync()

    t0 = time.perf_counter()
    for _ in range(max(warmup, 1)):
        run(1)
    once = (time.perf_counter() - t0) / max(warmup, 1)
    inner = max(1, min(100000, int(sample_s / max(once, 1e-9))))
    probe = LoadProbe()
    walls, cpus = [], []
    start = time.perf_counter()
    while True:
        if event_timer is not None:
            w = event_timer(lambda: run(inner))
            c = w
        else:
            c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
            run(inner)
            w1, c1 = time.perf_counter_ns(), time.thread_time_ns()
            w, c = (w1 - w0) * 1e-9, (c1 - c0) * 1e-9
        walls.append(w / inner)
        cpus.append(c / inner)
        n = len(walls)
        spent = time.perf_counter() - start
        if n >= max_samples:
            break
        if n >= min_samples and median_rel_err(np.asarray(walls)) <= target_rel_err:
            break
        if spent > max_time and n >= min(3, min_samples):
            break
    return _timing(walls, cpus, inner=inner, busy=probe.others(), threads=threads, pool=n_pool)


def _timing(walls, cpus, **kw) -> Timing:
    x = np.asarray(walls)
    return Timing(median_s=float(np.median(x)), p10_s=float(np.percentile(x, 10)), p90_s=float(np.percentile(x, 90)),
                  min_s=float(x.min()), max_s=float(x.max()), cv=float(x.std() / x.mean()) if x.mean() > 0 else 0.0,
                  rel_err=median_rel_err(x), samples=len(x), cpu_median_s=float(np.median(cpus)), **kw)


# GPU graph timing: most calls captured in one graph (capture costs ~10 us of host time a
# call, replays none), calls timed eagerly for the host dispatch, replay time before sampling
# that brings the clocks up from idle (they ramp within a few ms of load).
GRAPH_CALLS_MAX = 4096
DISPATCH_CALLS = 32
RAMP_S = 0.05


def _measure_graph(fn: Callable, pool: Sequence[tuple], *, capture: Callable, sync: Callable | None, threads: int,
                   warmup: int, sample_s: float, min_samples: int, max_samples: int, max_time: float,
                   target_rel_err: float) -> Timing | None:
    """Device time per call from CUDA-graph replays of ``inner`` calls (module docstring)."""
    n_pool = len(pool)

    def work(k: int) -> Callable[[], None]:
        def run() -> None:
            for i in range(k):
                fn(*pool[i % n_pool])
        return run

    t0 = time.perf_counter()
    for _ in range(max(warmup, 1)):           # lazy init (cuBLAS handles, workspaces) outside the graph
        work(1)()
        if sync is not None:
            sync()
    eager = (time.perf_counter() - t0) / max(warmup, 1)
    # fewer calls than the launch queue holds, so the host time is the dispatch alone (and
    # few where each call is long, so the queue drains quickly)
    k = DISPATCH_CALLS if eager < 1e-3 else 2
    t0 = time.perf_counter()
    work(k)()
    dispatch = (time.perf_counter() - t0) / k
    if sync is not None:
        sync()
    k0 = min(n_pool, 8)
    replay = capture(work(k0))
    if replay is None:
        return None
    once = float(np.median([replay() for _ in range(3)])) / k0
    inner = int(min(GRAPH_CALLS_MAX, max(n_pool, math.ceil(sample_s / max(once, 1e-9)))))
    if inner != k0:
        replay = capture(work(inner))
        if replay is None:
            return None
    ramp = time.perf_counter()
    while time.perf_counter() - ramp < RAMP_S:
        replay()
    walls: list[float] = []
    start = time.perf_counter()
    while True:
        walls.append(replay() / inner)
        n = len(walls)
        if n >= max_samples or (n >= min_samples and median_rel_err(np.asarray(walls)) <= target_rel_err):
            break
        if time.perf_counter() - start > max_time and n >= min(3, min_samples):
            break
    return _timing(walls, [dispatch] * len(walls), inner=inner, busy=None, threads=threads, pool=n_pool,
                   dispatch_s=dispatch, graph=True)
