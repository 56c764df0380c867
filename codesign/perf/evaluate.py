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

from ..compression import (
    Compression,
    act_bytes_per_element,
    effective_model,
    kv_bytes_per_element,
    resolve_dtype,
    sparse_speedup,
    wanted_gemm_dtype,
    weight_bytes_per_element,
)
from ..errors import CodesignError
from ..hardware.schema import HardwareSpec
from ..runtime import load_runtime
from ..workload.graph import build_graph
from ..workload.scenario import Scenario
from ..workload.schema import ModelSpec
from .engine import OpTable, Prices, envelope_sum, op_table, op_terms
from .params import busy_energy, matrix_rate, spec_params

SECONDS_PER_YEAR = 365.25 * 24 * 3600
AMORTIZATION_YEARS = 3.0          # device price spread over 3 years of service (assumption)
ELECTRICITY_USD_PER_J = 0.12 / 3.6e6   # 0.12 USD/kWh (assumption)


# ---------------------------------------------------------------- prices per design
def _vec_dtype(spec: HardwareSpec, dtype: str) -> str:
    have = tuple(spec.compute.vector.peak)
    got, _ = resolve_dtype(dtype, have)
    return got


def _distinct(comps) -> tuple[list, np.ndarray]:
    """(distinct compressions, index of each design's one): objects first (cheap), then values."""
    uniq: dict = {}
    by_id: dict = {}
    for c in comps:
        by_id.setdefault(id(c), c)
    slot = {i: uniq.setdefault(c, len(uniq)) for i, c in by_id.items()}
    return list(uniq), np.array([slot[id(c)] for c in comps])


def _prices(spec: HardwareSpec, p: dict, model: ModelSpec, sc: Scenario, comps, notes: set, rt=None) -> Prices:
    """Bytes per element and compute rates for each design's compression; ``comps`` is
    (distinct compressions, per-design index)."""
    mdt = spec.matrix_dtypes()
    uniq, index = comps
    rows = []
    for comp in uniq:
        want, deq = wanted_gemm_dtype(comp, sc.dtype, rt.quantized_matmul if rt is not None else "activation")
        rates = spec.compute.matrix.peak if spec.compute.matrix is not None else None
        gdt, note = resolve_dtype(want, mdt, rates) if mdt else (_vec_dtype(spec, want), None)
        if note:
            notes.add(note)
        # attention products run in the activation datatype (8-bit with SmoothQuant-style W8A8)
        a_want = ("fp8" if comp.weight_format == "fp8" else "int8") if comp and comp.act_bits == 8 else sc.dtype
        adt, note = resolve_dtype(a_want, mdt, rates) if mdt else (_vec_dtype(spec, a_want), None)
        if note:
            notes.add(note)
        speed, note = sparse_speedup(comp, spec)
        if note:
            notes.add(note)
        rows.append((weight_bytes_per_element(comp, sc.dtype), act_bytes_per_element(comp, sc.dtype),
                     kv_bytes_per_element(comp, sc.dtype, model.hd), gdt, adt, speed, float(deq),
                     float(bool(comp and comp.quantize_embeddings))))
    vdt = _vec_dtype(spec, sc.dtype)

    def rate(dt):
        r = matrix_rate(spec, p, dt) if mdt else None
        return r if r is not None else p[f"compute.vector.peak.{_vec_dtype(spec, dt)}"]

    def e_op(dt):
        return p.get(f"power.energy_per_op.{dt}", p[f"power.energy_per_op.{vdt}"])

    D = len(next(iter(p.values())))
    if len(index) == 1:
        index = np.zeros(D, dtype=int)

    def col(i):
        return np.array([r[i] for r in rows], dtype=float)[index][:, None]

    def per_design(fn, i):
        """fn(dtype) -> (D,) array; each design takes the rate of its own dtype (column i)."""
        dts = sorted({r[i] for r in rows})
        table = np.stack([np.broadcast_to(fn(dt), (D,)) for dt in dts])       # (dtypes, D)
        which = np.array([dts.index(r[i]) for r in rows])[index]
        return table[which, np.arange(D)][:, None]

    wide = kv_bytes_per_element(None, sc.dtype, 1)
    return Prices(w_bytes=col(0), table_bytes=np.where(col(7) > 0, col(0), wide), wire_bytes=wide, a_bytes=col(1),
                  kv_bytes=col(2), gemm_rate=per_design(rate, 3) * col(5), attn_rate=per_design(rate, 4),
                  vec_rate=p[f"compute.vector.peak.{vdt}"][:, None], dequant=col(6),
                  # structured sparsity skips the pruned products: energy per dense FLOP falls with speed
                  gemm_e_op=per_design(e_op, 3) / col(5), attn_e_op=per_design(e_op, 4), vec_e_op=e_op(vdt)[:, None])


