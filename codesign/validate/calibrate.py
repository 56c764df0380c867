"""Host calibration: measure this machine with the kernel runner and write a hardware spec.

What is measured, and how each figure enters the spec (all single-call medians of cold
inputs unless said otherwise; fits minimise *relative* residuals):

- ``compute.matrix.peak[dtype]``: a large GEMM (n^3 with n sized so one call lasts tens
  of ms) per datatype, efficiency 1.0 (the figure *is* the attainable rate).
- ``compute.vector.peak[dtype]``: a one-FLOP-per-element ufunc (``add``) on
  L1-resident operands, the slope of a size sweep (call overhead removed).
- ``compute.vector.transcendental``: ``exp`` on L2-resident operands, slope of a sweep.
- memory levels L1/L2/L3 (capacities from /sys) and DRAM (capacity from /proc/meminfo):
  a read kernel (BLAS GEMV, the matrix read once) at working sets inside each level;
  t = a + bytes/bw fitted per level (Williams-style attainable bandwidth), efficiency 1.0.
- ``kernel_overhead``: one minimal library call (elementwise add of 8 values).
- ``kernels``: per operator kind (and impl) a profile from size sweeps of the real
  kernel on calibration shapes (disjoint from the validation shapes):
    t(x) = a + b x,  x = the op's minimal bytes (inputs + outputs + weights + KV once)
    calls  = a / kernel_overhead              (library calls the kernel really makes)
    passes = b x DRAM bandwidth               (multiples of the minimal traffic moved:
                                               temporaries, extra passes, exp time)
  and for matrix kinds additionally on compute-bound shapes
    efficiency = FLOPs / (t x matrix peak)    (achieved fraction of the peak).
  Skinny GEMMs (m <= 16) get their own profile, measured on weights larger than the
  LLC (``gemm.skinny`` for 2 <= m <= 16 and ``gemm.gemv`` for m = 1, where BLAS
  switches to a GEMV kernel): passes = time x DRAM bandwidth / minimal bytes.

Neglected: frequency boost/thermal drift (calibrate under validation conditions),
NUMA (a single-socket VM), and how ``passes`` splits between memory and transcendental
time (the engine takes the max of the two; the slope here carries both).
"""
from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CodesignError
from ..workload.ops import Op
from . import host
from .kernels import backend as get_backend
from .runner import run_op
from .timing import measure, thread_limit

# shapes used only for calibration (validation uses real model dimensions)
_NORM_HIDDEN = 2560
_SOFTMAX_ROW = 1000
_ROPE_HD = 96
_SKINNY_KN = (2560, 6912)          # 70 MB of fp32 weights: larger than a 32 MiB LLC
_GEMM_SHAPES = ((96, 2560, 6912), (384, 6912, 2560))   # (m, k, n) compute-bound LLM-like GEMMs


@dataclass(frozen=True)
class Budget:
    """How hard to measure: per-point time cap and sweep sizes (quick: for tests)."""
    max_time: float
    sample_s: float
    min_samples: int
    vec_sizes: tuple        # elements per operand for vector-kind sweeps
    gemm_target_s: float    # one large-GEMM call lasts about this long
    skinny: bool
    bw_dram: int            # bytes of the DRAM read working set
    attn_ctx: tuple

    @classmethod
    def full(cls):
        return cls(max_time=0.25, sample_s=0.02, min_samples=5,
                   vec_sizes=(2**11, 2**14, 2**17, 2**20, 2**22), gemm_target_s=0.05, skinny=True,
                   bw_dram=256 * 2**20, attn_ctx=(400, 1600, 6000))

    @classmethod
    def quick(cls):
        return cls(max_time=0.01, sample_s=0.002, min_samples=3, vec_sizes=(2**10, 2**13, 2**15),
                   gemm_target_s=0.005, skinny=False, bw_dram=64 * 2**20, attn_ctx=(64, 200))


