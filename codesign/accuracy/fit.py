"""Fitting a runtime's free figures to measurements, and cross-validating by source.

The free figures of a runtime on one device class are few (``runtime.gemm``, ``.memory``,
``.vector`` multipliers, the memory ``latency_factor`` of Little's-law ramps, per-kernel
``launch``/``launch_decode`` costs). ``fit_runtime`` minimises the robust (soft-L1) sum of
squared log errors, log(predicted / measured), with scipy's trust-region least squares,
over the rows run under that runtime on that class. A parameter is fitted only where
the data moves it: its log-sensitivity must be >= 0.05 on at least 3 rows from at least 2
sources, and there must be 3 rows per fitted parameter; otherwise the fit refuses with
one line (never a figure fitted to a single row).

``cross_validate`` is the honest error: for each publisher (a repository or site) in turn, every
runtime is refitted on the other publishers. rows only and the held-out one is predicted;
figures that cannot be fitted without it fall back to the runtime's neutral values.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import CodesignError
from ..perf.params import spec_params
from ..runtime import load_runtime, runtime_from_dict
from ..runtime.fitted import TOP_LEVEL, unfitted
from ..runtime.schema import ClassTuning
from .core import device_class, population, predict, predict_values, spec_of
from .mapping import publisher

# fit parameter -> engine figure, bounds, and whether it is searched in log space
PARAMS = {
    "gemm": ("runtime.gemm", (0.05, 2.0), True),
    "vector": ("runtime.vector", (0.05, 2.0), True),
    "memory": ("runtime.memory", (0.2, 2.0), True),
    "latency_factor": ("runtime.latency_factor", (0.0, 50.0), False),
    "launch": ("runtime.launch", (0.0, 200e-6), False),
    "launch_decode": ("runtime.launch_decode", (0.0, 200e-6), False),
    "dequant": ("runtime.dequant", (0.1, 10.0), True),
    "request": ("runtime.request_overhead", (0.0, 0.2), False),
    "sequence": ("runtime.sequence_overhead", (0.0, 500e-6), False),
    "stream": ("runtime.stream", (1.0, 64.0), True),
}
# a streaming cap is searched from the best of these starts (B/clk per core): from "no cap"
# the fit would see no gradient, and where a cap binds depends on the class (8 caps an A100
# at 1.2 of its 2 TB/s; an NPU core at 1 GHz needs a few times that to stream 30 GB/s)
STREAM_STARTS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
# the second start of the memory multiplier: at 1.3 every spec share of 0.77 or more reaches its
# full bandwidth (the default GDDR/HBM share is 0.85)
MEMORY_CAP_START = 1.3
COMPUTE_SHARES = ("gemm", "vector")    # efficiencies a power limit can mask
TIME_GROUPS = ("decode", "prefill", "throughput", "gemm")
DEFAULT_PARAMS = ("gemm", "memory", "latency_factor", "launch_decode", "request", "sequence", "dequant")
MIN_SENSITIVITY = 0.05      # |d log(pred) / d param-step| that counts as "moved by this row"
MIN_ROWS_PER_PARAM = 3
MIN_SETUPS = 2             # distinct (source, device) pairs: never one measurement setup


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
    if name == "dequant":
        return value          # a term of the max(): doubling shows whether it can bind at all
    if name == "request":
        return 5e-3
    if name == "sequence":
        return 20e-6
    if name == "latency_factor":
        return 1.0
    return 0.1 * value


def _base_values(cases) -> dict:
    """The engine's current figures for the first case (the runtime's YAML values)."""
    p = spec_params(spec_of(cases[0]), runtime=cases[0].runtime)
    return {k: float(p[key][0]) for k, (key, _, _) in PARAMS.items()}


def _predict_sets(cases, sets: list[dict], batches: dict) -> np.ndarray:
    """(rows, len(sets)) predictions: every parameter set in one vectorised evaluation per row."""
    names = list(sets[0])
    over = {PARAMS[k][0]: np.array([st[k] for st in sets], float) for k in names}
    return np.array([predict_values(c, over, batches.get(c.row)) for c in cases]).reshape(len(cases), len(sets))


def _predict_all(cases, params: dict, batches: dict) -> np.ndarray:
    return _predict_sets(cases, [params], batches)[:, 0]


def fittable(cases) -> list:
    return [c for c in cases if c.group in TIME_GROUPS and population(c) != "proxy" and c.group != "gemm"]


def fit_runtime(cases, runtime: str, cls: str, params=DEFAULT_PARAMS,
                start: dict | None = None) -> FitResult:
    """Fit ``params`` of ``runtime`` on device class ``cls`` to the matching cases."""
    # scipy (~0.2 s to import) stays lazy: `codesign eval` loads codesign.accuracy for its error bands
    from scipy.optimize import least_squares
    rows = [c for c in fittable(cases) if c.runtime == runtime and device_class(c) == cls]
    if not rows:
        raise CodesignError(f"no usable rows for runtime {runtime} on {cls} devices (time metrics, not proxies)")
    base = dict(_base_values(rows), **(start or {}))
    unfit_base = dict(base)
    meas = np.array([c.measured for c in rows])
    batches = _batches(rows, base)     # max-throughput rows keep the batch found with the starting figures
    if "stream" in params and not math.isfinite(base["stream"]):
        base["stream"] = _stream_start(rows, meas, base, batches)
        batches = _batches(rows, base)
    sign = np.array([-1.0 if c.metric.endswith("_ms") else 1.0 for c in rows])   # latencies: inverse rates
    y0 = _predict_all(rows, base, batches)
    ok = np.isfinite(y0) & (y0 > 0)
    rows, meas, y0, sign = [c for c, k in zip(rows, ok) if k], meas[ok], y0[ok], sign[ok]
    # which parameters the data moves
    dropped, use = {}, []
    # a step up, and for the compute efficiencies a halving: one at its cap (CPU GEMMs at 1) or
    # under a power limit (the clock, not the kernel, sets the time) moves nothing by 10%, yet
    # the data may well put it lower
    up = [dict(base, **{n: base[n] + _steps(n, base[n])}) for n in params]
    down = [dict(base, **{n: base[n] / 2}) if n in COMPUTE_SHARES else dict(base) for n in params]
    ys = _predict_sets(rows, up + down, batches)
    for j, name in enumerate(params):
        sens = np.maximum(np.abs(np.log(np.maximum(ys[:, j], 1e-300) / y0)),
                          np.abs(np.log(np.maximum(ys[:, len(params) + j], 1e-300) / y0)))
        moved = sens >= MIN_SENSITIVITY
        setups = {(c.source, c.hardware) for c, m in zip(rows, moved) if m}
        if moved.sum() < MIN_ROWS_PER_PARAM or len(setups) < MIN_SETUPS:
            dropped[name] = (f"moves {int(moved.sum())} rows from {len(setups)} source x device setups "
                             f"(need {MIN_ROWS_PER_PARAM} rows, {MIN_SETUPS} setups)")
        else:
            use.append(name)
    if "stream" not in use:           # no cap moves these rows: fit the rest without one
        base["stream"] = unfit_base["stream"]
    y_start = y0 if unfit_base == base else _predict_all(rows, unfit_base, batches)
    start_mape = float(np.mean(np.abs(y_start / meas - 1)))
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
    scale = np.array([1.0 if PARAMS[n][2] else {"latency_factor": 1.0, "request": 1e-3}.get(n, 1e-5) for n in use])

    def log_err(y):
        return np.log(np.where(np.isfinite(y) & (y > 0), y, 1e-30) / meas[:, None])

    steps = np.maximum(1e-3 * np.abs(lo - hi), 1e-9)

    w = publisher_weights(rows)

    def resid(x):
        return w * log_err(_predict_all(rows, from_x(x), batches)[:, None])[:, 0]

    def jac(x):
        # forward differences, every perturbed set in the same vectorised evaluation
        h = np.where(x + steps <= hi, steps, -steps)
        sets = [from_x(x)] + [from_x(x + h[j] * np.eye(len(use))[j]) for j in range(len(use))]
        r = log_err(_predict_sets(rows, sets, batches))
        return w[:, None] * (r[:, 1:] - r[:, :1]) / h

    x0 = np.clip(to_x(base), lo, hi)
    sol = least_squares(resid, x0, jac=jac, bounds=(lo, hi), loss="soft_l1", f_scale=0.1, x_scale=scale,
                        max_nfev=40)
    # a multiplier with no gradient where it starts (a power-limited phase: the limit, not the
    # kernel, sets the time until the kernel is slower than it) is also searched from below
    flat = [j for j, n in enumerate(use) if n in COMPUTE_SHARES and not np.any(jac(x0)[:, j]) and sol.x[j] == x0[j]]
    alt_starts = []
    for factor in (0.5, 0.25) if flat else ():
        x1 = x0.copy()
        x1[flat] = np.clip(x0[flat] + math.log(factor), lo[flat], hi[flat])
        alt_starts.append(x1)
    # the memory multiplier has two basins: below the cap (every device streams at its spec's
    # share x m) and at it (devices of the default share stream at their full bandwidth, the
    # per-kernel costs and the Little's-law cap take the rest); the solver stays in the one it
    # starts in, so the other is searched too and the lower cost wins
    if "memory" in use:
        x1 = x0.copy()
        j = use.index("memory")
        x1[j] = np.clip(math.log(MEMORY_CAP_START), lo[j], hi[j])
        alt_starts.append(x1)
    for x1 in alt_starts:
        alt = least_squares(resid, x1, jac=jac, bounds=(lo, hi), loss="soft_l1", f_scale=0.1, x_scale=scale,
                            max_nfev=40)
        if alt.cost < sol.cost:
            sol = alt
    vals = from_x(sol.x)
    y = _predict_all(rows, vals, batches)
    return FitResult(runtime, cls, {n: vals[n] for n in use}, dropped, [c.row for c in rows],
                     sorted({c.source for c in rows}), float(np.mean(np.abs(y / meas - 1))), start_mape)


def _batches(rows, vals: dict) -> dict:
    """Row id -> the batch a max-throughput row's search finds with these figures."""
    out = {}
    for c in rows:
        if c.search:
            got = predict(c, {PARAMS[k][0]: v for k, v in vals.items()})[2].get("batch")
            if got:
                out[c.row] = got
    return out


