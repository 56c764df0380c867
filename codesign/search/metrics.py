"""Evaluating design points: trial parameters -> metrics, objective values, constraint values.

A batch of trials becomes derived hardware specs (``apply_overrides`` in memory) and
Compression objects; designs whose changes are all numeric figures the engine reads
(``codesign.perf.params.spec_params`` keys) share one vectorised ``evaluate_batch``
call per workload, with each design's full figure table as the override arrays (so
defaults derived from other figures follow the design, and the answer is the one
``evaluate`` gives for that exported spec). Designs that change structure (a memory
kind, a tile shape) are evaluated one by one.

Aggregation over a study's workloads (weights normalised to 1):
- objectives use the weighted mean of each summary metric;
- constraints use the worst workload (an SLO, a power budget or a fit must hold for
  every workload): max over workloads for ``max`` bounds, min for ``min`` bounds;
- ``power_w`` is the highest average power of any workload (what the package and
  supply must sustain); ``fits`` holds when every workload fits.
Design metrics come from the area/cost model (``codesign.hardware.area``) and the
quality proxy (``codesign.quality``). When a study varies the hardware, the chip's
price in ``cost_per_mtok_usd`` is the cost model's chip cost (the base device's list
price no longer applies); a compression-only study keeps the spec's price.

Constraint values follow Optuna (feasible when <= 0) and are normalised by the
bound, ``(value - max) / |max|``, so that violations of different metrics add up
comparably in NSGA-II's and TPE's infeasibility scores. ``valid`` is 1 for a design
that could not be evaluated (an inconsistent spec, an unsupported compression); its
objectives are told as +/-inf (worst), every constraint as violated, and the reason
is kept in the trial's ``error`` attribute: never a crash, never on the front.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np
from pydantic import ValidationError

from .. import quality
from ..compression import Compression
from ..errors import CodesignError, from_pydantic
from ..hardware import area
from ..perf import evaluate_batch
from ..perf.params import spec_params
from ..perf.steps import step_cost
from ..serve import Policy, find_max_rate, make_requests, simulate
from .schema import SERVE_METRICS, SUMMARY_METRICS
from .space import params_key

if TYPE_CHECKING:
    from ..hardware.schema import HardwareSpec

NUMERIC_SUMMARY = tuple(SUMMARY_METRICS) + ("cost_per_mtok_usd",)


@dataclass
class Outcome:
    values: list[float]
    constraints: dict[str, float]        # in the study's constraint order
    metrics: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.constraints.values())


# -- design models (area / cost / quality) ---------------------------------------------

def design_costs(spec) -> dict:
    """area_mm2, die_cost_usd, chip_cost_usd of a (derived) spec from the area/cost model.

    Empty when the model does not cover the device (an FPGA is a fixed part): studies that
    optimise or bound these metrics then see them as undefined (violated), others ignore them.
    """
    try:
        est = area.estimate_area(spec)
        cost = area.chip_cost(spec, est)
    except CodesignError:
        return {}
    return {"area_mm2": float(est.total), "die_cost_usd": float(cost.die_usd), "chip_cost_usd": float(cost.total)}


def quality_increase(model, comp) -> float:
    """Published relative perplexity change (%) of ``model`` under ``comp``; NaN when the
    quality table has no data for it (codesign.quality never guesses, nor do we: a study
    that constrains or optimises quality treats such a design as violating/undefined)."""
    est = quality.estimate_quality(model, comp)
    v = getattr(est, "ppl_increase_pct", None)
    return float(v) if v is not None else math.nan


# -- serving ---------------------------------------------------------------------------

def _layout(serving: dict) -> dict:
    """The scenario fields among a design's serving choices."""
    return {k: serving[k] for k in ("tp", "pp", "batch") if k in serving}


