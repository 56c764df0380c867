"""The kernel runner: run any operator (or a whole transformer block) as a real kernel and time it.

    >>> from codesign.validate.runner import run_op
    >>> m = run_op(op, backend="numpy", dtype="fp32")      # op: codesign.workload.ops.Op
    >>> m.seconds, m.timing.p10_s, m.timing.cpu_median_s

Every input is a fresh, cache-cold tensor (a rotated pool larger than the LLC, see
:mod:`.timing`), so the measurement is the standalone kernel the engine's ``op_times``
predicts. ``check_op`` compares a kernel's output with a float64 reference.

The transformer block (``run_block``) executes one layer's ops from the operator graph
(:mod:`codesign.workload.graph` names them) with real data flow: norm -> fused QKV GEMM
-> RoPE on q and k -> attention (fused, or score/softmax/context) -> O GEMM -> residual
-> norm -> FFN (fused gate+up GEMM, activation, multiply, down) -> residual; BERT-style
post-norm and GPT-J-style parallel blocks too. Decode reads a KV cache of ``context``
tokens and writes the new token's K/V into it. The head split/merge transposes between
kernels are real copies (as in Hugging Face's eager code) and are timed with the block.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import CodesignError
from ..workload.ops import RUNNABLE_KINDS, Op
from .kernels import Kernel, Operand, reference
from .kernels import backend as get_backend
from .timing import COLD_FACTOR, GRAPH_CALLS_MAX, Timing, measure, pool_size, thread_limit

# Never allocate more than this for one op's rotating pool (sets of at least 2 x LLC are
# already cold; the cap only bites for giant single sets, which then use one set).
POOL_BYTES_MAX = 2 * 2**30
# Relative Frobenius error allowed against the float64 reference, per datatype.
RTOL = {"fp64": 1e-10, "fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2, "int8": 5e-2}


CHECK_LLC = 256 * 1024


@dataclass(frozen=True)
class Measurement:
    op: Op
    backend: str
    device: str
    dtype: str
    timing: Timing
    note: str = ""

    @property
    def seconds(self) -> float:
        return self.timing.median_s


def _itemsize(b, kern: Kernel, operand) -> int:
    if operand.role == "index":
        return 8
    if b.name == "torch":
        return b.t_dtype(kern.dtype).itemsize if not (kern.dtype == "int8" and operand.name == "x"
                                                      and b.device == "cpu") else 4
    return np.dtype(b.np_dtype(kern.dtype)).itemsize


def set_bytes(b, kern: Kernel) -> int:
    """Bytes of one input set (the operands that rotate)."""
    return sum(o.numel * _itemsize(b, kern, o) for o in kern.operands if not o.shared)


def build_pool(b, kern: Kernel, rng: np.random.Generator, llc: int, count: int | None = None) -> list[tuple]:
    """Input sets for ``kern``: enough that each call's operands are cold (see timing.pool_size)."""
    sb = set_bytes(b, kern)
    if count is None:
        count = cold_sets(sb, llc, GRAPH_CALLS_MAX if b.capture is not None else 32768)
    cols = []
    for o in kern.operands:
        cols.append(b.alloc(kern, o, 1, rng) * count if o.shared else b.alloc(kern, o, count, rng))
    return list(zip(*cols))


