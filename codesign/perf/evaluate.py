"""evaluate(): one scenario on one device (or group), the single evaluation path.

Phases. TTFT is the prefill of all ``batch`` prompts at once (its LM head yields the first
token). Each later token is one decode step; the step that yields token i (i = 2..G)
attends over prompt + i - 1 cached tokens. Decode time is summed exactly over those
contexts (engine.envelope_sum); ``tpot_s`` is the mean step time.

Several devices (Megatron-LM / GPipe conventions):
- tensor parallel (tp): the graph is per device, with two all-reduces per layer;
- pipeline parallel (pp): layers split evenly over stages; one stage runs
  ceil(layers/pp) layers plus the embedding and LM head (an upper bound: they sit on
  different stages in practice); activations hop stages over the device link. A batch in
  ``microbatches`` pieces takes (mb + pp - 1) stage times for prefill (fill and drain
  bubble) and max(mb, pp) stage times per decode step (steady state);
- data parallel (dp): replicas serve batch/dp requests each; aggregate rates scale by dp;
- expert parallel (ep): see workload.graph._moe.

Memory per device = weights + KV cache (prompt + generated tokens) + peak activations.
Energy = FLOPs x energy/op + bytes x energy/byte per level (activity) + static board power x time
+ busy power x kernel time + a share of busy power over the gaps, per device; a phase whose power would pass the TDP is stretched
(the clock drops; ``throttle`` says by how much).
Neglected: link energy, host-side scheduling, the prefill/decode interference of continuous
batching.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..compression import Compression, effective_model, resolve_dtype
from ..errors import CodesignError
from ..hardware import load_hardware
from ..hardware.schema import OFFCHIP_KINDS, HardwareSpec
from ..io import frame
from ..runtime import Runtime, load_runtime
from ..workload import load_workload
from ..workload.graph import build_graph
from ..workload.ops import CONTEXT_KINDS, LINK_KINDS
from ..workload.scenario import Scenario
from ..workload.schema import ModelSpec
from .engine import OpTable, Prices, envelope_sum, op_table, op_terms
from .footprint import capacity, min_devices, priced_footprint
from .params import busy_energy, host_launch, spec_params
from .power import clock_throttle
from .prices import distinct, prices, vector_dtype

SECONDS_PER_YEAR = 365.25 * 24 * 3600
AMORTIZATION_YEARS = 3.0          # device price spread over 3 years of service (assumption)
ELECTRICITY_USD_PER_J = 0.12 / 3.6e6   # 0.12 USD/kWh (assumption)


# ---------------------------------------------------------------- phases
@dataclass
class _Phase:
    time: np.ndarray              # (D,) seconds for the phase (one stage pass, whole batch)
    energy: np.ndarray            # (D,) activity J of every stage's ops (one tensor-parallel rank)
    stage_energy: np.ndarray      # (D,) activity J of the ops one pipeline stage runs (its power)
    gap: np.ndarray               # (D,) seconds of launch gaps (no kernel running) in ``time``
    # (D,) kernel seconds at full clock whose busy power the board draws: time - gap; under a
    # power limit the clock-bound ones plus the others at the clock's share (clock_throttle)
    kernels: np.ndarray
    flops: np.ndarray
    traffic: np.ndarray           # (D, L) bytes
    per_op_time: np.ndarray       # (D, N) seconds per instance (decode: mean over steps)
    per_op_traffic: np.ndarray    # (L, D, N)
    per_op_share: np.ndarray      # (J+1, D, N) seconds by resource incl. overhead (count-weighted)
    per_op_energy: np.ndarray     # (D, N) activity J of each op over the phase (all its instances)
    tab: OpTable
    names: list


def stage_counts(tab: OpTable, pp: int) -> np.ndarray:
    """Instances of each op one pipeline stage runs: the layers' ops split over ``pp`` stages
    (rounded up), the rest (embedding, LM head) counted whole on each (an upper bound)."""
    count = tab.cols["count"]
    return np.where(tab.is_layer, np.ceil(count / pp), count) if pp > 1 else count


def _run_phase(spec, p, ops, pr, wtot, kvtot, steps: int, pp: int, terms=None) -> _Phase:
    """Sum one phase. ``steps`` = 0 for prefill (a single pass at the base context); for
    decode the number of steps, at context offsets 1..steps. ``terms``: op_terms already
    computed for these ops (both phases are priced in one call when they share a device)."""
    tab = ops if isinstance(ops, OpTable) else op_table(ops)
    t = terms if terms is not None else op_terms(spec, p, tab, pr, wtot, kvtot)
    a, b, sl = t.a, t.b, t.sl
    count = stage_counts(tab, pp)
    J = a.shape[0]
    best = a.max(0)                                                     # (D, N)
    jj = np.arange(J)[:, None, None]
    # each op's time goes to its binding term (the first one on a tie)
    share = np.where(jj == a.argmax(0), best, 0.0)                      # (J, D, N)
    if steps == 0:
        per_op = t.overhead + best
        n_eff, c_sum = 1.0, 0.0
    else:
        lo, hi = 1, steps
        n_eff = float(steps)
        c_sum = (lo + hi) * steps / 2.0
        best = best * n_eff
        share *= n_eff
        if len(sl):
            sa, sb = a[..., sl], b
            k_lo = (sa + sb * lo).argmax(0)
            k_hi = (sa + sb * hi).argmax(0)
            # affine terms: one that is the max at both ends is the max in between, so the
            # sum is closed-form; only a change of binding resource needs the envelope
            sh = np.where(jj == k_hi, n_eff * sa + c_sum * sb, 0.0)
            tot = sh.sum(0)
            change = k_lo != k_hi
            if change.any():
                env_t, env_s = envelope_sum(np.moveaxis(sa, 0, -1), np.moveaxis(sb, 0, -1), lo, hi)
                tot = np.where(change, env_t, tot)
                sh = np.where(change, np.moveaxis(env_s, -1, 0), sh)
            best[:, sl] = tot
            share[..., sl] = sh
        per_op = t.overhead + best / n_eff
    share = np.concatenate([share, (t.overhead * n_eff)[None]], 0)    # (J+1, D, N)
    time = (per_op * n_eff * count).sum(-1)
    cnt = tab.cols["count"]
    per_op_energy = t.energy_a * (cnt * n_eff)
    if len(sl):
        per_op_energy[:, sl] += t.energy_b * (cnt[sl] * c_sum)
    energy = per_op_energy.sum(-1)
    # what one stage runs (layer ops split over the stages, as in ``time``): its board power
    stage_energy = energy if pp == 1 else t.energy_a @ (count * n_eff) + t.energy_b @ (count[sl] * c_sum)
    traffic_op = t.traffic_a                                        # (L, D, N), at the mean context
    if c_sum and len(sl):
        traffic_op = traffic_op.copy()
        traffic_op[..., sl] += t.traffic_b * (c_sum / n_eff)
    traffic = np.matmul(traffic_op, cnt * n_eff).T                      # (D, L)
    flops = np.full(time.shape, (tab.cols["flops"] * n_eff + tab.cols["d_flops"] * c_sum) @ cnt)
    gap = (t.overhead * n_eff * count).sum(-1)
    graphs = p["runtime.decode_graphs"] if steps else np.zeros_like(p["runtime.decode_graphs"])
    scale, gap = _dispatch_ahead(p, steps, graphs, time, gap)
    if scale is not None:
        time = time * scale
        per_op = per_op * scale[:, None]
        share = share * scale[None, :, None]
    if steps:       # a captured decode step: its per-kernel cost is device-side, the board stays busy
        gap = gap * (1.0 - graphs)
    return _Phase(time=time, energy=energy, stage_energy=stage_energy, gap=gap, kernels=time - gap, flops=flops, traffic=traffic,
                  per_op_time=per_op,
                  per_op_traffic=traffic_op, per_op_share=share * count, per_op_energy=per_op_energy, tab=tab,
                  names=t.names + ["overhead"])


def _dispatch_ahead(p, steps: int, graphs, time, gap):
    """(factor on the phase's time or None, its launch gaps) where the host runs ahead of the
    device: the phase is bound by the longer of the host's dispatch (sum of launches) and the
    device's kernels plus its own per-kernel gap. Neglected: a host that runs ahead only
    within a queue depth (~1024 launches), and the host's own stalls (allocations,
    synchronisations)."""
    ahead = (p["runtime.dispatch_ahead"] > 0) & (graphs == 0)
    if not ahead.any():
        return None, gap
    launch = host_launch(p, bool(steps))
    device_gap = gap * np.minimum(p["runtime.device_gap"] / np.maximum(launch, 1e-30), 1.0)
    kernels_sum = time - gap
    overlapped = np.maximum(gap, kernels_sum + device_gap)
    return np.where(ahead, overlapped / np.maximum(time, 1e-30), 1.0), np.where(ahead, overlapped - kernels_sum, gap)


def _power_limit(ph: _Phase, p: dict, spec: HardwareSpec) -> np.ndarray:
    """Stretch a phase by its ``power_limit`` factor (returned); its kernel time bound by
    off-chip memory or links does not scale with the core clock, and its activity energy
    falls with the lower voltage."""
    fixed_terms = {m.name for m in spec.memory if m.kind in OFFCHIP_KINDS} | {"link"}
    rows = [i for i, name in enumerate(ph.names) if name in fixed_terms]
    fixed = ph.per_op_share[rows].sum(axis=(0, 2))
    factor, ph.kernels, e_scale = clock_throttle(ph.time, ph.gap, ph.stage_energy, p, fixed)
    if (factor > 1).any():
        ph.time = ph.time * factor
        ph.per_op_time = ph.per_op_time * factor[:, None]
        ph.per_op_share = ph.per_op_share * factor[None, :, None]
        ph.energy, ph.stage_energy = ph.energy * e_scale, ph.stage_energy * e_scale
        ph.per_op_energy = ph.per_op_energy * e_scale[:, None]
    return factor


def phase_power(ph: _Phase, p: dict) -> np.ndarray:
    """Board power of a device while it runs the phase (after any power-limit stretch): static
    + (busy x kernel time + activity energy of its stage) / phase time. Prefill's is the peak
    a board must supply; a request's average (``avg_power_w``) hides it behind decode."""
    with np.errstate(divide="ignore", invalid="ignore"):
        dyn = busy_energy(p, ph.kernels, ph.gap) + ph.stage_energy
        return np.where(ph.time > 0, p["power.static"] + dyn / ph.time, p["power.static"])