# ---------------------------------------------------------------- memory footprint
def footprint(model: ModelSpec, sc: Scenario, w_bytes, a_bytes, kv_bytes, table_bytes=2.0, tp=None, pp=None):
    # table_bytes: embedding table and LM head, per element
    """(weights, kv, activations) bytes per device, analytic (independent of the op graph)."""
    tp = tp or sc.tp
    pp = pp or sc.pp
    h, L = model.hidden_size, model.num_layers
    n_moe = model.moe_layers()
    dense_layer = model.layer_params()
    per_layer_linear = (L - n_moe) * dense_layer / L
    if n_moe:
        moe = model.moe
        assert moe is not None      # moe_layers() is 0 without a MoE block
        expert = model._ffn_params(model.expert_ffn)
        attn_etc = model.layer_params(True) - (moe.num_experts + moe.shared_experts) * expert
        experts_dev = moe.num_experts * expert / (sc.ep if sc.ep > 1 else tp)
        moe_layer_dev = attn_etc / tp + experts_dev + moe.shared_experts * expert / tp
        per_layer_dev = ((L - n_moe) * dense_layer / tp + n_moe * moe_layer_dev) / L
    else:
        per_layer_dev = per_layer_linear / tp
    layers_dev = math.ceil(L / pp)
    tables = model.param_count() - L * (per_layer_linear + (model.layer_params(True) * n_moe / L if n_moe else 0))
    tables_dev = tables / tp / (1 if pp == 1 else 2)        # embedding and LM head on the end stages
    weights = layers_dev * per_layer_dev * w_bytes + tables_dev * table_bytes
    reqs = math.ceil(sc.batch / sc.dp)
    # cached tokens per layer: the whole context, or the window on windowed layers
    # (beams share the prompt's cache and each keeps its own generated tokens)
    prompt_kv = model.kv_tokens(sc.prompt)
    kv_tokens = (prompt_kv + sc.beams * (model.kv_tokens(sc.prompt + sc.generate) - prompt_kv)) * layers_dev / L
    # per token and layer on this device: K and V of its KV heads, or MLA's latent (every
    # tensor-parallel rank keeps the whole latent)
    per_token = model.kv_per_token_layer if model.mla is not None else 2 * math.ceil(model.kv_heads / tp) * model.hd
    kv = 0.0 * np.asarray(kv_bytes) if model.architecture == "encoder" else reqs * kv_tokens * per_token * kv_bytes
    tokens = reqs * max(sc.prompt, 1)
    widest = max(h, math.ceil(model.ffn_size / tp) * (2 if model.ffn_type == "gated" else 1),
                 math.ceil(model.vocab_size / tp) * 0)   # logits only for the last tokens
    acts = tokens * (2 * h + widest) * a_bytes
    if sc.attention == "unfused":
        acts = acts + reqs * math.ceil(model.num_heads / tp) * sc.prompt * min(sc.prompt, model.sliding_window or sc.prompt) * a_bytes
    return weights, kv, acts