def serve_metrics(hw, wl, comp, serving: dict, price: float, want=None) -> dict:
    """Serving metrics of one design for one workload's ``serve`` block: the simulator
    (codesign.serve) on the design's chip, priced at the design's price. Poisson traffic of
    ``requests`` requests, the same draw for every design (common random numbers). ``want``:
    the metrics the study uses (the max-rate bisection runs only when one of them needs it)."""
    sv = wl.serve
    pol = Policy(name=sv.policy, max_num_seqs=serving.get("max_num_seqs", sv.max_num_seqs),
                 max_num_batched_tokens=serving.get("max_batched_tokens", sv.max_batched_tokens))
    sc = wl.scenario.model_copy(update=_layout(serving)) if serving else wl.scenario
    cost = step_cost(hw, wl.model, sc, comp, max_tokens=pol.max_num_batched_tokens, max_seqs=pol.max_num_seqs)
    if math.isfinite(price):
        cost.price = float(price)
    replicas = serving.get("replicas", sv.replicas)
    devices = cost.devices * replicas
    unit = make_requests(1.0, sv.requests, sv.prompt, sv.output, seed=sv.seed, max_context=cost.max_context)

    def run(reqs):
        return simulate(cost, reqs, pol, replicas=replicas)
    out: dict = {"devices": float(devices)}
    if sv.rate is not None:
        s = run(unit.scaled(sv.rate)).with_slo(sv.slo_ttft, sv.slo_tpot)
        usd_per_s = s["cost_per_mtok_usd"] * s["output_tokens_per_s"] / 1e6
        good = s.get("goodput_req_per_s", s["throughput_req_per_s"])
        out.update(goodput_req_per_s=good, goodput_per_usd=good / usd_per_s if usd_per_s > 0 else math.nan,
                   p99_ttft_s=s["ttft_p99_s"], p99_tpot_s=s["tpot_p99_s"],
                   serve_energy_per_token_j=s["energy_per_token_j"])
    if (sv.slo_ttft or sv.slo_tpot) and (want is None or want & {"max_rate_under_slo", "max_rate_per_device"}):
        m = find_max_rate(run, unit, sv.slo_ttft, sv.slo_tpot, percentile=sv.percentile, tolerance=0.05)
        out.update(max_rate_under_slo=m.rate, max_rate_per_device=m.rate / devices)
    return out


# -- evaluation -----------------------------------------------------------------------

def _flat(path: str, value) -> list[str]:
    if isinstance(value, dict):
        return [f"{path}.{k}" for k in value]
    if isinstance(value, (list, tuple)):
        return [f"{path}.{i}" for i in range(len(value))]
    return [path]


def _short(e: BaseException) -> str:
    if isinstance(e, ValidationError):
        return str(from_pydantic(e, None))
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg if isinstance(e, CodesignError) else f"{type(e).__name__}: {msg}"


@dataclass
class _Chip:
    """The hardware side of a design, built once per call for all the designs that differ
    only in compression (an enumerated space repeats each chip once per compression)."""
    hw: HardwareSpec | None = None
    p: dict | None = None            # engine figures (spec_params) of this chip
    batchable: bool = False
    design: dict = field(default_factory=dict)
    error: str | None = None


@dataclass
class _Design:
    params: dict
    chip: _Chip
    comp: Compression | None = None
    serving: dict = field(default_factory=dict)   # tp, pp, batch, replicas, ... this design sets
    per_wl: list = field(default_factory=list)   # one summary dict per workload
    error: str | None = None