def fit_affine(x, t) -> tuple[float, float]:
    """(a, b) >= 0 minimising sum(((a + b x - t) / t)^2): relative residuals, so small and
    large sizes weigh alike (the validation metric is a relative error)."""
    x, t = np.asarray(x, float), np.asarray(t, float)
    A = np.stack([1 / t, x / t], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, np.ones_like(t), rcond=None)
    if a < 0:      # no measurable intercept: proportional fit
        a, b = 0.0, float(np.sum(x / t) / np.sum((x / t) ** 2))
    if b < 0:      # no measurable slope: constant
        a, b = float(np.sum(1 / t) / np.sum(1 / t ** 2)), 0.0
    return float(a), float(b)


class Calibrator:
    def __init__(self, backend: str = "numpy", device: str = "cpu", threads: int = 1, dtype: str = "fp32",
                 quick: bool = False, log=None):
        self.b = get_backend(backend, device)
        self.backend, self.device, self.threads, self.dtype = backend, device, threads, dtype
        self.budget = Budget.quick() if quick else Budget.full()
        self.log = log or (lambda msg: None)
        self.what: dict[str, str] = {}      # figure path -> what was measured
        self.itemsize = 8 if dtype == "fp64" else 2 if dtype in ("fp16", "bf16") else 4

    # -- helpers -------------------------------------------------------------
    def _kw(self, **over):
        b = self.budget
        kw = dict(max_time=b.max_time, sample_s=b.sample_s, min_samples=b.min_samples)
        kw.update(over)
        return kw

    def time_op(self, op: Op, dtype: str | None = None, **over) -> float:
        return run_op(op, backend=self.backend, device=self.device, dtype=dtype or self.dtype,
                      threads=self.threads, **self._kw(**over)).seconds

    def _time_hot(self, fn, args, **over) -> float:
        with thread_limit(self.threads, self.backend):
            return measure(fn, [args], sync=self.b.sync, event_timer=self.b.event_timer, threads=self.threads,
                           **self._kw(**over)).median_s

    def _arr(self, n: int, dtype: str):
        """A hot operand of n values of dtype on the backend's device."""
        from .kernels import Operand
        kern = self.b.kernel(Op(name="a", kind="activation", phase="prefill", impl="relu", elements=n), dtype)
        return self.b.alloc(kern, Operand("x", (n,), "act"), 1, np.random.default_rng(1))[0]

    def _lib(self):
        if self.backend == "torch":
            import torch
            return torch
        return np

    # -- compute -------------------------------------------------------------
    def gemm_peak(self, dtype: str) -> float | None:
        """FLOP/s of a large square GEMM, n chosen so one call takes ~gemm_target_s."""
        try:
            probe = Op(name="g", kind="gemm", phase="prefill", m=128, n=128, k=128, flops=2 * 128**3)
            t = self.time_op(probe, dtype, max_time=0.02, min_samples=2)
        except CodesignError:
            return None
        rate = probe.flops / t
        n = int(min(2048, max(128, (self.budget.gemm_target_s * rate / 2) ** (1 / 3))) // 64 * 64)
        op = Op(name="g", kind="gemm", phase="prefill", m=n, n=n, k=n, flops=2.0 * n**3)
        peak = op.flops / self.time_op(op, dtype, max_time=max(self.budget.max_time, 3 * self.budget.gemm_target_s))
        self.what[f"compute.matrix.peak.{dtype}"] = f"{n}x{n}x{n} {dtype} GEMM"
        self.log(f"  matrix {dtype}: {peak / 1e9:.3g} GFLOP/s ({n}^3)")
        return peak

    def vector_peak(self, dtype: str) -> float | None:
        lib = self._lib()
        sizes = (512, 1024, 2048, 4096)        # 3 operands x 4096 x 4 B = 48 KiB: L1/L2
        try:
            arrs = [(self._arr(n, dtype), self._arr(n, dtype), self._arr(n, dtype)) for n in sizes]
        except CodesignError:
            return None
        ts = [self._time_hot(lambda a, b, c: lib.add(a, b, out=c), arr) for arr in arrs]
        _, slope = fit_affine(sizes, ts)
        if slope <= 0:
            slope = ts[-1] / sizes[-1]
        self.what[f"compute.vector.peak.{dtype}"] = f"{dtype} elementwise add on L1-resident operands (slope)"
        return 1.0 / slope

    def transcendental(self) -> float:
        lib = self._lib()
        sizes = (2048, 8192, 32768)
        arrs = [(self._arr(n, self.dtype), self._arr(n, self.dtype)) for n in sizes]
        ts = [self._time_hot(lambda a, o: lib.exp(a, out=o), arr) for arr in arrs]
        _, slope = fit_affine(sizes, ts)
        self.what["compute.vector.transcendental"] = f"{self.dtype} exp on L2-resident operands (slope)"
        return 1.0 / max(slope, 1e-15)

    def overhead(self) -> float:
        lib = self._lib()
        a, b = self._arr(8, self.dtype), self._arr(8, self.dtype)
        t = self._time_hot(lambda x, y: lib.add(x, y), (a, b))
        self.what["kernel_overhead"] = "one elementwise add of 8 values (output allocated)"
        return t

    # -- memory --------------------------------------------------------------
    def read_bandwidth(self, sizes_bytes, name: str) -> float:
        """Bytes/s of a read kernel at working sets within a level: a BLAS GEMV (matrix of the
        working-set size times a short vector that stays in L1), the access pattern of
        decode's weight streaming. t = a + bytes / bw, fitted over the sizes."""
        cols = 64 if min(sizes_bytes) < 64 * 1024 else 1024
        n = [max(cols, s // self.itemsize // cols * cols) for s in sizes_bytes]
        x = self._arr(cols, self.dtype)
        arrs = [(self._arr(k, self.dtype).reshape(k // cols, cols), x) for k in n]
        ts = [self._time_hot(lambda a, v: a @ v, arr) for arr in arrs]
        _, slope = fit_affine([k * self.itemsize for k in n], ts)
        if slope <= 0:
            slope = ts[-1] / (n[-1] * self.itemsize)
        bw = 1.0 / slope
        self.what[f"memory.{name}.bandwidth"] = (f"read kernel (GEMV) at {', '.join(_size(s) for s in sizes_bytes)}"
                                                 " working sets (slope)")
        self.log(f"  {name}: {bw / 1e9:.3g} GB/s")
        return bw

    def memory_levels(self) -> list[dict]:
        if self.device == "cuda":
            return self._gpu_memory()
        caches = host.caches()
        if not caches:
            raise CodesignError("cannot read the cache sizes from /sys/devices/system/cpu/cpu0/cache")
        levels: list[dict[str, Any]] = []
        dram = self.budget.bw_dram
        levels.append({"name": "DRAM", "kind": "ddr", "capacity": host.memory_bytes(),
                       "bandwidth": self.read_bandwidth((dram // 2, dram), "DRAM"), "efficiency": 1.0})
        self.what["memory.DRAM.capacity"] = "MemTotal in /proc/meminfo"
        for c in reversed(caches):
            name = f"L{c.level}"
            cap = c.capacity
            bw = self.read_bandwidth((cap // 8, cap // 4, cap * 3 // 8, cap // 2), name)
            outer = levels[-1]
            if bw < outer["bandwidth"]:
                # the per-call overhead (~1 us) hides the time to read a few KiB: the slope is
                # unresolvable, so the level is given the outer level's rate (a lower bound)
                self.what[f"memory.{name}.bandwidth"] += (f"; measured {bw / 1e9:.3g} GB/s is below "
                                                          f"{outer['name']}'s, so {outer['name']}'s rate is used "
                                                          "(a lower bound)")
                bw = outer["bandwidth"]
            levels.append({"name": name, "kind": "cache", "capacity": cap, "per_core": c.shared_cpus == 1,
                           "bandwidth": bw, "efficiency": 1.0})
            self.what[f"memory.{name}.capacity"] = f"/sys/devices/system/cpu/cpu0/cache (level {c.level})"
        return levels

    def _gpu_memory(self) -> list[dict]:
        import torch
        props = torch.cuda.get_device_properties(0)
        l2 = int(getattr(props, "L2_cache_size", 0)) or 50 * 2**20
        self.what["memory.HBM.capacity"] = "torch.cuda.get_device_properties(0).total_memory"
        self.what["memory.L2.capacity"] = "torch.cuda.get_device_properties(0).L2_cache_size"
        big = max(self.budget.bw_dram, 8 * l2)
        return [{"name": "HBM", "kind": "hbm", "capacity": props.total_memory,
                 "bandwidth": self.read_bandwidth((big // 2, big), "HBM"), "efficiency": 1.0},
                {"name": "L2", "kind": "cache", "capacity": l2,
                 "bandwidth": self.read_bandwidth((l2 // 8, l2 // 4, l2 // 2), "L2"), "efficiency": 1.0}]

    # -- kernel profiles -----------------------------------------------------
    def _profile(self, make_op, sizes, bw: float, ovh: float, what: str) -> dict:
        """calls and passes from a size sweep of the real kernel (see module docstring)."""
        xs, ts = [], []
        for s in sizes:
            op = make_op(s)
            xs.append(minimal_bytes(op, self.itemsize))
            ts.append(self.time_op(op))
        a, b = fit_affine(xs, ts)
        prof = {"calls": round(max(a / ovh, 1.0), 2), "passes": round(max(b * bw, 0.05), 3)}
        self.what_kernels[what] = f"{len(sizes)}-point sweep, {_size(xs[0])}..{_size(xs[-1])} minimal traffic"
        self.log(f"  {what}: calls {prof['calls']}, passes {prof['passes']}")
        return prof

    def _stream_ratio(self, ops, bw: float, what: str) -> dict:
        """passes = time x DRAM bandwidth / minimal bytes on weights larger than the LLC (median
        over the shapes): how many times slower than one stream of the weights a skinny GEMM is.
        The per-call intercept is negligible next to streaming tens of MB, so calls = 1."""
        ratios = [self.time_op(op) * bw / minimal_bytes(op, self.itemsize) for op in ops]
        prof = {"calls": 1.0, "passes": round(float(np.median(ratios)), 3)}
        self.what_kernels[what] = ("time x DRAM bandwidth / minimal bytes, median over "
                                   + ", ".join(f"{o.m}x{o.k}x{o.n}" for o in ops))
        self.log(f"  {what}: passes {prof['passes']} ({', '.join(f'{r:.2f}' for r in ratios)})")
        return prof

    def _efficiency(self, ops, peak: float) -> float:
        effs = [op.flops / (self.time_op(op) * peak) for op in ops]
        return float(min(1.0, max(0.01, np.median(effs))))

    def profiles(self, bw: float, ovh: float, peak: float) -> dict:
        B = self.budget
        self.what_kernels: dict[str, str] = {}
        P = "prefill"
        out = {}
        vec = B.vec_sizes

        def vec_op(kind, impl, inputs=1):
            return lambda n: Op(name=kind, kind=kind, phase=P, impl=impl, elements=n,
                                act_in_elems=inputs * n, act_out_elems=n)
        for impl in ("silu", "gelu", "gelu_tanh", "relu"):
            out[f"activation.{impl}"] = self._profile(vec_op("activation", impl), vec, bw, ovh, f"activation.{impl}")
        for impl in ("add", "mul"):
            out[f"elementwise.{impl}"] = self._profile(vec_op("elementwise", impl, 2), vec, bw, ovh,
                                                       f"elementwise.{impl}")
        h = _NORM_HIDDEN
        for impl in ("rmsnorm", "layernorm"):
            out[f"norm.{impl}"] = self._profile(
                lambda n, impl=impl: Op(name="norm", kind="norm", phase=P, impl=impl, m=max(1, n // h), n=h,
                                        elements=max(1, n // h) * h, act_in_elems=max(1, n // h) * h,
                                        act_out_elems=max(1, n // h) * h,
                                        weight_elems=h * (2 if impl == "layernorm" else 1)),
                vec, bw, ovh, f"norm.{impl}")
        r = _SOFTMAX_ROW
        out["softmax"] = self._profile(
            lambda n: Op(name="softmax", kind="softmax", phase=P, impl="softmax", m=max(1, n // r), n=r,
                         elements=max(1, n // r) * r, act_in_elems=max(1, n // r) * r,
                         act_out_elems=max(1, n // r) * r), vec, bw, ovh, "softmax")
        hd = _ROPE_HD
        out["rope"] = self._profile(
            lambda n: Op(name="rope", kind="rope", phase=P, impl="rope", k=hd, m=max(1, n // (hd * 8)),
                         elements=max(1, n // (hd * 8)) * hd * 8, act_in_elems=max(1, n // (hd * 8)) * hd * 8,
                         act_out_elems=max(1, n // (hd * 8)) * hd * 8), vec, bw, ovh, "rope")
        out["embedding"] = self._profile(
            lambda n: Op(name="embedding", kind="embedding", phase=P, m=max(1, n // h), n=h,
                         elements=max(1, n // h) * h, weight_elems=max(1, n // h) * h,
                         act_out_elems=max(1, n // h) * h), vec, bw, ovh, "embedding")
        # GEMMs: compute-bound LLM-like shapes -> efficiency; skinny ones on cold weights -> passes
        gem = [_gemm_op(m, k, n) for m, k, n in (_GEMM_SHAPES if B.skinny else ((32, 256, 512),))]
        out["gemm"] = {"calls": 1.0, "efficiency": round(self._efficiency(gem, peak), 3)}
        self.what_kernels["gemm"] = "efficiency: median over " + ", ".join(f"{o.m}x{o.k}x{o.n}" for o in gem)
        k, n = _SKINNY_KN if B.skinny else (256, 512)
        out["gemm.skinny"] = self._stream_ratio([_gemm_op(m, k, n) for m in (2, 4, 8, 16)], bw, "gemm.skinny")
        out["gemm.gemv"] = self._stream_ratio([_gemm_op(1, k, n), _gemm_op(1, n, k)], bw, "gemm.gemv")
        # attention: decode-like shapes (memory-bound) -> calls/passes; prefill-like -> efficiency
        # head dim 128, the one LLMs use (row length changes the library's inner loops); the
        # head counts and contexts stay apart from the validation shapes
        d = _ATTN_HEAD_DIM
        for kind in ("attn_score", "attn_context", "attention"):
            # two head counts separate per-call from per-head library calls (batched matmul
            # and the blocked attention loop call the library once per head)
            few = self._profile(lambda c, kind=kind: _attn_op(kind, 4, 2, c, d), B.attn_ctx, bw, ovh, kind)
            prof = self._profile(lambda c, kind=kind: _attn_op(kind, 16, 2, c, d), B.attn_ctx, bw, ovh, kind)
            per = max((prof["calls"] - few["calls"]) / 12.0, 0.0)
            prof["calls_per_batch"] = round(per, 3)
            prof["calls"] = round(max(prof["calls"] - 16 * per, 1.0), 2)
            self.what_kernels[kind] += "; calls = c0 + c1 x heads from sweeps at 4 and 16 heads"
            s = B.attn_ctx[0]
            prof["efficiency"] = round(self._efficiency([_attn_op(kind, 4, s, s, d, P)], peak), 3)
            self.what_kernels[kind] += f"; efficiency: prefill {s}x{s}, 4 heads, d={d}"
            out[kind] = prof
            # one query row per head (MHA decode) runs the library's matrix-vector path
            gv = self._profile(lambda c, kind=kind: _attn_op(kind, 16, 1, c, d), B.attn_ctx, bw, ovh,
                               f"{kind}.gemv")
            gv["calls_per_batch"] = prof["calls_per_batch"]
            gv["calls"] = round(max(gv["calls"] - 16 * prof["calls_per_batch"], 1.0), 2)
            out[f"{kind}.gemv"] = gv
        return out

    # -- all -----------------------------------------------------------------
    def run(self) -> dict:
        t0 = time.perf_counter()
        self.log(f"calibrating {self.backend}/{self.device}, {self.threads} thread(s), profiles in {self.dtype}")
        ovh = self.overhead()
        self.log(f"  kernel overhead: {ovh * 1e6:.3g} us")
        dtypes = ["fp64", "fp32", "fp16", "bf16", "int8"]
        matrix = {d: p for d in dtypes if (p := self.gemm_peak(d))}
        if self.dtype not in matrix:
            raise CodesignError(f"no {self.dtype} GEMM on the {self.backend} backend", field="dtype")
        vector = {d: p for d in ("fp64", "fp32", "fp16", "bf16") if (p := self.vector_peak(d))}
        trans = self.transcendental()
        self.log(f"  exp: {trans / 1e9:.3g} G/s; vector fp32 {vector.get('fp32', 0) / 1e9:.3g} GFLOP/s")
        levels = self.memory_levels()
        kernels = self.profiles(levels[0]["bandwidth"], ovh, matrix[self.dtype])
        return {"matrix": matrix, "vector": vector, "transcendental": trans, "overhead": ovh, "levels": levels,
                "kernels": kernels, "what": dict(self.what), "what_kernels": dict(self.what_kernels),
                "seconds": time.perf_counter() - t0}


_ATTN_HEAD_DIM = 128


def _gemm_op(m, k, n) -> Op:
    return Op(name="gemm", kind="gemm", phase="prefill" if m > 16 else "decode", m=m, n=n, k=k,
              flops=2.0 * m * n * k, weight_elems=float(k * n), act_in_elems=float(m * k), act_out_elems=float(m * n))


def _attn_op(kind, batch, m, ctx, d, phase="decode") -> Op:
    """Attention ops in the graph's convention (batch = sequences x KV heads, KV read from the cache)."""
    kv = batch * ctx * d
    f = 2.0 * batch * m * ctx * d
    base = dict(name=kind, kind=kind, phase=phase, batch=batch, m=m)
    if kind == "attn_score":
        return Op(**base, n=ctx, k=d, flops=f, act_in_elems=batch * m * d, act_out_elems=batch * m * ctx,
                  kv_read_elems=kv)
    if kind == "attn_context":
        return Op(**base, n=d, k=ctx, flops=f, act_in_elems=batch * m * ctx, act_out_elems=batch * m * d,
                  kv_read_elems=kv)
    return Op(**base, impl="fused", n=ctx, k=d, flops=2 * f, transcendentals=batch * m * ctx,
              act_in_elems=batch * m * d, act_out_elems=batch * m * d, kv_read_elems=2 * kv)


def minimal_bytes(op: Op, itemsize: int) -> float:
    """Traffic if every operand moved exactly once: inputs, outputs, weights, KV cache."""
    return itemsize * (op.act_in_elems + op.act_out_elems + op.weight_elems + op.kv_read_elems + op.kv_write_elems)


def _size(b: float) -> str:
    from ..units import format_quantity
    return format_quantity(b, "bytes")


def _median_results(runs: list[dict]) -> dict:
    """Figure-wise median over repeated calibrations (notes: values move 20-50% run to run)."""
    if len(runs) == 1:
        return runs[0]
    med = lambda xs: float(np.median(xs))  # noqa: E731
    out = dict(runs[0])
    out["matrix"] = {d: med([r["matrix"][d] for r in runs]) for d in runs[0]["matrix"]}
    out["vector"] = {d: med([r["vector"][d] for r in runs]) for d in runs[0]["vector"]}
    out["transcendental"] = med([r["transcendental"] for r in runs])
    out["overhead"] = med([r["overhead"] for r in runs])
    out["levels"] = [dict(lv, bandwidth=med([r["levels"][i]["bandwidth"] for r in runs]))
                     for i, lv in enumerate(runs[0]["levels"])]
    out["kernels"] = {k: {f: med([r["kernels"][k][f] for r in runs]) for f in prof}
                      for k, prof in runs[0]["kernels"].items()}
    out["seconds"] = sum(r["seconds"] for r in runs)
    return out


def calibrate(backend: str = "numpy", device: str = "cpu", threads: int = 1, dtype: str = "fp32",
              quick: bool = False, repeat: int = 1, log=None) -> dict:
    """Measure this machine; return a hardware spec mapping (``load_hardware`` accepts it)."""
    if threads < 1:
        raise CodesignError(f"threads must be >= 1, got {threads}", field="threads")
    cal = Calibrator(backend, device, threads, dtype, quick, log)
    runs = [cal.run() for _ in range(max(1, repeat))]
    res = _median_results(runs)
    return to_spec(res, backend=backend, device=device, threads=threads, dtype=dtype, repeat=repeat)


def to_spec(res: dict, *, backend: str, device: str, threads: int, dtype: str, repeat: int = 1) -> dict:
    date = _dt.date.today().isoformat()
    env = host.environment(backend)
    tag = f"codesign calibrate {date}"
    gpu = device == "cuda"
    name = f"host-{backend}-{device}-{threads}t"
    spec = {
        "name": name,
        "display_name": f"{env['cpu'] if not gpu else env.get('torch_cuda')} ({backend}, {threads} thread(s))",
        "class": "gpu" if gpu else "cpu",
        "notes": (f"Measured by codesign calibrate on {date} ({res['seconds']:.0f} s, median of {repeat} run(s)); "
                  f"kernel profiles at {dtype}. Environment fingerprint {host.fingerprint(env)}: {env}"),
        "compute": {
            "cores": threads,
            "matrix": {"peak": {d: float(v) for d, v in res["matrix"].items()}, "efficiency": 1.0},
            "vector": {"peak": {d: float(v) for d, v in res["vector"].items()},
                       "transcendental": float(res["transcendental"]), "efficiency": 1.0},
        },
        "memory": [{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in lv.items()}
                   for lv in res["levels"]],
        "kernel_overhead": float(res["overhead"]),
        "kernels": res["kernels"],
    }
    src = {"class": f"measured: {tag} ran on this machine",
           "compute.cores": f"measured: {tag} threads used ({threads}; threadpoolctl / torch.set_num_threads)",
           "compute.matrix.efficiency": f"measured: {tag} the peaks are attained rates (efficiency 1.0)",
           "compute.vector.efficiency": f"measured: {tag} the peaks are attained rates (efficiency 1.0)",
           "kernels": f"measured: {tag} size sweeps of the real kernels (calls = intercept / overhead, "
                      "passes = slope x DRAM bandwidth, efficiency = FLOPs / (time x peak))"}
    for path, what in res["what"].items():
        src[path] = f"measured: {tag} {what}"
    for lv in res["levels"]:
        src[f"memory.{lv['name']}.efficiency"] = f"measured: {tag} bandwidth is the attained read rate (1.0)"
        src.setdefault(f"memory.{lv['name']}.per_core", f"measured: {tag} /sys shared_cpu_list")
    for k, what in res.get("what_kernels", {}).items():
        src[f"kernels.{k}"] = f"measured: {tag} {what}"
    spec["sources"] = src
    return spec


def write_spec(spec: dict, path) -> None:
    """Write the spec as YAML with quantities in readable units."""
    import yaml

    from ..units import format_quantity
    out = dict(spec)
    c = out["compute"] = {**spec["compute"]}
    c["matrix"] = {**c["matrix"], "peak": {d: format_quantity(v, "rate", 4) for d, v in c["matrix"]["peak"].items()}}
    c["vector"] = {**c["vector"], "peak": {d: format_quantity(v, "rate", 4) for d, v in c["vector"]["peak"].items()},
                   "transcendental": f"{c['vector']['transcendental']:.4g} elem/s"}
    out["memory"] = [{**lv, "capacity": format_quantity(lv["capacity"], "bytes", 6),
                      "bandwidth": format_quantity(lv["bandwidth"], "bandwidth", 4)} for lv in spec["memory"]]
    out["kernel_overhead"] = format_quantity(spec["kernel_overhead"], "time", 4)
    with open(path, "w", encoding="utf-8") as f:
        f.write("# Written by `codesign calibrate`: every figure measured on the machine named in notes.\n")
        yaml.safe_dump(out, f, sort_keys=False, width=120, allow_unicode=True)