def capacity(spec: HardwareSpec, p: dict):
    """Bytes of every device level that can hold model state (host memory excluded unless
    the device streams weights from it, as USB accelerators do)."""
    levels = [m for m in spec.memory if m.stores() and (m.kind != "host" or m.holds is not None)]
    levels = levels or [m for m in spec.memory if m.stores()]
    return sum(p[f"memory.{m.name}.capacity"] * (p["compute.cores"] if m.per_core else 1) for m in levels)


def min_devices(model, sc, spec, p, w_b, a_b, kv_b, w16) -> np.ndarray:
    """Smallest tp x pp (powers of two, tp up to the link's max_devices) that fits, per design."""
    cap = capacity(spec, p)
    link = spec.interconnect.device_link
    max_tp = (link.max_devices or 8) if link else 1
    out = np.full(np.broadcast(cap, w_b).shape, np.nan)
    for e in range(0, 13):
        n = 2 ** e
        tp = min(n, max_tp)
        pp = n // tp
        w, kv, act = footprint(model, sc.model_copy(update={"tp": tp, "pp": pp, "dp": 1, "ep": 1}),
                               w_b, a_b, kv_b, w16, tp=tp, pp=pp)
        ok = (w + kv + act <= cap) & np.isnan(out)
        out = np.where(ok, n, out)
        if not np.isnan(out).any():
            break
    return out


# ---------------------------------------------------------------- phases
@dataclass
class _Phase:
    time: np.ndarray              # (D,) seconds for the phase (one stage pass, whole batch)
    energy: np.ndarray            # (D,) activity J of every stage's ops (one tensor-parallel rank)
    stage_energy: np.ndarray      # (D,) activity J of the ops one pipeline stage runs (its power)
    gap: np.ndarray               # (D,) seconds of launch gaps (no kernel running) in ``time``
    kernels: np.ndarray           # (D,) seconds of kernels at full clock (time - gap, before any throttling)
    flops: np.ndarray
    traffic: np.ndarray           # (D, L) bytes
    per_op_time: np.ndarray       # (D, N) seconds per instance (decode: mean over steps)
    per_op_traffic: np.ndarray    # (L, D, N)
    per_op_share: np.ndarray      # (J+1, D, N) seconds by resource incl. overhead (count-weighted)
    tab: OpTable
    names: list