def _stream_start(rows, meas, base, batches) -> float:
    """The start of STREAM_STARTS with the smallest weighted robust log error (the other
    figures at ``base``)."""
    y = _predict_sets(rows, [dict(base, stream=v) for v in STREAM_STARTS], batches)
    r = publisher_weights(rows)[:, None] * np.log(np.where(np.isfinite(y) & (y > 0), y, 1e-30) / meas[:, None])
    loss = np.sum(2 * (np.sqrt(1 + (r / 0.1) ** 2) - 1), axis=0)      # soft-L1, as the fit below
    return float(STREAM_STARTS[int(np.argmin(loss))])


def publisher_weights(rows) -> np.ndarray:
    """Residual weights that give every publisher the same total squared weight (a row's
    weight ~ 1 / sqrt(its publisher's rows), mean 1): the figures are for publishers not
    yet seen, so one publisher's many rows of one setup must not outvote the rest."""
    n_pub = Counter(publisher(c.source) for c in rows)
    w = np.array([n_pub[publisher(c.source)] ** -0.5 for c in rows])
    return w / w.mean()


def neutral_values(t: ClassTuning | None = None) -> dict:
    """The figures a runtime has before any fit: ``t``'s tuning (default: ClassTuning's
    neutral one), no host overheads; launch unchanged."""
    t = t or ClassTuning()
    return {"gemm": t.gemm, "vector": t.vector, "memory": t.memory, "latency_factor": t.latency_factor,
            "dequant": t.dequant, "request": 0.0, "sequence": 0.0,
            "stream": t.stream if t.stream is not None else math.inf}


