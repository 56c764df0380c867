"""Hardware figures as arrays, keyed by their dotted spec paths.

The engine reads every number it uses from this flat mapping, so a batch of design
points is the same mapping with arrays of length D in place of scalars (a study varies
``memory.HBM3.bandwidth`` or ``compute.clock`` without building D spec objects). The
structure (class, memory-level kinds, supported datatypes, kernel profiles) comes from
the base spec and is shared by the batch.

Defaults for figures a spec leaves out are engine-wide estimates, listed here once; those
that depend on the device class are its row of ``hardware/classes.py``:
"""
from __future__ import annotations

from typing import cast

import numpy as np

from ..errors import CodesignError
from ..hardware.classes import CLASSES
from ..hardware.schema import DTYPE_BITS, HardwareSpec
from ..runtime import load_runtime

# sustained fraction of the vector peak when the spec does not say (estimate; specs override)
DEFAULT_VECTOR_EFF = 0.70
DEFAULT_MEMORY_EFF = {"register": 1.0, "sram": 0.90, "cache": 0.85, "hbm": 0.85, "gddr": 0.85,
                      "lpddr": 0.75, "ddr": 0.75, "host": 0.70}
# energy per byte moved, by memory kind (estimates after Horowitz ISSCC 2014 and O'Connor
# et al. MICRO 2017: HBM ~3.9 pJ/bit, DDR/LPDDR 10-20 pJ/bit, SRAM ~1 pJ/B)
DEFAULT_ENERGY_PER_BYTE = {"register": 0.1e-12, "sram": 1e-12, "cache": 3e-12, "hbm": 31e-12, "gddr": 56e-12,
                           "lpddr": 40e-12, "ddr": 120e-12, "host": 250e-12}
# energy per operation when the spec gives none: 16-bit FMA-array energy at ~5-7 nm
# (~0.3 pJ/FLOP; Horowitz 45 nm values scaled by node), scaled with operand width
DEFAULT_ENERGY_PER_OP_16BIT = 0.3e-12
# transcendental throughput when not given: one exp costs ~8 vector FLOPs (polynomial)
TRANSCENDENTAL_FLOPS = 8.0
# load-to-use latency of a memory level when the spec gives none (estimates: Chips and Cheese
# microbenchmarks put GPU HBM at ~500-700 ns, L2 at ~200-300 ns, LPDDR5 on SoCs at ~300-500 ns)
DEFAULT_MEMORY_LATENCY = {"register": 0.0, "sram": 30e-9, "cache": 200e-9, "hbm": 600e-9, "gddr": 500e-9,
                          "lpddr": 400e-9, "ddr": 120e-9, "host": 2e-6}
# bytes one work unit of a decode-attention kernel (one thread block streaming one
# sequence's K/V for one KV head) keeps in flight: by Little's law it streams at this over the
# memory's latency, so a kernel of few units cannot fill the memory. Measured on one H200
# (600 ns HBM; docs/validation/h200-2026-11-26): 32 units of PyTorch SDPA streamed 1.43 TB/s
# (44.6 GB/s each, a kernel at batch 4 x 8 KV heads, 32k context) and 8 units about 0.32 TB/s
# (39 GB/s each, the TPOT growth of Llama-3.1-8B from 512 to 4096 tokens at batch 1): 25 KB
UNIT_BYTES_IN_FLIGHT = 25e3
# share of the power budget left after static and busy power that a large GEMM spends on its
# operations; the rest (~10%) moves its tiles through L2 and shared memory (priced per byte)
GEMM_COMPUTE_SHARE = 0.9
ON_CHIP = ("register", "sram", "cache")
# collectives reach ~80% of the link's per-direction bandwidth (NCCL all-reduce bus bandwidth
# ~360-370 GB/s on 450 GB/s NVLink 4, nccl-tests reports; an estimate for other links)
DEFAULT_LINK_EFF = 0.80