def cold_sets(sb: int, llc: int, cap: int = 32768) -> int:
    """Input sets to rotate: one when a single set already streams >= COLD_FACTOR x LLC, else enough
    (at most ``cap``: a CUDA graph replays every set once, so its call count bounds the pool)."""
    if sb >= COLD_FACTOR * llc:
        return 1
    return max(1, min(pool_size(sb, llc, cap=cap), POOL_BYTES_MAX // max(sb, 1)))


def run_op(op: Op, *, backend: str = "numpy", device: str = "cpu", dtype: str = "fp32", threads: int = 1,
           seed: int = 0, llc: int | None = None, **measure_kw) -> Measurement:
    """Time one invocation of ``op`` as a real kernel (median over cold-input calls); the
    input pool streams past ``llc`` bytes (default: the device's last-level cache)."""
    b = get_backend(backend, device)
    kern = b.kernel(op, dtype)
    rng = np.random.default_rng(seed)
    pool = build_pool(b, kern, rng, llc or b.llc())
    with thread_limit(threads, backend):
        t = measure(kern.fn, pool, sync=b.sync, event_timer=b.event_timer, capture=b.capture, threads=threads,
                    **measure_kw)
    return Measurement(op, backend, b.device, dtype, t, kern.note)


def check_op(op: Op, *, backend: str = "numpy", device: str = "cpu", dtype: str = "fp32", seed: int = 0) -> dict:
    """Run ``op`` once and compare with the float64 reference: {'rel_error', 'rtol', 'ok'}.

    rel_error = ||out - ref||_F / ||ref||_F, the reference evaluated on the very values
    the kernel read (after rounding to ``dtype``).
    """
    b = get_backend(backend, device)
    kern = b.kernel(op, dtype, llc=CHECK_LLC)      # numerics need no cold cache: small tables
    rng = np.random.default_rng(seed)
    inputs = build_pool(b, kern, rng, CHECK_LLC, count=1)[0]
    out = b.to_numpy(kern.fn(*inputs)).astype(np.float64)
    ref = reference(op, *[b.canonical(kern, o, x) for o, x in zip(kern.operands, inputs)])
    err = rel_error(out, ref)
    tol = RTOL[dtype]
    return {"rel_error": err, "rtol": tol, "ok": bool(err <= tol), "shape": out.shape}


def rel_error(out, ref) -> float:
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    if out.shape != ref.shape:
        raise CodesignError(f"kernel output shape {out.shape} differs from the reference {ref.shape}")
    den = float(np.linalg.norm(ref))
    return float(np.linalg.norm(out - ref)) / (den if den > 0 else 1.0)


# -- the transformer block --------------------------------------------------------

@dataclass(frozen=True)
class LayerPlan:
    """One layer's ops (by graph name) and the dimensions the data flow needs."""
    ops: dict                 # name -> Op
    requests: int
    q_len: int
    context: int
    q_heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    ffn: int
    gated: bool
    pre_norm: bool
    parallel: bool
    fused: bool
    phase: str
    order: tuple = field(default_factory=tuple)

    @property
    def tokens(self) -> int:
        return self.requests * self.q_len

    @property
    def group(self) -> int:
        return self.q_heads // self.kv_heads if self.q_heads % self.kv_heads == 0 else 1


def layer_ops(ops, count: int | None = None) -> tuple[Op, ...]:
    """The ops of one dense transformer layer from a graph phase (those repeated per layer)."""
    ops = [o for o in ops if o.kind in RUNNABLE_KINDS]
    if count is None:
        counts = [o.count for o in ops if o.name == "qkv_proj"]
        if not counts:
            raise CodesignError("no qkv_proj op in the graph: cannot find a transformer layer")
        count = counts[0]
    return tuple(o for o in ops if o.count == count and "moe" not in o.tags)


def plan_layer(ops) -> LayerPlan:
    """Read a layer's dimensions back from its ops (graph.py's naming and shapes)."""
    by = {o.name: o for o in ops}
    need = ["qkv_proj", "o_proj", "ffn_residual"]
    missing = [n for n in need if n not in by]
    if missing or not ({"attention"} <= set(by) or {"attn_score", "softmax", "attn_context"} <= set(by)):
        raise CodesignError(f"the block runner needs a dense attention layer; missing {missing or 'attention ops'}")
    if any("moe" in o.tags for o in ops):
        raise CodesignError("the block runner does not run MoE layers")
    fused = "attention" in by
    att = by["attention"] if fused else by["attn_score"]
    hd = att.k
    qkv, o = by["qkv_proj"], by["o_proj"]
    qh = o.k // hd
    kvh = (qkv.n // hd - qh) // 2
    phase = qkv.phase
    ctx = att.n
    q_len = 1 if phase == "decode" else ctx
    tokens = qkv.m
    if tokens % q_len:
        raise CodesignError(f"qkv_proj has {tokens} tokens, not a multiple of the query length {q_len}")
    gated = "ffn_gate_up" in by
    up = by["ffn_gate_up"] if gated else by.get("ffn_up")
    if up is None or "ffn_down" not in by:
        raise CodesignError("the block runner needs ffn_up (or ffn_gate_up) and ffn_down ops")
    rope = by.get("rope")
    if rope is not None and rope.elements != tokens * (qh + kvh) * hd:
        raise CodesignError("rope over part of the head dimension (partial rotary) is not run by the block runner")
    return LayerPlan(ops=by, requests=tokens // q_len, q_len=q_len, context=ctx, q_heads=qh, kv_heads=kvh,
                     head_dim=hd, hidden=qkv.k, ffn=by["ffn_down"].k, gated=gated, pre_norm="attn_norm" in by,
                     parallel="attn_residual" not in by, fused=fused, phase=phase, order=tuple(o.name for o in ops))


def runnable_op(op: Op, plan: LayerPlan | None = None, *, head_dim: int | None = None) -> Op:
    """The op with the shape details the runner needs and the graph leaves implicit:
    RoPE's head width (``k``) and token count (``m``)."""
    if op.kind == "rope" and not op.k:
        hd = head_dim or (plan.head_dim if plan else 128)
        m = plan.tokens if plan else 0
        return replace(op, k=hd, m=m)
    return op


class _Glue:
    """Layout changes between kernels (head split/merge), per array library."""

    def __init__(self, lib: str):
        self.torch = lib == "torch"

    def permute(self, t, axes):
        return t.permute(*axes) if self.torch else t.transpose(axes)

    def contig(self, t):
        return t.contiguous() if self.torch else np.ascontiguousarray(t)

    def heads(self, t, r, s, h, d):
        """(r*s, h*d) -> (r*h, s, d)."""
        return self.contig(self.permute(t.reshape(r, s, h, d), (0, 2, 1, 3))).reshape(r * h, s, d)

    def merge(self, t, r, s, h, d):
        """(r*h, s, d) -> (r*s, h*d)."""
        return self.contig(self.permute(t.reshape(r, h, s, d), (0, 2, 1, 3))).reshape(r * s, h * d)


def _forward(p: LayerPlan, call: Callable, g: _Glue, x, kcache, vcache):
    """One layer. ``call(name, *activations)`` runs op ``name`` with its bound weights."""
    r, s, H, KV, d = p.requests, p.q_len, p.q_heads, p.kv_heads, p.head_dim
    grp = p.group
    a_in = call("attn_norm", x) if p.pre_norm else x
    qkv = call("qkv_proj", a_in)
    qk = g.heads(qkv[:, :(H + KV) * d], r, s, H + KV, d)            # (r*(H+KV), s, d)
    if "rope" in p.ops:
        qk = call("rope", qk)
    qk = qk.reshape(r, H + KV, s, d)
    q = qk[:, :H].reshape(r * H, s, d)
    k = qk[:, H:].reshape(r * KV, s, d)
    v = g.heads(qkv[:, (H + KV) * d:], r, s, KV, d)
    if p.phase == "decode":                                       # write the new token, read the cache
        kcache[:, -1:] = k
        vcache[:, -1:] = v
        K, V = kcache, vcache
    else:
        K, V = k, v
    if grp > 1:                                                     # GQA packing: rows = group x q_len
        q = q.reshape(r * KV, grp * s, d)
    if p.fused:
        att = call("attention", q, K, V)
    else:
        att = call("attn_context", call("softmax", call("attn_score", q, K)), V)
    att = g.merge(att.reshape(r * H, s, d), r, s, H, d)
    o = call("o_proj", att)
    if p.parallel:
        f_in = call("ffn_norm", x) if "ffn_norm" in p.ops else a_in
    else:
        x = call("attn_residual", x, o)
        if p.pre_norm:
            f_in = call("ffn_norm", x)
        else:
            x = call("attn_post_norm", x)
            f_in = x
    if p.gated:
        gu = call("ffn_gate_up", f_in)
        hmid = call("ffn_mul", call("ffn_act", gu[:, :p.ffn]), gu[:, p.ffn:])
    else:
        hmid = call("ffn_act", call("ffn_up", f_in))
    dn = call("ffn_down", hmid)
    out = call("ffn_residual", x, o, dn) if p.parallel else call("ffn_residual", x, dn)
    if not p.pre_norm:
        out = call("ffn_post_norm", out)
    return out


def _block_ops(p: LayerPlan) -> dict:
    """name -> runnable Op for every op the block calls (3-input residual for parallel blocks)."""
    return {n: runnable_op(o, p) for n, o in p.ops.items()}


def _bound(kern: Kernel):
    """Operands bound to the op (weights, RoPE tables); activations are the call's arguments."""
    return [i for i, o in enumerate(kern.operands) if o.role == "weights" or o.name in ("cos", "sin")]


class Block:
    """A runnable transformer layer on one backend: weights, KV cache, input, and the forward."""

    def __init__(self, ops, *, backend: str = "numpy", device: str = "cpu", dtype: str = "fp32", seed: int = 0):
        self.plan = plan_layer(ops)
        self.b = get_backend(backend, device)
        self.dtype = dtype
        self.glue = _Glue(self.b.name)
        self.rng = np.random.default_rng(seed)
        p = self.plan
        self.kernels = {}
        for name, op in _block_ops(p).items():
            if name == "rope":   # block RoPE tables are per position of one request
                op = replace(op, m=p.q_len, elements=p.requests * (p.q_heads + p.kv_heads) * p.q_len * p.head_dim)
            if name == "ffn_residual" and p.parallel:
                op = replace(op, act_in_elems=3 * op.elements)
            self.kernels[name] = self.b.kernel(op, dtype)

    def _weights(self, count: int) -> list[dict]:
        sets: list[dict[str, list]] = [dict() for _ in range(count)]
        for name, kern in self.kernels.items():
            for i in _bound(kern):
                arrs = self.b.alloc(kern, kern.operands[i], count, self.rng)
                for s, a in zip(sets, arrs):
                    s.setdefault(name, []).append(a)
        return sets

    def _state(self, count: int) -> list[tuple]:
        """(x, kcache, vcache) per set: x (tokens, hidden); caches (r*KV, context, d) for decode."""
        p = self.plan
        xk = self.kernels["qkv_proj"]
        xs = self.b.alloc(xk, Operand("x", (p.tokens, p.hidden), "act"), count, self.rng)
        if p.phase != "decode":
            return [(x, None, None) for x in xs]
        akern = self.kernels.get("attention") or self.kernels["attn_score"]
        shape = (p.requests * p.kv_heads, p.context, p.head_dim)
        ks = self.b.alloc(akern, Operand("kcache", shape, "kv", scale=p.head_dim ** -0.25), count, self.rng)
        vs = self.b.alloc(akern, Operand("vcache", shape, "kv"), count, self.rng)
        return list(zip(xs, ks, vs))

    def set_bytes(self) -> int:
        p = self.plan
        isz = 2 if self.dtype in ("fp16", "bf16") else 8 if self.dtype == "fp64" else 4
        w = sum(k.operands[i].numel for k in self.kernels.values() for i in _bound(k))
        kv = 2 * p.requests * p.kv_heads * p.context * p.head_dim if p.phase == "decode" else 0
        return isz * (w + kv + p.tokens * p.hidden)

    def pool(self, count: int | None = None) -> list[tuple]:
        if count is None:
            count = cold_sets(self.set_bytes(), self.b.llc())
        return list(zip(self._state(count), self._weights(count)))

    def forward(self, state, weights):
        x, kc, vc = state

        def call(name, *acts):
            return self.kernels[name].fn(*acts, *weights.get(name, ()))
        return _forward(self.plan, call, self.glue, x, kc, vc)

    def reference(self, state, weights) -> np.ndarray:
        """The same layer composed from the float64 references of each op."""
        b = self.b
        x, kc, vc = state
        canon = {}
        for name, kern in self.kernels.items():
            idx = _bound(kern)
            canon[name] = [b.canonical(kern, kern.operands[i], a) for i, a in zip(idx, weights.get(name, ()))]

        def call(name, *acts):
            return reference(self.kernels[name].op, *acts, *canon[name])
        f64 = (lambda a: None if a is None else b.to_numpy(a).astype(np.float64))
        return _forward(self.plan, call, _Glue("numpy"), f64(x), f64(kc), f64(vc))


def run_block(ops, *, backend: str = "numpy", device: str = "cpu", dtype: str = "fp32", threads: int = 1,
              seed: int = 0, **measure_kw) -> Measurement:
    """Time one layer's forward (cold weights and KV cache, as in a real multi-layer pass)."""
    blk = Block(ops, backend=backend, device=device, dtype=dtype, seed=seed)
    pool = blk.pool()
    with thread_limit(threads, backend):
        t = measure(blk.forward, pool, sync=blk.b.sync, event_timer=blk.b.event_timer, capture=blk.b.capture,
                    threads=threads, **measure_kw)
    qkv = blk.plan.ops["qkv_proj"]
    return Measurement(replace(qkv, name="block", kind="block"), backend, blk.b.device, dtype, t,
                       f"{blk.plan.phase} block: {len(blk.kernels)} ops")


def check_block(ops, *, backend: str = "numpy", device: str = "cpu", dtype: str = "fp32", seed: int = 0) -> dict:
    """Block forward vs the composition of float64 op references on the same values."""
    blk = Block(ops, backend=backend, device=device, dtype=dtype, seed=seed)
    (state, weights), = blk.pool(count=1)
    ref_state = tuple(None if a is None else (a.clone() if blk.b.name == "torch" else a.copy()) for a in state)
    out = blk.b.to_numpy(blk.forward(state, weights)).astype(np.float64)
    ref = blk.reference(ref_state, weights)
    err = rel_error(out, ref)
    return {"rel_error": err, "rtol": RTOL[dtype] * 3, "ok": bool(err <= RTOL[dtype] * 3)}
