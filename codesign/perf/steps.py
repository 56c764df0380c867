"""Iteration costs for the serving simulator: the engine's price of one scheduler step.

A serving engine runs steps (iterations). Each pushes a mix of prompt tokens (whole prompts
or chunks of them) and one new token of every running decode sequence through the model.
The step time decomposes the way vidur (Agrawal et al., MLSys 2024) and Sarathi-Serve
(OSDI 2024) profile it:

    t = G(T) + sum over prompt chunks [F(c0 + q) - F(c0)] + A(B, mean context) + host work

- G(T): every op whose work follows the step's token count T (projections, FFN or routed
  experts, norms, embedding, LM head), priced by the engine at T tokens;
- F(P): the attention of a whole causal P-token prompt; a chunk of q tokens after c0 cached
  ones costs the difference (exact for the quadratic FLOP count, and for the linear KV
  reads of the cached part);
- A(B, c): the attention of B decode sequences at mean context c (FlashDecoding reads each
  sequence's cache once: linear in the summed context, so the mean is exact for it);
  recurrent mixers' convolution and recurrence go with F and A: their work follows the
  prompts and the sequences (a state read and written per sequence), not the step's tokens;
- host work: the runtime's per-kernel launch cost (inside each term), and its per-sequence
  cost per step (``runtime.sequence_overhead``).

The tables come from the one engine (``op_terms``) on grids of T, P, B and c, each grid in
one vectorised call, and are interpolated linearly between grid points. A pure decode step
uses the decode graph (CUDA-graph launch cost, absorbed MLA); a step with prompt tokens the
prefill graph, as serving engines run mixed batches eagerly.

Neglected: the LM head of decode sequences riding in a mixed step (the prefill graph
samples one row); the cache blocks' fragmentation in attention (paged kernels read whole
blocks); sliding windows in the KV budget (every layer keeps the whole context, as vLLM
allocates it); collective overlap with compute.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from ..compression import Compression, effective_model
from ..errors import CodesignError
from ..hardware import load_hardware
from ..hardware.schema import HardwareSpec
from ..runtime import load_runtime
from ..workload import load_workload
from ..workload.graph import _phase_ops
from ..workload.ops import CONTEXT_KINDS, STATE_KINDS
from ..workload.scenario import Scenario
from ..workload.schema import ModelSpec
from .engine import op_table, op_terms
from .evaluate import _params, _pipeline_hop, stage_counts
from .footprint import capacity, priced_footprint, state_bytes
from .params import busy_energy, host_launch
from .power import power_limit
from .prices import prices


def _grid(top: int, dense: int = 64, ratio: float = 1.08) -> list[int]:
    """Integers 1..dense, then geometric steps of ``ratio`` up to ``top`` (included)."""
    out = list(range(1, min(dense, top) + 1))
    x = float(out[-1])
    while out[-1] < top:
        x *= ratio
        out.append(min(top, max(out[-1] + 1, int(round(x)))))
    return out


def _interp(xs: list, ys: list, x: float) -> float:
    """Linear interpolation on sorted ``xs`` (clamped below, extrapolated above on the last
    segment: the tables are near linear at their ends)."""
    i = bisect.bisect_left(xs, x)
    if i <= 0:
        return ys[0]
    if i >= len(xs):
        i = len(xs) - 1
    x0, x1 = xs[i - 1], xs[i]
    return ys[i - 1] + (ys[i] - ys[i - 1]) * (x - x0) / (x1 - x0)


@dataclass
class Cost:
    """One step of an engine: wall seconds, device-seconds of kernels (summed over its
    devices), and the joules above the static floor over its devices: activity, busy power
    over the kernels, its gap share over the rest of the step (params.busy_energy)."""
    time: float
    kernels: float
    energy: float


@dataclass(slots=True)
class _Sums:
    """Per group of ops (one engine call): seconds with launches, kernel seconds, activity joules."""
    time: np.ndarray
    kernels: np.ndarray
    energy: np.ndarray


@dataclass(slots=True)
class _Curve:
    """A step term on a grid of one variable (tokens, or a prompt's length), interpolated
    linearly between its points: seconds, kernel seconds and activity joules."""
    xs: list
    time: list
    kernels: list
    energy: list

    def at(self, x: float) -> tuple[float, float, float]:
        return _interp(self.xs, self.time, x), _interp(self.xs, self.kernels, x), _interp(self.xs, self.energy, x)


@dataclass(slots=True)
class _Surface:
    """Decode attention on a grid of B sequences x mean context c: tables [b][c]."""
    bs: list
    cs: list
    time: list
    kernels: list
    energy: list

    def at(self, B: int, ctx_mean: float) -> list[float]:
        """Bilinear: linear in c on the two batch rows around B, then linear in B."""
        bs, cs = self.bs, self.cs
        out = []
        i = bisect.bisect_left(bs, B)
        i = min(max(i, 1), len(bs) - 1)
        b0, b1 = bs[i - 1], bs[i]
        w = (B - b0) / (b1 - b0)
        for tab in (self.time, self.kernels, self.energy):
            lo = _interp(cs, tab[i - 1], ctx_mean)
            hi = _interp(cs, tab[i], ctx_mean)
            out.append(lo + (hi - lo) * w)
        return out


@dataclass
class StepCost:
    """Price of serving steps on one engine (tp x pp devices) from precomputed tables."""
    spec: HardwareSpec
    model: ModelSpec
    scenario: Scenario
    devices: int                      # tp x pp
    kv_capacity_tokens: int           # tokens of KV cache the engine (all its stages) can hold
    kv_bytes_per_token: float         # per device
    weight_bytes: float               # per device
    max_tokens: int
    max_seqs: int
    max_context: int
    sequence_overhead: float          # s per sequence per step
    request_overhead: float           # s per request before it is queued (tokenise, ...)
    power: dict                       # power.static, .busy (W per device), .gap_share, .limit
    price: float                      # USD per device
    link_bw: float | None             # host link B/s (KV transfer in disaggregated serving)
    link_latency: float
    _tok_pre: _Curve                  # G(T) on the prefill graph
    _tok_dec: _Curve                  # G(T) on the decode graph (T <= max_seqs)
    _prompt_attn: _Curve              # F(P), its attention kernels' launch cost taken out
    _dec_attn: _Surface               # A(B, c), the same
    _attn_launch: tuple = (0.0, 0.0)  # launch cost of the attention kernels (prefill, decode graph)
    _hop: tuple = (0.0, 0.0)          # pipeline hop per token and fixed, per stage boundary
    pp: int = 1
    decode_graphs: bool = False       # decode-only steps replay a graph: their launch cost is device-side
    # the host dispatches ahead of the device (runtime.dispatch_ahead): a step takes the longer
    # of its launches and its kernels plus the device's own per-kernel gap, a share of each
    # launch (prefill-carrying, decode-only), as evaluate's phases do
    dispatch_ahead: bool = False
    _gap_share: tuple = (1.0, 1.0)
    # a sequence's fixed recurrent state (linear-attention / state-space layers) in tokens of KV
    # cache: the scheduler reserves it once per sequence, as a prefix of that many tokens
    state_tokens: int = 0

    # ---------------------------------------------------------------- lookups
    def _tokens(self, T: float, decode: bool):
        return (self._tok_dec if decode and T <= self._tok_dec.xs[-1] else self._tok_pre).at(T)

    def _prompt_attention(self, P: float):
        return self._prompt_attn.at(P) if P > 0 else (0.0, 0.0, 0.0)

    def step(self, chunks=(), decode_seqs: int = 0, decode_ctx_sum: float = 0.0, extra_tokens: int = 0) -> Cost:
        """One step: ``chunks`` = [(cached tokens c0, new tokens q), ...] of prompts;
        ``decode_seqs`` sequences decoding one token each over ``decode_ctx_sum`` cached
        tokens in all; ``extra_tokens`` more rows through the token-linear ops (speculative
        verification). Returns the step's wall time after any power-limit stretch."""
        T = sum(q for _, q in chunks) + decode_seqs + extra_tokens
        if T <= 0:
            return Cost(0.0, 0.0, 0.0)
        decode_only = not chunks
        t, k, e = self._tokens(T, decode_only)
        for c0, q in chunks:
            a1, k1, e1 = self._prompt_attention(c0 + q)
            a0, k0, e0 = self._prompt_attention(c0)
            t, k, e = t + a1 - a0, k + k1 - k0, e + e1 - e0
        t += self._attn_launch[0 if chunks else 1]
        if decode_seqs:
            at, ak, ae = self._dec_attn.at(decode_seqs, decode_ctx_sum / decode_seqs)
            t, k, e = t + at, k + ak, e + ae
        if self.dispatch_ahead and not (decode_only and self.decode_graphs):
            launches = t - k
            t = max(launches, k + launches * self._gap_share[1 if decode_only else 0])
        if decode_only and self.decode_graphs:
            k = t
        # board power of a device over its stage: above the limit the clock drops (see
        # power.power_limit); then a pipeline runs its stages in turn, plus the hops
        gap = t - k
        if t > 0:
            t *= float(power_limit(t, gap, e, self.power))
        stretched_kernels = t - gap
        t = t * self.pp + (self.pp - 1) * (self._hop[0] * T + self._hop[1])
        t += self.sequence_overhead * (decode_seqs + len(chunks))
        n = self.devices
        # activity energy plus busy power over the kernels and its gap share over the rest
        e += busy_energy(self.power, k, t - stretched_kernels)
        return Cost(t, k * n, e * n)

    def kv_transfer_time(self, tokens: int) -> float:
        """Seconds to send ``tokens`` of one request's KV cache over the host link."""
        if self.link_bw is None:
            raise CodesignError(f"{self.spec.name} declares no interconnect.host_link: disaggregated serving "
                                "sends the KV cache over it", field="interconnect.host_link")
        return (tokens + self.state_tokens) * self.kv_bytes_per_token * self.devices / self.link_bw + self.link_latency


def _sum_groups(spec, p, pr, groups: list[list], wtot, kvtot, pp: int, rt) -> _Sums:
    """Time, kernel time and activity energy of each op list in ``groups`` (one engine call)."""
    ops = [o for g in groups for o in g]
    if not ops:
        z = np.zeros(len(groups))
        return _Sums(z, z, z)
    tab = op_table(ops, rt.fuse, rt.kernels_per_op)
    t = op_terms(spec, p, tab, pr, wtot, kvtot)
    count = stage_counts(tab, pp)
    kern = t.a.max(0)[0] * count
    ovh = t.overhead[0] * count
    energy = t.energy_a[0] * count
    starts = np.cumsum([0] + [len(g) for g in groups])[:-1]
    nonempty = np.array([len(g) > 0 for g in groups])
    out = []
    for arr in (kern + ovh, kern, energy):
        s = np.add.reduceat(arr, np.minimum(starts, len(ops) - 1))
        out.append(np.where(nonempty, s, 0.0))
    return _Sums(*out)


_PER_SEQUENCE = CONTEXT_KINDS + STATE_KINDS


def _split(ops, attention: bool):
    """The attention core's ops and the recurrent mixers' state ops (priced per prompt and
    per decode sequence, not per token), or the others. By name: the graph names these ops
    by their kind, and a softmax elsewhere (the MoE router's) is priced by tokens."""
    return [o for o in ops if (o.name in _PER_SEQUENCE) == attention]


def step_cost(hardware, model, scenario: Scenario | None = None, compression: Compression | None = None, *,
              max_tokens: int = 8192, max_seqs: int = 256, max_context: int | None = None,
              memory_utilization: float = 0.9, operating_point: str | None = None) -> StepCost:
    """Price tables for one engine of ``scenario.tp`` x ``scenario.pp`` devices.

    ``max_tokens``: most tokens in one step (the scheduler's token budget); ``max_seqs``:
    most sequences; ``max_context``: longest prompt + output (default: the model's limit,
    at most 131072); ``memory_utilization``: the share of device memory the engine may use
    (vLLM's gpu_memory_utilization, 0.9 by default), the KV cache gets what weights and the
    peak activations leave."""
    spec = load_hardware(hardware)
    sc = scenario or Scenario()
    served = effective_model(load_workload(model), compression)
    rt = load_runtime(sc.runtime)
    if rt.attention and rt.attention != sc.attention:
        sc = sc.model_copy(update={"attention": rt.attention})
    if served.architecture != "decoder":
        raise CodesignError(f"{served.name} is an encoder: serving simulates generation", field="workload")
    max_context = int(max_context or min(served.max_position or 131072, 131072))
    max_tokens, max_seqs = int(max_tokens), int(max_seqs)
    p, _ = _params(spec, {}, operating_point, rt)
    pr = prices(spec, p, served, sc, ([compression], np.zeros(1, dtype=int)), set(), rt)
    w, kv1, kv_tokens, state_tokens = _kv_budget(spec, p, pr, served, sc, max_tokens, max_context, memory_utilization)
    kvtot = np.array([kv1 * min(kv_tokens, max_seqs * max_context)])
    tables = _price_tables(spec, p, pr, served, sc, rt, np.array([w]), kvtot, max_tokens, max_seqs, max_context)
    return StepCost(
        spec=spec, model=served, scenario=sc, devices=sc.tp * sc.pp, kv_capacity_tokens=kv_tokens,
        kv_bytes_per_token=kv1, weight_bytes=w, max_tokens=max_tokens, max_seqs=max_seqs, max_context=max_context,
        sequence_overhead=float(p["runtime.sequence_overhead"][0]), request_overhead=float(p["runtime.request_overhead"][0]),
        power={k: float(p[k][0]) for k in ("power.static", "power.busy", "power.gap_share", "power.limit")},
        price=float(p["price"][0]),
        link_bw=float(p["interconnect.host_link.bandwidth"][0]) if "interconnect.host_link.bandwidth" in p else None,
        link_latency=float(p.get("interconnect.host_link.latency", np.zeros(1))[0]),
        **tables, _hop=_hops(spec, p, sc, served, pr), pp=sc.pp, decode_graphs=rt.decode_graphs,
        dispatch_ahead=rt.dispatch_ahead, state_tokens=state_tokens,
        _gap_share=tuple(float(min(p["runtime.device_gap"][0] / max(host_launch(p, decode)[0], 1e-30), 1.0))
                         for decode in (False, True)))


def _kv_budget(spec, p, pr, served, sc, max_tokens: int, max_context: int, memory_utilization: float):
    """(weight bytes, KV bytes per token, tokens of KV cache, a sequence's fixed state in KV
    tokens) per device: the cache gets what the weights and the peak activations of a
    ``max_tokens`` step leave of the usable memory."""
    one = sc.model_copy(update={"batch": 1, "prompt": 1, "generate": 0, "dp": 1})
    w, kv1, _ = priced_footprint(served, one, pr)
    _, _, act = priced_footprint(served, one.model_copy(update={"prompt": max_tokens}), pr)
    cap = float(capacity(spec, p)[0])
    state1 = float(np.asarray(state_bytes(served, pr.a_bytes[:, 0], sc.tp, sc.pp)).reshape(-1)[0])
    w, kv1, act = float(w[0]), float(kv1[0]) - state1, float(np.asarray(act).reshape(-1)[0])
    budget = cap * memory_utilization - w - act
    if budget < kv1 * max(1, min(max_context, max_tokens)) + state1:
        raise CodesignError(f"{served.name} does not fit on {spec.name} with tp={sc.tp} pp={sc.pp}: weights "
                            f"{w / 1e9:.1f} GB + activations {act / 1e9:.1f} GB of {cap * memory_utilization / 1e9:.1f} "
                            "GB usable leave no room for the KV cache of one prompt (raise --tp/--pp, compress, "
                            "or lower --max-batched-tokens)", field="hardware")
    return w, kv1, int(budget // kv1), int(np.ceil(state1 / kv1))


def _price_tables(spec, p, pr, served, sc, rt, wtot, kvtot, max_tokens: int, max_seqs: int, max_context: int) -> dict:
    """G, F and A on their grids (one engine call per grid), with the attention kernels'
    launch cost taken out of F and A (StepCost adds it once per step)."""
    def sums(phase, points, attention: bool):
        """One engine call for the ops of ``phase`` at each (requests, new tokens, context)."""
        groups = [_split(_phase_ops(served, sc, phase, r, q, ctx), attention) for r, q, ctx in points]
        return _sum_groups(spec, p, pr, groups, wtot, kvtot, sc.pp, rt)

    # token-linear ops, on the prefill graph (one request of T tokens) and the decode graph
    t_pre, t_dec = _grid(max_tokens), _grid(max_seqs)
    g = sums("prefill", [(1, T, T) for T in t_pre], False)
    gd = sums("decode", [(B, 1, 1) for B in t_dec], False)
    # prompt attention F(P), whole causal prompts of one request
    p_grid = _grid(max_context, dense=16, ratio=1.15)
    fa = sums("prefill", [(1, P, P) for P in p_grid], True)
    # decode attention A(B, c) on a B x c grid
    b_grid = _grid(max_seqs, dense=8, ratio=1.3)
    c_grid = _grid(max_context, dense=1, ratio=1.6)
    da = sums("decode", [(B, 1, c) for B in b_grid for c in c_grid], True)
    nb, nc = len(b_grid), len(c_grid)
    # the attention kernels' launch cost is paid once per step whatever its size: take it out
    # of F (differences cancel it) and A, and add it once
    launch_pre = float(fa.time[0] - fa.kernels[0])
    launch_dec = float(da.time[0] - da.kernels[0])
    return dict(
        _tok_pre=_Curve(t_pre, g.time.tolist(), g.kernels.tolist(), g.energy.tolist()),
        _tok_dec=_Curve(t_dec, gd.time.tolist(), gd.kernels.tolist(), gd.energy.tolist()),
        _prompt_attn=_Curve(p_grid, (fa.time - (fa.time[0] - fa.kernels[0])).tolist(), fa.kernels.tolist(),
                            fa.energy.tolist()),
        _dec_attn=_Surface(b_grid, c_grid, (da.time - (da.time[0] - da.kernels[0])).reshape(nb, nc).tolist(),
                           da.kernels.reshape(nb, nc).tolist(), da.energy.reshape(nb, nc).tolist()),
        _attn_launch=(launch_pre, launch_dec))


def _hops(spec, p, sc, served, pr) -> tuple[float, float]:
    """Pipeline hop between stages: seconds per token and fixed (0 without pp)."""
    if sc.pp <= 1:
        return 0.0, 0.0
    fixed = float(_pipeline_hop(spec, p, sc, 0, served, pr)[0])
    return float(_pipeline_hop(spec, p, sc, 1, served, pr)[0]) - fixed, fixed
