"""The operator graph: the kernels of one prefill pass and one decode step, per device.

Shapes are those one device of a tensor-parallel group runs (heads and FFN columns
split ``tp`` ways, Megatron-style: column-parallel QKV/gate/up, row-parallel O/down,
an all-reduce after each row-parallel GEMM). ``count`` says how many times the op
runs per forward pass (usually the layer count); pipeline stages divide that later.
Element counts are datatype-free: the engine prices them with the bytes per element
of each tensor class (weights / activations / KV cache) after compression.

FLOP conventions (Kaplan et al. 2020; Chinchilla appendix F): a GEMM is 2·m·n·k;
attention is 4·q·c·d per head (scores + context). Causal prefill with a fused kernel
skips the masked half (FlashAttention-2 counts it so); the unfused path computes the
full square and masks it, as PyTorch eager attention does.

Hybrids (``layer_pattern``) are built block by block, grouped by kind: attention, recurrent
mixers (Gated DeltaNet, Yang et al. 2024, arXiv 2412.06464; Mamba-2, Dao & Gu 2024, arXiv
2405.21060: in/out projections, a short causal convolution, the recurrence over a fixed state
per sequence; ``_recurrent_block``), dense FFNs and MoE.

Neglected: bias adds (fused into GEMM epilogues; their bytes are counted as weights),
dropout, sampling, the LM-head all-gather (B x V values), MoE load imbalance (routing is
taken as uniform).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypedDict

from .ops import Op
from .scenario import Scenario
from .schema import STATE_BYTES, ModelSpec

# transcendental evaluations per element of each activation function
_ACT_TRANSCENDENTALS = {"silu": 1, "gelu": 1, "gelu_tanh": 1, "relu": 0, "relu2": 0}
# arithmetic per element, counted as FLOPs (exp/erf counted separately as transcendentals)
_ACT_FLOPS = {"silu": 4, "gelu": 8, "gelu_tanh": 8, "relu": 1, "relu2": 2}
_NORM_FLOPS = {"rmsnorm": 4, "layernorm": 7}   # per element: square/sum/scale/weight (+ mean, bias)


@dataclass(frozen=True)
class Graph:
    model: ModelSpec
    scenario: Scenario
    prefill: tuple[Op, ...]
    decode: tuple[Op, ...]        # one decode step at context = scenario.prompt (slopes in d_*)

    def phase(self, name: str) -> tuple[Op, ...]:
        return self.prefill if name == "prefill" else self.decode


@dataclass(frozen=True)
class _Dims:
    """Per-device dimensions under tensor parallelism."""
    h: int
    hd: int
    q_heads: int       # query heads on this device
    kv_heads: int      # KV heads on this device (replicated when kv_heads < tp)
    ffn: int           # dense FFN columns on this device
    vocab: int         # LM-head columns on this device (vocab-parallel)


def _dims(model: ModelSpec, tp: int) -> _Dims:
    return _Dims(h=model.hidden_size, hd=model.hd, q_heads=math.ceil(model.num_heads / tp),
                 kv_heads=math.ceil(model.kv_heads / tp), ffn=math.ceil(model.ffn_size / tp),
                 vocab=math.ceil(model.vocab_size / tp))


class _PhaseFields(TypedDict):
    """Op fields every attention operator of one call shares."""
    phase: str
    count: int
    context: int


def _gemm(name, phase, count, m, k, n, batch=1, bias=0, weights=True, tags=()) -> Op:
    """A GEMM ``batch x (m x k) @ (k x n)``; the right operand is a weight matrix."""
    return Op(name=name, kind="gemm", phase=phase, count=count, batch=batch, m=m, n=n, k=k,
              flops=2.0 * batch * m * n * k, weight_elems=float(batch * k * n + bias) if weights else 0.0,
              act_in_elems=float(batch * m * k), act_out_elems=float(batch * m * n), tags=tuple(tags))


def _vector(name, kind, phase, count, elements, impl="", flops_per=1.0, trans_per=0.0, inputs=1, m=0, n=0,
            weights=0.0, tags=()) -> Op:
    return Op(name=name, kind=kind, phase=phase, count=count, impl=impl, m=m, n=n, elements=int(elements),
              flops=flops_per * elements, transcendentals=trans_per * elements, weight_elems=float(weights),
              act_in_elems=float(inputs * elements), act_out_elems=float(elements), tags=tuple(tags))


def _norm(name, model, phase, count, rows) -> Op:
    h = model.hidden_size   # one rsqrt per row
    return _vector(name, "norm", phase, count, rows * h, impl=model.norm, flops_per=_NORM_FLOPS[model.norm],
                   trans_per=1.0 / h, m=rows, n=h, weights=h * (2 if model.norm == "layernorm" else 1))


def _pass_keys(prompt: int, requests: int, pass_tokens: int | None, window: int | None, scope: str,
               fused: bool) -> float | None:
    """Keys per prompt query that a causal prefill scores when its physical passes change the
    whole-prompt figure (None: they do not). Pass k (1-based) of q = prompt / n tokens per
    request scores its q queries against the k*q keys cached so far, or, where a windowed
    layer scores its whole cache (Runtime.prefill_window 'cache'), against at most the window
    plus its own q cells. An unfused pass computes that whole masked rectangle; a fused one
    skips the tiles past the diagonal of its own block (q/2 keys per query). Summed over the
    passes: unfused and unwindowed, q (n + 1) / 2 per query, P at one pass (the full square)
    and near P/2 at many; fused and unwindowed passes telescope to the whole prompt's (P+1)/2,
    as a window that bounds every query's keys (Runtime.prefill_window 'window') does."""
    n = max(math.ceil(requests * prompt / pass_tokens), 1) if pass_tokens else 1
    cache_span = window is not None and scope == "cache"
    if (fused or window is not None or n == 1) and not cache_span:
        return None
    q = prompt / n
    limit = window + q if window is not None and cache_span else math.inf
    span = [min(k * q, limit) for k in range(1, n + 1)]
    return sum(s - (q / 2 if fused else 0.0) for s in span) / n