@lru_cache(maxsize=64)
def _neutral_for(runtime: str, cls: str | None) -> tuple:
    bare = runtime_from_dict(unfitted(load_runtime(runtime).model_dump(mode="json", exclude_defaults=True)))
    out = neutral_values(bare.tuning_for(cls) if cls else None)
    launch = bare.decode_launch_overhead if bare.decode_launch_overhead is not None else bare.launch_overhead
    if launch is not None:
        out["launch_decode"] = launch
    return tuple(sorted(out.items()))


def neutral_for(runtime: str, cls: str | None = None) -> dict:
    """Every fittable figure of ``runtime`` as it is before any fit (what a held-out
    publisher is predicted with when the others cannot support a fit): its class tuning
    without fitted figures (sourced ones, e.g. a kernel family's streaming cap, stay), no
    host overheads, the runtime's own launch cost and dequantisation work."""
    return dict(_neutral_for(runtime, cls))


def _fit_or_neutral(train, rt: str, cls: str, params, cache: dict) -> dict:
    """Neutral figures updated with a fit on ``train`` (cached by the rows it would use)."""
    key = (rt, cls, tuple(params), tuple(sorted(c.row for c in fittable(train) if c.runtime == rt and device_class(c) == cls)))
    if key not in cache:
        vals = neutral_for(rt, cls)
        try:
            vals.update(fit_runtime(train, rt, cls, params, start=neutral_for(rt, cls)).values)
        except CodesignError:
            pass
        cache[key] = vals
    return cache[key]


