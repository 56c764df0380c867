"""Board power held to its limit: how much a phase stretches when its power would exceed the
power limit, with the clock and the voltage falling together (the engine's power figures are
perf/params.py's; the phases that call this are perf/evaluate.py's and perf/steps.py's)."""
from __future__ import annotations

import math

import numpy as np

from .params import busy_energy, voltage_ratio


def power_limit(time, gap, energy, p: dict, fixed=None) -> np.ndarray:
    """How much longer work of ``time`` s (``gap`` of it launch gaps, ``energy`` J of activity)
    takes when its board power would exceed the power limit (the TDP unless the spec caps it
    lower): a factor >= 1 per design.

    Power = static + (busy energy + activity energy) / time (params.busy_energy: busy power
    over kernel time, a share of it over the gaps). Above the limit the core clock drops to a
    share s of its own until the power fits, and the voltage with it along the DVFS curve
    (params.voltage_ratio, v = V/V0): switching energy per operation and busy power fall by
    v^2 (CV^2 f; Weste & Harris, CMOS VLSI Design, sec. 5.1); the activity energy's share that
    goes with the off-chip-bound time (DRAM traffic, its own supply) does not. Kernel time bound by the core
    clock (arithmetic, on-chip memories), Kc, stretches to Kc/s; ``fixed`` s of it, Km, bound
    by off-chip memory or links, does not, while its busy power falls with the clock too (a
    memory-bound decode under a cap keeps its speed while DRAM traffic and static power leave
    room). s solves

        v(s)^2 (busy (Kc + s Km) + E Kc/K) + E Km/K + G = (limit - static) (Kc / s + Km + gap)

    (G: the gaps' busy energy, K = Kc + Km), by bisection. ``fixed`` None: all kernel time is clock-bound.
    Where even the memory-bound part alone is over the limit at the lowest DVFS point, the
    whole phase stretches until its unscaled energy fits (the memory slows too). Measured: an
    RTX PRO 6000 capped from 600 W to 200 W keeps 0.55 of its llama.cpp prompt rate (lhl's
    sweep, data rows 470-484); at fixed voltage the model gave 0.34, with it 0.59. Neglected:
    the static power's own fall with V, and ops that turn clock-bound as the clock drops."""
    if isinstance(time, float):     # one serving step (perf.steps): the same equation in plain floats
        return np.asarray(_step_throttle(time, gap, energy, p))
    return clock_throttle(time, gap, energy, p, fixed)[0]


# bisection steps for the throttled clock share (2^-40 of the interval), from its lowest point
_CLOCK_BISECTIONS = 40
_LOWEST_SHARE = 1e-3


def _excess(s, kc, km, busy, e_core, e_mem, gaps, room, gap):
    """Energy over what the limit allows at clock share s (> 0: the clock must fall further)."""
    return voltage_ratio(s) ** 2 * (busy * (kc + s * km) + e_core) + e_mem + gaps - room * (kc / s + km + gap)


def _step_throttle(time: float, gap: float, energy: float, p: dict) -> float:
    """power_limit for one serving step, all of it clock-bound, in floats (it runs per step)."""
    one = lambda k: float(np.ravel(p[k])[0])  # noqa: E731
    limit, static, busy = one("power.limit"), one("power.static"), one("power.busy")
    kc, gaps = max(time - gap, 0.0), busy * one("power.gap_share") * max(gap, 0.0)
    dynamic, room = busy * kc + gaps + energy, limit - static
    if not (math.isfinite(limit) and room > 0 and time > 0 and static + dynamic / time > limit):
        return 1.0
    if _excess(_LOWEST_SHARE, kc, 0.0, busy, energy, 0.0, gaps, room, gap) > 0:
        return max(dynamic / room / time, 1.0)
    lo, hi = _LOWEST_SHARE, 1.0
    for _ in range(_CLOCK_BISECTIONS):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if _excess(mid, kc, 0.0, busy, energy, 0.0, gaps, room, gap) > 0 else (mid, hi)
    return max((kc / hi + gap) / time, 1.0)


def clock_throttle(time, gap, energy, p: dict, fixed=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``power_limit``'s factor, the busy energy's kernel seconds (clock-bound ones in full,
    the rest at the clock's share s, both at the lower voltage's v^2: busy energy = busy x
    those) and the factor on the activity energy (v^2 on its clock-bound share)."""
    limit, static = p["power.limit"], p["power.static"]
    kernels = np.maximum(time - gap, 0.0)
    km = np.zeros_like(kernels) if fixed is None else np.clip(fixed, 0.0, kernels)
    kc = kernels - km
    busy, gaps = p["power.busy"], busy_energy(p, np.zeros_like(kernels), gap)
    room = limit - static
    with np.errstate(divide="ignore", invalid="ignore"):
        dynamic = busy_energy(p, time - gap, gap) + energy
        over = np.isfinite(limit) & (static + dynamic / time > limit) & (limit > static) & (time > 0)
        if not over.any():
            return np.ones_like(kernels), kernels, np.ones_like(kernels)

        # activity energy splits as the kernel time does: the clock-bound share (operations,
        # on-chip traffic) scales with v^2, the off-chip-bound share (DRAM traffic, on the
        # memory's own supply) does not
        e_core = energy * np.divide(kc, kernels, out=np.ones_like(kernels), where=kernels > 0)
        e_mem = energy - e_core

        def excess(s):
            return _excess(s, kc, km, busy, e_core, e_mem, gaps, room, gap)

        lo, hi = np.full_like(kernels, _LOWEST_SHARE), np.ones_like(kernels)
        for _ in range(_CLOCK_BISECTIONS):
            mid = 0.5 * (lo + hi)
            fast = excess(mid) > 0
            hi, lo = np.where(fast, mid, hi), np.where(fast, lo, mid)
        s = hi
        fits = over & (excess(np.full_like(kernels, _LOWEST_SHARE)) <= 0)
        v2 = np.where(fits, voltage_ratio(s) ** 2, 1.0)
        factor = np.where(fits, (kc / s + km + gap) / time, np.where(over, dynamic / room / time, 1.0))
        busy_kernels = np.where(fits, v2 * (kc + s * km), kernels)
        e_scale = np.where(fits & (energy > 0), np.divide(v2 * e_core + e_mem, energy, out=np.ones_like(energy),
                                                            where=energy > 0), 1.0)
    return np.maximum(np.nan_to_num(factor, nan=1.0, posinf=1.0), 1.0), busy_kernels, e_scale