def _attention(model: ModelSpec, d: _Dims, phase: str, count: int, requests: int, q_len: int, context: int,
               causal: bool, fused: bool, window: int | None = None, cached_per_token: float | None = None,
               slots: int | None = None, pass_tokens: int | None = None, scope: str = "window") -> list[Op]:
    """Attention of ``q_len`` new tokens per request over ``context`` keys.

    Grouped-query attention is packed the way FlashAttention/FlashDecoding run it: the
    query heads that share a KV head form the rows of one product (batch = requests x
    KV heads, m = group x q_len), so K and V are read once per KV head.

    ``slots``: a fixed-shape compiled graph's KV length (Scenario.kv_slots). Its cache is a
    graph input of that many positions: every pass reads it whole and scores every position
    (the unused ones masked, no tile skipped), so the work neither grows with the sequence
    nor shrinks for a short one (AI Hub's model docstring: a longer context_length "hurts
    both time-to-first-token and tokens-per-second").

    ``pass_tokens``, ``scope``: a prompt run in physical passes (Scenario.pass_tokens) and what
    a windowed layer scores in each (Scenario.window_scope); see _pass_keys.
    """
    group = d.q_heads // d.kv_heads if d.q_heads % d.kv_heads == 0 else 1
    batch = requests * (d.kv_heads if group > 1 else d.q_heads)
    m = group * q_len if group > 1 else q_len
    hd = d.hd
    decode = phase == "decode"
    # keys each query attends: causal prefill averages (c+1)/2 when fused kernels skip masked tiles
    ctx = max(slots, context) if slots else context
    ctx = min(ctx, window) if window else ctx
    eff_ctx = (ctx + 1) / 2 if (causal and fused and not decode and not slots) else ctx
    keys = None if (decode or slots or not causal) else _pass_keys(q_len, requests, pass_tokens, window, scope, fused)
    if keys is not None:     # fused: keys per query attended; unfused: the rectangle's width
        eff_ctx = keys
        ctx = min(context, window + q_len) if (fused and window) else max(round(keys), 1)
    grows = decode and not slots and not (window and context >= window)   # context still grows per step
    slope = 1.0 if grows else 0.0
    q_elems = requests * q_len * d.q_heads * hd
    # cache elements per token: K and V of each KV head, or what the caller caches (MLA's latent)
    per_token = cached_per_token if cached_per_token is not None else d.kv_heads * hd * 2
    kv_new = requests * q_len * per_token                      # written to the cache
    # the cache read: decode's whole context; a compiled prompt pass's cache input beside its own keys
    cached = ctx if decode else (max(ctx - q_len, 0) if slots else 0)
    kv_read = float(requests * per_token * cached)
    fresh = q_len if slots else ctx                              # prefill: K/V are fresh activations
    kv_in = 0.0 if decode else requests * fresh * d.kv_heads * hd * 2
    score_elems = requests * d.q_heads * q_len * ctx
    base = _PhaseFields(phase=phase, count=count, context=context if decode else 0)
    if fused:
        return [Op(name="attention", kind="attention", impl="fused", batch=batch, m=m, n=ctx, k=hd,
                   flops=4.0 * requests * d.q_heads * q_len * eff_ctx * hd,
                   transcendentals=float(requests * d.q_heads * q_len * eff_ctx),
                   act_in_elems=float(q_elems + kv_in), act_out_elems=float(q_elems),
                   kv_read_elems=float(kv_read), kv_write_elems=float(kv_new),
                   d_flops=4.0 * requests * d.q_heads * q_len * hd * slope,
                   d_transcendentals=float(requests * d.q_heads * q_len) * slope,
                   d_kv_read_elems=float(requests * per_token) * slope, d_n=slope, **base)]
    half_kv, d_half = kv_read / 2, requests * per_token / 2 * slope
    return [
        Op(name="attn_score", kind="attn_score", batch=batch, m=m, n=ctx, k=hd,
           flops=2.0 * requests * d.q_heads * q_len * ctx * hd,
           act_in_elems=float(q_elems + kv_in / 2), act_out_elems=float(score_elems),
           kv_read_elems=float(half_kv), kv_write_elems=float(kv_new),
           d_flops=2.0 * requests * d.q_heads * q_len * hd * slope, d_kv_read_elems=float(d_half),
           d_act_out_elems=float(requests * d.q_heads * q_len) * slope, d_n=slope, **base),
        Op(name="softmax", kind="softmax", impl="softmax", m=requests * d.q_heads * q_len, n=ctx,
           elements=int(score_elems), flops=5.0 * score_elems, transcendentals=float(score_elems),
           act_in_elems=float(score_elems), act_out_elems=float(score_elems),
           d_flops=5.0 * requests * d.q_heads * q_len * slope,
           d_transcendentals=float(requests * d.q_heads * q_len) * slope,
           d_elements=float(requests * d.q_heads * q_len) * slope,
           d_act_in_elems=float(requests * d.q_heads * q_len) * slope,
           d_act_out_elems=float(requests * d.q_heads * q_len) * slope, **base),
        Op(name="attn_context", kind="attn_context", batch=batch, m=m, n=hd, k=ctx,
           flops=2.0 * requests * d.q_heads * q_len * ctx * hd,
           act_in_elems=float(score_elems + kv_in / 2), act_out_elems=float(q_elems),
           kv_read_elems=float(half_kv), d_flops=2.0 * requests * d.q_heads * q_len * hd * slope,
           d_kv_read_elems=float(d_half), d_act_in_elems=float(requests * d.q_heads * q_len) * slope,
           d_k=slope, **base),
    ]


