"""Hardware spec schema: immutable, validated objects loaded from YAML.

A thin spec (a matrix peak, one memory level) is already valid; every further
detail refines the answer. Quantities are read by :mod:`codesign.units`, so a
field may say "3.35 TB/s" or a plain SI number. Unknown fields are errors.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ..units import UnitError, parse_quantity
from .classes import CLASSES, DeviceClassName

DEVICE_CLASSES = tuple(CLASSES)      # the rows of hardware/classes.py
# Datatypes, widest first. Matrix/vector peaks are keyed by these names.
DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4", "int4")
DTYPE_BITS = {"fp64": 64, "fp32": 32, "tf32": 32, "bf16": 16, "fp16": 16, "fp8": 8, "int8": 8,
              "fp4": 4, "int4": 4}
TENSOR_CLASSES = ("weights", "kv", "activations")
SOURCE_KINDS = ("datasheet", "paper", "measured", "estimate", "derived", "website")
MEMORY_KINDS = ("register", "sram", "cache", "hbm", "gddr", "lpddr", "ddr", "host")
OFFCHIP_KINDS = ("hbm", "gddr", "lpddr", "ddr", "host")


def _q(dimension: str):
    def conv(v):
        try:
            return parse_quantity(v, dimension)
        except UnitError as e:
            raise ValueError(str(e)) from None
    return BeforeValidator(conv)


Bytes = Annotated[float, _q("bytes"), Field(gt=0)]
Bandwidth = Annotated[float, _q("bandwidth"), Field(gt=0)]
Rate = Annotated[float, _q("rate"), Field(gt=0)]
Frequency = Annotated[float, _q("frequency"), Field(gt=0)]
Power = Annotated[float, _q("power"), Field(ge=0)]
PositivePower = Annotated[float, _q("power"), Field(gt=0)]
Time = Annotated[float, _q("time"), Field(ge=0)]
# a per-kernel host cost: microseconds in practice; above 10 ms it is a unit slip
KernelTime = Annotated[float, _q("time"), Field(ge=0, le=0.01)]
EnergyPerByte = Annotated[float, _q("energy_per_byte"), Field(ge=0)]
EnergyPerOp = Annotated[float, _q("energy_per_op"), Field(ge=0)]
Area = Annotated[float, _q("area"), Field(gt=0)]
Node = Annotated[float, _q("node"), Field(gt=0)]
Money = Annotated[float, _q("money"), Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]
Dtype = Literal["fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4", "int4"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Source(Frozen):
    """Where a figure comes from. ``estimate`` marks a guess."""
    kind: Literal["datasheet", "paper", "measured", "estimate", "derived", "website"]
    ref: str = Field(min_length=3)
    note: str | None = None


def _source(v):
    if isinstance(v, str):
        kind, sep, ref = v.partition(": ")
        if not sep or kind not in SOURCE_KINDS:
            raise ValueError(f"expected '<kind>: <reference>' with kind one of {', '.join(SOURCE_KINDS)}, got {v!r}")
        return {"kind": kind, "ref": ref}
    return v


SourceField = Annotated[Source, BeforeValidator(_source)]


class Sparsity(Frozen):
    """Structured sparsity the matrix units accelerate (e.g. NVIDIA 2:4)."""
    pattern: str = Field(pattern=r"^\d+:\d+$")
    speedup: float = Field(gt=1, le=8)


class MatrixUnits(Frozen):
    """Tensor cores / MXUs / systolic arrays / NPU MAC arrays.

    ``peak`` is the dense peak per datatype for the whole device; a datatype that
    is absent is unsupported. ``units`` x ``array`` (systolic) or ``tile`` (MMA
    shape) describe the geometry for padding and wave models.
    """
    peak: dict[Dtype, Rate] = Field(min_length=1)
    units: int | None = Field(default=None, gt=0)
    array: tuple[int, int] | None = None       # systolic array rows x cols
    tile: tuple[int, int, int] | None = None    # native MMA shape m x n x k
    block_tile: tuple[int, int] | None = None   # GPU thread-block output tile for wave quantization
    sparsity: Sparsity | None = None
    efficiency: Fraction | None = None          # sustained fraction of peak on large GEMMs
    efficiency_by_dtype: dict[Dtype, Fraction] = Field(default_factory=dict)   # per-datatype override
    # peaks when the products accumulate in 16 bits: GeForce cards run FP16 with FP32
    # accumulation at half rate and with FP16 accumulation at full rate (used by a runtime
    # whose gemm_accumulate is fp16, e.g. llama.cpp's cuBLAS path)
    half_accumulate_peak: dict[Dtype, Rate] = Field(default_factory=dict)

    @field_validator("array", "tile", "block_tile")
    @classmethod
    def _positive(cls, v):
        if v is not None and any(x <= 0 for x in v):
            raise ValueError("every dimension must be a positive integer")
        return v


class VectorUnits(Frozen):
    """SIMD / CUDA cores / vector units: softmax, norms, elementwise."""
    peak: dict[Dtype, Rate] = Field(min_length=1)
    transcendental: Rate | None = None          # exp/tanh evaluations per second (elem/s)
    efficiency: Fraction | None = None


class FPGAResources(Frozen):
    """DSP fabric: matrix peak = dsp x clock x ops_per_dsp_cycle[dtype] (packing)."""
    dsp: int = Field(gt=0)
    ops_per_dsp_cycle: dict[Dtype, float] = Field(min_length=1)
    bram: Bytes | None = None
    uram: Bytes | None = None
    luts: int | None = Field(default=None, gt=0)
    utilization: Fraction = 0.75               # fraction of DSPs an LLM design can use


class Compute(Frozen):
    clock: Frequency | None = None
    # the clock the spec's power figures (TDP, energy per operation) are stated at, when the
    # chip runs at another one (a derived design, an overclocked board): voltage follows the
    # clock (perf.params.at_clock); None = clock
    nominal_clock: Frequency | None = None
    cores: int | None = Field(default=None, gt=0)   # SMs / TensorCores / AIE tiles / NPU or CPU cores
    # the instruction-set target kernels are built for ('sm_90', 'sm_121' on NVIDIA: compute
    # capability), which decides which of a runtime's kernels exist (Runtime.weight_only_fp4_experts)
    arch: str | None = Field(default=None, pattern=r"^[a-z0-9_.]+$")
    # threads one core keeps resident at once (a GPU SM's limit; None: the class's default): a
    # sequential kernel of more warps than cores x this runs its whole chain once per wave
    resident_threads: int | None = Field(default=None, gt=0)
    matrix: MatrixUnits | None = None
    vector: VectorUnits
    fpga: FPGAResources | None = None


class MemoryLevel(Frozen):
    """One level of the hierarchy. Levels are listed outermost first."""
    name: str = Field(min_length=1)
    kind: Literal["register", "sram", "cache", "hbm", "gddr", "lpddr", "ddr", "host"]
    capacity: Bytes
    bandwidth: Bandwidth
    per_core: bool = False                      # capacity and bandwidth are per core instance
    efficiency: Fraction | None = None          # sustained fraction of bandwidth
    energy_per_byte: EnergyPerByte | None = None
    latency: Time | None = None
    holds: tuple[Literal["weights", "kv", "activations"], ...] | None = None
    # off-chip technology ('lpddr5x', 'hbm3e': a row of data/memory-technologies.csv) for the
    # area and cost model; None: the generation the level's name mentions, else the kind's default
    technology: str | None = None

    def stores(self) -> tuple[str, ...]:
        """Tensor classes this level may hold across operators (default: off-chip holds all)."""
        if self.holds is not None:
            return self.holds
        return TENSOR_CLASSES if self.kind in ("hbm", "gddr", "lpddr", "ddr") else ()


class Link(Frozen):
    bandwidth: Bandwidth                        # per direction, per device
    latency: Time = 0.0
    topology: Literal["ring", "switch", "torus2d", "torus3d", "mesh", "point-to-point"] = "switch"
    max_devices: int | None = Field(default=None, gt=0)
    efficiency: Fraction | None = None          # sustained fraction of bandwidth in collectives
    # signalling rate of one SerDes lane per direction ("112 Gb/s"): the area model counts
    # lanes = bandwidth / lane_rate (None: NVLink3's 50 Gb/s for a device link, PCIe 4.0's
    # 16 Gb/s for a host link; codesign.hardware.area)
    lane_rate: Bandwidth | None = None


class OperatingPoint(Frozen):
    """A DVFS point: compute rates scale with clock, dynamic energy with voltage^2. The
    off-chip memory keeps the spec's figures unless the point states its own: a board whose
    memory clock is pinned at its top (vendor benchmark scripts) streams at a higher peak and
    a larger share of it than one whose DRAM governor steps the clock down."""
    name: str
    clock: Frequency
    voltage: float | None = Field(default=None, gt=0)
    power: Power | None = None                  # TDP at this point
    memory_bandwidth: Bandwidth | None = None   # off-chip memory peak at this point
    memory_efficiency: Fraction | None = None   # share of that peak streamed at this point


class PowerSpec(Frozen):
    tdp: PositivePower | None = None
    idle: Power | None = None           # deep idle (clocks down): the board parked between jobs
    static: Power | None = None         # clocks up, no work: the floor under any running job
    busy: Power | None = None           # extra while kernels run, whatever they compute
    limit: PositivePower | None = None  # a lowered power cap (nvidia-smi -pl); default: the TDP
    energy_per_op: dict[Dtype, EnergyPerOp] = Field(default_factory=dict)
    # share of the matrix rate the board holds at its power limit, when the spec's matrix
    # figures are burst rates (datasheets, short benchmarks); 1.0 where they are sustained
    # rates (codesign calibrate times seconds of back-to-back products); None: the class's
    # default (hardware/classes.py, sustained_matrix_share)
    sustained_share: Fraction | None = None
    nominal_voltage: float | None = Field(default=None, gt=0)
    operating_points: tuple[OperatingPoint, ...] = ()


class Interconnect(Frozen):
    device_link: Link | None = None
    host_link: Link | None = None


class KernelProfile(Frozen):
    """How the software stack really runs an operator kind (calls and passes over data)."""
    calls: float = Field(default=1.0, ge=0)     # kernel/library calls per operator
    passes: float = Field(default=1.0, ge=0)    # multiples of the minimal traffic actually moved
    calls_per_batch: float = Field(default=0.0, ge=0)   # extra calls per product of a batched op (per-head loops)
    efficiency: Fraction | None = None          # achieved fraction of the unit's peak


class HardwareSpec(Frozen):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    display_name: str | None = None
    device_class: DeviceClassName = Field(alias="class")
    vendor: str | None = None
    year: int | None = Field(default=None, ge=1990, le=2100)
    process_node: Node | None = None
    die_area: Area | None = None
    # replicated blocks (SMs, L2 slices, HBM sites) fused off for yield: units on the die / units
    # enabled - 1; the area model prices them (default: the class's, hardware/classes.py)
    spare_fraction: float | None = Field(default=None, ge=0, lt=1)
    price: Money | None = None
    notes: str | None = None
    compute: Compute
    memory: tuple[MemoryLevel, ...] = Field(min_length=1)
    interconnect: Interconnect = Interconnect()
    power: PowerSpec = PowerSpec()
    kernel_overhead: KernelTime | None = None   # per-kernel launch/call cost
    # Geekbench 6 single-core score of the CPU that dispatches this device's kernels (on an SoC
    # its own performance core): host-side dispatch scales inversely (perf.params.HOST_REFERENCE);
    # None: a host of the reference speed
    host_single_thread: float | None = Field(default=None, gt=0)
    kernels: dict[str, KernelProfile] = Field(default_factory=dict)
    sources: dict[str, SourceField] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self):
        if self.compute.matrix is None and self.compute.fpga is None and CLASSES[self.device_class].matrix_required:
            raise ValueError(f"compute.matrix: required for a {self.device_class} device (or compute.fpga for an FPGA)")
        if self.device_class == "fpga" and self.compute.fpga is not None and self.compute.clock is None:
            raise ValueError("compute.clock: an FPGA spec needs the fabric clock to derive its DSP peak")
        names = [m.name for m in self.memory]
        if len(set(names)) != len(names):
            raise ValueError(f"memory: level names must be unique, got {names}")
        if not any(m.stores() for m in self.memory):
            raise ValueError("memory: no level may hold weights (declare 'holds' or an off-chip level)")
        cores = self.compute.cores or 1
        prev = None
        for i, m in enumerate(self.memory):
            if m.per_core and self.compute.cores is None:
                raise ValueError(f"memory[{i}].per_core: needs compute.cores to count the instances")
            total = m.capacity * (cores if m.per_core else 1)
            # a cache cannot outgrow the level it caches; scratchpads (sram) are sized freely
            if prev is not None and m.kind == "cache" and prev[0].kind != "host" and total > prev[1] * 1.0001:
                raise ValueError(f"memory[{i}].capacity: level '{m.name}' ({total:.4g} B in all) is larger than "
                                 f"the level above it, '{prev[0].name}' ({prev[1]:.4g} B); list levels outermost "
                                 f"first with inner levels smaller")
            prev = (m, total)
        return self

    # -- convenience -----------------------------------------------------
    @property
    def title(self) -> str:
        return self.display_name or self.name

    def main_memory(self) -> MemoryLevel:
        """The outermost level that may hold weights (the capacity that must fit the model)."""
        for m in self.memory:
            if "weights" in m.stores() and m.kind != "host":
                return m
        return next(m for m in self.memory if m.stores())

    def matrix_peak(self, dtype: str) -> float | None:
        """Dense matrix peak for ``dtype`` (FPGA: derived from DSPs x clock x packing)."""
        c = self.compute
        if c.matrix is not None and dtype in c.matrix.peak:
            return c.matrix.peak[dtype]
        if c.fpga is not None and dtype in c.fpga.ops_per_dsp_cycle:
            assert c.clock is not None, "compute.fpga needs compute.clock"   # checked in _check for an FPGA
            return c.fpga.dsp * c.clock * c.fpga.ops_per_dsp_cycle[dtype]
        return None

    def matrix_dtypes(self) -> tuple[str, ...]:
        c = self.compute
        out = set(c.matrix.peak) if c.matrix else set()
        if c.fpga:
            out |= set(c.fpga.ops_per_dsp_cycle)
        return tuple(d for d in DTYPES if d in out)

    def figure_paths(self) -> list[str]:
        """Dotted paths of every numeric figure (for the source-coverage check)."""
        out: list[str] = []

        def walk(obj, path):
            if isinstance(obj, BaseModel):
                for k in sorted(obj.model_fields_set):  # only figures the file states
                    if k in ("sources", "kernels", "name", "display_name", "notes", "vendor"):
                        continue
                    walk(getattr(obj, k), f"{path}.{k}" if path else k)
            elif isinstance(obj, dict):
                for k, v in obj.items():
                    walk(v, f"{path}.{k}")
            elif isinstance(obj, tuple) and obj and isinstance(obj[0], BaseModel):
                for item in obj:
                    walk(item, f"{path}.{getattr(item, 'name', '?')}")
            elif isinstance(obj, tuple) and (not obj or not all(isinstance(x, (int, float)) for x in obj)):
                return                                   # e.g. holds: (weights, kv), or empty: not a figure
            elif isinstance(obj, (int, float, tuple)) and not isinstance(obj, bool) and obj is not None:
                out.append(path)
        walk(self, "")
        return out

    def unsourced(self) -> list[str]:
        """Figures with no source entry on them or on an enclosing path."""
        keys = set(self.sources)
        missing = []
        for p in self.figure_paths():
            parts = p.split(".")
            if not any(".".join(parts[:i]) in keys for i in range(1, len(parts) + 1)):
                missing.append(p)
        return missing