def spec_params(spec: HardwareSpec, operating_point: str | None = None, runtime=None) -> dict[str, np.ndarray]:
    """Every figure the engine uses, as 1-element arrays keyed by dotted spec path; the
    runtime's (software stack's) figures join them under ``runtime.*``."""
    c, cls = spec.compute, CLASSES[spec.device_class]
    p: dict[str, float] = {}
    p["compute.clock"] = c.clock or np.nan
    p["compute.cores"] = c.cores or 1
    if c.matrix is not None:
        for dt, v in c.matrix.peak.items():
            p[f"compute.matrix.peak.{dt}"] = v
        p["compute.matrix.units"] = c.matrix.units or 1
        if c.matrix.array:
            p["compute.matrix.array.0"], p["compute.matrix.array.1"] = c.matrix.array
        p["compute.matrix.efficiency"] = c.matrix.efficiency or cls.matrix_efficiency
        for dt, v in c.matrix.efficiency_by_dtype.items():
            p[f"compute.matrix.efficiency_by_dtype.{dt}"] = v
        for dt, v in c.matrix.half_accumulate_peak.items():
            p[f"compute.matrix.half_accumulate_peak.{dt}"] = v
    if c.fpga is not None:
        for dt, v in c.fpga.ops_per_dsp_cycle.items():
            p[f"compute.fpga.ops_per_dsp_cycle.{dt}"] = v
        p["compute.fpga.dsp"] = c.fpga.dsp
        p["compute.fpga.utilization"] = c.fpga.utilization
    for dt, v in c.vector.peak.items():
        p[f"compute.vector.peak.{dt}"] = v
    p["compute.vector.efficiency"] = c.vector.efficiency or DEFAULT_VECTOR_EFF
    # integer lanes (unpacking quantised weights): a stated int32 vector peak, else the class's
    # lanes per core per clock (GPUs: 64 INT32 lanes per SM, NVIDIA Volta..Blackwell), else the
    # fp32 vector peak
    # the schema's Dtype keys have no "int32": read the peaks as plain str-keyed figures
    vector_peak = cast("dict[str, float]", c.vector.peak)
    if "int32" in vector_peak:
        p["compute.integer"] = vector_peak["int32"]
    elif cls.int_lanes_per_core and c.cores and c.clock:
        p["compute.integer"] = cls.int_lanes_per_core * c.cores * c.clock
    else:
        p["compute.integer"] = c.vector.peak.get("fp32", max(c.vector.peak.values()))
    resident = c.resident_threads or cls.resident_threads
    if resident:
        p["compute.resident_threads"] = resident
    best_vec = max(c.vector.peak.values())
    p["compute.vector.transcendental"] = c.vector.transcendental or best_vec / TRANSCENDENTAL_FLOPS
    for m in spec.memory:
        base = f"memory.{m.name}"
        p[f"{base}.capacity"] = m.capacity
        p[f"{base}.bandwidth"] = m.bandwidth
        p[f"{base}.efficiency"] = m.efficiency or DEFAULT_MEMORY_EFF[m.kind]
        p[f"{base}.energy_per_byte"] = (m.energy_per_byte if m.energy_per_byte is not None
                                        else DEFAULT_ENERGY_PER_BYTE[m.kind])
        p[f"{base}.latency"] = m.latency if m.latency is not None else DEFAULT_MEMORY_LATENCY[m.kind]
    for which in ("device_link", "host_link"):
        link = getattr(spec.interconnect, which)
        if link is not None:
            p[f"interconnect.{which}.bandwidth"] = link.bandwidth
            p[f"interconnect.{which}.latency"] = link.latency
            p[f"interconnect.{which}.efficiency"] = link.efficiency or DEFAULT_LINK_EFF
    p.update(power_params(spec, p))
    if c.nominal_clock and c.clock and c.nominal_clock != c.clock:
        p = at_clock(p, c.nominal_clock)
    p["price"] = spec.price if spec.price is not None else np.nan
    p.update(runtime_params(spec, runtime))
    out = {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in p.items()}
    if operating_point:
        out = at_operating_point(spec, out, operating_point)
    return out