def _run_phase(spec, p, ops, pr, wtot, kvtot, steps: int, pp: int, terms=None) -> _Phase:
    """Sum one phase. ``steps`` = 0 for prefill (a single pass at the base context); for
    decode the number of steps, at context offsets 1..steps. ``terms``: op_terms already
    computed for these ops (both phases are priced in one call when they share a device)."""
    tab = ops if isinstance(ops, OpTable) else op_table(ops)
    t = terms if terms is not None else op_terms(spec, p, tab, pr, wtot, kvtot)
    a, b, sl = t["a"], t["b"], t["sl"]
    count = tab.cols["count"]
    count = np.where(tab.is_layer, np.ceil(count / pp), count) if pp > 1 else count
    J = a.shape[0]
    best = a.max(0)                                                     # (D, N)
    jj = np.arange(J)[:, None, None]
    # each op's time goes to its binding term (the first one on a tie)
    share = np.where(jj == a.argmax(0), best, 0.0)                      # (J, D, N)
    if steps == 0:
        per_op = t["overhead"] + best
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
        per_op = t["overhead"] + best / n_eff
    share = np.concatenate([share, (t["overhead"] * n_eff)[None]], 0)    # (J+1, D, N)
    time = (per_op * n_eff * count).sum(-1)
    cnt = tab.cols["count"]
    energy = t["energy_a"] @ (cnt * n_eff) + t["energy_b"] @ (cnt[sl] * c_sum)
    # what one stage runs (layer ops split over the stages, as in ``time``): its board power
    stage_energy = energy if pp == 1 else t["energy_a"] @ (count * n_eff) + t["energy_b"] @ (count[sl] * c_sum)
    traffic_op = t["traffic_a"]                                        # (L, D, N), at the mean context
    if c_sum and len(sl):
        traffic_op = traffic_op.copy()
        traffic_op[..., sl] += t["traffic_b"] * (c_sum / n_eff)
    traffic = np.matmul(traffic_op, cnt * n_eff).T                      # (D, L)
    flops = np.full(time.shape, (tab.cols["flops"] * n_eff + tab.cols["d_flops"] * c_sum) @ cnt)
    gap = (t["overhead"] * n_eff * count).sum(-1)
    graphs = p["runtime.decode_graphs"] if steps else np.zeros_like(p["runtime.decode_graphs"])
    ahead = (p["runtime.dispatch_ahead"] > 0) & (graphs == 0)
    if ahead.any():
        # the host runs ahead of the device: the phase is bound by the longer of the host's
        # dispatch (sum of launches) and the device's kernels plus its own per-kernel gap.
        # Neglected: a host that runs ahead only within a queue depth (~1024 launches), and
        # the host's own stalls (allocations, synchronisations)
        launch = p["runtime.launch_decode"] if steps else p["runtime.launch"]
        device_gap = gap * np.minimum(p["runtime.device_gap"] / np.maximum(launch, 1e-30), 1.0)
        kernels_sum = time - gap
        overlapped = np.maximum(gap, kernels_sum + device_gap)
        scale = np.where(ahead, overlapped / np.maximum(time, 1e-30), 1.0)
        gap = np.where(ahead, overlapped - kernels_sum, gap)
        time = time * scale
        per_op = per_op * scale[:, None]
        share = share * scale[None, :, None]
    if steps:       # a captured decode step: its per-kernel cost is device-side, the board stays busy
        gap = gap * (1.0 - graphs)
    return _Phase(time=time, energy=energy, stage_energy=stage_energy, gap=gap, kernels=time - gap, flops=flops, traffic=traffic,
                  per_op_time=per_op,
                  per_op_traffic=traffic_op, per_op_share=share * count, tab=tab,
                  names=t["names"] + ["overhead"])