# ---------------------------------------------------------------- result
@dataclass
class Result:
    """Outcome of one evaluation: ``summary`` (flat dict) and ``ops`` (pandas DataFrame)."""
    summary: dict
    hardware: HardwareSpec
    model: ModelSpec
    scenario: Scenario
    compression: Compression | None
    notes: list = field(default_factory=list)
    _phases: dict = field(default_factory=dict, repr=False)

    def __getitem__(self, key):
        return self.summary[key]

    @property
    def ops(self):
        """One row per operator and phase, as a pandas DataFrame (see ``op_rows``; pandas is
        imported on first use, codesign.io.pandas)."""
        return frame(self.op_rows())

    def op_rows(self) -> list[dict]:
        """One dict per operator and phase: shape, FLOPs, bytes per memory level, time per
        pass, total time and binding resource (no pandas needed)."""
        rows = []
        phases = self._phases if isinstance(self._phases, dict) else _describe(*self._phases)
        for phase, ph in phases.items():
            levels = [m.name for m in ph["spec"].memory]
            pr = ph["phase"]
            for i, o in enumerate(pr.tab.ops):
                sh = pr.per_op_share[:, 0, i]
                row = {"phase": phase, "name": o.name, "kind": o.kind, "impl": o.impl, "count": o.count,
                       "dtype": ph["dtype"] if o.is_matrix else ph["vdtype"], "batch": o.batch, "m": o.m,
                       "n": o.n, "k": o.k, "flops": o.flops, "weight_elems": o.weight_elems}
                for l, name in enumerate(levels):
                    row[f"bytes_{name}"] = float(pr.per_op_traffic[l, 0, i])
                row["link_bytes"] = float(o.elements * ph["a_bytes"]) if o.kind in LINK_KINDS else 0.0
                row["time_s"] = float(pr.per_op_time[0, i])
                row["total_s"] = float(sh.sum()) / ph["steps"]
                row["bound"] = _label(pr.names[int(np.argmax(sh))], levels)
                rows.append(row)
        return rows

    def to_dict(self) -> dict:
        return dict(self.summary)