def power_params(spec: HardwareSpec, p: dict) -> dict[str, float]:
    """Board power figures (W, J/op) of the base spec; see the module notes on board power.

    A running board draws ``static`` (clocks up, nothing to do), plus ``busy`` while any
    kernel runs (schedulers, register files, caches and fabric clocked and toggling), plus
    activity energy: per operation and per byte of every memory level moved through. With a
    TDP, the energy per operation is at least what makes sustained matrix work at the spec's
    efficiency land on the TDP (boards are power-limited there: an H200 runs 8192^3 bf16 at
    ~764 TFLOP/s at its 700 W limit, shared/evidence/gpu-h200-2026-11). It is computed from
    the base spec, so a study that raises clocks or cores raises power, not efficiency."""
    pw, c, cls = spec.power, spec.compute, CLASSES[spec.device_class]
    out: dict[str, float] = {}
    tdp = pw.tdp
    out["power.tdp"] = tdp if tdp is not None else np.nan
    out["power.limit"] = pw.limit if pw.limit is not None else out["power.tdp"]
    out["power.idle"] = pw.idle if pw.idle is not None else (0.15 * tdp if tdp else 0.0)
    static = pw.static if pw.static is not None else (
        max(cls.static_fraction * tdp, out["power.idle"]) if tdp else out["power.idle"])
    busy = pw.busy if pw.busy is not None else (cls.busy_fraction * (tdp - static) if tdp else 0.0)
    out["power.static"], out["power.busy"] = static, max(busy, 0.0)
    out["power.gap_share"] = cls.gap_busy_share
    # the rest of the budget at the sustained matrix rate, less the ~10% a large GEMM spends
    # moving its tiles through L2 and shared memory (priced per byte), so it lands on the TDP
    compute_w = GEMM_COMPUTE_SHARE * (tdp - static - busy) if tdp else 0.0
    held = pw.sustained_share if pw.sustained_share is not None else cls.sustained_matrix_share
    energy_per_op = cast("dict[str, float]", pw.energy_per_op)    # read with the str datatypes below
    for dt in set(spec.matrix_dtypes()) | set(c.vector.peak):
        e = energy_per_op.get(dt)
        if e is None:
            e = DEFAULT_ENERGY_PER_OP_16BIT * (DTYPE_BITS[dt] / 16) ** 1.5
        if compute_w > 0:
            if f"compute.matrix.peak.{dt}" in p:
                sustained = p[f"compute.matrix.peak.{dt}"] * p.get(f"compute.matrix.efficiency_by_dtype.{dt}",
                                                                   p["compute.matrix.efficiency"])
            else:   # a vector datatype, or a matrix one the spec derives from another peak
                sustained = p.get(f"compute.vector.peak.{dt}", np.nan) * p["compute.vector.efficiency"]
            if sustained > 0:
                # at the held clock share the voltage is v(held) (voltage_ratio), and switching
                # energy scales with v^2 (power.power_limit): priced at the top clock's voltage
                e = max(e, compute_w / (held * float(voltage_ratio(held)) ** 2 * float(sustained)))
        out[f"power.energy_per_op.{dt}"] = e
    return out


def busy_energy(p: dict, kernels, gaps):
    """Energy above the static floor that is not activity (J): busy power over ``kernels``
    seconds of kernels at full clock, and its gap share over ``gaps`` seconds of a running job
    without a kernel. Time a power limit adds (the kernels run at a lower clock) is neither:
    busy power falls with the clock there, so that energy stays what it was."""
    gaps = max(gaps, 0.0) if isinstance(gaps, float) else np.maximum(gaps, 0.0)     # floats: a serving step
    return p["power.busy"] * (kernels + p["power.gap_share"] * gaps)


