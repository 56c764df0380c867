"""Quantities at the edges: "3.35 TB/s", "80 GiB", "700 W" -> SI floats.

Inside codesign every number is SI: bytes, seconds, B/s, FLOP/s (or OP/s), W, J,
Hz, J/B, J/op. Two exceptions keep their customary units because nobody writes
them otherwise: die area in mm^2 and process node in nm.

Decimal prefixes (k, M, G, T, P) are powers of 1000; binary prefixes (Ki, Mi, Gi,
Ti, Pi) are powers of 1024. "GB/s" is 1e9 bytes per second, "Gb/s" is 1e9 *bits*
per second (1.25e8 B/s). A quantity whose unit has the wrong dimension (a size
where a bandwidth is expected, "3.35 TB") is rejected with a message that says
what was expected.
"""
from __future__ import annotations

import math
import re
import reprlib


def _show(value, limit: int = 60) -> str:
    """A value for an error message, cut to ``limit`` characters (a hostile file may hold
    megabytes in one field)."""
    r = reprlib.Repr()
    r.maxstring = r.maxother = limit
    r.maxlist = r.maxdict = r.maxtuple = 4
    r.maxlevel = 2
    return r.repr(value)


DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15}
BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}

# base unit -> (dimension, factor to SI). Units are matched case-sensitively after
# the prefix so that B (byte) and b (bit) never get confused.
_BASE = {
    "B": ("bytes", 1.0), "byte": ("bytes", 1.0), "bytes": ("bytes", 1.0),
    "b": ("bytes", 0.125), "bit": ("bytes", 0.125), "bits": ("bytes", 0.125),
    "B/s": ("bandwidth", 1.0), "Bps": ("bandwidth", 1.0),
    "b/s": ("bandwidth", 0.125), "bit/s": ("bandwidth", 0.125), "bps": ("bandwidth", 0.125),
    "FLOP/s": ("rate", 1.0), "FLOPS": ("rate", 1.0), "flop/s": ("rate", 1.0),
    "OP/s": ("rate", 1.0), "OPS": ("rate", 1.0), "op/s": ("rate", 1.0),
    "FLOP": ("ops", 1.0), "OP": ("ops", 1.0), "op": ("ops", 1.0), "flop": ("ops", 1.0),
    "elem/s": ("rate", 1.0),
    "Hz": ("frequency", 1.0),
    "W": ("power", 1.0),
    "J": ("energy", 1.0),
    "J/B": ("energy_per_byte", 1.0), "J/byte": ("energy_per_byte", 1.0),
    "J/b": ("energy_per_byte", 8.0), "J/bit": ("energy_per_byte", 8.0),
    "J/op": ("energy_per_op", 1.0), "J/FLOP": ("energy_per_op", 1.0), "J/flop": ("energy_per_op", 1.0),
    "J/OP": ("energy_per_op", 1.0),
    "s": ("time", 1.0), "sec": ("time", 1.0),
    "mm^2": ("area", 1.0), "mm2": ("area", 1.0),
    "nm": ("node", 1.0),
    "USD": ("money", 1.0), "$": ("money", 1.0),
}

EXAMPLES = {
    "bytes": "'80 GiB'", "bandwidth": "'3.35 TB/s'", "rate": "'989 TFLOP/s'",
    "frequency": "'1.98 GHz'", "power": "'700 W'", "energy": "'1 mJ'",
    "energy_per_byte": "'10 pJ/B'", "energy_per_op": "'0.5 pJ/op'", "time": "'2 us'",
    "area": "'814 mm^2'", "node": "'4 nm'", "money": "'30000 USD'", "ops": "'1 GFLOP'",
}
DIMENSION_WORDS = {
    "bytes": "a size", "bandwidth": "a bandwidth", "rate": "an operation rate",
    "frequency": "a frequency", "power": "a power", "energy": "an energy",
    "energy_per_byte": "an energy per byte", "energy_per_op": "an energy per operation",
    "time": "a time", "area": "an area", "node": "a process node", "money": "a price",
    "ops": "an operation count",
}
# plain numbers are read in this unit (documented in the README)
PLAIN_UNIT = {"area": "mm^2", "node": "nm", "money": "USD"}

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RE = re.compile(rf"^\s*({_NUM})\s*([^\s\d].*?)?\s*$")
_SPECIAL = {"s": "s"}  # 's' alone is seconds, never a prefix


class UnitError(ValueError):
    """A quantity that cannot be read as the expected dimension."""


def _split_unit(unit: str) -> tuple[str, float] | None:
    """Return (dimension, SI factor) for a unit string such as 'TB/s' or 'GiB'."""
    unit = unit.replace(" ", "")
    if unit in _BASE:
        dim, f = _BASE[unit]
        return dim, f
    for pfx, mult in list(BINARY.items()) + list(DECIMAL.items()):
        if pfx and unit.startswith(pfx) and unit[len(pfx):] in _BASE:
            dim, f = _BASE[unit[len(pfx):]]
            if dim in ("area", "node", "money"):
                continue
            return dim, f * mult
    return None


