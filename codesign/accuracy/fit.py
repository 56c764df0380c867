"""Fitting a runtime's free figures to measurements, and cross-validating by source.

The free figures of a runtime on one device class are few (``runtime.gemm``, ``.memory``,
``.vector`` multipliers, the memory ``latency_factor`` of Little's-law ramps, per-kernel
``launch``/``launch_decode`` costs). ``fit_runtime`` minimises the robust (soft-L1) sum of
squared log errors, log(predicted / measured), with scipy's trust-region least squares,
over the rows run under that runtime on that class. A parameter is fitted only where
the data moves it: its log-sensitivity must be >= 0.05 on at least 3 rows from at least 2
sources, and there must be 3 rows per fitted parameter; otherwise the fit refuses with
one line (never a figure fitted to a single row).

``cross_validate`` is the honest error: for each source (publication) in turn, every
runtime is refitted on the other sources' rows only and the held-out source is predicted;
figures that cannot be fitted without it fall back to the runtime's neutral values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import CodesignError
from .core import device_class, population, predict

# fit parameter -> engine figure, bounds, and whether it is searched in log space
PARAMS = {
    "gemm": ("runtime.gemm", (0.05, 2.0), True),
    "vector": ("runtime.vector", (0.05, 2.0), True),
    "memory": ("runtime.memory", (0.2, 2.0), True),
    "latency_factor": ("runtime.latency_factor", (0.0, 50.0), False),
    "launch": ("runtime.launch", (0.0, 200e-6), False),
    "launch_decode": ("runtime.launch_decode", (0.0, 200e-6), False),
}
TIME_GROUPS = ("decode", "prefill", "throughput", "gemm")
MIN_SENSITIVITY = 0.05      # |d log(pred) / d param-step| that counts as "moved by this row"
MIN_ROWS_PER_PARAM = 3
MIN_SOURCES = 2


@dataclass
class FitResult:
    runtime: str
    device_class: str
    values: dict            # param -> fitted value
    dropped: dict           # param -> why it was not fitted
    rows: list              # row ids used
    sources: list
    in_sample_mape: float
    start_mape: float


def _steps(name: str, value: float) -> float:
    """A finite-difference step for the sensitivity check (10% or 5 us / 1 latency)."""
    if name in ("launch", "launch_decode"):
        return 5e-6
    if name == "latency_factor":
        return 1.0
    return 0.1 * value


def _base_values(cases) -> dict:
    """The engine's current figures for the first case (the runtime's YAML values)."""
    from ..perf.params import spec_params
    from .core import spec_of
    p = spec_params(spec_of(cases[0]), runtime=cases[0].runtime)
    return {k: float(p[key][0]) for k, (key, _, _) in PARAMS.items()}


def _predict_all(cases, params: dict, batches: dict) -> np.ndarray:
    over = {PARAMS[k][0]: v for k, v in params.items()}
    return np.array([predict(c, over, batches.get(c.row))[0] for c in cases])


def fittable(cases) -> list:
    return [c for c in cases if c.group in TIME_GROUPS and population(c) != "proxy" and c.group != "gemm"]


def fit_runtime(cases, runtime: str, cls: str, params=("gemm", "memory", "latency_factor", "launch_decode"),
                start: dict | None = None) -> FitResult:
    """Fit ``params`` of ``runtime`` on device class ``cls`` to the matching cases."""
    from scipy.optimize import least_squares
    rows = [c for c in fittable(cases) if c.runtime == runtime and device_class(c) == cls]
    if not rows:
        raise CodesignError(f"no usable rows for runtime {runtime} on {cls} devices (time metrics, not proxies)")
    base = dict(_base_values(rows), **(start or {}))
    meas = np.array([c.measured for c in rows])
    # max-throughput rows keep the batch found with the starting figures
    batches = {}
    for c in rows:
        if c.search:
            _, _, out = predict(c, {PARAMS[k][0]: v for k, v in base.items()})
            if out.get("batch"):
                batches[c.row] = out["batch"]
    sign = np.array([-1.0 if c.metric.endswith("_ms") else 1.0 for c in rows])   # latencies: inverse rates
    y0 = _predict_all(rows, base, batches)
    ok = np.isfinite(y0) & (y0 > 0)
    rows, meas, y0, sign = [c for c, k in zip(rows, ok) if k], meas[ok], y0[ok], sign[ok]
    # which parameters the data moves
    dropped, use = {}, []
    for name in params:
        trial = dict(base, **{name: base[name] + _steps(name, base[name])})
        y1 = _predict_all(rows, trial, batches)
        sens = np.abs(np.log(np.maximum(y1, 1e-300) / y0))
        moved = sens >= MIN_SENSITIVITY
        srcs = {c.source for c, m in zip(rows, moved) if m}
        if moved.sum() < MIN_ROWS_PER_PARAM or len(srcs) < MIN_SOURCES:
            dropped[name] = f"moves {int(moved.sum())} rows from {len(srcs)} sources (need 3 rows, 2 sources)"
        else:
            use.append(name)
    start_mape = float(np.mean(np.abs(y0 / meas - 1)))
    if not use:
        return FitResult(runtime, cls, {}, dropped, [c.row for c in rows], sorted({c.source for c in rows}),
                         start_mape, start_mape)
    if len(rows) < MIN_ROWS_PER_PARAM * len(use):
        raise CodesignError(f"{len(rows)} rows cannot support {len(use)} parameters ({', '.join(use)}) for "
                            f"{runtime} on {cls}: need {MIN_ROWS_PER_PARAM} rows per parameter")

    def to_x(vals):
        return np.array([math.log(vals[n]) if PARAMS[n][2] else vals[n] for n in use])

    def from_x(x):
        out = dict(base)
        for n, v in zip(use, x):
            out[n] = math.exp(v) if PARAMS[n][2] else float(v)
        return out

    lo = np.array([math.log(PARAMS[n][1][0]) if PARAMS[n][2] else PARAMS[n][1][0] for n in use])
    hi = np.array([math.log(PARAMS[n][1][1]) if PARAMS[n][2] else PARAMS[n][1][1] for n in use])
    scale = np.array([1.0 if PARAMS[n][2] else (1.0 if n == "latency_factor" else 1e-5) for n in use])

    def resid(x):
        y = _predict_all(rows, from_x(x), batches)
        return np.log(np.where(np.isfinite(y) & (y > 0), y, 1e-30) / meas)

    x0 = np.clip(to_x(base), lo, hi)
    sol = least_squares(resid, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.1, x_scale=scale,
                        diff_step=1e-3, max_nfev=60)
    vals = from_x(sol.x)
    y = _predict_all(rows, vals, batches)
    return FitResult(runtime, cls, {n: vals[n] for n in use}, dropped, [c.row for c in rows],
                     sorted({c.source for c in rows}), float(np.mean(np.abs(y / meas - 1))), start_mape)


def neutral_values() -> dict:
    """The figures a runtime has before any fit (ClassTuning defaults; launch unchanged)."""
    from ..runtime.schema import ClassTuning
    t = ClassTuning()
    return {"gemm": t.gemm, "vector": t.vector, "memory": t.memory, "latency_factor": t.latency_factor}


def cross_validate(cases, params=("gemm", "memory", "latency_factor", "launch_decode"), progress=None) -> dict:
    """Leave-one-source-out predictions: row id -> (predicted value, figures used)."""
    groups = sorted({(c.runtime, device_class(c)) for c in fittable(cases)})
    sources = sorted({c.source for c in cases})
    out = {}
    for i, src in enumerate(sources):
        train = [c for c in cases if c.source != src]
        test = [c for c in cases if c.source == src]
        for rt, cls in groups:
            held = [c for c in test if c.runtime == rt and device_class(c) == cls]
            if not held:
                continue
            vals = dict(neutral_values())
            try:
                vals.update(fit_runtime(train, rt, cls, params, start=neutral_values()).values)
            except CodesignError:
                pass
            over = {PARAMS[k][0]: v for k, v in vals.items()}
            for c in held:
                out[c.row] = (predict(c, over)[0], vals)
        for c in test:      # rows outside the fitted groups (GEMMs, proxies): as they are
            if c.row not in out:
                out[c.row] = (predict(c)[0], {})
        if progress:
            progress(i + 1, len(sources))
    return out


def loso_for(cases, runtime: str, cls: str, params) -> float:
    """Leave-one-source-out MAPE of one runtime on one class (refit without each source)."""
    rows = [c for c in fittable(cases) if c.runtime == runtime and device_class(c) == cls]
    errs = []
    for src in sorted({c.source for c in rows}):
        vals = dict(neutral_values())
        try:
            vals.update(fit_runtime([c for c in cases if c.source != src], runtime, cls, params,
                                    start=neutral_values()).values)
        except CodesignError:
            pass
        over = {PARAMS[k][0]: v for k, v in vals.items()}
        for c in rows:
            if c.source == src:
                y = predict(c, over)[0]
                errs.append(abs(y / c.measured - 1) if math.isfinite(y) and y > 0 else math.nan)
    errs = [e for e in errs if math.isfinite(e)]
    return float(np.mean(errs)) if errs else math.nan