class Evaluator:
    """Scores design points for one study. Keeps a cache: discrete spaces repeat points."""

    def __init__(self, study) -> None:
        self.study = study
        self._spec_params = spec_params
        self._base_p = spec_params(study.base)
        self._base_keys = set(self._base_p)
        self._cache: dict[str, Outcome] = {}
        self._quality_cache: dict = {}
        self._compression_dims = {d.name for d in study.space.dims if d.target == "compression"}
        self._serving_dims = {d.name for d in study.space.dims if d.target == "serving"}

    def _quality(self, model, comp) -> float:
        key = (model.name, comp)          # Compression is frozen, hence hashable
        if key not in self._quality_cache:
            self._quality_cache[key] = quality_increase(model, comp if comp is not None else Compression())
        return self._quality_cache[key]

    def _used(self) -> set:
        s = self.study.spec
        return {o.metric for o in s.objectives} | set(s.constraints)

    def __call__(self, params_list: list[dict], cache: bool = True) -> list[Outcome]:
        """Outcomes of ``params_list``; ``cache=False`` (an exhaustive enumeration, where no
        design repeats) keeps nothing, so memory stays bounded by one call."""
        if not cache:
            return self._evaluate(params_list)
        keys = [params_key(p) for p in params_list]
        todo = {}
        for k, p in zip(keys, params_list):
            if k not in self._cache and k not in todo:
                todo[k] = p
        if todo:
            for k, out in zip(todo, self._evaluate(list(todo.values()))):
                self._cache[k] = out
        return [self._cache[k] for k in keys]

    # ------------------------------------------------------------------
    def _chip(self, params: dict) -> _Chip:
        c = _Chip()
        try:
            c.hw, overrides = self.study.space.design(params)
            c.design = design_costs(c.hw)
            c.p = self._spec_params(c.hw)
            price = c.design.get("chip_cost_usd") if self.study.varies_hardware and not self.study.space.devices \
                else None
            if price is None:         # a fixed device keeps its own price (NaN when the spec has none)
                price = c.hw.price if c.hw.price is not None else np.nan
            c.p["price"] = np.atleast_1d(float(price))
            flat = [k for path, v in overrides.items() for k in _flat(path, v)]
            # another device from the study's list is its own spec, never the base's figures overridden
            # (the nominal clock is no engine figure: its effect is in the power figures of c.p; a
            # memory level's technology only sizes and prices its PHYs, in c.design)
            c.batchable = (c.hw.name == self.study.base.name and set(c.p) == self._base_keys
                           and all(k in self._base_keys or k == "compute.nominal_clock" or k.endswith(".technology")
                                   for k in flat))
        except (CodesignError, ValidationError, ValueError, ZeroDivisionError, ArithmeticError) as e:
            c.error = _short(e)
        return c

    def _prepare(self, params: dict, chips: dict, comps: dict) -> _Design:
        hw_params = {k: v for k, v in params.items() if k not in self._compression_dims | self._serving_dims}
        key = params_key(hw_params)
        if key not in chips:
            chips[key] = self._chip(hw_params)
        d = _Design(params=params, chip=chips[key], error=chips[key].error,
                    serving=self.study.space.serving(params))
        if d.error is None:
            ckey = params_key({k: v for k, v in params.items() if k in self._compression_dims})
            try:
                if ckey not in comps:
                    comps[ckey] = self.study.space.compression(params)
                d.comp = comps[ckey]
            except (CodesignError, ValidationError, ValueError) as e:
                d.error = _short(e)
        return d

    def _evaluate(self, params_list: list[dict]) -> list[Outcome]:
        chips: dict = {}
        comps: dict = {}
        designs = [self._prepare(p, chips, comps) for p in params_list]
        for j, wl in enumerate(self.study.workloads):
            ok = [d for d in designs if d.error is None]
            # designs with the same layout (tp, pp, batch) share one engine call per chip kind
            layouts: dict = {}
            for d in ok:
                layouts.setdefault(params_key(_layout(d.serving)), []).append(d)
            single = [d for d in ok if not d.chip.batchable]
            for members in layouts.values():
                group = [d for d in members if d.chip.batchable]
                if not group:
                    continue
                try:
                    self._run(evaluate_batch, self.study.base, group, wl)
                except Exception:   # noqa: BLE001 - isolate the design(s) that fail
                    single += group
            for d in single:
                try:
                    self._run(evaluate_batch, d.chip.hw, [d], wl)
                except Exception as e:   # noqa: BLE001 - a design the engine cannot price is invalid
                    d.error = f"{wl.label}: {_short(e)}"
            if wl.serve is not None:
                for d in designs:
                    if d.error is None and len(d.per_wl) == j + 1:
                        assert d.chip.p is not None     # no error: its chip was built, figures and all
                        try:
                            d.per_wl[j].update(serve_metrics(d.chip.hw, wl, d.comp, d.serving, d.chip.p["price"][0],
                                                         self._used()))
                        except CodesignError as e:
                            d.error = f"{wl.label}: {_short(e)}"
        return [self._outcome(d) for d in designs]

    def _run(self, evaluate_batch, base, group: list[_Design], wl) -> None:
        base_p = self._spec_params(base)
        chips = list({id(d.chip): d.chip for d in group}.values())
        slot = {id(c): i for i, c in enumerate(chips)}
        index = np.array([slot[id(d.chip)] for d in group])
        figures = cast("list[dict]", [c.p for c in chips])   # designs here have no error: chips built, figures set
        over = {}
        for k in base_p:
            col = np.array([float(f[k][0]) for f in figures])[index]
            if k == "price" or not np.array_equal(col, np.broadcast_to(base_p[k], col.shape), equal_nan=True):
                over[k] = col
        comps = [d.comp for d in group]
        sc = wl.scenario.model_copy(update=_layout(group[0].serving)) if group[0].serving else wl.scenario
        res = evaluate_batch(base, wl.model, sc, comps, overrides=over)
        n = len(group)
        # one column per summary metric, as Python scalars (tolist is one call, not one per design)
        cols = {k: v.tolist() if v.ndim == 1 else [x.item() if hasattr(x, "item") else x for x in v]
                for k, v in res.items() if isinstance(v, np.ndarray) and v.shape[:1] == (n,)}
        for i, d in enumerate(group):
            row = {k: c[i] for k, c in cols.items()}
            row["quality_ppl_increase_pct"] = self._quality(wl.model, d.comp)
            d.per_wl.append(row)

    # ------------------------------------------------------------------
    def _outcome(self, d: _Design) -> Outcome:
        study = self.study
        if d.error is None:
            try:
                return self._score(d)
            except (CodesignError, ValueError, KeyError, ArithmeticError) as e:
                d.error = _short(e)
        values = [math.inf if s == "minimize" else -math.inf for s in study.directions]
        cons = {c.name: (1.0 if c.kind == "valid" else 1.0) for c in study.constraints}
        return Outcome(values=values, constraints=cons, metrics={}, error=d.error)

    def _score(self, d: _Design) -> Outcome:
        study = self.study
        wls = study.workloads
        weights = [w.weight for w in wls]
        m: dict = {}
        for key in NUMERIC_SUMMARY + ("quality_ppl_increase_pct", "energy_j") + tuple(SERVE_METRICS):
            vals = [r.get(key) for r in d.per_wl]
            if any(v is None for v in vals):
                continue
            m[key] = float(sum(w * float(v) for w, v in zip(weights, vals)))
        m["power_w"] = max(float(r["avg_power_w"]) for r in d.per_wl)
        m["fits"] = bool(all(bool(r["fits"]) for r in d.per_wl))
        bounds = sorted({str(r.get("bound")) for r in d.per_wl})
        m["bound"] = "; ".join(bounds)
        m.update(d.chip.design)
        if len(wls) > 1:
            used = self._used() - {"fits"}
            for w, r in zip(wls, d.per_wl):
                for key in used:
                    if key in r:
                        m[f"{key}@{w.label}"] = float(r[key])

        values = []
        for metric, sense in zip(study.objectives, study.directions):
            v = m.get(metric)
            if v is None or not math.isfinite(v):
                why = " (no published quality data)" if metric == "quality_ppl_increase_pct" else ""
                raise CodesignError(f"objective {metric} is undefined for this design{why}")
            values.append(v)

        def worst(metric, kind):
            """The binding value: the worst workload for per-workload metrics, else the design's."""
            if metric in d.per_wl[0]:
                vals = [float(r[metric]) for r in d.per_wl]
                if not all(math.isfinite(v) for v in vals):
                    return math.nan            # undefined for some workload: counts as violated
                return (max if kind == "max" else min)(vals)
            return m.get(metric)           # area_mm2, die/chip cost, power_w (already the worst)

        cons = {}
        for c in study.constraints:
            if c.kind == "valid":
                cons[c.name] = 0.0
            elif c.kind == "fits":
                over = max(float(r["memory_bytes"]) / float(r["capacity_bytes"]) - 1.0 for r in d.per_wl)
                cons[c.name] = 0.0 if m["fits"] else max(over, 1e-6)
            else:
                v = worst(c.metric, c.kind)
                if v is None or not math.isfinite(v):
                    cons[c.name] = 1.0           # undefined: treated as violated
                    continue
                scale = abs(c.bound) or 1.0
                cons[c.name] = (v - c.bound) / scale if c.kind == "max" else (c.bound - v) / scale
        return Outcome(values=values, constraints=cons, metrics=m)