def _label(name: str, levels) -> str:
    return f"memory:{name}" if name in levels else name


# ---------------------------------------------------------------- public API
def evaluate(hardware, model, scenario: Scenario | None = None, compression: Compression | None = None, *,
             operating_point: str | None = None, decode_hardware=None, decode_operating_point=None) -> Result:
    """Evaluate one workload scenario on one device type.

    ``hardware``/``model`` are spec objects or library names/paths. ``decode_hardware``
    runs the decode phase on another device (disaggregated serving: the prompt's KV cache
    crosses the slower of the two host links).
    """
    spec = load_hardware(hardware)
    model = load_workload(model)
    sc = scenario or Scenario()
    out = evaluate_batch(spec, model, sc, compression, operating_point=operating_point,
                         decode_hardware=decode_hardware, decode_operating_point=decode_operating_point,
                         _keep=True)
    summary = {k: (v.item() if isinstance(v, np.ndarray) and v.size == 1 else v) for k, v in out.items()
               if not k.startswith("_")}
    summary["fits"] = bool(summary["fits"])
    if np.isfinite(summary["min_devices"]):
        summary["min_devices"] = int(summary["min_devices"])
    summary["runtime"] = load_runtime(sc.runtime).name
    # (the quality estimate is added one floor up: codesign.assess.with_quality)
    return Result(summary=summary, hardware=spec, model=model, scenario=sc, compression=compression,
                  notes=out["_notes"], _phases=out["_phases"])


def evaluate_batch(hardware: HardwareSpec, model: ModelSpec, scenario: Scenario, compression=None, *,
                   compression_index=None, overrides: dict | None = None, operating_point=None,
                   decode_hardware=None, decode_operating_point=None, _keep=False) -> dict:
    """Evaluate D design points at once: ``overrides`` maps dotted spec paths (as in
    codesign.perf.params, e.g. ``memory.HBM3.bandwidth``, ``compute.matrix.peak.bf16``) to
    arrays of length D; ``compression`` is one Compression, a list of D, or a list of
    distinct ones with ``compression_index`` (D indices into it; no per-design Python).
    Returns a dict of arrays (the summary metrics of each design)."""
    if compression_index is not None:
        uniq, index = list(compression), np.asarray(compression_index, dtype=int)
    elif isinstance(compression, (list, tuple)):
        uniq, index = distinct(compression)
    else:
        uniq, index = [compression], np.zeros(1, dtype=int)
    groups: dict = {}
    for u, c in enumerate(uniq):
        key = (c.distill_to, c.prune_heads, c.prune_ffn, c.prune_layers) if c else (None, 0.0, 0.0, 0.0)
        groups.setdefault(key, []).append(u)
    if len(groups) > 1:   # different served models: evaluate each group, then stitch
        D = len(index)
        res = None
        for members in groups.values():
            idx = np.flatnonzero(np.isin(index, members))
            remap = {u: j for j, u in enumerate(members)}
            sub_over = {k: (np.asarray(v)[idx] if np.ndim(v) and np.size(v) > 1 else v)
                        for k, v in (overrides or {}).items()}
            r = evaluate_batch(hardware, model, scenario, [uniq[u] for u in members],
                               compression_index=[remap[u] for u in index[idx]], overrides=sub_over,
                               operating_point=operating_point, decode_hardware=decode_hardware,
                               decode_operating_point=decode_operating_point)
            if res is None:
                res = {k: (np.empty(D, dtype=np.asarray(v).dtype) if np.ndim(v) else v) for k, v in r.items()}
            for k, v in r.items():
                if np.ndim(v):
                    res[k][idx] = v
        assert res is not None      # two groups or more: the loop filled it
        return res
    served = effective_model(model, uniq[0])
    return _evaluate_group(hardware, served, scenario, (uniq, index), overrides or {}, operating_point,
                           decode_hardware, decode_operating_point, _keep)


