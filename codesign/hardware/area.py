"""Die area, yield and cost of a chip described by a :class:`HardwareSpec`.

Area is built bottom-up from the spec, one structure for every device, scaled per device class:

    total = (datapath x (matrix + vector) + core x (core control + on-chip network)) x cores'
          + sram x (shared and per-core SRAM/cache arrays)' + memory PHYs/controllers' + IO SerDes,
            then x (1 + other)

where ' marks replicated blocks that get the spare fraction and ``datapath``, ``core`` and
``sram`` are the class's multipliers (:data:`CLASS_CALIBRATION`; 1 for the bare GA100 model).

* Matrix / vector datapaths: MAC count per datatype = dense peak / (2 x clock). A MAC's
  transistor count (:data:`MAC_TRANSISTORS`) is LLMCompass's FPU model (Zhang et al., ISCA
  2024, ``cost_model/cost_model.py``: a 64-bit FPU is 685,300 transistors, narrower
  formats scale with mantissa width squared). Units that run several low-precision
  formats share one datapath, so its area is the *largest* of the per-format costs; FP64
  is a separate datapath and is added. Transistors -> mm^2 with the node's logic density.
  Counting MACs, not FLOP/s, makes the area independent of the clock.
* Core control (schedulers, register file, load/store, L1 tags), the per-core port of the
  on-chip network, the L2 area per bit, the HBM PHY/controller and the IO SerDes are
  calibrated on *one* published die breakdown, NVIDIA GA100 annotated from the die photo
  by LLMCompass (Fig. 6a; artifact ``ae/figure6/real_hardware/die_area.csv``: 128 SMs
  476.25 mm^2, on-chip interconnect 76.44, 48 MB L2 119.31, 6 HBM2e PHYs 58.0 + controllers
  31.77, off-chip IO 20.95, other 40.0). The per-SM control area is what remains of a
  GA100 SM after this module's own datapath and SRAM terms.
* Per-class calibration: the GA100 breakdown describes a GPU SM; a TPU TensorCore, an NPU tile
  or a CPU core spends its area differently. :data:`CLASS_CALIBRATION` scales the three
  GA100-derived terms per class, fitted (at most two multipliers per class) on the public dies
  of ``data/die-areas.csv`` by :mod:`codesign.hardware.area_fit`, with the leave-one-chip-out
  error of each class noted there (``benchmarks/bench_area.py`` prints it). The per-core control is
  a constant per unit: control that grows with the core's datapath ((MACs / a GA100 SM's)^0.5 or ^1)
  was measured and fits no class better (``bench_area.py --alternatives``, area_fit.ALTERNATIVES).
* SRAM: bits x the node's 6T high-density bitcell / array efficiency. Efficiency of plain
  SRAM macros (scratchpads, per-core SRAM): AMD's 64 MiB V-Cache die is 41 mm^2 at N7
  (Wuu et al., ISSCC 2022) -> 0.354. Caches (tags, ECC, slices, crossbar ports): GA100's
  48 MB L2 in 119.31 mm^2 -> 0.091.
* Off-chip memory: one row per technology in ``data/memory-technologies.csv`` (HBM2 .. HBM4,
  GDDR6/6X/7, LPDDR4X/5/5X, DDR3/4/5), the level's technology being the generation its name
  mentions ('LPDDR5X'), else its kind's default. Interfaces: HBM stacks from bandwidth and
  capacity, 32-bit channels from bandwidth at the generation's pin rate (:func:`memory_interfaces`),
  so a faster generation needs less shoreline for the same bandwidth. Per interface a PHY (does
  not shrink with the node: analog, bump-limited) and a controller (logic, scales): HBM from the
  GA100 annotation, DDR5 from LLMCompass, the other DRAM PHYs estimates (no published area found).
* IO SerDes: per lane (a transmit + a receive pair), 20.95 mm^2 / 64 lanes on GA100; lanes =
  bandwidth / lane rate (the link's ``lane_rate``, else 50 Gb/s for a device link, 16 for a host
  link). A lane's PHY hardly depends on its rate (LLMCompass: 0.47-0.64 mm^2 per lane from PCIe 4.0
  to NVLink4's 100 Gb/s PAM4), so 112 Gb/s lanes cost half the area per GB/s of 50 Gb/s ones.
* Spare units: reticle-size GPUs ship with part of each replicated block fused off for
  yield (GA100: 108 of 128 SMs, 40 of 48 MB L2, 5 of 6 HBM sites; GH100 SXM: 132 of 144
  SMs, 50 of 60 MB, 5 of 6). A spec lists what is enabled; its ``spare_fraction`` (units on
  the die / units enabled - 1) adds the fused-off silicon, by default 0.15 for ``class: gpu``
  and 0 for other classes.

Neglected: sparsity hardware (2:4 metadata), media/graphics engines beyond GA100's
"other" share, clock/power distribution differences between nodes, general-purpose control
cores, DMA engines, vector engines and buffer hierarchies inside NPUs (no spec field describes
them: they are why DRAM-backed NPUs come out 40-60 % small and SRAM-only dataflow chips large,
classes.py), and each design's own achieved density (TPU v4: 22 B transistors on < 600
mm^2 at N7, GA100 54 B on 826). FPGAs are fixed parts: their area is the vendor's die, not a
model output.

Cost: :func:`die_cost` = wafer price / (dies per wafer x yield); dies per wafer with the
edge-loss formula, yield negative-binomial (Stapper) with clustering alpha = 3 or Murphy;
:func:`memory_cost` = capacity x $/GB of each level's technology (the table's July 2025
snapshot of contract prices and analyst ratios, each row with its source); :func:`chip_cost`
adds both and a packaging/test estimate.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from ..errors import CodesignError
from ..io import data_dir
from .classes import CLASSES, UNCALIBRATED, ClassCalibration
from .schema import OFFCHIP_KINDS, Dtype, HardwareSpec

# -- process nodes -------------------------------------------------------------------


@dataclass(frozen=True)
class NodeParams:
    nm: float
    logic_mtr_mm2: float        # million transistors per mm^2 (logic)
    sram_bitcell_um2: float     # high-density 6T SRAM bitcell
    wafer_usd: float            # foundry sale price of a 300 mm wafer
    defect_per_cm2: float       # mature defect density D0


# Logic density and wafer price: CSET, Khan & Mann, "AI Chips: What They Are and Why They
# Matter" (2020), Tables 8-9 (16/12 nm share one row). N6 = N7 x 1.18 density (TSMC: "18 %
# higher logic density"), N4 = N5 / 0.94 (TSMC: "6 % area reduction"), N3 = N5 x 1.6 (TSMC
# N3E "1.6x logic density"), Samsung 8LPP 61.2 MTr/mm^2 (WikiChip): these and their wafer
# prices (N6 ~ N7, N4 ~ N5, N3 ~ USD 20k, 8 nm ~ 10 nm class) are estimates.
# Bitcells (um^2, TSMC HD 6T unless noted; WikiChip / TSMC IEDM): 28 nm 0.127, 20 nm 0.081,
# 16/12 nm 0.074, 10 nm 0.042, N7/N6 0.027, N5/N4 0.021, N3E 0.021; Samsung 8LPP 0.040;
# 40-90 nm values approximate. SRAM stopped scaling with logic: TSMC's N3E bitcell is N5's
# 0.021 um^2 (N3B 0.0199) while N3 logic is 1.6x denser, macro density ~31.8 Mib/mm^2 for both
# (TSMC at IEDM 2022, WikiChip Fuse 'IEDM 2022: Did We Just Witness The Death Of SRAM?'); N2 is
# 0.0175 um^2 (38 Mb/mm^2) with 1.15x N3E's logic density (TSMC at IEDM 2024, Tom's Hardware
# 'SRAM scaling isn't dead after all'); its wafer price, ~USD 30,000, is reported (Fudzilla,
# 2025-10-30), its D0 an estimate. So the model scales logic by the logic density and SRAM by
# the bitcell of each node (sram_mm2), never by one factor.
# 16/12 nm logic density is not CSET's 28.9 (the 16FF+ HD library) but 36.9, the N7-equivalent of
# what GPUs at that node achieve: the model counts GA100-calibrated transistors, and NVIDIA's
# 16/12 nm dies reach 25.1 MTr/mm^2 on average (GP100 15.3 B / 610, GV100 21.1 B / 815, TU102
# 18.6 B / 754, TU104 13.6 B / 545 mm^2; data/die-areas.csv) against GA100's 65.6 (54.2 B / 826)
# at N7, a 2.61x ratio, where CSET's HD densities differ by 3.33x: 96.3 / 2.61 = 36.9. With 28.9 a
# 12 nm GPU came out 1.3x its silicon (V100 +54 %). The other nodes keep CSET (GH100 / GA102 reach
# 1.50x / 0.69x GA100's density, CSET says 1.53x / 0.64x).
# D0: TSMC reported N7 at 0.09 /cm^2 three quarters into volume and N5 at 0.10-0.11 /cm^2
# (AnandTech, 2020-08-25, "Better Yield on 5nm than 7nm"), levelling off "comparable to
# prior nodes": 0.1 /cm^2 is used for every mature node (estimate for nodes it does not name).
NODES: tuple[NodeParams, ...] = (
    NodeParams(2, 254.3, 0.0175, 30000, 0.10),
    NodeParams(3, 221.1, 0.021, 20000, 0.10),
    NodeParams(4, 147.0, 0.021, 16988, 0.10),
    NodeParams(5, 138.2, 0.021, 16988, 0.10),
    NodeParams(6, 113.6, 0.027, 9346, 0.09),
    NodeParams(7, 96.3, 0.027, 9346, 0.09),
    NodeParams(8, 61.2, 0.040, 5992, 0.10),
    NodeParams(10, 52.5, 0.042, 5992, 0.10),
    NodeParams(12, 36.9, 0.074, 3984, 0.10),
    NodeParams(16, 36.9, 0.074, 3984, 0.10),
    NodeParams(20, 22.1, 0.081, 3677, 0.10),
    NodeParams(28, 15.3, 0.127, 2891, 0.10),
    NodeParams(40, 7.7, 0.242, 2274, 0.10),
    NodeParams(65, 3.3, 0.525, 1937, 0.10),
    NodeParams(90, 1.6, 1.0, 1650, 0.10),
)
REFERENCE_NODE = 7   # where the GA100-derived constants were measured


def node_params(node_nm: float | None) -> NodeParams:
    """Parameters at ``node_nm``: a table node, or log-log interpolation between its neighbours."""
    if node_nm is None:
        raise CodesignError("required by the area/cost model (e.g. '7 nm')", field="process_node")
    lo_nm, hi_nm = NODES[0].nm, NODES[-1].nm
    if not lo_nm <= node_nm <= hi_nm:
        raise CodesignError(f"{node_nm:g} nm is outside the modeled range {lo_nm:g}-{hi_nm:g} nm",
                            field="process_node")
    for n in NODES:
        if abs(n.nm - node_nm) < 1e-9:
            return n
    a = max((n for n in NODES if n.nm < node_nm), key=lambda n: n.nm)
    b = min((n for n in NODES if n.nm > node_nm), key=lambda n: n.nm)
    t = math.log(node_nm / a.nm) / math.log(b.nm / a.nm)

    def geo(x, y):
        return math.exp(math.log(x) + t * (math.log(y) - math.log(x)))
    return NodeParams(node_nm, geo(a.logic_mtr_mm2, b.logic_mtr_mm2), geo(a.sram_bitcell_um2, b.sram_bitcell_um2),
                      geo(a.wafer_usd, b.wafer_usd), a.defect_per_cm2 + t * (b.defect_per_cm2 - a.defect_per_cm2))


def _spec_node(spec: HardwareSpec) -> NodeParams:
    try:
        return node_params(spec.process_node)
    except CodesignError as e:
        raise CodesignError(e.message, file=spec.name, field=e.field) from None


def logic_mm2(transistors: float, node: NodeParams) -> float:
    return transistors / (node.logic_mtr_mm2 * 1e6)


# -- datapaths -----------------------------------------------------------------------

_FPU64 = 685_300.0   # LLMCompass cost_model.py: 64-bit FPU (Ariane / OpenPiton SPARC T1)
# Transistors per multiply-accumulate unit. fp32/fp16: LLMCompass's mantissa^2 scaling
# (23/52, 10/52). tf32 and bf16 are costed as fp16 (same-size multiplier array in
# multi-format units). 8-bit and 4-bit: half / quarter of an fp16 MAC (estimate: vendors
# run int8/fp8 at 2x and int4/fp4 at 4x the fp16 rate on the same datapath: A100, H100, MI300).
MAC_TRANSISTORS = {
    "fp64": _FPU64,
    "fp32": _FPU64 * (23 / 52) ** 2,
    "tf32": _FPU64 * (10 / 52) ** 2,
    "bf16": _FPU64 * (10 / 52) ** 2,
    "fp16": _FPU64 * (10 / 52) ** 2,
    "fp8": _FPU64 * (10 / 52) ** 2 / 2,
    "int8": _FPU64 * (10 / 52) ** 2 / 2,
    "fp4": _FPU64 * (10 / 52) ** 2 / 4,
    "int4": _FPU64 * (10 / 52) ** 2 / 4,
}


def datapath_transistors(peaks: dict[Dtype, float], clock_hz: float) -> float:
    """Transistors of a multi-format datapath: max over shared formats + a separate fp64 path.

    MACs per format = peak / (2 x clock) (an FMA is two operations).
    """
    macs = {d: p / (2.0 * clock_hz) for d, p in peaks.items()}
    shared = max((n * MAC_TRANSISTORS[d] for d, n in macs.items() if d != "fp64"), default=0.0)
    return shared + macs.get("fp64", 0.0) * MAC_TRANSISTORS["fp64"]


# -- SRAM ------------------------------------------------------------------------------

_MIB = 2.0 ** 20
# AMD 3D V-Cache: 64 MiB, 41 mm^2, TSMC N7 (Wuu et al., ISSCC 2022, paper 26.4).
SRAM_ARRAY_EFFICIENCY = 64 * _MIB * 8 * 0.027e-6 / 41.0
# GA100 L2: 48 MB (physical) in 119.31 mm^2 at N7 (LLMCompass die annotation).
CACHE_ARRAY_EFFICIENCY = 48 * _MIB * 8 * 0.027e-6 / 119.31


def sram_mm2(capacity_bytes: float, node: NodeParams, kind: str = "sram") -> float:
    """Area of an on-chip memory: bits x bitcell / array efficiency (cache: tags, ECC, slices)."""
    eff = CACHE_ARRAY_EFFICIENCY if kind == "cache" else SRAM_ARRAY_EFFICIENCY
    return capacity_bytes * 8 * node.sram_bitcell_um2 * 1e-6 / eff


# -- constants calibrated on the GA100 die annotation (LLMCompass Fig. 6a) -----------------

_N7 = next(n for n in NODES if n.nm == REFERENCE_NODE)
_GA100 = {"cores": 476.25, "noc": 76.44, "l2": 119.31, "hbm_phy": 58.0, "hbm_ctrl": 31.77, "io": 20.95,
          "other": 40.0, "sms": 128, "stacks": 6}
# One GA100 SM per clock (A100 whitepaper): 1024 fp16 / 512 tf32 / 2048 int8 / 64 fp64 tensor
# FMAs, 64 fp32 + 32 fp64 + 256 fp16 vector FMAs, 192 KiB L1/shared memory.
_GA100_SM_TENSOR: dict[Dtype, float] = {"fp16": 2048.0, "tf32": 1024.0, "int8": 4096.0, "fp64": 128.0}   # ops/clk
_GA100_SM_VECTOR: dict[Dtype, float] = {"fp32": 128.0, "fp64": 64.0, "fp16": 512.0}
CORE_CONTROL_TRANSISTORS = (
    (_GA100["cores"] / _GA100["sms"] - sram_mm2(192 * 1024, _N7)) * _N7.logic_mtr_mm2 * 1e6
    - datapath_transistors(_GA100_SM_TENSOR, 1.0) - datapath_transistors(_GA100_SM_VECTOR, 1.0))
NOC_TRANSISTORS_PER_CORE = _GA100["noc"] / _GA100["sms"] * _N7.logic_mtr_mm2 * 1e6
# A100 off-chip IO: 12 NVLink3 links x 4 lanes at 50 Gb/s + PCIe 4.0 x16 (16 GT/s): 64 SerDes lanes
# (one lane = a transmit and a receive pair) in 20.95 mm^2, PHYs and controllers. A lane's PHY
# hardly changes with its rate: LLMCompass's cost_model.py gives 0.48 mm^2 per PCIe 4.0 lane
# (16 GT/s), 0.64 per PCIe 5.0 lane (32 GT/s), 1.888 per NVLink3 link of 4 lanes (0.47 per 50 Gb/s
# lane) and 0.965 per NVLink4 link of 2 lanes (0.48 per 100 Gb/s PAM4 lane); a 113 Gb/s PAM4 lane
# in 5 nm is 0.22 mm^2 (Gangasani et al., IEEE Solid-State Circuits Letters 8, 2025). So the area
# is per lane, lanes = bandwidth / lane rate, and faster lanes cost less area per GB/s.
SERDES_MM2_PER_LANE = _GA100["io"] / (12 * 4 + 16)
DEVICE_LANE_RATE = 50e9 / 8        # bytes/s per lane per direction when a device link states none (NVLink3)
HOST_LANE_RATE = 16e9 / 8          # ... a host link (PCIe 4.0, 16 GT/s; 128b/130b neglected)
OTHER_FRACTION = _GA100["other"] / (sum(_GA100[k] for k in ("cores", "noc", "l2", "hbm_phy", "hbm_ctrl", "io")))
# Per-class calibration on the public dies of data/die-areas.csv: the ``area`` of each row of
# hardware/classes.py, where the fits and their errors are noted. One code path: estimate_area
# scales the three terms by its class's entry.
CLASS_CALIBRATION: dict[str, ClassCalibration] = {
    c.name: c.area for c in CLASSES.values() if c.area is not None and c.area != UNCALIBRATED}


# -- off-chip memory technologies (data/memory-technologies.csv) -------------------------------

@dataclass(frozen=True)
class MemoryTechnology:
    """One DRAM technology: its interface (an HBM stack, or a 32-bit channel), the PHY and
    controller it takes on the die, and its price. Every figure cites a source in the table."""
    name: str
    kind: str                   # hbm | gddr | lpddr | ddr
    interface: str              # 'stack' | 'x32'
    bits: int                   # data bits of one interface
    pin_rate: float             # bit/s per pin, the generation's top JEDEC bin
    stack_capacity: float | None    # bytes of the stack most products use (HBM)
    phy_mm2: float              # PHY per interface (analog, bump-limited: not scaled with the node)
    ctrl_transistors: float     # controller per interface (logic: scaled with the node)
    usd_per_gb: float

    @property
    def bandwidth(self) -> float:
        """Peak bytes/s of one interface."""
        return self.bits * self.pin_rate / 8


@lru_cache(maxsize=1)
def memory_technologies() -> dict[str, MemoryTechnology]:
    """The rows of data/memory-technologies.csv by technology name (lower case: 'hbm3e')."""
    out = {}
    with open(data_dir("data") / "memory-technologies.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            out[r["technology"]] = MemoryTechnology(
                r["technology"], r["kind"], r["interface"], int(r["interface_bits"]), float(r["pin_gbps"]) * 1e9,
                float(r["stack_gib"]) * 2**30 if r["stack_gib"] else None, float(r["phy_mm2"]),
                float(r["ctrl_mtr"]) * 1e6, float(r["usd_per_gb"]))
    return out


# A level whose name names no generation: the technology of its kind read by default.
KIND_DEFAULT_TECHNOLOGY = {"hbm": "hbm3", "gddr": "gddr6", "lpddr": "lpddr5", "ddr": "ddr5"}
BANDWIDTH_TOLERANCE = 1.05   # HBM parts run up to ~5 % above the JEDEC bin (A100 40GB: 2.43 Gb/s HBM2)
ROUNDING_TOLERANCE = 1.01    # DRAM bandwidths are published rounded (68.3 GB/s for 4 x 17.064 GB/s)


def memory_technology(level) -> MemoryTechnology | None:
    """The technology of an off-chip level: its ``technology`` field, else the most specific
    generation its name mentions ('HBM3e' -> hbm3e, 'LPDDR5X' -> lpddr5x), else its kind's
    default; None on chip or host."""
    if level.kind not in KIND_DEFAULT_TECHNOLOGY:
        return None
    techs = memory_technologies()
    if level.technology is not None:
        tech = techs.get(level.technology.lower())
        if tech is None or tech.kind != level.kind:
            known = ", ".join(t for t, m in techs.items() if m.kind == level.kind)
            raise CodesignError(f"technology {level.technology!r} is not a {level.kind} technology of "
                                f"data/memory-technologies.csv ({known})", field=f"memory.{level.name}.technology")
        return tech
    compact = re.sub(r"[^a-z0-9]", "", level.name.lower())
    hits = [t for t, m in techs.items() if m.kind == level.kind and t in compact]
    return techs[max(hits, key=len) if hits else KIND_DEFAULT_TECHNOLOGY[level.kind]]


# USD per GB of each kind's default technology (a level's price is its own technology's).
PRICE_PER_GB = {k: memory_technologies()[t].usd_per_gb for k, t in KIND_DEFAULT_TECHNOLOGY.items()}


# -- results ---------------------------------------------------------------------------

@dataclass(frozen=True)
class AreaBreakdown:
    """Estimated die area by component, mm^2. ``sram`` maps memory-level name -> mm^2."""
    matrix: float
    vector: float
    core_control: float
    sram: dict[str, float]
    memory_phy: float
    io: float
    noc: float
    other: float
    node_nm: float
    spare_fraction: float
    memory_stacks: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return (self.matrix + self.vector + self.core_control + sum(self.sram.values()) + self.memory_phy
                + self.io + self.noc + self.other)

    def as_dict(self) -> dict[str, float]:
        out = {"matrix": self.matrix, "vector": self.vector, "core_control": self.core_control}
        out.update({f"sram.{k}": v for k, v in self.sram.items()})
        out.update({"memory_phy": self.memory_phy, "io": self.io, "noc": self.noc, "other": self.other,
                    "total": self.total})
        return out


@dataclass(frozen=True)
class ChipCost:
    area_mm2: float
    dies_per_wafer: float
    die_yield: float
    die_usd: float
    memory_usd: float
    packaging_usd: float

    @property
    def total(self) -> float:
        return self.die_usd + self.memory_usd + self.packaging_usd


# -- memory interfaces ----------------------------------------------------------------------

def _interfaces(spec: HardwareSpec):
    """(level, technology, interfaces) per off-chip level: HBM stacks = max(ceil(bandwidth /
    per-stack peak), ceil(capacity / per-stack capacity)) of the level's generation (a product
    may run below the top speed bin, H100: 5 stacks at 5.2 Gb/s, but never above it, and never
    holds more than its stacks; taller 12-high stacks make this over-count); DRAM: 32-bit
    channels = ceil(bandwidth / (pin rate x 4 B))."""
    for m in spec.memory:
        tech = memory_technology(m)
        if tech is None:
            continue
        tolerance = BANDWIDTH_TOLERANCE if tech.interface == "stack" else ROUNDING_TOLERANCE
        n = math.ceil(m.bandwidth / (tech.bandwidth * tolerance) - 1e-9)
        if tech.stack_capacity:
            n = max(n, math.ceil(m.capacity / tech.stack_capacity - 1e-9))
        yield m, tech, float(max(n, 1))


def memory_interfaces(spec: HardwareSpec) -> dict[str, tuple[str, float]]:
    """Off-chip interfaces per memory level: name -> ('hbm-stack' | 'x32-channel', count)."""
    return {m.name: ("hbm-stack" if tech.interface == "stack" else "x32-channel", n)
            for m, tech, n in _interfaces(spec)}


def serdes_lanes(spec: HardwareSpec) -> float:
    """SerDes lanes of the device and host links: bandwidth per direction / lane rate (the
    link's ``lane_rate``, else NVLink3's 50 Gb/s for a device link, PCIe 4.0's 16 for a host link)."""
    links = spec.interconnect
    return sum(link.bandwidth / (link.lane_rate or default)
               for link, default in ((links.device_link, DEVICE_LANE_RATE), (links.host_link, HOST_LANE_RATE))
               if link is not None)


# -- area ---------------------------------------------------------------------------------

def estimate_area(spec: HardwareSpec, *, spare_fraction: float | None = None,
                  calibration: ClassCalibration | None = None) -> AreaBreakdown:
    """Die area of ``spec`` by component (see the module docstring for the model and its sources).

    ``spare_fraction``: extra replicated silicon fused off for yield (default: the spec's
    ``spare_fraction``, else its class's: 0.15 for GPUs, 0 otherwise). ``calibration``: the class
    multipliers (default the spec class's entry of :data:`CLASS_CALIBRATION`;
    :data:`UNCALIBRATED` gives the bare GA100-derived model that the calibration is fitted on).
    """
    cls = CLASSES[spec.device_class]
    if cls.area is None or spec.compute.fpga is not None:
        raise CodesignError(f"the area model covers ASICs ({'/'.join(CLASS_CALIBRATION)}); an FPGA's die is fixed "
                            "by the part", file=spec.name, field="class")
    node = _spec_node(spec)
    clock = spec.compute.clock
    if clock is None:
        raise CodesignError("required by the area model (MACs = peak / (2 x clock))", file=spec.name,
                            field="compute.clock")
    cal = cls.area if calibration is None else calibration
    spare = spare_fraction if spare_fraction is not None else (
        spec.spare_fraction if spec.spare_fraction is not None else cls.spare_fraction)
    if not 0 <= spare < 1:
        raise CodesignError(f"spare_fraction must be in [0, 1), got {spare}")
    rep = 1.0 + spare
    cores = (spec.compute.cores or 1) * rep

    matrix_t = datapath_transistors(spec.compute.matrix.peak, clock) if spec.compute.matrix else 0.0
    vector_t = datapath_transistors(spec.compute.vector.peak, clock)
    sram = {}
    for m in spec.memory:
        if m.kind in OFFCHIP_KINDS:
            continue
        count = cores if m.per_core else rep
        sram[m.name] = sram_mm2(m.capacity, node, m.kind) * count * cal.sram

    phy_ctrl = 0.0
    stacks = {}
    for m, tech, n in _interfaces(spec):
        if tech.interface == "stack":
            n *= rep                     # HBM sites are replicated blocks: spares fused off too
        phy_ctrl += n * (tech.phy_mm2 + logic_mm2(tech.ctrl_transistors, node))
        stacks[m.name] = n
    io = serdes_lanes(spec) * SERDES_MM2_PER_LANE

    matrix = logic_mm2(matrix_t, node) * rep * cal.datapath
    vector = logic_mm2(vector_t, node) * rep * cal.datapath
    control = logic_mm2(CORE_CONTROL_TRANSISTORS, node) * cores * cal.core
    noc = logic_mm2(NOC_TRANSISTORS_PER_CORE, node) * cores * cal.core
    subtotal = matrix + vector + control + sum(sram.values()) + phy_ctrl + io + noc
    return AreaBreakdown(matrix=matrix, vector=vector, core_control=control, sram=sram, memory_phy=phy_ctrl,
                         io=io, noc=noc, other=subtotal * OTHER_FRACTION, node_nm=node.nm,
                         spare_fraction=spare, memory_stacks=stacks)


# -- cost ----------------------------------------------------------------------------------

WAFER_DIAMETER_MM = 300.0
NB_ALPHA = 3.0   # defect clustering parameter of the negative-binomial yield model


def dies_per_wafer(area_mm2: float, wafer_diameter_mm: float = WAFER_DIAMETER_MM) -> float:
    """Gross dies per wafer: pi (d/2)^2 / A - pi d / sqrt(2 A) (edge loss; Hennessy & Patterson,
    Computer Architecture 6th ed., sec. 1.6). Neglects scribe lines and edge exclusion."""
    if area_mm2 <= 0:
        raise CodesignError(f"die area must be positive, got {area_mm2}")
    n = math.pi * (wafer_diameter_mm / 2) ** 2 / area_mm2 - math.pi * wafer_diameter_mm / math.sqrt(2 * area_mm2)
    if n < 1:
        raise CodesignError(f"a {area_mm2:.0f} mm^2 die does not fit a {wafer_diameter_mm:.0f} mm wafer")
    return n


def die_yield(area_mm2: float, defect_per_cm2: float,
              model: Literal["negative-binomial", "murphy"] = "negative-binomial") -> float:
    """Fraction of good dies. Negative binomial (Stapper 1983): (1 + A D0 / alpha)^-alpha with
    alpha = 3; Murphy (1964): ((1 - e^-AD0) / AD0)^2. A in cm^2. Neglects parametric yield loss."""
    ad = area_mm2 / 100.0 * defect_per_cm2
    if model == "murphy":
        return 1.0 if ad == 0 else ((1 - math.exp(-ad)) / ad) ** 2
    if model == "negative-binomial":
        return (1 + ad / NB_ALPHA) ** (-NB_ALPHA)
    raise CodesignError(f"yield model must be 'negative-binomial' or 'murphy', got {model!r}")


def die_cost(area_mm2, node_nm=None, *, defect_per_cm2: float | None = None,
             yield_model: Literal["negative-binomial", "murphy"] = "negative-binomial") -> float:
    """USD per good die: wafer price / (dies per wafer x yield).

    Called as ``die_cost(area_mm2, node_nm)``, or with a spec: ``die_cost(spec)`` /
    ``die_cost(spec, area_breakdown)`` (the area is then estimated from the spec).
    """
    if isinstance(area_mm2, HardwareSpec):
        spec = area_mm2
        est = node_nm if isinstance(node_nm, AreaBreakdown) else estimate_area(spec)
        area_mm2, node = est.total, _spec_node(spec)
    else:
        node = node_params(node_nm)
    d0 = node.defect_per_cm2 if defect_per_cm2 is None else defect_per_cm2
    return node.wafer_usd / (dies_per_wafer(area_mm2) * die_yield(area_mm2, d0, yield_model))


# Packaging + test per chip: CSET (Khan & Mann 2020) estimate for a 610 mm^2 5 nm GPU-class
# chip; 2.5D interposers for HBM cost more (not modeled).
PACKAGING_TEST_USD = 80.0


def memory_cost(spec: HardwareSpec, price_per_gb: dict[str, float] | None = None) -> float:
    """USD of the off-chip memory the device carries (host excluded): capacity (GiB) x the $/GB
    of each level's technology (data/memory-technologies.csv: an 'LPDDR5X' level is priced as
    LPDDR5X, a level named by kind only as the kind's default). ``price_per_gb`` overrides
    by technology ('hbm3e') or by kind ('hbm')."""
    over = price_per_gb or {}
    total = 0.0
    for m in spec.memory:
        tech = memory_technology(m)
        if tech is not None:
            total += m.capacity / 2**30 * over.get(tech.name, over.get(m.kind, tech.usd_per_gb))
    return total


def chip_cost(spec: HardwareSpec, area: AreaBreakdown | None = None, *, packaging_usd: float = PACKAGING_TEST_USD,
              yield_model: Literal["negative-binomial", "murphy"] = "negative-binomial") -> ChipCost:
    """Manufacturing cost of one device: good die + memory + packaging/test (no NRE, no margin)."""
    est = area or estimate_area(spec)
    node = _spec_node(spec)
    y = die_yield(est.total, node.defect_per_cm2, yield_model)
    return ChipCost(area_mm2=est.total, dies_per_wafer=dies_per_wafer(est.total), die_yield=y,
                    die_usd=die_cost(est.total, spec.process_node, yield_model=yield_model),
                    memory_usd=memory_cost(spec), packaging_usd=packaging_usd)
