"""Public die areas (``data/die-areas.csv``) against the area model: a spec per die, the
per-class calibration fit, and its in-sample and leave-one-chip-out errors.

Each fitted row becomes a :class:`HardwareSpec`: the library spec named in ``library_spec``
when ``estimate_from`` is ``library``, else one built from the row's columns (peaks, clock,
units, SRAM, memory, IO and its SerDes lanes; every figure in the CSV cites its source). A die with units fused
off (``units_on_die`` > ``units_enabled``) is priced with that spare fraction instead of the
model's default.

The model's area of a die splits into four terms (see :mod:`codesign.hardware.area`):

    area = (1 + other) x (datapath x D + core x C + sram x S + R)

D = matrix + vector datapaths, C = per-core control + NoC port (the GA100-derived
constants), S = on-chip SRAM and cache arrays, R = memory PHYs/controllers + IO SerDes,
``other`` = GA100's uncore share. ``datapath``, ``core`` and ``sram`` are the class
multipliers of :data:`codesign.hardware.area.CLASS_CALIBRATION`; this module fits a class's
``free`` ones (the others keep the table's values) by least squares on the *relative* error,
sum_i (predicted_i / published_i - 1)^2 - linear in the multipliers, so a closed form, with
each multiplier kept >= :data:`MIN_SCALE` - and refits without each die in turn for the
leave-one-chip-out (LOCO) error. :data:`ALTERNATIVES` are the other structures measured against
the same dies (per-core control that grows with the core's datapath, other free pairs, a DRAM /
SRAM-only split; :func:`alternative` fits one, ``bench_area.py --alternatives`` prints them all).
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CodesignError
from ..io import data_dir
from . import area as A
from . import hardware_from_dict, load_hardware
from .schema import HardwareSpec

MIN_SCALE = 0.01          # a multiplier is an area ratio: kept positive (area grows with every knob)
NOMINAL_SRAM_BW = "1 TB/s"  # bandwidth the schema requires for an on-chip level; the area model ignores it
PEAK_COLUMNS = {          # CSV column -> (spec section, datatype, unit)
    "matrix_fp16_tflops": ("matrix", "fp16", "TFLOP/s"), "matrix_bf16_tflops": ("matrix", "bf16", "TFLOP/s"),
    "matrix_int8_tops": ("matrix", "int8", "TOP/s"), "matrix_fp8_tflops": ("matrix", "fp8", "TFLOP/s"),
    "matrix_fp32_tflops": ("matrix", "fp32", "TFLOP/s"), "matrix_fp64_tflops": ("matrix", "fp64", "TFLOP/s"),
    "vector_fp32_tflops": ("vector", "fp32", "TFLOP/s"), "vector_fp64_tflops": ("vector", "fp64", "TFLOP/s"),
    "vector_fp16_tflops": ("vector", "fp16", "TFLOP/s"),
}
MEMORY_KINDS = (("hbm", "hbm"), ("gddr", "gddr"), ("lpddr", "lpddr"), ("ddr", "ddr"))   # type prefix -> kind


@dataclass(frozen=True)
class Die:
    chip: str
    device_class: str
    area_mm2: float
    spare: float
    spec: HardwareSpec
    row: dict

    @property
    def terms(self) -> dict[str, float]:
        """The *uncalibrated* model's terms at this die's spare fraction, each x (1 + other):
        datapath, core, sram (scaled by the class multipliers) and rest (PHYs, IO)."""
        return _terms(self.spec, self.spare)


TERMS = ("datapath", "core", "sram")


def _terms(spec: HardwareSpec, spare: float) -> dict[str, float]:
    est = A.estimate_area(spec, spare_fraction=spare, calibration=A.UNCALIBRATED)
    parts = {"datapath": est.matrix + est.vector, "core": est.core_control + est.noc,
             "sram": sum(est.sram.values()), "rest": est.memory_phy + est.io}
    k = est.total / sum(parts.values())
    return {name: k * v for name, v in parts.items()}


def _num(row: dict, col: str) -> float | None:
    v = (row.get(col) or "").strip()
    return float(v) if v else None


def _slug(chip: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", chip.lower()).strip("-")[:60]


def spec_from_columns(row: dict) -> HardwareSpec:
    """A minimal spec with the row's published figures (what the area model reads)."""
    peaks: dict[str, dict[str, str]] = {"matrix": {}, "vector": {}}
    for col, (section, dt, unit) in PEAK_COLUMNS.items():
        v = _num(row, col)
        if v:
            peaks[section][dt] = f"{v} {unit}"
    clock = _num(row, "clock_ghz")
    if not peaks["vector"]:
        # TPU v1 is integer-only and publishes no vector rate: one 32-bit lane per MXU column
        # (256 int8 activation lanes) stands in so the schema holds; a few mm^2 at most (estimate)
        assert clock is not None, f"{row['chip']}: clock_ghz is needed without a vector peak"
        peaks["vector"]["int8"] = f"{256 * clock} GOP/s"
    cores = int(_num(row, "units_enabled") or 1)
    memory: list[dict] = []
    mtype = (row.get("memory_type") or "").strip()
    if mtype:
        kind = next(k for prefix, k in MEMORY_KINDS if mtype.lower().startswith(prefix))
        memory.append({"name": mtype, "kind": kind, "capacity": f"{_num(row, 'memory_capacity_gib') or 1} GiB",
                       "bandwidth": f"{_num(row, 'memory_bandwidth_gbs')} GB/s"})
    shared = _num(row, "shared_sram_mib")
    if shared:
        memory.append({"name": "shared", "kind": row["shared_sram_kind"] or "sram", "capacity": f"{shared} MiB",
                       "bandwidth": NOMINAL_SRAM_BW})
    local = _num(row, "sram_per_unit_kib")
    if local:
        memory.append({"name": "local", "kind": "sram", "per_core": True, "capacity": f"{local} KiB",
                       "bandwidth": NOMINAL_SRAM_BW})
    if not mtype:      # SRAM-only chips (Dojo, Graphcore, a CPU die without its DRAM PHY) hold weights on chip
        memory[0]["holds"] = ["weights", "kv", "activations"]
    d = {"name": _slug(row["chip"]), "class": row["class"], "process_node": f"{row['process_node_nm']} nm",
         "compute": {"clock": f"{clock} GHz", "cores": cores, "vector": {"peak": peaks["vector"]}}, "memory": memory}
    if peaks["matrix"]:
        d["compute"]["matrix"] = {"peak": peaks["matrix"]}
    io, lanes = _num(row, "io_gbs_per_direction"), _num(row, "io_lanes")
    if io:
        d["interconnect"] = {"device_link": {"bandwidth": f"{io} GB/s"}}
        if lanes:      # the die's SerDes lanes (transmit + receive pairs): the mean lane rate
            d["interconnect"]["device_link"]["lane_rate"] = f"{io * 8 / lanes} Gb/s"
    return hardware_from_dict(d)


