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

On a GPU (torch, device cuda) the probes are sized to the device, since a 1088^3 product
or a 256 MB read is a few microseconds of launch noise there:

- matrix peaks: square products of 1024, 2048, 4096, 8192 (16384) per datatype (fp8
  through ``torch._scaled_mm`` where the card has it), growing until the rate rises less
  than ``GEMM_PLATEAU`` or a size costs more than ``GEMM_CAP_S``;
- HBM: a device-to-device copy of ``bw_dram`` (1 GiB) counting bytes read and written,
  the rate a stream of the weights sees; L2: the slope of copies inside the L2;
- vector and transcendental rates: elementwise kernels compiled at run time (jiterator)
  that do ``VECTOR_FMAS`` dependent FMAs (or ``EXP_CHAIN`` exps) per loaded element, so
  they are bound by the ALUs, not memory; PyTorch's 16-bit elementwise kernels compute in
  fp32, so the 16-bit figures are the rates PyTorch reaches, not packed-half2 peaks;
- ``kernel_overhead``: device time of a tiny kernel in a CUDA-graph replay (the gap a
  captured step pays per kernel); the host's eager dispatch time is logged beside it;
- every kernel is timed as CUDA-graph replays (see :mod:`.timing`).

Each calibrated GPU figure is checked against the datasheet of the card (the library spec
that ``DATASHEETS`` names for the device, or ``datasheet=``): above ``SANITY_HIGH`` x
the datasheet peak, or below ``SANITY_LOW`` x, the probe is broken (an unsynchronised
timer, a kernel too small to fill the device) and calibration stops with one line
instead of writing a spec that is wrong by orders of magnitude.