_CACHE: dict = {}
_CACHE_SIZE = 64


def _cached(key, keep, make):
    """Small identity-keyed memo: specs, models and graphs are immutable, so their derived
    arrays are computed once per object (``keep`` pins the objects so ids stay valid)."""
    hit = _CACHE.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], keep)):
        return hit[1]
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    val = make()
    _CACHE[key] = (keep, val)
    return val


def _tables(model, sc, rt):
    """The op graph of a scenario as engine tables, with the runtime's fusions (cached per
    model object and scenario; the scenario names the runtime)."""
    def make():
        g = build_graph(model, sc)
        tab = lambda ops: op_table(ops, rt.fuse, rt.kernels_per_op) if ops else None  # noqa: E731
        return tab(g.prefill), tab(g.decode), tab(g.prefill + g.decode) if g.prefill and g.decode else None
    return _cached(("graph", id(model), sc), (model,), make)


def _params(spec, overrides, operating_point, runtime=None):
    rt = load_runtime(runtime)
    p = _cached(("params", id(spec), operating_point, id(rt)), (spec, rt),
                lambda: spec_params(spec, operating_point, rt))
    if not overrides:
        return p, 1            # shared and never mutated: the engine's per-spec caches key on it
    p = dict(p)
    for k, v in overrides.items():
        if k not in p:
            raise CodesignError(f"not a numeric figure of {spec.name} the engine uses "
                                f"(e.g. {', '.join(sorted(p)[:4])}, ...)", field=k)
        p[k] = np.atleast_1d(np.asarray(v, dtype=float))
    D = max(len(v) for v in p.values())
    if D == 1:
        return p, 1
    return {k: np.broadcast_to(v, (D,)) for k, v in p.items()}, D


# ---------------------------------------------------------------- one group of designs
@dataclass(slots=True)
class _Group:
    """What the stages of one evaluation share: the devices' figures, the designs' prices,
    the runtime, and the batch's split into pipeline microbatches."""
    spec: HardwareSpec
    model: ModelSpec
    sc: Scenario              # as the runtime runs it (its attention kernel)
    rt: Runtime
    p: dict
    D: int
    pr: Prices
    notes: set
    single: bool              # one design, no overrides: derived arrays are memoised
    comp: Compression | None  # the first distinct compression (a single design's: a cache key)
    reqs: int                 # requests per data-parallel replica
    mb: int                   # microbatches of a replica's requests
    micro: int                # requests per microbatch
    pipe_pre: int             # stage times of a prefill (fill and drain bubble included)
    pipe_dec: int             # stage times of a decode step (steady state)
    tables: tuple             # (prefill, decode, both) OpTables of one microbatch (None: no such phase)
    dspec: HardwareSpec       # the decode device: ``spec``, or another in disaggregated serving
    dp: dict
    dpr: Prices
    disaggregated: bool


@dataclass(slots=True)
class _Memory:
    """Bytes per device, (D,) each: weights, KV cache and peak activations against the capacity."""
    weights: np.ndarray
    kv: np.ndarray
    acts: np.ndarray
    capacity: np.ndarray
    fits: np.ndarray
    d_weights: np.ndarray     # the same on the decode device
    d_kv: np.ndarray


@dataclass(slots=True)
class _Timeline:
    """The request batch's phases, (D,) each, and the phases themselves (name -> dict of
    the _Phase, its spec and its steps)."""
    ttft: np.ndarray          # the whole batch's prefill to its first token
    tpot: np.ndarray          # mean decode step
    decode: np.ndarray        # all decode steps
    e_prefill: np.ndarray     # activity energy of each phase, every device
    e_decode: np.ndarray
    throttle: np.ndarray      # the largest power-limit stretch of a phase
    steps: int                # decode steps (generate - 1)
    phases: dict = field(default_factory=dict)


def _evaluate_group(spec, model, sc, comps, overrides, op_name, decode_spec, decode_op, keep) -> dict:
    """Designs that serve the same model, in stages: set-up, memory footprint, phases,
    disaggregation (the KV cache crossing devices), energy and cost, summary."""
    g = _group(spec, model, sc, comps, overrides, op_name, decode_spec, decode_op)
    mem = _memory(g)
    tl = _phases(g, mem)
    kv_xfer = _kv_transfer(g, mem)
    e2e = tl.ttft + kv_xfer + tl.decode
    out = _summary(g, mem, tl, kv_xfer, e2e, _first_token_seen(g, mem, tl), _energy_and_cost(g, tl, kv_xfer, e2e))
    if keep:
        for entry in tl.phases.values():
            entry["dtype"] = "?"
        out["_notes"] = sorted(g.notes)
        out["_phases"] = (tl.phases, g.spec, g.dspec, g.sc, g.pr, g.dpr)     # described lazily by Result.ops
    return out


