"""The performance engine: roofline over a memory hierarchy, per operator, per device class.

``evaluate`` is the one evaluation path (eval, compare, sweeps, studies, validation);
``evaluate_batch`` scores many design points at once; ``op_times`` prices standalone
kernels (the kernel runner's view: operands start in main memory).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np

from ..hardware import load_hardware
from ..io import frame
from ..runtime import load_runtime
from ..workload.scenario import Scenario
from .engine import op_table, op_terms
from .evaluate import Result, _label, evaluate, evaluate_batch
from .footprint import footprint
from .params import spec_params
from .power import power_limit
from .prices import prices

if TYPE_CHECKING:
    from ..workload.scenario import Dtype
    from ..workload.schema import ModelSpec

__all__ = ["evaluate", "evaluate_batch", "op_times", "Result", "footprint"]


def op_times(hardware, ops, dtype: str = "bf16", compression=None, runtime=None):
    """Predicted time of ONE invocation of each op (a DataFrame, one row per op) under a
    runtime (default: generic)."""
    spec = load_hardware(hardware)
    ops = tuple(ops)
    p = spec_params(spec, runtime=runtime)
    notes: set = set()
    sc = Scenario(dtype=cast("Dtype", dtype))      # pydantic checks the name
    # prices reads only the model's head dim (hd) here, which _Dummy stands in for
    pr = prices(spec, p, cast("ModelSpec", _Dummy()), sc, ([compression], np.zeros(1, dtype=int)), notes,
                load_runtime(runtime))
    tab = op_table(ops)
    big = np.array([np.inf])       # standalone kernels: weights and KV start in main memory
    t = op_terms(spec, p, tab, pr, big, big)
    a = t.a[:, 0].T                    # (N, J)
    # each kernel as a benchmark runs it, back to back: held to the board's power limit
    throttle = power_limit(t.overhead[0] + a.max(-1), t.overhead[0], t.energy_a[0],
                           {k: p[k][0] for k in ("power.limit", "power.static", "power.busy", "power.gap_share")})
    best = a.max(-1) * throttle + t.overhead[0] * (throttle - 1)
    levels = [m.name for m in spec.memory]
    rows = []
    for i, o in enumerate(ops):
        row = {"name": o.name, "kind": o.kind, "impl": o.impl, "phase": o.phase, "batch": o.batch, "m": o.m,
               "n": o.n, "k": o.k, "elements": o.elements, "flops": o.flops}
        for l, name in enumerate(levels):
            row[f"bytes_{name}"] = float(t.traffic_a[l, 0, i])
        row["time_s"] = float(t.overhead[0, i] + best[i])
        row["overhead_s"] = float(t.overhead[0, i])
        row["throttle"] = float(throttle[i])
        row["bound"] = _label(t.names[int(a[i].argmax())], levels) if best[i] >= t.overhead[0, i] else "overhead"
        rows.append(row)
    return frame(rows)


class _Dummy:
    """op_times needs only the head dim for KV-scale bytes, irrelevant without KV quantization."""
    hd = 128