def die_spec(row: dict) -> HardwareSpec:
    if row.get("estimate_from") == "library":
        return load_hardware(row["library_spec"])
    return spec_from_columns(row)


def default_path() -> Path:
    return data_dir("data") / "die-areas.csv"


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> tuple[Die, ...]:
    dies = []
    with open(path, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            if row["use"].strip() != "fit":
                continue
            try:
                spec = die_spec(row)
            except (CodesignError, ValueError) as e:
                raise CodesignError(f"row {i} ({row['chip']}): {e}", file=path) from None
            if spec.device_class != row["class"]:
                raise CodesignError(f"row {i}: class {row['class']!r} but its spec is {spec.device_class!r}", file=path)
            enabled, on_die = _num(row, "units_enabled"), _num(row, "units_on_die")
            spare = on_die / enabled - 1.0 if enabled and on_die else 0.0
            dies.append(Die(row["chip"], row["class"], float(row["die_area_mm2"]), spare, spec, row))
    return tuple(dies)


def load_dies(path: str | Path | None = None) -> tuple[Die, ...]:
    """The rows of ``path`` (default data/die-areas.csv) whose ``use`` is ``fit``, as dies with specs."""
    p = Path(path) if path is not None else default_path()
    return _load(str(p), p.stat().st_mtime)


# -- fitting ---------------------------------------------------------------------------------

def predict(die: Die, cal: A.ClassCalibration) -> float:
    t = die.terms
    return sum(getattr(cal, n) * t[n] for n in TERMS) + t["rest"]


def _sse(x: np.ndarray, y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sum((x @ p - y) ** 2))


def fit(dies, cal: A.ClassCalibration) -> A.ClassCalibration:
    """``cal`` with its ``free`` multipliers refitted on ``dies``: least squares on
    predicted / published - 1 (linear in the multipliers), each kept >= MIN_SCALE. With two free
    multipliers the box-constrained optimum is the unconstrained one or lies on an edge."""
    names = [n for n in TERMS if n in cal.free]
    if not names or not dies:
        return cal
    x = np.array([[d.terms[n] / d.area_mm2 for n in names] for d in dies])
    y = np.array([1.0 - (sum(getattr(cal, n) * d.terms[n] for n in TERMS if n not in names) + d.terms["rest"])
                  / d.area_mm2 for d in dies])
    candidates = [np.linalg.lstsq(x, y, rcond=None)[0]]
    for j in range(len(names)):            # edges: multiplier j at the bound, the other refitted
        p = np.full(len(names), MIN_SCALE)
        rest = [i for i in range(len(names)) if i != j]
        if rest:
            r = y - MIN_SCALE * x[:, j]
            p[rest] = np.linalg.lstsq(x[:, rest], r, rcond=None)[0]
        candidates.append(p)
    feasible = [np.maximum(p, MIN_SCALE) for p in candidates]
    best = min(feasible, key=lambda p: _sse(x, y, p))
    fitted: dict[str, Any] = {n: float(v) for n, v in zip(names, best)}     # multiplier fields by name
    return replace(cal, **fitted)


@dataclass(frozen=True)
class ClassReport:
    device_class: str
    fitted: A.ClassCalibration
    rows: tuple[tuple[str, float, float, float], ...]     # chip, published, in-sample estimate, LOCO estimate

    @property
    def n(self) -> int:
        return len(self.rows)

    @staticmethod
    def _mape(pairs) -> float:
        return float(np.mean([abs(est / pub - 1) for pub, est in pairs])) if pairs else math.nan

    @property
    def mape(self) -> float:
        return self._mape([(p, e) for _, p, e, _ in self.rows])

    @property
    def loco_mape(self) -> float:
        return self._mape([(p, lo) for _, p, _, lo in self.rows])


def class_report(dies, device_class: str, cal: A.ClassCalibration) -> ClassReport:
    """Fit one class on all its dies, then refit without each die to predict it (LOCO)."""
    mine = [d for d in dies if d.device_class == device_class]
    fitted = fit(mine, cal)
    rows = []
    for i, die in enumerate(mine):
        loco = fit(mine[:i] + mine[i + 1:], cal)
        rows.append((die.chip, die.area_mm2, predict(die, fitted), predict(die, loco)))
    return ClassReport(device_class, fitted, tuple(rows))


def report(dies=None) -> dict[str, ClassReport]:
    """Per class of :data:`CLASS_CALIBRATION`: the fit, in-sample and LOCO estimates of every die."""
    dies = list(load_dies() if dies is None else dies)
    return {cls: class_report(dies, cls, cal) for cls, cal in A.CLASS_CALIBRATION.items()
            if any(d.device_class == cls for d in dies)}


# -- alternative structures (what was measured before the class table was settled) ----------------

# GA100 SM datapath transistors (tensor + vector, A100 whitepaper rates): the unit that the
# per-core control term is a remainder of, so a core's datapath is measured in SMs
_SM_DATAPATH = (A.datapath_transistors(A._GA100_SM_TENSOR, 1.0)
                + A.datapath_transistors(A._GA100_SM_VECTOR, 1.0))


def columns(die: Die) -> dict[str, float]:
    """The die's uncalibrated terms (mm^2, x (1 + other)) and the alternative per-core terms:
    ``core_sqrt`` / ``core_lin``: the per-core control scaled by (the core's datapath / a GA100
    SM's)^0.5 / ^1 (control that grows with the core it drives); ``core_sram_only`` /
    ``core_dram``: the per-core term of a die without / with an off-chip DRAM level."""
    t = dict(die.terms)
    est = A.estimate_area(die.spec, spare_fraction=die.spare, calibration=A.UNCALIBRATED)
    cores = die.spec.compute.cores or 1
    node = A.node_params(die.spec.process_node)
    per_core = (est.matrix + est.vector) / (1 + die.spare) * node.logic_mtr_mm2 * 1e6 / cores
    ratio = per_core / _SM_DATAPATH
    dram = any(m.kind in A.KIND_DEFAULT_TECHNOLOGY for m in die.spec.memory)
    t.update(core_sqrt=t["core"] * ratio ** 0.5, core_lin=t["core"] * ratio,
             core_dram=t["core"] if dram else 0.0, core_sram_only=0.0 if dram else t["core"])
    return t


# name, free columns, fixed multipliers of the other columns ('rest' is always x 1)
ALTERNATIVES: tuple[tuple[str, tuple[str, ...], dict[str, float]], ...] = (
    ("datapath, core free (sram 1)", ("datapath", "core"), {"sram": 1.0}),
    ("datapath, core free; sram 1.37 (TPU v1, v4i shares)", ("datapath", "core"), {"sram": 1.37}),
    ("datapath, sram free; no per-core term", ("datapath", "sram"), {}),
    ("core, sram free; datapath 1", ("core", "sram"), {"datapath": 1.0}),
    ("control ~ sqrt(core datapath); datapath, core free", ("datapath", "core_sqrt"), {"sram": 1.0}),
    ("control ~ core datapath; datapath, core free", ("datapath", "core_lin"), {"sram": 1.0}),
    ("own core multiplier with DRAM / SRAM-only (3 free)", ("datapath", "core_dram", "core_sram_only"), {"sram": 1.0}),
)


def _bounded_lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """min |x p - y|^2 with every p >= MIN_SCALE: the best over the active sets (exact for a few columns)."""
    k = x.shape[1]
    best, best_sse = np.full(k, MIN_SCALE), _sse(x, y, np.full(k, MIN_SCALE))
    for mask in range(1 << k):
        free = [j for j in range(k) if mask >> j & 1]
        if not free:
            continue
        p = np.full(k, MIN_SCALE)
        bound = [j for j in range(k) if j not in free]
        r = y - x[:, bound] @ p[bound] if bound else y
        p[free] = np.linalg.lstsq(x[:, free], r, rcond=None)[0]
        if np.all(p >= MIN_SCALE - 1e-12) and _sse(x, y, p) < best_sse:
            best, best_sse = p, _sse(x, y, p)
    return best


def alternative(dies, free: tuple[str, ...], fixed: dict[str, float]) -> tuple[dict[str, float], float, float]:
    """One alternative structure on ``dies``: the fitted multipliers, in-sample MAPE and LOCO MAPE."""
    cols = [columns(d) for d in dies]
    x = np.array([[c[n] / d.area_mm2 for n in free] for c, d in zip(cols, dies)])
    y = np.array([1.0 - (c["rest"] + sum(v * c[n] for n, v in fixed.items())) / d.area_mm2
                  for c, d in zip(cols, dies)])
    p = _bounded_lstsq(x, y)
    loco = []
    for i in range(len(dies)):
        keep = [j for j in range(len(dies)) if j != i]
        loco.append(abs(x[i] @ _bounded_lstsq(x[keep], y[keep]) - y[i]))
    return dict(zip(free, map(float, p))), float(np.mean(np.abs(x @ p - y))), float(np.mean(loco))
