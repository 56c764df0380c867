"""Is a (derived) chip inside the envelope of chips that exist?

A study can push a knob past anything built: a TDP no cooler removes from that die, more
matrix throughput per transistor than any design reaches at its node, more off-chip
bandwidth than its die edge has room for PHYs. Three densities are compared with the
highest a real chip of the same class reaches (the library's chips and the public dies of
data/die-areas.csv), all on the area model's die estimate:

- power density, TDP / die area (W/mm^2): air- and cold-plate-cooled dies stay near or under
  ~1 W/mm^2 (H100 SXM 700 W / 814 mm^2 = 0.86);
- matrix throughput per transistor: best 16-bit dense matrix peak / (die area x logic density
  at the node, codesign.hardware.area.NODES), so a newer node is not flagged for being dense;
- off-chip bandwidth per mm of die edge, per memory kind (the HBM/GDDR/LPDDR PHYs sit on
  the shoreline): that kind's bandwidth / (4 x sqrt(area)), a square die; a PHY's bandwidth
  per mm is a property of the interface, so this envelope spans every class.

A design more than ENVELOPE_MARGIN times the envelope gets a note (not an error: the
envelope is what was built, not what is possible). Neglected: multi-die packages are
compared on total silicon; clocks, voltage and yield are not checked here; a class with
few known chips has a loose envelope.
"""
from __future__ import annotations

import math
from functools import cache

from ..errors import CodesignError
from ..io import library
from . import load_hardware
from .area import estimate_area, node_params
from .area_fit import load_dies
from .schema import OFFCHIP_KINDS, HardwareSpec

ENVELOPE_MARGIN = 1.25
LABELS = {"power_w_per_mm2": "power density (TDP / die area, W/mm^2)",
          "flops_per_transistor": "16-bit matrix FLOP/s per transistor",
          **{f"shoreline.{k}": f"{k.upper()} bandwidth per mm of die edge (GB/s/mm)" for k in OFFCHIP_KINDS}}
SCALE = {k: (1e-9 if k.startswith("shoreline.") else 1.0) for k in LABELS}


def densities(spec: HardwareSpec, area_mm2: float | None) -> dict[str, float]:
    """The three densities of ``spec`` on a die of ``area_mm2`` (those its figures allow)."""
    out: dict[str, float] = {}
    if not area_mm2 or area_mm2 <= 0:
        return out
    if spec.power.tdp:
        out["power_w_per_mm2"] = spec.power.tdp / area_mm2
    peaks = spec.compute.matrix.peak if spec.compute.matrix is not None else {}
    peak = max((peaks[d] for d in ("bf16", "fp16") if d in peaks), default=None)
    if peak and spec.process_node:
        try:
            mtr = node_params(spec.process_node).logic_mtr_mm2
        except CodesignError:
            mtr = None
        if mtr:
            out["flops_per_transistor"] = peak / (area_mm2 * mtr * 1e6)
    for kind in OFFCHIP_KINDS:
        bw = sum(m.bandwidth for m in spec.memory if m.kind == kind)
        if bw and kind != "host":
            out[f"shoreline.{kind}"] = bw / (4.0 * math.sqrt(area_mm2))
    return out


def model_area(spec: HardwareSpec) -> float | None:
    """The area model's die area (mm^2), None where it does not cover the spec."""
    try:
        return float(estimate_area(spec).total)
    except (CodesignError, ValueError, ZeroDivisionError):
        return None


@cache
def envelope(device_class: str) -> dict[str, tuple[float, str]]:
    """Highest value of each density over the real chips of ``device_class`` (the shoreline
    densities over every class): the library's
    specs and the public dies of data/die-areas.csv, each on the area model's estimate of its
    die, as a derived design is (so the model's own error does not flag a design).
    {density: (value, chip name)}."""
    chips: list[tuple[str, HardwareSpec]] = [(d.chip, d.spec) for d in load_dies()]
    for name in sorted(library("hardware_specs")):
        try:
            chips.append((name, load_hardware(name)))
        except CodesignError:
            continue
    best: dict[str, tuple[float, str]] = {}
    for name, spec in chips:
        for k, v in densities(spec, model_area(spec)).items():
            if spec.device_class != device_class and not k.startswith("shoreline."):
                continue
            if k not in best or v > best[k][0]:
                best[k] = (v, name)
    return best


def credibility_notes(spec: HardwareSpec) -> list[str]:
    """One line per density beyond ENVELOPE_MARGIN x the class's envelope (on the area
    model's estimate of the die, as the envelope is)."""
    env = envelope(spec.device_class)
    notes = []
    for k, v in densities(spec, model_area(spec)).items():
        if k in env and v > ENVELOPE_MARGIN * env[k][0]:
            top, chip = env[k]
            of = "chip" if k.startswith("shoreline.") else spec.device_class
            notes.append(f"{LABELS[k]} {v * SCALE[k]:.3g} is {v / top:.1f}x the highest of any known "
                         f"{of} ({chip}: {top * SCALE[k]:.3g})")
    return notes