def power_limit(time, gap, energy, p: dict) -> np.ndarray:
    """How much longer work of ``time`` s (``gap`` of it launch gaps, ``energy`` J of activity)
    takes when its board power would exceed the power limit (the TDP unless the spec caps it
    lower): a factor >= 1 per design.

    Power = static + (busy energy + activity energy) / time (params.busy_energy: busy power
    over kernel time, a share of it over the gaps). Above the limit the clock drops until it
    fits: first order, the dynamic energy (busy power falls with the clock as the kernels
    take longer, so its energy stays too) is spread over the longer time
    T' = (busy energy + E) / (limit - static). Neglected: the lower voltage at the lower
    clock (dynamic energy falls with V^2) and the static power's own fall."""
    limit, static = p["power.limit"], p["power.static"]
    if isinstance(time, float):     # one serving step (perf.steps): the same formula in plain floats
        dyn = busy_energy(p, time - gap, gap) + energy
        if time > 0 and math.isfinite(limit) and limit > static and static + dyn / time > limit:
            return np.asarray(max(dyn / (limit - static) / time, 1.0))
        return np.asarray(1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        dynamic = busy_energy(p, time - gap, gap) + energy
        power = static + dynamic / time
        factor = np.where(np.isfinite(limit) & (power > limit) & (limit > static) & (time > 0),
                          dynamic / (limit - static) / time, 1.0)
    return np.maximum(np.nan_to_num(factor, nan=1.0, posinf=1.0), 1.0)


def _power_limit(ph: _Phase, p: dict) -> np.ndarray:
    """Stretch a phase by its ``power_limit`` factor (returned)."""
    factor = power_limit(ph.time, ph.gap, ph.stage_energy, p)
    if (factor > 1).any():
        ph.time = ph.time * factor
        ph.per_op_time = ph.per_op_time * factor[:, None]
        ph.per_op_share = ph.per_op_share * factor[None, :, None]
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
        """One row per operator and phase, as a pandas DataFrame (see ``op_rows``)."""
        import pandas as pd
        return pd.DataFrame(self.op_rows())

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
                row["link_bytes"] = float(o.elements * ph["a_bytes"]) if o.kind in ("allreduce", "alltoall", "p2p") else 0.0
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
    from ..hardware import load_hardware
    from ..workload import load_workload
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
        uniq, index = _distinct(compression)
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


def _evaluate_group(spec, model, sc, comps, overrides, op_name, decode_spec, decode_op, keep) -> dict:
    from ..hardware import load_hardware
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
    if D == 1 and not overrides:   # the common single evaluation: price once per (spec, model, scenario, comp)
        pr, pnotes = _cached(("prices", id(spec), op_name, id(model), sc, uniq[0]), (spec, model),
                             lambda: (_prices(spec, p, model, sc, comps, n := set[str](), rt), n))
        notes |= pnotes
    else:
        pr = _prices(spec, p, model, sc, comps, notes, rt)
    reqs = math.ceil(sc.batch / sc.dp)
    mb = min(sc.microbatches or min(reqs, sc.pp), reqs)
    micro = math.ceil(reqs / mb)
    pre_tab, dec_tab, both_tab = _tables(model, sc if micro == sc.batch else sc.model_copy(update={"batch": micro}),
                                         rt)
    fp = lambda: footprint(model, sc, pr.w_bytes[:, 0], pr.a_bytes[:, 0], pr.kv_bytes[:, 0], pr.table_bytes[:, 0])  # noqa: E731
    w, kv, act = _cached(("footprint", id(model), sc, id(pr)), (model, pr), fp) if D == 1 else fp()
    cap = _cached(("capacity", id(p)), (p,), lambda: capacity(spec, p)) if D == 1 else capacity(spec, p)
    fits = (w + kv + act) <= cap
    devices = sc.devices
    pipe_pre = (mb + sc.pp - 1) if sc.pp > 1 else mb
    pipe_dec = max(mb, sc.pp) if sc.pp > 1 else mb

    phases = {}
    # prefill on `spec`
    ttft = np.zeros(D)
    e_pre = np.zeros(D)
    split = (None, None)
    if both_tab is not None and decode_spec is None:
        split = _split_terms(op_terms(spec, p, both_tab, pr, w, kv), len(pre_tab.ops))
    throttle = np.ones(D)
    if pre_tab is not None:
        ph = _run_phase(spec, p, pre_tab, pr, w, kv, 0, sc.pp, split[0])
        throttle = np.maximum(throttle, _power_limit(ph, p))
        stage = ph.time + _pipeline_hop(spec, p, sc, micro * sc.prompt, model, pr)
        ttft = pipe_pre * stage + p["runtime.request_overhead"]
        e_pre = ph.energy * mb * sc.tp * sc.dp
        phases["prefill"] = dict(phase=ph, spec=spec, steps=1)
    # decode, possibly on another device
    dspec, dp_, dpr = spec, p, pr
    if decode_spec is not None:
        dspec = decode_spec
        dp_, _ = _params(dspec, {}, decode_op, rt)
        dp_ = {k: np.broadcast_to(v, (D,)) for k, v in dp_.items()}
        dpr = _prices(dspec, dp_, model, sc, comps, notes, rt)
    steps = max(sc.generate - 1, 0)
    tpot = np.zeros(D)
    dec_total = np.zeros(D)
    e_dec = np.zeros(D)
    if dec_tab is not None:
        dw, dkv = (w, kv) if dpr is pr else footprint(model, sc, dpr.w_bytes[:, 0], dpr.a_bytes[:, 0],
                                                      dpr.kv_bytes[:, 0], dpr.table_bytes[:, 0])[:2]
        ph = _run_phase(dspec, dp_, dec_tab, dpr, dw, dkv, max(steps, 1), sc.pp, split[1])
        throttle = np.maximum(throttle, _power_limit(ph, dp_))
        hopd = _pipeline_hop(dspec, dp_, sc, micro, model, dpr)
        step_mean = ph.time / max(steps, 1) + hopd
        # host work per sequence per step, serial with the device (not hidden by the pipeline)
        tpot = pipe_dec * step_mean + reqs * dp_["runtime.sequence_overhead"]
        dec_total = tpot * steps
        e_dec = ph.energy * (steps / max(steps, 1)) * mb * sc.tp * sc.dp
        phases["decode"] = dict(phase=ph, spec=dspec, steps=max(steps, 1))
        if decode_spec is not None:
            cap_d = capacity(dspec, dp_)
            fits = fits & ((dw + dkv + act) <= cap_d)
    # disaggregation: the prompt's KV cache crosses to the decode devices
    kv_xfer = np.zeros(D)
    if decode_spec is not None and pre_tab is not None:
        kv_prompt = kv * sc.prompt / max(sc.prompt + sc.generate, 1)
        bws = [pp_.get("interconnect.host_link.bandwidth") for pp_ in (p, dp_)]
        bws = [b for b in bws if b is not None]
        if not bws:
            raise CodesignError("disaggregated serving needs interconnect.host_link on both devices",
                                field="interconnect.host_link")
        bw = np.minimum.reduce(bws)
        lat = sum(pp_.get("interconnect.host_link.latency", np.zeros(D)) for pp_ in (p, dp_))
        kv_xfer = kv_prompt / bw + lat
    e2e = ttft + kv_xfer + dec_total
    gen_tokens = sc.batch * sc.generate
    # continuous (in-flight) batching admits each request on its own: its first token waits
    # for its own prompt, in one step beside the others' decode, not for the whole batch's
    # prompts (the batch's total work, and so throughput and energy, are the same)
    ttft_seen = ttft
    if rt.batching == "continuous" and micro > 1 and pre_tab is not None:
        one, _, _ = _tables(model, sc.model_copy(update={"batch": 1}), rt)
        ph1 = _run_phase(spec, p, one, pr, w, kv, 0, sc.pp, None)
        _power_limit(ph1, p)           # one prompt's prefill is held to the power limit as well
        ttft_seen = np.minimum(ttft, pipe_pre * (ph1.time + _pipeline_hop(spec, p, sc, sc.prompt, model, pr))
                               + p["runtime.request_overhead"] + tpot)
    # board power of every device over the request batch: static all the time, busy while
    # kernels run and a share of it in the gaps (launch gaps, host work, pipeline bubbles),
    # activity energy per op and byte (each device runs its stage's kernels once per
    # microbatch: mb x (stage time - gaps))
    energy = e_pre + e_dec + dp_["power.static"] * devices * kv_xfer
    for name, ph_ in phases.items():
        pw_ = p if name == "prefill" else dp_
        wall, share = (ttft, 1.0) if name == "prefill" else (dec_total, steps / max(steps, 1))
        ph = ph_["phase"]
        # the device's gaps: the request's wall time less its kernels (at the clock they ran)
        gaps = wall - mb * share * (ph.time - ph.gap)
        energy = energy + devices * (pw_["power.static"] * wall + busy_energy(pw_, mb * share * ph.kernels, gaps))
    per_token = energy / max(gen_tokens, 1) if gen_tokens else energy / max(sc.batch * sc.prompt, 1)
    avg_power = energy / np.maximum(e2e, 1e-30) / devices
    peak_power = np.max([phase_power(ph_["phase"], p if name == "prefill" else dp_) for name, ph_ in phases.items()],
                        axis=0) if phases else np.zeros(D)
    if (throttle > 1.005).any():
        notes.add(f"power-limited: modelled power exceeds the TDP, so the clock drops and the phase takes up to "
                  f"{(throttle.max() - 1) * 100:.0f}% longer")
    price = p["price"] * devices + (dp_["price"] * devices if decode_spec is not None else 0.0)
    usd_per_s = price / (AMORTIZATION_YEARS * SECONDS_PER_YEAR)
    cost = (usd_per_s * e2e + energy * ELECTRICITY_USD_PER_J) / max(gen_tokens, 1) * 1e6
    if D == 1 and not overrides:
        need = _cached(("need", id(spec), id(model), sc, uniq[0]), (spec, model), lambda: min_devices(
            model, sc, spec, p, pr.w_bytes[:, 0], pr.a_bytes[:, 0], pr.kv_bytes[:, 0], pr.table_bytes[:, 0]))
    else:
        need = min_devices(model, sc, spec, p, pr.w_bytes[:, 0], pr.a_bytes[:, 0], pr.kv_bytes[:, 0], pr.table_bytes[:, 0])
    if not fits.all():
        notes.add("does not fit in device memory: see min_devices")
    # binding resource over the whole request
    bound = _bound(phases, D)
    out = {
        "ttft_s": ttft_seen, "tpot_s": tpot, "e2e_latency_s": e2e,
        "prefill_tokens_per_s": _per_second(sc.batch * sc.prompt, ttft),
        "prefill_tokens_per_s_per_request": _per_second(sc.prompt, ttft),
        "decode_tokens_per_s": _per_second(sc.batch, tpot),
        "decode_tokens_per_s_per_request": _per_second(1.0, tpot),
        "throughput_tokens_per_s": gen_tokens / np.maximum(e2e, 1e-30),
        "energy_j": energy, "energy_per_token_j": per_token, "avg_power_w": avg_power,
        "peak_power_w": peak_power, "throttle": throttle,
        "memory_bytes": w + kv + act, "weight_bytes": w, "kv_bytes": kv, "activation_bytes": act,
        "capacity_bytes": cap * np.ones(D), "fits": fits, "min_devices": need, "devices": np.full(D, devices),
        "kv_transfer_s": kv_xfer, "cost_per_mtok_usd": cost, "bound": bound,
        "prefill_flops": phases["prefill"]["phase"].flops * sc.tp * sc.dp * mb if "prefill" in phases else np.zeros(D),
        "notes": "; ".join(sorted(notes)),
    }
    if keep:
        for entry in phases.values():
            entry["dtype"] = "?"
        out["_notes"] = sorted(notes)
        out["_phases"] = (phases, spec, dspec, sc, pr, dpr)     # described lazily by Result.ops
    return out


def _check_scenario(spec, model, sc, rt, notes: set):
    """Scenario/spec combinations the model cannot price: one clear error (or a note)."""
    if not rt.runs_on(spec.device_class, spec.vendor):
        notes.add(f"runtime {rt.name} is not made for {spec.vendor or ''} {spec.device_class} devices: "
                  f"its {'default' if spec.device_class not in rt.tuning else spec.device_class} tuning is used")
    elif rt.tuning and spec.device_class not in rt.tuning and "default" not in rt.tuning:
        notes.add(f"runtime {rt.name} has no measured tuning for {spec.device_class} devices (neutral figures)")
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


def _split_terms(t: dict, n: int):
    """Cut op_terms of [prefill ops + decode ops] into the two phases (op axis = last; the
    compact slope arrays follow their column indices ``sl``)."""
    sl = t["sl"]
    slope_keys = ("b", "traffic_b", "energy_b")

    def cut(cols, keep, shift):
        out = {k: (v[..., cols] if isinstance(v, np.ndarray) and k not in slope_keys + ("sl",) else v)
               for k, v in t.items()}
        for k in slope_keys:
            out[k] = t[k][..., keep]
        out["sl"] = sl[keep] - shift
        return out
    return cut(slice(0, n), sl < n, 0), cut(slice(n, None), sl >= n, n)


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
    from ..compression import resolve_dtype as _rd
    out = {}
    for name, ph in phases.items():
        s = ph["spec"]
        mdt = s.matrix_dtypes()
        ph["dtype"] = _rd(sc.dtype, mdt)[0] if mdt else _vec_dtype(s, sc.dtype)
        ph["vdtype"] = _vec_dtype(s, sc.dtype)
        ph["a_bytes"] = float((pr if name == "prefill" else dpr).a_bytes[0, 0])
        out[name] = ph
    return out