def _group(spec, model, sc, comps, overrides, op_name, decode_spec, decode_op) -> _Group:
    """Check the scenario; the figures and prices of every design on each device; the tables."""
    notes: set = set()
    rt = load_runtime(sc.runtime)
    if rt.attention and rt.attention != sc.attention:     # the stack decides the attention kernel
        sc = sc.model_copy(update={"attention": rt.attention})
    _check_scenario(spec, model, sc, rt, notes)
    if decode_spec is not None:
        decode_spec = load_hardware(decode_spec)       # loaded once, used below
        _check_scenario(decode_spec, model, sc, rt, notes)
    p, D = _params(spec, overrides, op_name, rt)
    uniq, index = comps
    if len(index) > 1 and D == 1:
        p = {k: np.broadcast_to(v, (len(index),)) for k, v in p.items()}
        D = len(index)
    if len(index) == 1 and D > 1:
        comps = (uniq, np.zeros(D, dtype=int))
    single = D == 1 and not overrides
    if single:   # the common single evaluation: price once per (spec, model, scenario, comp)
        pr, pnotes = _cached(("prices", id(spec), op_name, id(model), sc, uniq[0]), (spec, model),
                             lambda: (prices(spec, p, model, sc, comps, n := set[str](), rt), n))
        notes |= pnotes
    else:
        pr = prices(spec, p, model, sc, comps, notes, rt)
    dspec, dp, dpr = spec, p, pr
    if decode_spec is not None:     # decode on another device
        dspec = decode_spec
        dp, _ = _params(dspec, {}, decode_op, rt)
        dp = {k: np.broadcast_to(v, (D,)) for k, v in dp.items()}
        dpr = prices(dspec, dp, model, sc, comps, notes, rt)
    reqs = math.ceil(sc.batch / sc.dp)
    mb = min(sc.microbatches or min(reqs, sc.pp), reqs)
    micro = math.ceil(reqs / mb)
    tables = _tables(model, sc if micro == sc.batch else sc.model_copy(update={"batch": micro}), rt)
    return _Group(spec=spec, model=model, sc=sc, rt=rt, p=p, D=D, pr=pr, notes=notes, single=single, comp=uniq[0], reqs=reqs,
                  mb=mb, micro=micro, pipe_pre=(mb + sc.pp - 1) if sc.pp > 1 else mb,
                  pipe_dec=max(mb, sc.pp) if sc.pp > 1 else mb, tables=tables, dspec=dspec, dp=dp, dpr=dpr,
                  disaggregated=decode_spec is not None)


def _memory(g: _Group) -> _Memory:
    """Footprint per device against the capacity (on both devices when they differ)."""
    pr, model, sc = g.pr, g.model, g.sc
    fp = lambda: priced_footprint(model, sc, pr)  # noqa: E731
    w, kv, act = _cached(("footprint", id(model), sc, id(pr)), (model, pr), fp) if g.D == 1 else fp()
    cap = _cached(("capacity", id(g.p)), (g.p,), lambda: capacity(g.spec, g.p)) if g.D == 1 else capacity(g.spec, g.p)
    fits = (w + kv + act) <= cap
    dw, dkv = w, kv
    if g.dpr is not pr:
        dpr = g.dpr
        dw, dkv = priced_footprint(model, sc, dpr)[:2]
        if g.tables[1] is not None:
            fits = fits & ((dw + dkv + act) <= capacity(g.dspec, g.dp))
    return _Memory(weights=w, kv=kv, acts=act, capacity=cap, fits=fits, d_weights=dw, d_kv=dkv)