def shipped_params(runtime: str, cls: str) -> tuple[str, ...]:
    """The figures ``runtime``'s YAML carries fitted for device class ``cls`` (fit names):
    what its shipped profile was fitted on, so cross-validation refits exactly those."""
    top = {v: k for k, v in TOP_LEVEL.items()}
    fitted = load_runtime(runtime).fitted
    out = []
    for path in fitted:
        parts = path.split(".")
        if path in top:
            out.append(top[path])
        elif len(parts) == 3 and parts[0] == "tuning" and parts[1] in (cls, "default"):
            out.append(parts[2])
    # top-level figures are shared by every class: refit them only where the class has its own
    return tuple(dict.fromkeys(out)) if any(p.startswith(f"tuning.{cls}.") for p in fitted) else ()


def cross_validate(cases, params=None, progress=None) -> dict:
    """Leave-one-publisher-out predictions: row id -> (predicted value, figures used). Each
    publisher's rows are predicted by runtimes refitted on the other publishers only:
    ``params`` for every runtime, or by default the figures each runtime's shipped profile
    has fitted (none: its unfitted figures, as shipped)."""
    groups = sorted({(c.runtime, device_class(c)) for c in fittable(cases)})
    folds = sorted({publisher(c.source) for c in cases})
    out: dict = {}
    cache: dict = {}
    for i, held_out in enumerate(folds):
        train = [c for c in cases if publisher(c.source) != held_out]
        test = [c for c in cases if publisher(c.source) == held_out]
        for rt, cls in groups:
            held = [c for c in test if c.runtime == rt and device_class(c) == cls]
            if not held:
                continue
            names = params if params is not None else shipped_params(rt, cls)
            if not names:       # nothing fitted in the shipped profile: its figures need no data
                for c in held:
                    out[c.row] = (predict(c)[0], {})
                continue
            vals = _fit_or_neutral(train, rt, cls, names, cache)
            over = {PARAMS[k][0]: v for k, v in vals.items()}
            for c in held:
                out[c.row] = (predict(c, over)[0], vals)
        for c in test:      # rows outside the fitted groups (GEMMs, proxies): as they are
            if c.row not in out:
                out[c.row] = (predict(c)[0], {})
        if progress:
            progress(i + 1, len(folds))
    return out


def loso_for(cases, runtime: str, cls: str, params) -> float:
    """Leave-one-publisher-out MAPE of one runtime on one class (refit without each publisher)."""
    rows = [c for c in fittable(cases) if c.runtime == runtime and device_class(c) == cls]
    errs: list[float] = []
    cache: dict = {}
    for held_out in sorted({publisher(c.source) for c in rows}):
        vals = _fit_or_neutral([c for c in cases if publisher(c.source) != held_out], runtime, cls, params, cache)
        over = {PARAMS[k][0]: v for k, v in vals.items()}
        for c in rows:
            if publisher(c.source) == held_out:
                y = predict(c, over)[0]
                errs.append(abs(y / c.measured - 1) if math.isfinite(y) and y > 0 else math.nan)
    errs = [e for e in errs if math.isfinite(e)]
    return float(np.mean(errs)) if errs else math.nan