# Dispatching a kernel from the host (encoding its command, an eager framework's per-op graph
# and Python work) is serial CPU work, so a runtime's launch figures hold for a host of one
# speed: HOST_REFERENCE, a Geekbench 6 single-core score of the M4 generation. A spec that
# states its host's score (HardwareSpec.host_single_thread) scales them by HOST_REFERENCE /
# score; a decode step replayed as a captured graph (Runtime.decode_graphs) has no host work
# per kernel and keeps its figure. Neglected: host work that overlaps device work (a host far
# ahead of the device hides its dispatch), multi-threaded encoders.
HOST_REFERENCE = 3750.0


def host_launch(p: dict, decode: bool):
    """Per-kernel launch cost of a decode step or of a prompt pass on this host (s): the
    runtime's figure at HOST_REFERENCE times the host's dispatch factor."""
    if decode:
        return p["runtime.launch_decode"] * p["runtime.host_decode"]
    return p["runtime.launch"] * p["runtime.host"]


def runtime_params(spec: HardwareSpec, runtime) -> dict[str, float]:
    """The software stack's figures for this device (codesign.runtime): efficiency
    multipliers of its class, latency ramps, per-kernel launch costs, dequantisation path."""
    rt = load_runtime(runtime)
    t = rt.tuning_for(spec.device_class)
    launch = rt.launch_overhead
    if launch is None:
        launch = spec.kernel_overhead if spec.kernel_overhead is not None else CLASSES[spec.device_class].kernel_overhead
    host = HOST_REFERENCE / spec.host_single_thread if spec.host_single_thread else 1.0
    return {"runtime.gemm": t.gemm, "runtime.vector": t.vector, "runtime.memory": t.memory,
            "runtime.latency_factor": t.latency_factor, "runtime.launch": launch,
            # the host's dispatch speed against HOST_REFERENCE, on prefill and on decode launches
            "runtime.host": host, "runtime.host_decode": 1.0 if rt.decode_graphs else host,
            "runtime.stream": t.stream if t.stream is not None else np.inf,
            "runtime.stream_packed_only": float(rt.stream_kernels == "packed"),
            "runtime.launch_decode": rt.decode_launch_overhead if rt.decode_launch_overhead is not None else launch,
            "runtime.decode_graphs": float(rt.decode_graphs),
            "runtime.dispatch_ahead": float(rt.dispatch_ahead),
            "runtime.split_kv": float(rt.split_kv),
            # what the device itself waits per kernel when the host runs ahead (never more
            # than the dispatch: a host slower than that would be the bound anyway)
            "runtime.device_gap": min(launch, spec.kernel_overhead if spec.kernel_overhead is not None
                                      else CLASSES[spec.device_class].kernel_overhead),
            "runtime.separate_dequant": float(rt.prefill_dequant == "separate"),
            "runtime.half_accumulate": float(rt.gemm_accumulate == "fp16"),
            "runtime.dequant_ops": rt.dequant_ops, "runtime.dequant": t.dequant,
            "runtime.dequant_tile_rows": float(rt.dequant_tile_rows or 0),
            "runtime.dequant_integer": float(rt.dequant_units == "integer"),
            "runtime.request_overhead": rt.request_overhead or 0.0,
            "runtime.sequence_overhead": rt.sequence_overhead or 0.0}


# voltage against clock over a DVFS range, relative to the spec's base point: V/V0 = a + (1 - a) f/f0
# (linear V-f, the usual first-order fit of the alpha-power law over a DVFS range: Sakurai &
# Newton, IEEE JSSC 1990); a = 0.4 puts half clock at 0.7 V0 (estimate: GPU and mobile DVFS
# tables run ~0.65-0.75 of the top voltage at half the top clock), floored at 0.6 V0 (near-
# threshold operation is not a DVFS point)
VF_INTERCEPT = 0.4
VF_FLOOR = 0.6


def voltage_ratio(clock_ratio):
    """V/V0 at f/f0 on the linear V-f curve (>= VF_FLOOR); a float for a float."""
    if isinstance(clock_ratio, float):
        return max(VF_INTERCEPT + (1.0 - VF_INTERCEPT) * clock_ratio, VF_FLOOR)
    return np.maximum(VF_INTERCEPT + (1.0 - VF_INTERCEPT) * np.asarray(clock_ratio, float), VF_FLOOR)