def _phases(g: _Group, mem: _Memory) -> _Timeline:
    """Prefill on ``spec`` and decode on ``dspec``, each held to its power limit; TTFT and
    TPOT through the pipeline."""
    pre_tab, dec_tab, both_tab = g.tables
    sc, D = g.sc, g.D
    split: tuple = (None, None)
    if both_tab is not None and not g.disaggregated:    # one device: both phases priced in one call
        split = op_terms(g.spec, g.p, both_tab, g.pr, mem.weights, mem.kv).split(len(pre_tab.ops))
    tl = _Timeline(ttft=np.zeros(D), tpot=np.zeros(D), decode=np.zeros(D), e_prefill=np.zeros(D),
                   e_decode=np.zeros(D), throttle=np.ones(D), steps=max(sc.generate - 1, 0))
    if pre_tab is not None:
        ph = _run_phase(g.spec, g.p, pre_tab, g.pr, mem.weights, mem.kv, 0, sc.pp, split[0])
        passes = _prefill_passes(g)
        if passes > 1:
            ph = _ubatched(g, mem, ph, passes)
        tl.throttle = np.maximum(tl.throttle, _power_limit(ph, g.p, g.spec))
        # the passes of a prompt pipeline over the stages as micro-batches do (llama.cpp #6017)
        stage = ph.time / passes + _pipeline_hop(g.spec, g.p, sc, g.micro * sc.prompt // passes, g.model, g.pr)
        pipe = g.mb * passes + sc.pp - 1 if sc.pp > 1 else g.mb * passes
        tl.ttft = pipe * stage + g.p["runtime.request_overhead"]
        tl.e_prefill = ph.energy * g.mb * sc.tp * sc.dp
        tl.phases["prefill"] = dict(phase=ph, spec=g.spec, steps=1)
    if dec_tab is not None:
        steps = tl.steps
        ph = _run_phase(g.dspec, g.dp, dec_tab, g.dpr, mem.d_weights, mem.d_kv, max(steps, 1), sc.pp, split[1])
        tl.throttle = np.maximum(tl.throttle, _power_limit(ph, g.dp, g.dspec))
        step_mean = ph.time / max(steps, 1) + _pipeline_hop(g.dspec, g.dp, sc, g.micro, g.model, g.dpr)
        # host work per sequence per step, serial with the device (not hidden by the pipeline)
        tl.tpot = g.pipe_dec * step_mean + g.reqs * g.dp["runtime.sequence_overhead"]
        tl.decode = tl.tpot * steps
        tl.e_decode = ph.energy * (steps / max(steps, 1)) * g.mb * sc.tp * sc.dp
        tl.phases["decode"] = dict(phase=ph, spec=g.dspec, steps=max(steps, 1))
    if (tl.throttle > 1.005).any():
        g.notes.add(f"power-limited: modelled power exceeds the TDP, so the clock drops and the phase takes up to "
                    f"{(tl.throttle.max() - 1) * 100:.0f}% longer")
    return tl


def _prefill_passes(g: _Group) -> int:
    """Physical passes of one microbatch's prompt tokens: the scenario's ubatch, else the
    runtime's prefill_ubatch (ggml's n_ubatch, 512 by default); 1 when they fit in one."""
    ubatch = g.sc.pass_tokens
    return math.ceil(g.micro * g.sc.prompt / ubatch) if ubatch else 1


def _ubatched(g: _Group, mem: _Memory, whole: _Phase, passes: int) -> _Phase:
    """The prefill run as ``passes`` physical batches of q = prompt / passes tokens per request
    (ggml's n_ubatch): every op but the attention core runs once per pass at the smaller
    shape (the weights streamed again each pass, the GEMM tiles and waves of q rows); the
    attention of the passes sums to that of the whole causal prompt, as chunk k attends its
    own q tokens and the k q cached ones (F((k+1)q) - F(kq) telescopes to F(P); the step
    decomposition of perf/steps.py). Neglected: the launch of the attention kernels in every
    pass (counted once). A fixed-shape graph (Scenario.kv_slots) has no such sum: each pass
    reads and scores its whole compiled cache, so every op runs once per pass."""
    sc = g.sc
    q = math.ceil(sc.prompt / passes)
    tab = _tables(g.model, sc.model_copy(update={"batch": g.micro, "prompt": q, "generate": 0}), g.rt)[0]
    one = _run_phase(g.spec, g.p, tab, g.pr, mem.weights, mem.kv, 0, sc.pp)
    assert [o.name for o in tab.ops] == [o.name for o in whole.tab.ops]    # the same graph at another length
    static = bool(sc.kv_slots)
    core = np.array([o.kind in CONTEXT_KINDS and not static for o in tab.ops])
    pick = lambda a, b: np.where(core, a, passes * b)  # noqa: E731
    count = tab.cols["count"]
    per_op = pick(whole.per_op_time, one.per_op_time)
    time = (per_op * stage_counts(tab, sc.pp)).sum(-1)
    energy_op = pick(whole.per_op_energy, one.per_op_energy)
    energy = energy_op.sum(-1)
    traffic_op = pick(whole.per_op_traffic, one.per_op_traffic)
    gap = passes * one.gap
    return _Phase(time=time, energy=energy, stage_energy=energy * np.divide(one.stage_energy, one.energy,
                                                                            out=np.ones_like(energy), where=one.energy > 0),
                  gap=gap, kernels=time - gap, flops=whole.flops, traffic=np.matmul(traffic_op, count).T,
                  per_op_time=per_op, per_op_traffic=traffic_op,
                  per_op_share=pick(whole.per_op_share, one.per_op_share), per_op_energy=energy_op,
                  tab=whole.tab, names=whole.names)


def _kv_transfer(g: _Group, mem: _Memory) -> np.ndarray:
    """Disaggregation: seconds for the prompt's KV cache to cross to the decode devices over
    the slower of the two host links (0 on one device)."""
    if not g.disaggregated or g.tables[0] is None:
        return np.zeros(g.D)
    kv_prompt = mem.kv * g.sc.prompt / max(g.sc.prompt + g.sc.generate, 1)
    bws = [b for b in (pp_.get("interconnect.host_link.bandwidth") for pp_ in (g.p, g.dp)) if b is not None]
    if not bws:
        raise CodesignError("disaggregated serving needs interconnect.host_link on both devices",
                            field="interconnect.host_link")
    bw = np.minimum.reduce(bws)
    lat = sum(pp_.get("interconnect.host_link.latency", np.zeros(g.D)) for pp_ in (g.p, g.dp))
    return kv_prompt / bw + lat


def _first_token_seen(g: _Group, mem: _Memory, tl: _Timeline) -> np.ndarray:
    """The TTFT a request sees. Continuous (in-flight) batching admits each request on its
    own: its first token waits for its own prompt, in one step beside the others' decode,
    not for the whole batch's prompts (the batch's total work, and so throughput and energy,
    are the same)."""
    if not (g.rt.batching == "continuous" and g.micro > 1 and g.tables[0] is not None):
        return tl.ttft
    sc = g.sc
    one, _, _ = _tables(g.model, sc.model_copy(update={"batch": 1}), g.rt)
    ph1 = _run_phase(g.spec, g.p, one, g.pr, mem.weights, mem.kv, 0, sc.pp, None)
    _power_limit(ph1, g.p, g.spec)           # one prompt's prefill is held to the power limit as well
    return np.minimum(tl.ttft, g.pipe_pre * (ph1.time + _pipeline_hop(g.spec, g.p, sc, sc.prompt, g.model, g.pr))
                      + g.p["runtime.request_overhead"] + tl.tpot)


def _energy_and_cost(g: _Group, tl: _Timeline, kv_xfer, e2e) -> dict:
    """Energy of the request batch, power, and cost per million generated tokens."""
    sc, devices = g.sc, g.sc.devices
    gen_tokens = sc.batch * sc.generate
    # board power of every device over the request batch: static all the time, busy while
    # kernels run and a share of it in the gaps (launch gaps, host work, pipeline bubbles),
    # activity energy per op and byte (each device runs its stage's kernels once per
    # microbatch: mb x (stage time - gaps))
    energy = tl.e_prefill + tl.e_decode + g.dp["power.static"] * devices * kv_xfer
    for name, ph_ in tl.phases.items():
        pw_ = g.p if name == "prefill" else g.dp
        wall, share = (tl.ttft, 1.0) if name == "prefill" else (tl.decode, tl.steps / max(tl.steps, 1))
        ph = ph_["phase"]
        # the device's gaps: the request's wall time less its kernels (at the clock they ran)
        gaps = wall - g.mb * share * (ph.time - ph.gap)
        energy = energy + devices * (pw_["power.static"] * wall + busy_energy(pw_, g.mb * share * ph.kernels, gaps))
    peak = np.max([phase_power(ph_["phase"], g.p if name == "prefill" else g.dp) for name, ph_ in tl.phases.items()],
                  axis=0) if tl.phases else np.zeros(g.D)
    price = g.p["price"] * devices + (g.dp["price"] * devices if g.disaggregated else 0.0)
    usd_per_s = price / (AMORTIZATION_YEARS * SECONDS_PER_YEAR)
    return {"energy_j": energy,
            "energy_per_token_j": energy / max(gen_tokens, 1) if gen_tokens else energy / max(sc.batch * sc.prompt, 1),
            "avg_power_w": energy / np.maximum(e2e, 1e-30) / devices, "peak_power_w": peak,
            "cost_per_mtok_usd": (usd_per_s * e2e + energy * ELECTRICITY_USD_PER_J) / max(gen_tokens, 1) * 1e6}


def _summary(g: _Group, mem: _Memory, tl: _Timeline, kv_xfer, e2e, ttft_seen, spend: dict) -> dict:
    """The flat summary of every design (metric name -> (D,) array)."""
    sc, pr, D = g.sc, g.pr, g.D
    need_of = lambda: min_devices(g.model, sc, g.spec, g.p, pr)  # noqa: E731
    need = _cached(("need", id(g.spec), id(g.model), sc, g.comp), (g.spec, g.model), need_of) if g.single else need_of()
    if not mem.fits.all():
        g.notes.add("does not fit in device memory: see min_devices")
    pre = tl.phases.get("prefill")
    return {
        "ttft_s": ttft_seen, "tpot_s": tl.tpot, "e2e_latency_s": e2e,
        "prefill_tokens_per_s": _per_second(sc.batch * sc.prompt, tl.ttft),
        "prefill_tokens_per_s_per_request": _per_second(sc.prompt, tl.ttft),
        "decode_tokens_per_s": _per_second(sc.batch, tl.tpot),
        "decode_tokens_per_s_per_request": _per_second(1.0, tl.tpot),
        "throughput_tokens_per_s": sc.batch * sc.generate / np.maximum(e2e, 1e-30),
        **{k: spend[k] for k in ("energy_j", "energy_per_token_j", "avg_power_w", "peak_power_w")},
        "throttle": tl.throttle,
        "memory_bytes": mem.weights + mem.kv + mem.acts, "weight_bytes": mem.weights, "kv_bytes": mem.kv,
        "activation_bytes": mem.acts, "capacity_bytes": mem.capacity * np.ones(D), "fits": mem.fits,
        "min_devices": need, "devices": np.full(D, sc.devices),
        "kv_transfer_s": kv_xfer, "cost_per_mtok_usd": spend["cost_per_mtok_usd"], "bound": _bound(tl.phases, D),
        "prefill_flops": pre["phase"].flops * sc.tp * sc.dp * g.mb if pre else np.zeros(D),
        "notes": "; ".join(sorted(g.notes)),
    }


def _check_scenario(spec, model, sc, rt, notes: set):
    """Scenario/spec combinations the model cannot price: one clear error (or a note)."""
    if not rt.runs_on(spec.device_class, spec.vendor):
        notes.add(f"runtime {rt.name} is not made for {spec.vendor or ''} {spec.device_class} devices: "
                  f"its {'default' if spec.device_class not in rt.tuning else spec.device_class} tuning is used")
    elif rt.tuning and spec.device_class not in rt.tuning and "default" not in rt.tuning:
        notes.add(f"runtime {rt.name} has no measured tuning for {spec.device_class} devices (neutral figures)")
    if sc.kv_slots and model.architecture == "decoder":
        notes.add(f"a fixed-shape graph of {max(sc.kv_slots, sc.prompt + sc.generate)} KV positions: every step reads "
                  "and scores all of them, however short the sequence (compiled_context)")
    if sc.tp > 1:
        kv = model.kv_heads
        if model.num_heads % sc.tp:
            raise CodesignError(f"tp={sc.tp} must divide the {model.num_heads} attention heads of {model.name}",
                                field="tp")
        if kv % sc.tp and sc.tp % kv:
            raise CodesignError(f"tp={sc.tp} and the {kv} KV heads of {model.name}: one must divide the other",
                                field="tp")
        if sc.tp > kv:
            notes.add(f"tp={sc.tp} > {kv} KV heads: each KV head is replicated on {sc.tp // kv} devices")
    if sc.pp > model.num_layers:
        raise CodesignError(f"pp={sc.pp} exceeds the {model.num_layers} layers of {model.name}", field="pp")
    if sc.ep > 1 and (model.moe is None or sc.ep > model.moe.num_experts):
        have = f"{model.moe.num_experts} experts" if model.moe else "no experts (a dense model)"
        raise CodesignError(f"ep={sc.ep} needs at least that many experts; {model.name} has {have}", field="ep")
    if model.max_position and sc.prompt + sc.generate > model.max_position:
        notes.add(f"prompt + generated tokens ({sc.prompt + sc.generate}) exceed the {model.max_position} positions "
                  f"{model.name} was trained for: timing is extrapolated, quality is not")
    if model.architecture == "encoder" and sc.prompt == 0:
        raise CodesignError(f"{model.name} is an encoder: it needs prompt > 0 tokens (it generates none)",
                            field="prompt")
    link = spec.interconnect.device_link
    if (sc.tp > 1 or sc.ep > sc.tp) and link is None:
        raise CodesignError(f"{spec.name} declares no interconnect.device_link, so tensor/expert parallelism "
                            f"(tp={sc.tp}, ep={sc.ep}) cannot be priced; add the link or use tp=1",
                            field="interconnect.device_link")
    if link is not None and link.max_devices and sc.tp * sc.pp > link.max_devices:
        notes.add(f"tp x pp = {sc.tp * sc.pp} exceeds the {link.max_devices} devices the link connects "
                  f"(priced as if it scaled)")


def _per_second(amount, seconds):
    """amount / seconds, 0 where nothing ran (seconds == 0)."""
    return np.divide(amount, seconds, out=np.zeros_like(seconds), where=seconds > 0)


def _pipeline_hop(spec, p, sc, tokens, model, pr):
    """Seconds to pass one micro-batch's activations to the next stage (0 without pp)."""
    if sc.pp == 1:
        return 0.0
    bw = p.get("interconnect.device_link.bandwidth")
    if bw is None:
        raise CodesignError("pipeline parallelism needs interconnect.device_link in the spec",
                            field="interconnect.device_link")
    return tokens * model.hidden_size * pr.a_bytes[:, 0] / bw + p["interconnect.device_link.latency"]


def _bound(phases: dict, D: int) -> np.ndarray:
    """The resource that binds the most time over the whole request, per design."""
    if not phases:
        return np.full(D, "none", dtype=object)
    cols = [ph["phase"].per_op_share.sum(-1).T for ph in phases.values()]   # (D, J+1) each
    names = [ph["phase"].names for ph in phases.values()]
    first = next(iter(phases.values()))
    if all(n == names[0] for n in names):      # one device for every phase: same resources
        labs = _cached(("labels", id(first["spec"])), (first["spec"],), lambda: np.array(
            [_label(n, [m.name for m in first["spec"].memory]) for n in names[0]], dtype=object))
        return labs[(cols[0] + cols[1] if len(cols) == 2 else cols[0]).argmax(-1)]
    labels = []
    for ph in phases.values():
        levels = [m.name for m in ph["spec"].memory]
        labels += [_label(name, levels) for name in ph["phase"].names]
    uniq = sorted(set(labels), key=labels.index)
    if len(uniq) == len(labels):
        arr = cols[0]
    else:   # the same resource in both phases: add its columns
        onehot = np.array([[lab == u for u in uniq] for lab in labels], dtype=float)
        arr = np.concatenate(cols, -1) @ onehot
    return np.array(uniq, dtype=object)[arr.argmax(-1)]


def _describe(phases, spec, dspec, sc, pr, dpr):
    out = {}
    for name, ph in phases.items():
        s = ph["spec"]
        mdt = s.matrix_dtypes()
        ph["dtype"] = resolve_dtype(sc.dtype, mdt)[0] if mdt else vector_dtype(s, sc.dtype)
        ph["vdtype"] = vector_dtype(s, sc.dtype)
        ph["a_bytes"] = float((pr if name == "prefill" else dpr).a_bytes[0, 0])
        out[name] = ph
    return out