def _ffn(model: ModelSpec, d: _Dims, phase: str, count: int, tokens: int, width: int, prefix: str = "ffn",
         batch: int = 1, tags=()) -> list[Op]:
    """Dense FFN of ``width`` columns on this device (gated: fused gate+up GEMM, act, mul)."""
    gated = model.ffn_type == "gated"
    bias = (2 * width if gated else width) if model.mlp_bias else 0
    up = _gemm(f"{prefix}_gate_up" if gated else f"{prefix}_up", phase, count, tokens, d.h,
               (2 if gated else 1) * width, batch=batch, bias=bias, tags=tags)
    elems = batch * tokens * width
    act = model.activation
    ops = [up, _vector(f"{prefix}_act", "activation", phase, count, elems, impl=act,
                       flops_per=_ACT_FLOPS[act], trans_per=_ACT_TRANSCENDENTALS[act], tags=tags)]
    if gated:
        ops.append(_vector(f"{prefix}_mul", "elementwise", phase, count, elems, impl="mul", inputs=2, tags=tags))
    ops.append(_gemm(f"{prefix}_down", phase, count, tokens, width, d.h, batch=batch,
                     bias=d.h if model.mlp_bias else 0, tags=tags))
    return ops


def _moe(model: ModelSpec, d: _Dims, sc: Scenario, phase: str, count: int, tokens: int) -> list[Op]:
    """Routed experts, uniform routing. Without expert parallelism every device holds all
    experts, each sharded ``tp`` ways. With ``ep`` > 1 each device holds E/ep whole experts
    and processes the choices routed to them from the tokens of its ep group (the tp group
    shares its tokens; an ep group wider than tp spans data-parallel replicas, whose tokens
    arrive by all-to-all). Of T·k choices over E experts, the expected number of distinct
    experts hit is E·(1 - (1 - k/E)^T); each hit expert's weights are read once."""
    moe = model.moe
    assert moe is not None          # only MoE layers come here (model.moe_layers() > 0)
    E, k, h = moe.num_experts, moe.top_k, model.hidden_size
    ops = [_gemm("router", phase, count, tokens, h, E, tags=("moe",)),
           _vector("router_softmax", "softmax", phase, count, tokens * E, impl="softmax", flops_per=5,
                   trans_per=1, m=tokens, n=E, tags=("moe",))]
    ep = sc.ep
    group_tokens = tokens * max(1, ep // sc.tp)
    experts_here = math.ceil(E / ep)
    width = model.expert_ffn if ep > 1 else math.ceil(model.expert_ffn / sc.tp)
    choices_here = group_tokens * k * experts_here / E
    hit = max(1, round(experts_here * (1.0 - (1.0 - k / E) ** group_tokens)))
    per_expert = max(1, math.ceil(choices_here / hit))
    a2a = ep > sc.tp
    # LatentMoE: the routed experts work on a latent of latent_size (projected down before the
    # dispatch and up after the combine; the projections are replicated like the router)
    lat = moe.latent_size or h
    if moe.latent_size:
        ops.append(_gemm("latent_down", phase, count, tokens, h, lat, tags=("moe",)))
    if a2a:
        ops.append(Op(name="moe_dispatch", kind="alltoall", phase=phase, count=count, elements=int(tokens * k * lat),
                      link_devices=ep // sc.tp, tags=("moe",)))
    expert_dims = d if lat == h else _Dims(h=lat, hd=d.hd, q_heads=d.q_heads, kv_heads=d.kv_heads, ffn=d.ffn,
                                           vocab=d.vocab)
    ops += _ffn(model, expert_dims, phase, count, per_expert, width, prefix="expert", batch=hit, tags=("moe",))
    if a2a:
        ops.append(Op(name="moe_combine", kind="alltoall", phase=phase, count=count, elements=int(tokens * k * lat),
                      link_devices=ep // sc.tp, tags=("moe",)))
    # each token's k expert outputs, weighted by its routing weights and summed (vLLM moe_sum,
    # llama.cpp's weight multiply and adds; an epilogue where the stack fuses elementwise ops)
    ops.append(_vector("expert_combine", "elementwise", phase, count, tokens * lat, impl="weighted_sum",
                       flops_per=2 * k, inputs=k, tags=("moe",)))
    if moe.latent_size:
        ops.append(_gemm("latent_up", phase, count, tokens, lat, h, tags=("moe",)))
    if moe.shared_experts:
        ops += _ffn(model, d, phase, count, tokens, math.ceil(moe.shared_experts * model.expert_ffn / sc.tp),
                    prefix="shared_expert", tags=("moe",))
    return ops


def _allreduce(name, phase, count, elements, tp) -> Op:
    return Op(name=name, kind="allreduce", phase=phase, count=count, elements=int(elements), link_devices=tp)


def _mla(model: ModelSpec, d: _Dims, sc: Scenario, phase: str, count: int, requests: int, q_len: int,
         context: int, window: int | None) -> list[Op]:
    """Multi-head latent attention, from the layer input to the output projection.

    Queries: a low-rank down/up projection (with a norm between). Keys/values: one shared
    down-projection to the latent (kv_lora_rank) plus a RoPE key (qk_rope_head_dim), which
    is what the cache holds. Prefill decompresses the prompt's keys and values with the
    up-projection and runs ordinary attention (head dims nope + rope for scores, v for
    values). Decode absorbs the up-projection into the query and the output (FlashMLA):
    every head attends the cached latents directly, one shared 'KV head' of
    kv_lora_rank + rope for scores and kv_lora_rank for values (DeepSeek-V2, sec. 2.1.3).
    Tensor parallelism splits the heads; the down-projections and the cache are replicated."""
    a, h, tokens = model.mla, d.h, requests * q_len
    assert a is not None            # only called when model.mla is set
    heads = d.q_heads
    nope, rope, v, r = a.qk_nope_head_dim, a.qk_rope_head_dim, a.v_head_dim, a.kv_lora_rank
    ops: list[Op] = []
    if a.q_lora_rank:
        ops += [_gemm("q_down", phase, count, tokens, h, a.q_lora_rank),
                _norm_width("q_norm", model, phase, count, tokens, a.q_lora_rank),
                _gemm("q_up", phase, count, tokens, a.q_lora_rank, heads * (nope + rope))]
    else:
        ops.append(_gemm("q_proj", phase, count, tokens, h, heads * (nope + rope)))
    ops += [_gemm("kv_down", phase, count, tokens, h, a.cached),
            _norm_width("kv_norm", model, phase, count, tokens, r),
            _vector("rope", "rope", phase, count, tokens * (heads + 1) * rope, impl="rope", flops_per=3)]
    causal, fused = model.architecture == "decoder", sc.attention == "fused"
    if phase == "prefill":
        ops.append(_gemm("kv_up", phase, count, tokens, r, heads * (nope + v)))
        mha = _Dims(h=h, hd=(nope + rope + v) // 2, q_heads=heads, kv_heads=heads, ffn=d.ffn, vocab=d.vocab)
        ops += _attention(model, mha, phase, count, requests, q_len, context, causal, fused, window,
                          cached_per_token=a.cached, slots=sc.kv_slots)
    else:   # absorbed: q_nope x W_UK per head, attention over latents, latent x W_UV per head
        ops.append(_gemm("q_absorb", phase, count, tokens, nope, r, batch=heads))
        latent = _Dims(h=h, hd=(a.cached + r) // 2, q_heads=heads, kv_heads=1, ffn=d.ffn, vocab=d.vocab)
        ops += _attention(model, latent, phase, count, requests, q_len, context, causal, fused, window,
                          cached_per_token=a.cached, slots=sc.kv_slots)
        ops.append(_gemm("v_unabsorb", phase, count, tokens, r, v, batch=heads))
    ops.append(_gemm("o_proj", phase, count, tokens, heads * v, h))
    return ops


def _norm_width(name, model, phase, count, rows, width) -> Op:
    """A norm over ``width`` features (MLA's latent and query norms)."""
    return _vector(name, "norm", phase, count, rows * width, impl=model.norm, flops_per=_NORM_FLOPS[model.norm],
                   trans_per=1.0 / width, m=rows, n=width, weights=width)


def _layer(model: ModelSpec, d: _Dims, sc: Scenario, phase: str, count: int, requests: int, q_len: int,
           context: int, moe_layer: bool, window: int | None = None) -> list[Op]:
    return (_attention_block(model, d, sc, phase, count, requests, q_len, context, window)
            + _ffn_block(model, d, sc, phase, count, requests * q_len, moe_layer))


def _attention_block(model: ModelSpec, d: _Dims, sc: Scenario, phase: str, count: int, requests: int, q_len: int,
                     context: int, window: int | None) -> list[Op]:
    """The attention sub-layer: its pre-norm, projections, attention core, residual add."""
    tokens = requests * q_len
    h, hd = d.h, d.hd
    causal = model.architecture == "decoder"
    qkv_n = (d.q_heads * (2 if model.attention_gate else 1) + 2 * d.kv_heads) * hd
    ops: list[Op] = []
    pre_norm = model.architecture == "decoder"    # BERT is post-norm: norm after each residual add
    if pre_norm:
        ops.append(_norm("attn_norm", model, phase, count, tokens))
    if model.mla is not None:
        ops += _mla(model, d, sc, phase, count, requests, q_len, context, window)
    else:
        ops.append(_gemm("qkv_proj", phase, count, tokens, h, qkv_n, bias=qkv_n if model.attention_bias else 0))
        if model.position == "rope":
            rope_elems = tokens * (d.q_heads + d.kv_heads) * model.rotary_dims
            ops.append(_vector("rope", "rope", phase, count, rope_elems, impl="rope", flops_per=3))
        ops += _attention(model, d, phase, count, requests, q_len, context, causal, sc.attention == "fused", window,
                          slots=sc.kv_slots, pass_tokens=sc.pass_tokens, scope=sc.window_scope)
        if model.attention_gate:   # output * sigmoid(gate): exp, add, divide, multiply per channel
            ops.append(_vector("attn_gate", "elementwise", phase, count, tokens * d.q_heads * hd, impl="mul",
                               flops_per=4, trans_per=1, inputs=2))
        ops.append(_gemm("o_proj", phase, count, tokens, d.q_heads * hd, h, bias=h if model.out_bias else 0))
    if sc.tp > 1:
        ops.append(_allreduce("attn_allreduce", phase, count, tokens * h, sc.tp))
    if not model.parallel_block:
        ops.append(_vector("attn_residual", "elementwise", phase, count, tokens * h, impl="add", inputs=2))
    return ops


def _ffn_block(model: ModelSpec, d: _Dims, sc: Scenario, phase: str, count: int, tokens: int,
               moe_layer: bool) -> list[Op]:
    """The FFN sub-layer (dense or routed experts): its norm, the FFN, residual add."""
    h = d.h
    pre_norm = model.architecture == "decoder"
    ops: list[Op] = []
    if model.layer_norm_count > 1:   # parallel blocks (GPT-NeoX) may still norm the MLP input separately
        ops.append(_norm("ffn_norm" if pre_norm else "attn_post_norm", model, phase, count, tokens))
    ops += _moe(model, d, sc, phase, count, tokens) if moe_layer else _ffn(model, d, phase, count, tokens, d.ffn)
    if sc.tp > 1:
        ops.append(_allreduce("ffn_allreduce", phase, count, tokens * h, sc.tp))
    ops.append(_vector("ffn_residual", "elementwise", phase, count, tokens * h, impl="add",
                       inputs=3 if model.parallel_block else 2))
    if not pre_norm:
        ops.append(_norm("ffn_post_norm", model, phase, count, tokens))
    return ops


def _recurrence_flops(model: ModelSpec, q_len: int, recurrent: bool) -> float:
    """FLOPs per token and head of the recurrence (state N x P: N = state_size, P = head_dim).

    Decode, and a prompt run sequentially (Runtime.sequential_recurrences), apply the recurrent
    form once per token. Gated DeltaNet (Yang et al. 2024, arXiv
    2412.06464, eq. 10: S_t = a_t S_{t-1} (I - b_t k_t k_t^T) + b_t v_t k_t^T, o_t = S_t q_t):
    decay (1), S k (2), rank-1 update (2), S q (2): 7 N P. Mamba-2 (Dao & Gu 2024, arXiv
    2405.21060, sec. 3: h_t = exp(dt A) h_{t-1} + dt x_t B_t^T, y_t = h_t C_t): decay (1), outer
    product and add (2), h C (2): 5 N P.
    Prefill runs the chunked form over chunks of c = min(chunk, q_len) tokens. DeltaNet
    (Yang et al. 2024 sec. 3.3, the WY form of FLA's chunk kernel): three state products per
    token (W S, Q S, K^T U: 6 N P) and the intra-chunk products K K^T, Q K^T and T K over N and
    T V, (Q K^T) U over P: 2 c (3 N + 2 P). Mamba-2 (SSD, Dao & Gu 2024 sec. 6): chunk states
    B^T X and state outputs C h (4 N P), the masked (C B^T) X over P (2 c P) and C B^T over N,
    shared by the heads of a B/C group (2 c N / heads per group)."""
    r = model.recurrent
    assert r is not None            # only for 'M' blocks
    N, P = r.state_size, r.head_dim
    if recurrent:
        return (7.0 if r.kind == "gated_deltanet" else 5.0) * N * P
    c = min(r.chunk, q_len)
    if r.kind == "gated_deltanet":
        return 6.0 * N * P + 2.0 * c * (3 * N + 2 * P)
    return 4.0 * N * P + 2.0 * c * P + 2.0 * c * N * r.groups / r.num_heads


def _recurrent_block(model: ModelSpec, d: _Dims, sc: Scenario, phase: str, count: int, requests: int,
                     q_len: int) -> list[Op]:
    """A recurrent mixer sub-layer: pre-norm, input projection, short causal convolution, the
    recurrence, gated RMSNorm, output projection, residual add. Tensor parallelism splits the
    heads and the B/C groups (column-parallel in_proj, row-parallel out_proj, as vLLM does).

    No KV cache: a sequence keeps the convolution's window ((conv_kernel - 1) inputs per
    channel, read and written with the activations) and the recurrent state (heads x head_dim
    x state_size in state_dtype: decode reads and writes it once per token, the chunked
    prefill once per chunk, as FLA's chunk kernels store a state per chunk boundary).

    A runtime that runs the prompt sequentially (Runtime.sequential_recurrences) scans it token by
    token in one kernel per pass, the state in registers (llama.cpp ggml-cuda/gated_delta_net.cu,
    mlx-lm models/gated_delta.py): the recurrent form's FLOPs on the vector units, the state
    read and written once per pass, and a chain of q_len dependent steps per value column (one
    warp each: heads x head_dim chains per sequence) that the engine prices by latency."""
    r = model.recurrent
    assert r is not None
    h, tokens, decode = d.h, requests * q_len, phase == "decode"
    sequential = not decode and r.kind in sc.sequential_recurrences
    heads, groups = math.ceil(r.num_heads / sc.tp), math.ceil(r.groups / sc.tp)
    inner, key_w = heads * r.head_dim, groups * r.state_size
    chan, taps = inner + 2 * key_w, r.conv_kernel
    window = requests * (taps - 1) * chan
    if sequential:     # one step per token, the state once per pass
        chunks = math.ceil(q_len / sc.pass_tokens) if sc.pass_tokens else 1
        products, rows, serial, chains = requests * heads * q_len, 1, q_len, requests * inner
    else:
        chunks = 1 if decode else math.ceil(q_len / r.chunk)
        products, rows, serial, chains = requests * heads * chunks, 1 if decode else min(r.chunk, q_len), 0, 0
    state = r.head_dim * r.state_size * STATE_BYTES[r.state_dtype]
    base = _PhaseFields(phase=phase, count=count, context=0)
    ops = [_norm("mixer_norm", model, phase, count, tokens),
           _gemm("in_proj", phase, count, tokens, h, 2 * inner + 2 * key_w + r.gates * heads),
           # depthwise causal conv (taps multiply-adds per channel) then SiLU (4 FLOPs and an exp)
           Op(name="conv", kind="conv", impl="causal_conv1d", m=tokens, n=chan, elements=tokens * chan,
              flops=(2.0 * taps + 4) * tokens * chan, transcendentals=float(tokens * chan),
              weight_elems=float(chan * (taps + (1 if r.conv_bias else 0))),
              act_in_elems=float(tokens * chan + window), act_out_elems=float(tokens * chan + window), **base),
           Op(name="recurrence", kind="recurrence", impl=r.kind, batch=products, m=rows, n=r.head_dim, k=r.state_size,
              serial_steps=serial, chains=chains,
              flops=tokens * heads * _recurrence_flops(model, q_len, decode or sequential),
              transcendentals=3.0 * tokens * heads,        # the decay's exp, softplus, the write gate
              act_in_elems=float(tokens * (2 * key_w + inner + r.gates * heads)),
              act_out_elems=float(tokens * inner), state_bytes=2.0 * requests * heads * chunks * state, **base),
           # RMSNorm of each head's output times SiLU of the gate z
           _vector("mixer_gate_norm", "norm", phase, count, tokens * inner, impl=model.norm,
                   flops_per=_NORM_FLOPS[model.norm] + 5, trans_per=1 + 1 / r.head_dim, inputs=2, m=tokens, n=inner,
                   weights=r.head_dim if r.kind == "gated_deltanet" else inner),
           _gemm("out_proj", phase, count, tokens, inner, h)]
    if sc.tp > 1:
        ops.append(_allreduce("mixer_allreduce", phase, count, tokens * h, sc.tp))
    ops.append(_vector("mixer_residual", "elementwise", phase, count, tokens * h, impl="add", inputs=2))
    return ops


def _pattern_ops(model: ModelSpec, d: _Dims, sc: Scenario, phase: str, requests: int, q_len: int,
                 context: int) -> list[Op]:
    """The blocks of a layer_pattern, grouped by kind (their order changes no count)."""
    n = model.block_counts()
    ops: list[Op] = []
    if n["*"]:
        ops += _attention_block(model, d, sc, phase, n["*"], requests, q_len, context, None)
    if n["M"]:
        ops += _recurrent_block(model, d, sc, phase, n["M"], requests, q_len)
    for block, moe_layer in (("-", False), ("E", True)):
        if n[block]:
            ops += _ffn_block(model, d, sc, phase, n[block], requests * q_len, moe_layer)
    return ops


def _phase_ops(model: ModelSpec, sc: Scenario, phase: str, requests: int, q_len: int, context: int) -> list[Op]:
    d = _dims(model, sc.tp)
    tokens = requests * q_len
    h = model.hidden_size
    ops = [Op(name="embedding", kind="embedding", phase=phase, count=1, m=tokens, n=h, elements=tokens * h,
              weight_elems=float(tokens * h), act_out_elems=float(tokens * h))]
    extra_tables = (model.position == "learned") + (model.type_vocab_size > 0)
    if extra_tables:   # learned positions / token types: gathered and added
        ops.append(_vector("embedding_add", "elementwise", phase, 1, tokens * h, impl="add", inputs=1 + extra_tables,
                           weights=extra_tables * tokens * h))
    if model.architecture == "encoder":
        ops.append(_norm("embedding_norm", model, phase, 1, tokens))
    if model.layer_pattern is not None:
        ops += _pattern_ops(model, d, sc, phase, requests, q_len, context)
    else:
        # layer groups: dense or MoE FFN x whole-context or windowed attention (windowed layers
        # spread evenly over both FFN kinds)
        L, n_moe, n_glob = model.num_layers, model.moe_layers(), model.global_layers()
        moe_glob = round(n_moe * n_glob / L)
        groups = [(n_glob - moe_glob, False, None), (L - n_moe - (n_glob - moe_glob), False, model.sliding_window),
                  (moe_glob, True, None), (n_moe - moe_glob, True, model.sliding_window)]
        for count, moe_layer, window in groups:
            if count > 0:
                ops += _layer(model, d, sc, phase, count, requests, q_len, context, moe_layer, window)
    if model.architecture == "decoder":
        # logits only for the last position of each request (serving engines skip the rest)
        ops.append(_norm("final_norm", model, phase, 1, requests))
        ops.append(_gemm("lm_head", phase, 1, requests, h, d.vocab, bias=d.vocab if model.lm_head_bias else 0))
    elif model.pooler:
        ops.append(_gemm("pooler", phase, 1, requests, h, h, bias=h))
    return ops


def build_graph(model: ModelSpec, scenario: Scenario) -> Graph:
    """Operators of the prefill pass (all prompt tokens of ``batch`` requests at once) and of
    one decode step (one new token per request and beam, attending over ``prompt`` cached
    tokens)."""
    requests = scenario.batch
    prefill = tuple(_phase_ops(model, scenario, "prefill", requests, scenario.prompt, scenario.prompt)) \
        if scenario.prompt else ()
    # every beam is a sequence of its own in decode (prefill is shared: one pass per request)
    decode = tuple(_phase_ops(model, scenario, "decode", requests * scenario.beams, 1, scenario.prompt)) \
        if model.architecture == "decoder" and scenario.generate else ()
    return Graph(model=model, scenario=scenario, prefill=prefill, decode=decode)