def at_clock(p: dict, nominal_clock: float) -> dict:
    """Power figures of a chip running at ``compute.clock`` when they were stated at
    ``nominal_clock``: switching energy per operation ~ C V^2, the clock-tree/fabric (busy)
    power ~ C V^2 f, leakage (static) ~ V (Weste & Harris, CMOS VLSI Design, sec. 5.1-5.3).
    Without it a faster clock would cost no energy per operation and every study front would
    sit at its top clock. Neglected: leakage's own rise with V (DIBL) and temperature."""
    s = p["compute.clock"] / nominal_clock
    v = voltage_ratio(s)
    p = dict(p)
    for k in [k for k in p if k.startswith("power.energy_per_op.")]:
        p[k] = p[k] * v ** 2
    p["power.busy"] = p["power.busy"] * v ** 2 * s
    p["power.static"] = p["power.static"] * v
    return p


def at_operating_point(spec: HardwareSpec, p: dict, name: str) -> dict:
    """DVFS: compute rates and on-chip bandwidths scale with clock f; dynamic energy per op
    with V² (CV²f switching energy); DRAM bandwidth and efficiency are the point's own where
    it states them (a pinned memory clock), else the spec's. A point that gives a power but
    no voltage keeps energy per op (only the clock moves)."""
    pts = {o.name: o for o in spec.power.operating_points}
    if name not in pts:
        raise CodesignError(f"unknown operating point {name!r}; the spec declares {sorted(pts) or 'none'}",
                            field="operating_point")
    op = pts[name]
    if not spec.compute.clock:
        raise CodesignError("an operating point needs compute.clock in the spec to scale from",
                            field="compute.clock")
    s = op.clock / spec.compute.clock
    p = dict(p)
    scaled_prefixes = ("compute.matrix.peak.", "compute.vector.peak.")
    for k in list(p):
        if k.startswith(scaled_prefixes) or k == "compute.vector.transcendental":
            p[k] = p[k] * s
    for m in spec.memory:
        if m.kind in ON_CHIP:
            p[f"memory.{m.name}.bandwidth"] = p[f"memory.{m.name}.bandwidth"] * s
            continue
        for fig in ("bandwidth", "efficiency"):
            if getattr(op, f"memory_{fig}") is not None:
                key = f"memory.{m.name}.{fig}"
                p[key] = np.full(np.shape(p[key]), getattr(op, f"memory_{fig}"), dtype=float)
    p["compute.clock"] = p["compute.clock"] * s
    if op.voltage and spec.power.nominal_voltage:
        v2 = (op.voltage / spec.power.nominal_voltage) ** 2
        for k in list(p):
            if k.startswith("power.energy_per_op."):
                p[k] = p[k] * v2
    if op.power is not None:
        p["power.tdp"] = np.atleast_1d(float(op.power))
    return p


def matrix_rate(spec: HardwareSpec, p: dict, dtype: str) -> np.ndarray | None:
    """Dense matrix peak for ``dtype`` from the (possibly overridden) figures; a per-datatype
    efficiency is folded in relative to the general one the engine applies to every GEMM."""
    key = f"compute.matrix.peak.{dtype}"
    half = f"compute.matrix.half_accumulate_peak.{dtype}"
    if half in p and float(np.max(p.get("runtime.half_accumulate", 0.0))) > 0:
        key = half
    if key in p:
        own = p.get(f"compute.matrix.efficiency_by_dtype.{dtype}")
        return p[key] if own is None else p[key] * own / p["compute.matrix.efficiency"]
    if f"compute.fpga.ops_per_dsp_cycle.{dtype}" in p:   # FPGA: DSPs x clock x packing x usable share
        return (p["compute.fpga.dsp"] * p["compute.clock"] * p[f"compute.fpga.ops_per_dsp_cycle.{dtype}"]
                * p["compute.fpga.utilization"])
    return None