Neglected: frequency boost/thermal drift (calibrate under validation conditions),
NUMA (a single-socket VM), and how ``passes`` splits between memory and transcendental
time (the engine takes the max of the two; the slope here carries both).
"""
from __future__ import annotations

import datetime as _dt
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from ..errors import CodesignError
from ..hardware import load_hardware
from ..hardware.schema import OFFCHIP_KINDS, HardwareSpec
from ..units import format_quantity
from ..workload.ops import ATTENTION_KINDS, Op
from . import host
from .kernels import Operand, require_torch
from .kernels import backend as get_backend
from .runner import run_op
from .timing import measure, thread_limit

# shapes used only for calibration (validation uses real model dimensions)
_NORM_HIDDEN = 2560
_SOFTMAX_ROW = 1000
_ROPE_HD = 96

# GPU probes (module docstring)
GEMM_PLATEAU = 0.03        # a size that adds less than 3% throughput ends the sweep
GEMM_CAP_S = 0.25          # ... as does one product longer than this
VECTOR_FMAS = 512          # dependent FMAs per element: 1024 FLOP per 4-8 bytes moved
EXP_CHAIN = 64
SANITY_HIGH = 1.15         # boost clock over the clock datasheet peaks are quoted at (H100/H200: 1.98 / 1.83 GHz)
SANITY_LOW = 0.1
# torch.cuda.get_device_name() -> library spec whose datasheet figures bound the calibration
DATASHEETS = ((r"GH200", "gh200"), (r"H200", "h200"), (r"H100.*PCIe", "h100-pcie"), (r"H100", "h100-sxm"),
              (r"A100.*PCIe.*80|A100.*80.*PCIe", "a100-80gb-pcie"), (r"A100.*80GB", "a100-80gb"), (r"A100", "a100-40gb"),
              (r"B200", "b200"), (r"L40S", "l40s"), (r"L40\b", "l40"), (r"\bL4\b", "l4"), (r"\bA10\b", "a10"),
              (r"RTX 5090", "rtx-5090"), (r"RTX 4090", "rtx-4090"), (r"RTX 3090", "rtx-3090"), (r"RTX 3060", "rtx-3060"),
              (r"2080 Ti", "rtx-2080-ti"), (r"RTX A6000", "rtx-a6000"), (r"RTX A5000", "rtx-a5000"),
              (r"V100", "v100-sxm2"), (r"MI300X", "mi300x"), (r"MI325X", "mi325x"))


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
    gemm_sizes: tuple = (1024, 2048, 4096, 8192, 16384)   # GPU: square products, grown to the plateau
    gemm_shapes: tuple = ((96, 2560, 6912), (384, 6912, 2560))   # (m, k, n) compute-bound LLM-like GEMMs
    skinny_kn: tuple = (2560, 6912)        # fp32: 70 MB, larger than a 32 MiB LLC
    attn_prefill: tuple = (0, 4)           # (context, heads) of the attention efficiency probe; 0: attn_ctx[0]
    decode_heads: tuple = (4, 16)          # head counts of the decode attention sweeps
    pool_llc: int | None = None            # input pools stream past this many bytes (None: the real cache)

    @classmethod
    def full(cls):
        return cls(max_time=0.25, sample_s=0.02, min_samples=5,
                   vec_sizes=(2**11, 2**14, 2**17, 2**20, 2**22), gemm_target_s=0.05, skinny=True,
                   bw_dram=256 * 2**20, attn_ctx=(400, 1600, 6000))

    @classmethod
    def gpu(cls):
        """Sized for a data-centre GPU: operands of 0.5-128 MB, weights and KV caches above the L2."""
        return cls(max_time=0.3, sample_s=0.01, min_samples=5, vec_sizes=(2**18, 2**20, 2**22, 2**24, 2**26),
                   gemm_target_s=0.05, skinny=True, bw_dram=2**30, attn_ctx=(1000, 4000, 16000),
                   gemm_shapes=((1024, 5120, 13824), (4096, 13824, 5120)), skinny_kn=(5120, 13824),
                   # decode attention on enough (sequence x KV head) units to fill the device: fewer
                   # are bound by Little's law per unit (params.UNIT_BYTES_IN_FLIGHT), not the profile
                   attn_prefill=(4096, 32), decode_heads=(128, 512))

    @classmethod
    def quick(cls):
        """For tests: a few small sizes, and input pools of a few MB instead of 4x the last-level
        cache (filling ~70 pools of 128+ MB was most of a minute of page faults)."""
        return cls(max_time=0.01, sample_s=0.002, min_samples=3, vec_sizes=(2**10, 2**13, 2**15),
                   gemm_target_s=0.005, skinny=False, bw_dram=64 * 2**20, attn_ctx=(64, 200), gemm_sizes=(64, 128, 256),
                   pool_llc=2 * 2**20)


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
                 quick: bool = False, log=None, datasheet: str | None = "auto"):
        self.b = get_backend(backend, device)
        self.backend, self.device, self.threads, self.dtype = backend, device, threads, dtype
        self.budget = Budget.quick() if quick else Budget.gpu() if device == "cuda" else Budget.full()
        self.gpu = device == "cuda"
        self.dispatch: float | None = None      # GPU: host time to dispatch one eager kernel
        self.log = log or (lambda msg: None)
        self.sheet = self._datasheet(datasheet)
        self.what: dict[str, str] = {}      # figure path -> what was measured
        self.itemsize = 8 if dtype == "fp64" else 2 if dtype in ("fp16", "bf16") else 4

    def _datasheet(self, name: str | None) -> HardwareSpec | None:
        """The library spec whose datasheet figures bound this calibration (GPUs; None: no check)."""
        if name in (None, "none") or (name == "auto" and not self.gpu):
            return None
        if name == "auto":
            gpu = require_torch().cuda.get_device_name(0)
            name = datasheet_for(gpu)
            if name is None:
                self.log(f"  no datasheet in the library matches {gpu!r}: figures are not checked (pass --datasheet)")
                return None
        spec = load_hardware(name)
        self.log(f"  figures checked against the {spec.name} datasheet")
        return spec

    def _drop_slow_library_paths(self, matrix: dict) -> dict:
        """A datatype other than the profile's whose library kernel reaches under SANITY_LOW x the
        datasheet (torch._int_mm on Hopper: ~130 of 1979 TFLOP/s) measures the library, not
        the card: it is left out (the datasheet-derived figure stands in) and logged."""
        assert self.sheet is not None
        keep = {}
        for d, v in matrix.items():
            ref = self.sheet.compute.matrix.peak.get(d) if self.sheet.compute.matrix is not None else None
            if d != self.dtype and ref and v < SANITY_LOW * ref:
                self.log(f"  matrix {d}: {v / 1e12:.4g} TFLOP/s is {ref / v:.2g}x below the datasheet: the library's "
                         f"{d} kernel, not the card; left to the datasheet")
                self.what.pop(f"compute.matrix.peak.{d}", None)
                continue
            keep[d] = v
        return keep

    def _sm_count(self) -> int | None:
        if not self.gpu:
            return None
        return int(require_torch().cuda.get_device_properties(0).multi_processor_count)

    # -- helpers -------------------------------------------------------------
    def _kw(self, **over):
        b = self.budget
        kw = dict(max_time=b.max_time, sample_s=b.sample_s, min_samples=b.min_samples)
        kw.update(over)
        return kw

    def time_op(self, op: Op, dtype: str | None = None, **over) -> float:
        return run_op(op, backend=self.backend, device=self.device, dtype=dtype or self.dtype,
                      threads=self.threads, llc=self.budget.pool_llc, **self._kw(**over)).seconds

    def _time_hot(self, fn, args, **over) -> float:
        return self._timing(fn, args, **over).median_s

    def _timing(self, fn, args, **over):
        with thread_limit(self.threads, self.backend):
            return measure(fn, [args], sync=self.b.sync, event_timer=self.b.event_timer, capture=self.b.capture,
                           threads=self.threads, **self._kw(**over))

    def _arr(self, n: int, dtype: str):
        """A hot operand of n values of dtype on the backend's device."""
        kern = self.b.kernel(Op(name="a", kind="activation", phase="prefill", impl="relu", elements=n), dtype)
        return self.b.alloc(kern, Operand("x", (n,), "act"), 1, np.random.default_rng(1))[0]

    def _lib(self):
        if self.backend == "torch":
            return require_torch()
        return np

    # -- compute -------------------------------------------------------------
    def gemm_peak(self, dtype: str) -> float | None:
        """FLOP/s of a large square GEMM, n chosen so one call takes ~gemm_target_s."""
        if self.gpu:
            return self._gpu_gemm_peak(dtype)
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

    def _gpu_gemm_peak(self, dtype: str) -> float | None:
        """Best FLOP/s over square products growing until the rate levels off (Budget.gemm_sizes)."""
        best, best_n, prev = 0.0, 0, 0.0
        sizes = self.budget.gemm_sizes
        for i, n in enumerate(sizes):
            op = Op(name="g", kind="gemm", phase="prefill", m=n, n=n, k=n, flops=2.0 * n**3)
            try:
                t = self.time_op(op, dtype, max_time=4 * self.budget.max_time)
            except (CodesignError, RuntimeError, TypeError) as e:      # no such datatype / kernel on this device
                if i == 0:
                    self.log(f"  matrix {dtype}: not run ({str(e).splitlines()[0][:100]})")
                    return None
                break
            rate = op.flops / t
            if rate > best:
                best, best_n = rate, n
            # products up to 8192^3 always run (an H200 reaches 660 TFLOP/s bf16 at 4096^3 and
            # 790 at 8192^3: the rate need not rise steadily); larger ones only while it rises
            if i >= 3 and (rate < prev * (1 + GEMM_PLATEAU) or t > GEMM_CAP_S):
                break
            prev = rate
        self.what[f"compute.matrix.peak.{dtype}"] = f"best of square {dtype} GEMMs up to {best_n}^3 (CUDA-graph replays)"
        self.log(f"  matrix {dtype}: {best / 1e12:.4g} TFLOP/s ({best_n}^3)")
        return best

    def _jit(self, code: str, name: str):
        return require_torch().cuda.jiterator._create_jit_fn(code.replace("NAME", name))

    def _gpu_alu_rate(self, dtype: str, code: str, name: str, per_elem: int) -> float | None:
        """Operations per second of a jiterator kernel doing ``per_elem`` operations per element
        on 2^24 elements (16-64 MB: the loads take < 2% of the arithmetic time)."""
        torch = require_torch()
        n = 2**24
        try:
            fn = self._jit(code, name)
            x = (torch.rand(n, device="cuda") * 0.5 + 0.25).to(self.b.t_dtype(dtype))
            t = self._time_hot(lambda a: fn(a), (x,))
        except Exception as e:      # noqa: BLE001 - no NVRTC, no such type: the figure is left to the datasheet
            self.log(f"  {name} {dtype}: not run ({str(e).splitlines()[0][:100]})")
            return None
        return per_elem * n / t

    def vector_peak(self, dtype: str) -> float | None:
        if self.gpu:
            code = ("template <typename T> T NAME(T x) { float y = float(x), a = 0.999f, b = 0.0001f; "
                    f"for (int i = 0; i < {VECTOR_FMAS}; ++i) {{ y = fmaf(y, a, b); }} return T(y); }}")
            if dtype == "fp64":
                code = code.replace("float y = float(x), a = 0.999f, b = 0.0001f", "double y = double(x), a = 0.999, b = 0.0001"
                                    ).replace("fmaf", "fma")
            rate = self._gpu_alu_rate(dtype, code, "fma_chain", 2 * VECTOR_FMAS)
            if rate:
                self.what[f"compute.vector.peak.{dtype}"] = (f"{dtype} elementwise kernel of {VECTOR_FMAS} dependent FMAs per element "
                                                             "(jiterator; PyTorch computes 16-bit elementwise in fp32)")
                self.log(f"  vector {dtype}: {rate / 1e12:.4g} TFLOP/s")
            return rate
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

    def transcendental(self) -> float | None:
        if self.gpu:
            code = ("template <typename T> T NAME(T x) { float y = float(x); "
                    f"for (int i = 0; i < {EXP_CHAIN}; ++i) {{ y = expf(-y); }} return T(y); }}")
            rate = self._gpu_alu_rate("fp32", code, "exp_chain", EXP_CHAIN)
            if rate:
                self.what["compute.vector.transcendental"] = f"fp32 elementwise kernel of {EXP_CHAIN} dependent expf per element (jiterator)"
            return rate     # None: the datasheet's figure (with_datasheet)
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
        tm = self._timing(lambda x, y: lib.add(x, y), (a, b))
        self.what["kernel_overhead"] = "one elementwise add of 8 values (output allocated)"
        if tm.graph:
            self.dispatch = tm.dispatch_s
            self.what["kernel_overhead"] += (f", device time per kernel in a CUDA-graph replay; an eager call's host "
                                             f"dispatch measured {tm.dispatch_s * 1e6:.3g} us (a runtime's launch_overhead)")
        return tm.median_s

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
        if self.gpu:
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

    def copy_bandwidth(self, sizes_bytes, name: str) -> float:
        """Bytes/s (read + written) of device-to-device copies of each size; the slope of a fit
        over the sizes when there are several (the per-kernel intercept removed).

        One copy (HBM, >= 1 GiB) is ``copy_`` timed with CUDA events around eager calls: inside
        a CUDA graph it becomes a memcpy node, which an H200 ran at 2.76 TB/s against 4.27 for
        the same copy launched eagerly. Several sizes (L2) are copy kernels on the SMs
        (``mul`` by one) in graph replays, since launch overhead would hide them eagerly."""
        ts, moved = [], []
        eager = len(sizes_bytes) == 1
        for size in sizes_bytes:
            n = max(1024, size // 2 // self.itemsize)          # source + destination = size
            src, dst = self._arr(n, self.dtype), self._arr(n, self.dtype)
            if eager:
                with thread_limit(self.threads, self.backend):
                    ts.append(measure(lambda a, b: b.copy_(a), [(src, dst)], sync=self.b.sync, event_timer=self.b.event_timer,
                                      threads=self.threads, **self._kw()).median_s)
            else:
                ts.append(self._time_hot(lambda a, b: self._lib().mul(a, 1, out=b), (src, dst)))
            moved.append(2 * n * self.itemsize)
            del src, dst
        slope = fit_affine(moved, ts)[1] if len(ts) > 1 else 0.0
        bw = 1.0 / slope if slope > 0 else moved[-1] / ts[-1]
        self.what[f"memory.{name}.bandwidth"] = (f"device-to-device copy of {', '.join(_size(s) for s in sizes_bytes)} "
                                                 "(bytes read + written)" + (", eager copy_, CUDA events" if eager else
                                                                             ", SM copy kernels in CUDA graphs (slope)"))
        self.log(f"  {name}: {bw / 1e9:.4g} GB/s")
        return bw

    def _gpu_memory(self) -> list[dict]:
        torch = require_torch()
        props = torch.cuda.get_device_properties(0)
        l2 = int(getattr(props, "L2_cache_size", 0)) or 50 * 2**20
        self.what["memory.HBM.capacity"] = "torch.cuda.get_device_properties(0).total_memory"
        self.what["memory.L2.capacity"] = "torch.cuda.get_device_properties(0).L2_cache_size"
        big = max(self.budget.bw_dram, 8 * l2)
        return [{"name": "HBM", "kind": "hbm", "capacity": props.total_memory,
                 "bandwidth": self.copy_bandwidth((big,), "HBM"), "efficiency": 1.0},
                {"name": "L2", "kind": "cache", "capacity": l2,
                 "bandwidth": self.copy_bandwidth((l2 // 16, l2 // 8, l2 // 4), "L2"), "efficiency": 1.0}]

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
        gem = [_gemm_op(m, k, n) for m, k, n in (B.gemm_shapes if B.skinny else ((32, 256, 512),))]
        out["gemm"] = {"calls": 1.0, "efficiency": round(self._efficiency(gem, peak), 3)}
        self.what_kernels["gemm"] = "efficiency: median over " + ", ".join(f"{o.m}x{o.k}x{o.n}" for o in gem)
        k, n = B.skinny_kn if B.skinny else (256, 512)
        out["gemm.skinny"] = self._stream_ratio([_gemm_op(m, k, n) for m in (2, 4, 8, 16)], bw, "gemm.skinny")
        out["gemm.gemv"] = self._stream_ratio([_gemm_op(1, k, n), _gemm_op(1, n, k)], bw, "gemm.gemv")
        # attention: decode-like shapes (memory-bound) -> calls/passes; prefill-like -> efficiency
        # head dim 128, the one LLMs use (row length changes the library's inner loops); the
        # head counts and contexts stay apart from the validation shapes
        d = _ATTN_HEAD_DIM
        for kind in ATTENTION_KINDS:
            # two head counts separate per-call from per-head library calls (batched matmul
            # and the blocked attention loop call the library once per head)
            h0, h1 = B.decode_heads
            few = self._profile(lambda c, kind=kind: _attn_op(kind, h0, 2, c, d), B.attn_ctx, bw, ovh, kind)
            prof = self._profile(lambda c, kind=kind: _attn_op(kind, h1, 2, c, d), B.attn_ctx, bw, ovh, kind)
            per = max((prof["calls"] - few["calls"]) / (h1 - h0), 0.0)
            prof["calls_per_batch"] = round(per, 3)
            prof["calls"] = round(max(prof["calls"] - h1 * per, 1.0), 2)
            self.what_kernels[kind] += f"; calls = c0 + c1 x heads from sweeps at {h0} and {h1} heads"
            s, heads = B.attn_prefill
            s = s or B.attn_ctx[0]
            prof["efficiency"] = round(self._efficiency([_attn_op(kind, heads, s, s, d, P)], peak), 3)
            self.what_kernels[kind] += f"; efficiency: prefill {s}x{s}, {heads} heads, d={d}"
            out[kind] = prof
            # one query row per head (MHA decode) runs the library's matrix-vector path
            gv = self._profile(lambda c, kind=kind: _attn_op(kind, h1, 1, c, d), B.attn_ctx, bw, ovh,
                               f"{kind}.gemv")
            gv["calls_per_batch"] = prof["calls_per_batch"]
            gv["calls"] = round(max(gv["calls"] - h1 * prof["calls_per_batch"], 1.0), 2)
            out[f"{kind}.gemv"] = gv
        return out

    # -- all -----------------------------------------------------------------
    def run(self) -> dict:
        t0 = time.perf_counter()
        self.log(f"calibrating {self.backend}/{self.device}, {self.threads} thread(s), profiles in {self.dtype}")
        ovh = self.overhead()
        self.log(f"  kernel overhead: {ovh * 1e6:.3g} us" + (f" (device, CUDA graph); host dispatch "
                                                            f"{self.dispatch * 1e6:.3g} us" if self.dispatch else ""))
        dtypes = ["fp64", "fp32", "fp16", "bf16", "int8"] + (["fp8"] if self.gpu else [])
        matrix = {d: p for d in dtypes if (p := self.gemm_peak(d))}
        if self.dtype not in matrix:
            raise CodesignError(f"no {self.dtype} GEMM on the {self.backend} backend", field="dtype")
        vector = {d: p for d in ("fp64", "fp32", "fp16", "bf16") if (p := self.vector_peak(d))}
        trans = self.transcendental()
        self.log(f"  exp: {(trans or 0) / 1e9:.3g} G/s; vector fp32 {vector.get('fp32', 0) / 1e9:.3g} GFLOP/s")
        levels = self.memory_levels()
        if self.sheet is not None:
            matrix = self._drop_slow_library_paths(matrix)
            check_datasheet({"matrix": matrix, "vector": vector, "transcendental": trans, "levels": levels}, self.sheet)
        kernels = self.profiles(levels[0]["bandwidth"], ovh, matrix[self.dtype])
        return {"matrix": matrix, "vector": vector, "transcendental": trans, "overhead": ovh, "levels": levels,
                "kernels": kernels, "what": dict(self.what), "what_kernels": dict(self.what_kernels), "dispatch": self.dispatch,
                "cores": self._sm_count(),
                "seconds": time.perf_counter() - t0}


_ATTN_HEAD_DIM = 128


def datasheet_for(device_name: str) -> str | None:
    """Library spec name for a GPU as torch names it (DATASHEETS), or None."""
    for pattern, name in DATASHEETS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return name
    return None


def check_datasheet(res: dict, sheet: HardwareSpec) -> None:
    """Raise one line for the first calibrated figure above SANITY_HIGH x or below SANITY_LOW x
    the datasheet's figure (the probe, not the card, is then wrong)."""
    c = sheet.compute
    pairs: list[tuple[str, float, float | None, str]] = []
    for d, v in res["matrix"].items():
        ref = c.matrix.peak.get(d) if c.matrix is not None else None
        if ref is None and d == "fp32":        # plain fp32 products run on the vector (CUDA) cores
            ref = c.vector.peak.get("fp32")
        pairs.append((f"compute.matrix.peak.{d}", v, ref, "rate"))
    for d, v in res["vector"].items():
        pairs.append((f"compute.vector.peak.{d}", v, c.vector.peak.get(d), "rate"))
    if res.get("transcendental"):
        pairs.append(("compute.vector.transcendental", res["transcendental"], c.vector.transcendental, "rate"))
    offchip = [m for m in sheet.memory if m.kind in OFFCHIP_KINDS]
    if res.get("levels") and offchip:
        pairs.append((f"memory.{res['levels'][0]['name']}.bandwidth", res["levels"][0]["bandwidth"], offchip[0].bandwidth,
                      "bandwidth"))
    for path, got, ref, unit in pairs:
        if not ref or not got:
            continue
        if got > SANITY_HIGH * ref or got < SANITY_LOW * ref:
            how = (f"{got / ref:.2g}x the datasheet" if got > ref else f"{ref / got:.2g}x below the datasheet")
            raise CodesignError(
                f"calibrated {path} = {format_quantity(got, unit, 4)} is {how} ({sheet.name}: {format_quantity(ref, unit, 4)}): "
                "the probe is broken (unsynchronised timer, or a kernel too small to fill the device); no spec written",
                field=path)


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
    return format_quantity(b, "bytes")


def _median_results(runs: list[dict]) -> dict:
    """Figure-wise median over repeated calibrations (notes: values move 20-50% run to run)."""
    if len(runs) == 1:
        return runs[0]
    med = lambda xs: float(np.median(xs))  # noqa: E731
    out = dict(runs[0])
    out["matrix"] = {d: med([r["matrix"][d] for r in runs]) for d in runs[0]["matrix"]}
    out["vector"] = {d: med([r["vector"][d] for r in runs]) for d in runs[0]["vector"]}
    out["transcendental"] = med([r["transcendental"] for r in runs]) if runs[0]["transcendental"] else None
    out["overhead"] = med([r["overhead"] for r in runs])
    out["levels"] = [dict(lv, bandwidth=med([r["levels"][i]["bandwidth"] for r in runs]))
                     for i, lv in enumerate(runs[0]["levels"])]
    out["kernels"] = {k: {f: med([r["kernels"][k][f] for r in runs]) for f in prof}
                      for k, prof in runs[0]["kernels"].items()}
    out["seconds"] = sum(r["seconds"] for r in runs)
    return out


def calibrate(backend: str = "numpy", device: str = "cpu", threads: int = 1, dtype: str = "fp32",
              quick: bool = False, repeat: int = 1, log=None, datasheet: str | None = "auto") -> dict:
    """Measure this machine; return a hardware spec mapping (``load_hardware`` accepts it).

    ``datasheet``: library spec whose figures bound a GPU calibration ("auto": by device name;
    None or "none": no check)."""
    if threads < 1:
        raise CodesignError(f"threads must be >= 1, got {threads}", field="threads")
    cal = Calibrator(backend, device, threads, dtype, quick, log, datasheet)
    runs = [cal.run() for _ in range(max(1, repeat))]
    res = _median_results(runs)
    spec = to_spec(res, backend=backend, device=device, threads=threads, dtype=dtype, repeat=repeat)
    return with_datasheet(spec, cal.sheet, res.get("cores")) if cal.sheet is not None else spec


def with_datasheet(spec: dict, sheet: HardwareSpec, cores: int | None = None) -> dict:
    """Complete a GPU calibration with what a kernel probe cannot measure, from the card's datasheet.

    Measured (kept): matrix and vector rates, exp rate, HBM and L2 bandwidths and capacities,
    kernel overhead, kernel profiles. From the datasheet (library spec): the SM count (unless
    measured), clock, matrix-unit geometry (wave quantisation), memory latencies and energy
    per byte, further on-chip levels (shared memory), links, power and energy per op. Matrix
    datatypes not measured (tf32) get the datasheet peak scaled by measured / datasheet of
    the profile datatype, since the measured peaks carry efficiency 1.0."""
    d = sheet.model_dump(by_alias=True, exclude_none=True)
    out = {**spec, "compute": {**spec["compute"]}, "sources": dict(spec["sources"])}
    src = out["sources"]
    via = f"via library spec {sheet.name}"

    def cite(path: str) -> str:
        """The library spec's source of ``path`` (or of its nearest parent), kind kept."""
        while path and path not in sheet.sources:
            path = path.rpartition(".")[0]
        got = sheet.sources.get(path)
        return f"{got.kind}: {got.ref} ({via})" if got is not None else f"datasheet: {via}"

    def take(path: str, value: Any) -> Any:
        children = [k for k in sheet.sources if k.startswith(path + ".")]
        for k in children or [path]:
            src[k] = cite(k)
        return value
    for key in ("vendor", "year", "process_node", "die_area", "spare_fraction", "price", "interconnect", "power"):
        if key in d:
            out[key] = take(key, d[key])
    # the calibrated matrix peaks are rates held over seconds of products, not bursts
    out["power"] = {**out.get("power", {}), "sustained_share": 1.0}
    src["power.sustained_share"] = "measured: codesign calibrate times seconds of back-to-back products (sustained rates)"
    c, dc = out["compute"], d["compute"]
    if cores:
        c["cores"] = cores
        src["compute.cores"] = "measured: torch.cuda.get_device_properties(0).multi_processor_count"
    else:
        c["cores"] = take("compute.cores", dc["cores"])
    if "clock" in dc:
        c["clock"] = take("compute.clock", dc["clock"])
    mx = c["matrix"] = {**c["matrix"], "peak": dict(c["matrix"]["peak"])}
    for key in ("units", "tile", "block_tile", "sparsity", "array"):
        if key in dc.get("matrix", {}):
            mx[key] = take(f"compute.matrix.{key}", dc["matrix"][key])
    sheet_peak = dc.get("matrix", {}).get("peak", {})
    ref = next((t for t in ("bf16", "fp16") if t in mx["peak"] and t in sheet_peak), None)
    for t, v in sheet_peak.items():
        if t not in mx["peak"] and ref:
            mx["peak"][t] = v * mx["peak"][ref] / sheet_peak[ref]
            src[f"compute.matrix.peak.{t}"] = (f"derived: datasheet {t} peak {via} x measured / datasheet {ref} "
                                               f"({mx['peak'][ref] / sheet_peak[ref]:.3f})")
    vec = c["vector"] = {**c["vector"], "peak": dict(c["vector"]["peak"])}
    for t, v in dc.get("vector", {}).get("peak", {}).items():     # not measured (no run-time compiler)
        if t not in vec["peak"]:
            vec["peak"][t] = take(f"compute.vector.peak.{t}", v)
    if "transcendental" not in vec and "transcendental" in dc.get("vector", {}):
        vec["transcendental"] = take("compute.vector.transcendental", dc["vector"]["transcendental"])
    levels = [dict(lv) for lv in spec["memory"]]
    sheet_levels = d["memory"]
    offchip = [m for m in sheet_levels if m["kind"] in OFFCHIP_KINDS]
    caches = [m for m in sheet_levels if m["kind"] == "cache"]
    for lv in levels:
        match = offchip[:1] if lv["kind"] in OFFCHIP_KINDS else [m for m in caches if m["name"] == lv["name"]]
        for m in match:
            for key in ("energy_per_byte", "latency"):
                if key in m:
                    lv[key] = m[key]
                    src[f"memory.{lv['name']}.{key}"] = cite(f"memory.{m['name']}.{key}")
    names = {lv["name"] for lv in levels}
    for m in sheet_levels:
        if m["kind"] not in OFFCHIP_KINDS and m["kind"] != "cache" and m["name"] not in names:
            levels.append(m)
            src[f"memory.{m['name']}"] = cite(f"memory.{m['name']}")
    out["memory"] = levels
    out["notes"] = spec["notes"] + f" Figures no probe measures come from the {sheet.name} datasheet (sources say which)."
    return out


def to_spec(res: dict, *, backend: str, device: str, threads: int, dtype: str, repeat: int = 1) -> dict:
    date = _dt.date.today().isoformat()
    env = host.environment(backend)
    tag = f"codesign calibrate {date}"
    gpu = device == "cuda"
    name = f"host-{backend}-{device}-{threads}t" if not gpu else "gpu-torch-cuda"
    spec = {
        "name": name,
        "display_name": f"{env['cpu'] if not gpu else env.get('torch_cuda')} ({backend}, {threads} thread(s))",
        "class": "gpu" if gpu else "cpu",
        "notes": (f"Measured by codesign calibrate on {date} ({res['seconds']:.0f} s, median of {repeat} run(s)); "
                  f"kernel profiles at {dtype}. "
                  + (f"Host dispatch of one eager kernel: {res['dispatch'] * 1e6:.3g} us. " if res.get("dispatch") else "")
                  + f"Environment fingerprint {host.fingerprint(env)}: {env}"),
        "compute": {
            "cores": threads,
            "matrix": {"peak": {d: float(v) for d, v in res["matrix"].items()}, "efficiency": 1.0},
            "vector": {"peak": {d: float(v) for d, v in res["vector"].items()},
                       **({"transcendental": float(res["transcendental"])} if res.get("transcendental") else {}),
                       "efficiency": 1.0},
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
    out = dict(spec)
    c = out["compute"] = {**spec["compute"]}
    c["matrix"] = {**c["matrix"], "peak": {d: format_quantity(v, "rate", 4) for d, v in c["matrix"]["peak"].items()}}
    c["vector"] = {**c["vector"], "peak": {d: format_quantity(v, "rate", 4) for d, v in c["vector"]["peak"].items()},
                   **({"transcendental": f"{c['vector']['transcendental']:.4g} elem/s"} if c["vector"].get("transcendental") else {})}
    out["memory"] = [{**lv, "capacity": format_quantity(lv["capacity"], "bytes", 6),
                      "bandwidth": format_quantity(lv["bandwidth"], "bandwidth", 4)} for lv in spec["memory"]]
    out["kernel_overhead"] = format_quantity(spec["kernel_overhead"], "time", 4)
    with open(path, "w", encoding="utf-8") as f:
        f.write("# Written by `codesign calibrate`: every figure measured on the machine named in notes.\n")
        yaml.safe_dump(out, f, sort_keys=False, width=120, allow_unicode=True)
