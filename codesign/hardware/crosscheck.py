"""Cross-check a spec against the sourced datasheet table (data/hardware-datasheets.csv).

A blank cell in the table means "not verified", so only filled cells are compared.
Used by the test suite for every shipped device and by ``codesign hardware check
--datasheet``.
"""
from __future__ import annotations

import csv
import re
from functools import lru_cache

from ..io import data_dir
from .schema import Dtype, HardwareSpec

# column -> (how to read the spec's figure in the column's unit, tolerance)
_COLUMNS = {
    "fp32_tflops": (lambda s: _peak(s, "fp32", vector_first=True), 1e12, 0.05),
    "tf32_tflops": (lambda s: s.matrix_peak("tf32"), 1e12, 0.05),
    "fp16_bf16_tflops": (lambda s: s.matrix_peak("bf16") or s.matrix_peak("fp16"), 1e12, 0.05),
    "fp8_tflops": (lambda s: s.matrix_peak("fp8"), 1e12, 0.05),
    "int8_tops": (lambda s: s.matrix_peak("int8"), 1e12, 0.05),
    "int4_tops": (lambda s: s.matrix_peak("int4"), 1e12, 0.05),
    "memory_capacity_gb": (lambda s: s.main_memory().capacity, None, 0.08),   # GB vs GiB both accepted
    "memory_bandwidth_gbps": (lambda s: s.main_memory().bandwidth, 1e9, 0.05),
    "tdp_w": (lambda s: s.power.tdp, 1.0, 0.10),
    "die_area_mm2": (lambda s: s.die_area, 1.0, 0.05),
}


def _peak(s: HardwareSpec, dtype: Dtype, vector_first: bool = False):
    vec = s.compute.vector.peak.get(dtype)
    return vec if (vector_first and vec) else (s.matrix_peak(dtype) or vec)


def _number(cell: str) -> float | None:
    m = re.match(r"^\s*([0-9]*\.?[0-9]+)", cell or "")
    return float(m.group(1)) if m else None


@lru_cache(maxsize=1)
def datasheet_rows() -> dict[str, dict]:
    path = data_dir("data") / "hardware-datasheets.csv"
    with open(path, newline="", encoding="utf-8") as f:
        return {r["device"]: r for r in csv.DictReader(f)}


def crosscheck(spec: HardwareSpec, device: str, columns: tuple[str, ...] | None = None) -> list[str]:
    """Mismatches between ``spec`` and the table row ``device`` (empty list: agrees).

    A figure the table has but the spec lacks is reported too.
    """
    rows = datasheet_rows()
    if device not in rows:
        return [f"no row {device!r} in hardware-datasheets.csv"]
    row = rows[device]
    problems = []
    for col, (get, scale, tol) in _COLUMNS.items():
        if columns and col not in columns:
            continue
        ref = _number(row.get(col, ""))
        if ref is None or ref == 0:
            continue
        got = get(spec)
        if got is None:
            problems.append(f"{col}: table has {ref}, spec has none")
            continue
        if scale is None:   # capacity: the table's GB may be decimal or binary
            ok = any(abs(got / (ref * unit) - 1) <= tol for unit in (1e9, 2**30))
            shown = got / 1e9
        else:
            shown = got / scale
            ok = abs(shown / ref - 1) <= tol
        if not ok:
            problems.append(f"{col}: table {ref}, spec {shown:.4g} (tolerance {tol:.0%})")
    return problems