def parse_quantity(value, dimension: str) -> float:
    """Parse ``value`` (number or '<number> <unit>') as ``dimension``; return SI float.

    Plain numbers are taken as SI base units (B, B/s, FLOP/s, Hz, W, J, s, J/B,
    J/op), or mm^2 / nm / USD for area, node and price.
    """
    if isinstance(value, bool):
        raise UnitError(f"expected {DIMENSION_WORDS[dimension]} such as {EXAMPLES[dimension]}, got {_show(value)}")
    if isinstance(value, (int, float)):
        x = float(value)
    elif isinstance(value, str):
        m = _RE.match(value)
        if not m:
            raise UnitError(f"expected {DIMENSION_WORDS[dimension]} such as {EXAMPLES[dimension]}, got {_show(value)}")
        x = float(m.group(1))
        unit = m.group(2)
        if unit:
            parsed = _split_unit(unit)
            if parsed is None:
                raise UnitError(f"unknown unit {unit!r} in {_show(value)}; expected {DIMENSION_WORDS[dimension]} "
                                f"such as {EXAMPLES[dimension]}")
            dim, factor = parsed
            if dim != dimension:
                raise UnitError(f"expected {DIMENSION_WORDS[dimension]} such as {EXAMPLES[dimension]}, "
                                f"got {_show(value)} ({DIMENSION_WORDS[dim]})")
            x *= factor
    else:
        raise UnitError(f"expected {DIMENSION_WORDS[dimension]} such as {EXAMPLES[dimension]}, got {_show(value)}")
    if not math.isfinite(x):
        raise UnitError(f"expected a finite {DIMENSION_WORDS[dimension]}, got {_show(value)}")
    return x


_OUT = {
    "bytes": [(2.0**40, "TiB"), (2.0**30, "GiB"), (2.0**20, "MiB"), (2.0**10, "KiB"), (1, "B")],
    "bandwidth": [(1e12, "TB/s"), (1e9, "GB/s"), (1e6, "MB/s"), (1, "B/s")],
    "rate": [(1e15, "PFLOP/s"), (1e12, "TFLOP/s"), (1e9, "GFLOP/s"), (1e6, "MFLOP/s"), (1, "FLOP/s")],
    "frequency": [(1e9, "GHz"), (1e6, "MHz"), (1, "Hz")],
    "power": [(1e3, "kW"), (1, "W"), (1e-3, "mW")],
    "energy": [(1, "J"), (1e-3, "mJ"), (1e-6, "uJ"), (1e-9, "nJ"), (1e-12, "pJ")],
    "energy_per_byte": [(1e-12, "pJ/B")],
    "energy_per_op": [(1e-12, "pJ/op")],
    "time": [(1, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")],
}


def format_number(x: float, digits: int = 4) -> str:
    """A plain number for a table: ``digits`` significant digits, thousands separated, never
    exponent notation in the range a table shows (38,940; 144.9; 0.0123)."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    if not 1e-4 <= abs(x) < 1e12:
        return f"{x:.{digits - 1}e}"
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    out = f"{round(x, digits - 1 - mag):,.{decimals}f}"
    return out.rstrip("0").rstrip(".") if "." in out else out


def format_quantity(x: float, dimension: str, digits: int = 3) -> str:
    """SI float -> short human string ('3.35 TB/s'); the inverse of parse_quantity."""
    if dimension in PLAIN_UNIT:
        return f"{x:.{digits}g} {PLAIN_UNIT[dimension]}"
    scales = _OUT[dimension]
    ax = abs(x)
    factor, name = scales[-1]
    for i, (factor, name) in enumerate(scales):
        if ax >= factor:
            # 999.9 MHz rounds to 1000: say 1 GHz instead
            if i and float(f"{ax / factor:.{digits}g}") >= scales[i - 1][0] / factor:
                factor, name = scales[i - 1]
            break
    v = x / factor
    # '1010 MiB', not '1.01e+03 MiB': never exponent notation between prefixes
    return f"{v:.{max(digits, len(str(int(abs(v)))))}g} {name}"


_SI_PREFIX = {-4: "p", -3: "n", -2: "µ", -1: "m", 0: "", 1: "k", 2: "M", 3: "G", 4: "T", 5: "P"}


def format_si(x: float, unit: str = "", digits: int = 3) -> str:
    """``digits`` significant digits with an SI prefix on any unit: 1.99e9 -> '1.99 G',
    0.0025 with unit 's' -> '2.5 ms' (axis ticks, study parameters)."""
    if not math.isfinite(x):
        return "n/a"
    if x == 0:
        return f"0 {unit}".strip()
    e = min(max(math.floor(math.log10(abs(x)) / 3), -4), 5)
    if e < 5 and abs(float(f"{x / 1000.0 ** e:.{digits}g}")) >= 1000:      # 999.9 k rounds to 1 M
        e += 1
    return f"{x / 1000.0 ** e:.{digits}g} {_SI_PREFIX[e]}{unit}".strip()


def format_rate(x: float, integer: bool = False, digits: int = 3) -> str:
    """An operation rate: '989 TFLOP/s', or '1.98 POP/s' for an integer datatype's peak."""
    text = format_quantity(x, "rate", digits)
    return text.replace("FLOP/s", "OP/s") if integer else text


def format_quantities(values, dimension: str, digits: int = 3) -> list[str]:
    """Several values of one dimension with one prefix (chosen for their median), so a table
    row reads '183 ms, 4,100 ms' rather than '183 ms, 4.1 s' (of two, the smaller sets the
    prefix); non-finite values read 'n/a'."""
    finite = sorted(abs(v) for v in values if math.isfinite(v) and v != 0)
    if dimension in PLAIN_UNIT or dimension not in _OUT or not finite:
        return [format_quantity(v, dimension, digits) if math.isfinite(v) else "n/a" for v in values]
    mid = finite[(len(finite) - 1) // 2]
    factor, name = next(((f, n) for f, n in _OUT[dimension] if mid >= f), _OUT[dimension][-1])
    return [f"{format_number(v / factor, digits)} {name}" if math.isfinite(v) else "n/a" for v in values]
