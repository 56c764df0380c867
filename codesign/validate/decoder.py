"""A random-weight decoder for the end-to-end check (:mod:`codesign.validate.e2e`).

A dense decoder-only transformer is built from a :class:`~codesign.workload.schema.ModelSpec`
with random weights (std 0.02, seeded) as plain PyTorch tensors, and run the way the
operator graph (:mod:`codesign.workload.graph`) counts its kernels:

- embedding gather (+ learned position table add);
- per layer: norm -> ONE fused QKV GEMM -> RoPE on q and k (rotate-half) -> K/V written into
  a static cache -> ``scaled_dot_product_attention`` (causal over the prompt in prefill, one
  query over the cache prefix in decode) -> O GEMM -> residual add -> norm -> FFN (gated: ONE
  fused gate+up GEMM, activation, product, down GEMM) -> residual add;
- final norm + LM head on the last position of each request only.

Differences from the graph (eager PyTorch does more small kernels than the graph's ops):
RoPE is ~6 elementwise kernels per tensor (slices, negation, cat, two products, add) where the
graph has one op; the head transposes around attention and the gate/up split are copies or
strided views the graph does not list; relu2 is two kernels; GQA prefill without a native
grouped kernel (fp32, CPU) expands K/V to every query head (a copy the graph does not count).
Decode packs the query heads that share a KV head as the rows of one attention product, as
the graph does, so the cache is read once per KV head.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import CodesignError
from ..workload.schema import ModelSpec
from .kernels import require_torch

DTYPES = {"fp32": 4, "bf16": 2, "fp16": 2}          # bytes per element
WEIGHT_STD = 0.02
ROPE_THETA = 10000.0
# allocator slack, cuBLAS workspaces, graph pool, SDPA scratch (on top of the counted tensors)
MEMORY_MARGIN = 1.05
MEMORY_SLACK_BYTES = 256 * 2**20


# ---------------------------------------------------------------- what can run
def check_supported(model: ModelSpec) -> None:
    """One clear error for every architecture the harness does not build (before any allocation)."""
    name = model.name
    if model.architecture != "decoder":
        raise CodesignError(f"{name}: encoder models are not supported by the e2e harness yet (decoder-only)",
                            field="workload")
    if model.mla is not None:
        raise CodesignError(f"{name}: MLA (multi-head latent attention) models are not supported by the e2e harness yet",
                            field="workload")
    if model.sliding_window is not None:
        raise CodesignError(f"{name}: sliding-window attention is not supported by the e2e harness yet", field="workload")
    if model.attention_sinks:
        raise CodesignError(f"{name}: attention sinks are not supported by the e2e harness yet", field="workload")
    if model.position == "alibi":
        raise CodesignError(f"{name}: ALiBi positions are not supported by the e2e harness yet", field="workload")
    if model.type_vocab_size:
        raise CodesignError(f"{name}: token-type embeddings are not supported by the e2e harness yet", field="workload")


def _dtype_bytes(dtype: str) -> int:
    if dtype not in DTYPES:
        raise CodesignError(f"dtype {dtype!r} is not supported by the e2e harness (one of {', '.join(DTYPES)})",
                            field="dtype")
    return DTYPES[dtype]


# ---------------------------------------------------------------- shapes and memory
def weight_shapes(model: ModelSpec, max_len: int = 0) -> dict[str, tuple[int, ...]]:
    """Every weight tensor the decoder allocates (per-layer tensors once, with an ``L.`` prefix).

    ``max_len``: tokens the learned position table must cover (at least ``max_position``)."""
    h, hd, H, kv, f, V = model.hidden_size, model.hd, model.num_heads, model.kv_heads, model.ffn_size, model.vocab_size
    ln = model.norm == "layernorm"
    s: dict[str, tuple[int, ...]] = {"embed": (V, h)}
    if model.position == "learned":
        s["pos_embed"] = (max(model.max_position or 0, max_len, 1), h)
    qkv = (H + 2 * kv) * hd
    s["L.qkv"] = (qkv, h)
    if model.attention_bias:
        s["L.qkv_b"] = (qkv,)
    s["L.o"] = (h, H * hd)
    if model.out_bias:
        s["L.o_b"] = (h,)
    up = (2 if model.ffn_type == "gated" else 1) * f
    s["L.up"] = (up, h)
    s["L.down"] = (h, f)
    if model.mlp_bias:
        s["L.up_b"] = (up,)
        s["L.down_b"] = (h,)
    for i in range(model.layer_norm_count):
        s[f"L.norm{i}"] = (h,)
        if ln:
            s[f"L.norm{i}_b"] = (h,)
    if model.moe is not None:
        # MoE layers (``M.``): a router, the routed experts stacked (experts, in, out) as the
        # grouped product takes them, and the shared experts as one dense FFN
        E, fe = model.moe.num_experts, model.expert_ffn
        s["M.router"] = (E, h)
        s["M.experts_up"] = (E, h, (2 if model.ffn_type == "gated" else 1) * fe)
        s["M.experts_down"] = (E, fe, h)
        if model.moe.shared_experts:
            fs = model.moe.shared_experts * fe
            s["M.shared_up"] = ((2 if model.ffn_type == "gated" else 1) * fs, h)
            s["M.shared_down"] = (h, fs)
    s["final_norm"] = (h,)
    if ln:
        s["final_norm_b"] = (h,)
    if not model.tied_embeddings:
        s["lm_head"] = (V, h)
    if model.lm_head_bias:
        s["lm_head_b"] = (V,)
    return s


_DENSE_FFN = ("L.up", "L.down", "L.up_b", "L.down_b")


def is_moe_layer(model: ModelSpec, i: int) -> bool:
    """Layer ``i`` has the routed-expert FFN: after ``first_dense`` dense layers, every
    ``every``-th one, so there are ``model.moe_layers()`` of them, as the op graph counts."""
    moe = model.moe
    return moe is not None and i >= moe.first_dense and (i - moe.first_dense + 1) % moe.every == 0


def weight_elements(model: ModelSpec, max_len: int = 0) -> int:
    total = 0
    n_moe = model.moe_layers()
    for name, shape in weight_shapes(model, max_len).items():
        times = (n_moe if name.startswith("M.") else model.num_layers - n_moe if name in _DENSE_FFN
                 else model.num_layers if name.startswith("L.") else 1)
        total += math.prod(shape) * times
    return total


def memory_estimate(model: ModelSpec, batch: int, prompt: int, generate: int, dtype: str,
                    expand_kv: bool = True) -> dict[str, int]:
    """Bytes the harness needs for one grid point: weights, KV cache, prefill activation peak."""
    b = _dtype_bytes(dtype)
    max_len = prompt + generate
    h, hd, H, kv, f = model.hidden_size, model.hd, model.num_heads, model.kv_heads, model.ffn_size
    weights = weight_elements(model, max_len) * b
    kv_bytes = 2 * model.num_layers * batch * kv * max_len * hd * b
    t = batch * prompt
    # live at once: residual + normed input, plus the larger of the attention and FFN temporaries
    attn = (H + 2 * kv) * hd + (H + kv) * hd + 2 * H * hd + (2 * H * hd if expand_kv else 0) + h
    ffn = (3 if model.ffn_type == "gated" else 2) * f + f + h
    if model.moe is not None:       # every token's k choices, gathered: input, up, activation, output
        k, fe = model.moe.top_k, model.expert_ffn
        ffn = max(ffn, k * (h + 3 * fe + fe + h) + model.moe.num_experts + 4 * k)
    act = t * (2 * h + max(attn, ffn)) * b + batch * model.vocab_size * (b + 4)
    total = int((weights + kv_bytes + act) * MEMORY_MARGIN) + MEMORY_SLACK_BYTES
    return {"weights": weights, "kv": kv_bytes, "activations": act, "total": total}


def check_fits(model: ModelSpec, need: dict[str, int], free: int, where: str, point: str = "") -> None:
    """CodesignError when ``need['total']`` bytes exceed ``free`` bytes on ``where``."""
    if need["total"] > free:
        at = f" at {point}" if point else ""
        raise CodesignError(
            f"{model.name} ({model.num_layers} layers) does not fit in {where} memory{at}: needs "
            f"{need['total'] / 1e9:.2f} GB (weights {need['weights'] / 1e9:.2f}, KV cache {need['kv'] / 1e9:.2f}, "
            f"activations {need['activations'] / 1e9:.2f}, plus margin), {free / 1e9:.2f} GB free; use fewer layers "
            f"(--layers) or a smaller grid point", field="device")


# ---------------------------------------------------------------- the decoder
@dataclass
class _Layer:
    qkv: Any
    o: Any
    up: Any
    down: Any
    norms: list = field(default_factory=list)      # [(weight, bias or None)] x layer_norm_count
    qkv_b: Any = None
    o_b: Any = None
    up_b: Any = None
    down_b: Any = None
    moe: Any = None         # _Experts on MoE layers (then up/down are None)


@dataclass
class _Experts:
    router: Any
    up: Any             # (experts, hidden, up width)
    down: Any           # (experts, expert width, hidden)
    shared_up: Any = None
    shared_down: Any = None


def _grouped(torch, x, w, offs):
    """Rows of ``x`` in expert order times each expert's (in, out) matrix: one grouped
    product (``torch._grouped_mm``) where torch has it, else a loop over the experts."""
    if hasattr(torch, "_grouped_mm"):
        try:
            return torch._grouped_mm(x, w, offs=offs)
        except (RuntimeError, NotImplementedError):
            pass
    ends = offs.tolist()      # a host sync: not capturable, the eager fallback only
    starts = [0] + ends[:-1]
    return torch.cat([x[a:b] @ w[e] for e, (a, b) in enumerate(zip(starts, ends))], dim=0)


class Decoder:
    """A dense decoder with random weights and a static KV cache, on ``device`` in ``dtype``.

    ``prefill(ids)`` runs a (batch, T) prompt from position 0 and fills the cache;
    ``decode(ids, pos)`` runs one (batch,) token at position ``pos`` over cache[:pos+1].
    ``gqa``: how prefill attention shares KV heads: "native" (SDPA ``enable_gqa``),
    "expand" (K/V copied to every query head) or "auto" (native on CUDA in bf16/fp16, where
    the flash kernel takes grouped heads; expand elsewhere).
    """

    def __init__(self, model: ModelSpec, *, device: str = "cpu", dtype: str = "fp32", seed: int = 0,
                 max_len: int = 0, gqa: str = "auto"):
        torch = self.torch = require_torch()
        check_supported(model)
        _dtype_bytes(dtype)
        self.model = model
        self.device = torch.device(device)
        self.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
        self.group = model.num_heads // model.kv_heads
        cuda = self.device.type == "cuda"
        if gqa == "auto":
            gqa = "native" if (cuda and dtype in ("bf16", "fp16")) else "expand"
        if gqa not in ("native", "expand"):
            raise CodesignError(f"gqa must be auto, native or expand, got {gqa!r}", field="gqa")
        self.gqa = gqa
        self.rd = model.rotary_dims
        self.k_cache: list = []
        self.v_cache: list = []
        self.max_len = 0
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed)
        self._gen = gen
        shapes = weight_shapes(model, max_len)
        with torch.no_grad():
            self.embed = self._randn(shapes["embed"])
            self.pos_embed = self._randn(shapes["pos_embed"]) if "pos_embed" in shapes else None
            self.layers = [self._layer(shapes, i) for i in range(model.num_layers)]
            self.final_norm = self._norm_weights()
            self.lm_head = self._randn(shapes["lm_head"]) if "lm_head" in shapes else self.embed
            self.lm_head_b = self._randn(shapes["lm_head_b"]) if "lm_head_b" in shapes else None
        self.cos: Any = None
        self.sin: Any = None
        self._rope_len = 0
        self._cos_sin: tuple[Any, Any] = (None, None)
        self._pos = 0

    # -- weights
    def _randn(self, shape):
        t = self.torch.randn(shape, generator=self._gen, device=self.device, dtype=self.dtype)
        return t.mul_(WEIGHT_STD)

    def _norm_weights(self):
        h = self.model.hidden_size
        w = self.torch.ones(h, device=self.device, dtype=self.dtype)
        b = self.torch.zeros(h, device=self.device, dtype=self.dtype) if self.model.norm == "layernorm" else None
        return (w, b)

    def _layer(self, s, i: int) -> _Layer:
        r = self._randn
        moe = is_moe_layer(self.model, i)
        experts = _Experts(router=r(s["M.router"]), up=r(s["M.experts_up"]), down=r(s["M.experts_down"]),
                           shared_up=r(s["M.shared_up"]) if "M.shared_up" in s else None,
                           shared_down=r(s["M.shared_down"]) if "M.shared_down" in s else None) if moe else None
        return _Layer(qkv=r(s["L.qkv"]), o=r(s["L.o"]), up=None if moe else r(s["L.up"]),
                      down=None if moe else r(s["L.down"]), moe=experts,
                      norms=[self._norm_weights() for _ in range(self.model.layer_norm_count)],
                      qkv_b=r(s["L.qkv_b"]) if "L.qkv_b" in s else None, o_b=r(s["L.o_b"]) if "L.o_b" in s else None,
                      up_b=r(s["L.up_b"]) if "L.up_b" in s and not moe else None,
                      down_b=r(s["L.down_b"]) if "L.down_b" in s and not moe else None)

    # -- cache
    def alloc_cache(self, batch: int, max_len: int) -> None:
        """One static K and V tensor per layer, (batch, kv_heads, max_len, head_dim)."""
        torch, m = self.torch, self.model
        self.free_cache()
        shape = (batch, m.kv_heads, max_len, m.hd)
        with torch.no_grad():
            self.k_cache = [torch.zeros(shape, device=self.device, dtype=self.dtype) for _ in range(m.num_layers)]
            self.v_cache = [torch.zeros(shape, device=self.device, dtype=self.dtype) for _ in range(m.num_layers)]
            if self.rd and self._rope_len < max_len:
                inv = 1.0 / ROPE_THETA ** (torch.arange(0, self.rd, 2, device=self.device, dtype=torch.float32) / self.rd)
                ang = torch.outer(torch.arange(max_len, device=self.device, dtype=torch.float32), inv)
                ang = torch.cat((ang, ang), dim=-1)
                self.cos, self.sin = ang.cos().to(self.dtype), ang.sin().to(self.dtype)
                self._rope_len = max_len
            if self.pos_embed is not None and self.pos_embed.shape[0] < max_len:
                raise CodesignError(f"{m.name}: the learned position table has {self.pos_embed.shape[0]} rows, "
                                    f"fewer than prompt + generate = {max_len}", field="prompt")
        self.max_len = max_len

    def free_cache(self) -> None:
        self.k_cache, self.v_cache, self.max_len = [], [], 0

    # -- pieces
    def _norm(self, x, wb):
        F = self.torch.nn.functional
        w, b = wb
        if self.model.norm == "layernorm":
            return F.layer_norm(x, (x.shape[-1],), w, b, 1e-5)
        return F.rms_norm(x, (x.shape[-1],), w, 1e-6)

    def _act(self, x):
        F, a = self.torch.nn.functional, self.model.activation
        if a == "silu":
            return F.silu(x)
        if a == "gelu":
            return F.gelu(x)
        if a == "gelu_tanh":
            return F.gelu(x, approximate="tanh")
        if a == "relu":
            return F.relu(x)
        return self.torch.square(F.relu(x))          # relu2: two kernels where the graph has one op

    def _rope(self, x, cos, sin):
        """Rotate-half RoPE on the first ``rd`` dims of x (batch, T, heads, hd); cos/sin (T, rd)."""
        torch = self.torch
        cos, sin = cos[None, :, None, :], sin[None, :, None, :]
        xr = x[..., :self.rd] if self.rd < x.shape[-1] else x
        half = self.rd // 2
        rot = torch.cat((-xr[..., half:], xr[..., :half]), dim=-1)
        out = xr * cos + rot * sin
        return torch.cat((out, x[..., self.rd:]), dim=-1) if self.rd < x.shape[-1] else out

    def _ffn(self, x, L: _Layer):
        if L.moe is not None:
            return self._moe(x, L.moe)
        return self._dense_ffn(x, L.up, L.down, L.up_b, L.down_b)

    def _moe(self, x, X: _Experts):
        """Routed experts with static shapes (so a decode step captures as a CUDA graph): the
        router's top-k per token (weights renormalised over the k, as Mixtral), the T x k
        choices sorted by expert, one grouped product per projection over the experts' row
        ranges (``torch._grouped_mm``, offsets on the device: no host sync), the outputs
        weighted and added back to their tokens; shared experts as a dense FFN beside them.
        The op graph counts the experts hit (E(1 - (1 - k/E)^T)) with a dense GEMM's efficiency;
        the grouped kernel's own efficiency at a few rows per expert is not modelled (an H200
        streamed Mixtral's experts at ~2.4 of 4.1 TB/s in decode, docs/validation)."""
        torch, F, moe = self.torch, self.torch.nn.functional, self.model.moe
        assert moe is not None          # only MoE layers hold _Experts
        shape = x.shape
        xt = x.reshape(-1, shape[-1])
        k = moe.top_k
        w, ids = F.linear(xt, X.router).float().topk(k, dim=-1)
        w = torch.softmax(w, dim=-1)
        flat = ids.reshape(-1)
        order = torch.argsort(flat)
        tok = torch.div(order, k, rounding_mode="floor")
        counts = torch.zeros(moe.num_experts, device=xt.device, dtype=torch.int32)
        counts.scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))
        offs = torch.cumsum(counts, 0, dtype=torch.int32)
        h = _grouped(torch, xt.index_select(0, tok), X.up, offs)
        if self.model.ffn_type == "gated":
            g, u = h.chunk(2, dim=-1)
            h = self._act(g) * u
        else:
            h = self._act(h)
        y = _grouped(torch, h.contiguous(), X.down, offs) * w.reshape(-1)[order].unsqueeze(-1).to(h.dtype)
        out = torch.zeros_like(xt).index_add_(0, tok, y)
        if X.shared_up is not None:
            out = out + self._dense_ffn(xt, X.shared_up, X.shared_down, None, None)
        return out.view(shape)

    def _dense_ffn(self, x, up, down, up_b, down_b):
        F = self.torch.nn.functional
        u = F.linear(x, up, up_b)
        if self.model.ffn_type == "gated":
            g, u = u.chunk(2, dim=-1)
            u = self._act(g) * u
        else:
            u = self._act(u)
        return F.linear(u, down, down_b)

    def _block(self, x, i: int, L: _Layer, attend: Callable):
        """One transformer block; ``attend(q, k, v, i)`` gets (B, T, heads, hd) tensors after RoPE."""
        F, m = self.torch.nn.functional, self.model
        B, T, _ = x.shape
        H, kv, hd = m.num_heads, m.kv_heads, m.hd
        a_in = self._norm(x, L.norms[0])
        qkv = F.linear(a_in, L.qkv, L.qkv_b)
        q, k, v = qkv.split((H * hd, kv * hd, kv * hd), dim=-1)
        q, k, v = q.view(B, T, H, hd), k.view(B, T, kv, hd), v.view(B, T, kv, hd)
        if self.rd:
            cos, sin = self._cos_sin
            q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
        att = F.linear(attend(q, k, v, i), L.o, L.o_b)
        if m.parallel_block:     # GPT-J/NeoX: attention and MLP read the same block input
            m_in = self._norm(x, L.norms[1]) if m.layer_norm_count > 1 else a_in
            return x + att + self._ffn(m_in, L)
        x = x + att
        m_in = self._norm(x, L.norms[1]) if m.layer_norm_count > 1 else x
        return x + self._ffn(m_in, L)

    def _prefill_attend(self, q, k, v, i):
        F = self.torch.nn.functional
        B, T = q.shape[:2]
        kt, vt = k.transpose(1, 2), v.transpose(1, 2)
        self.k_cache[i][:, :, :T].copy_(kt)
        self.v_cache[i][:, :, :T].copy_(vt)
        qt = q.transpose(1, 2)
        o = None
        if self.group > 1 and self.gqa == "native":
            try:
                with self._fused_only(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")       # SDPA's why-not-this-kernel notes
                    o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=True)
            except (TypeError, RuntimeError):     # no fused grouped kernel here: expand from now on
                self.gqa = "expand"
        if o is None:
            if self.group > 1:     # K/V copied to every query head (a copy the graph does not count)
                kt, vt = kt.repeat_interleave(self.group, dim=1), vt.repeat_interleave(self.group, dim=1)
            o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)
        return o.transpose(1, 2).reshape(B, T, -1)

    def _fused_only(self):
        """On CUDA, SDPA limited to its fused kernels: a shape they cannot take raises (and prefill
        then expands K/V) instead of silently running the unfused math path, which the graph's
        fused attention op does not describe."""
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        attention = require_torch().nn.attention
        fused = [getattr(attention.SDPBackend, n) for n in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION")
                 if hasattr(attention.SDPBackend, n)]
        return attention.sdpa_kernel(fused)

    def _decode_attend(self, q, k, v, i):
        """One query per request over cache[:pos+1]; the ``group`` query heads sharing a KV head
        are the rows of one product (no mask needed: every cached key is in the past)."""
        F, m = self.torch.nn.functional, self.model
        B = q.shape[0]
        pos = self._pos
        self.k_cache[i][:, :, pos].copy_(k[:, 0])
        self.v_cache[i][:, :, pos].copy_(v[:, 0])
        qg = q.reshape(B, m.kv_heads, self.group, m.hd)
        o = F.scaled_dot_product_attention(qg, self.k_cache[i][:, :, :pos + 1], self.v_cache[i][:, :, :pos + 1])
        return o.reshape(B, 1, -1)

    def _head(self, x):
        F = self.torch.nn.functional
        return F.linear(self._norm(x, self.final_norm), self.lm_head, self.lm_head_b)

    # -- passes
    def prefill(self, ids, all_logits: bool = False):
        """Prompt pass from position 0 over ids (batch, T): fills cache[:, :, :T]; logits of the last
        position (batch, vocab), or of every position (batch, T, vocab) with ``all_logits``."""
        torch = self.torch
        B, T = ids.shape
        if not self.max_len or self.k_cache[0].shape[0] != B or T > self.max_len:
            raise CodesignError(f"prefill of {B} x {T} tokens needs alloc_cache(batch={B}, max_len>={T}) first",
                                field="prompt")
        with torch.no_grad():
            x = torch.nn.functional.embedding(ids, self.embed)
            if self.pos_embed is not None:
                x = x + self.pos_embed[:T]
            if self.rd:
                self._cos_sin = (self.cos[:T], self.sin[:T])
            for i, L in enumerate(self.layers):
                x = self._block(x, i, L, self._prefill_attend)
            # logits for the last position only (serving engines and the graph skip the rest)
            return self._head(x if all_logits else x[:, -1])

    def decode(self, ids, pos: int):
        """One step: ids (batch,) or (batch, 1) at position ``pos``; logits (batch, vocab)."""
        torch = self.torch
        ids = ids.reshape(-1, 1)
        if not self.max_len or pos >= self.max_len or ids.shape[0] != self.k_cache[0].shape[0]:
            raise CodesignError(f"decode at position {pos} needs alloc_cache(batch={ids.shape[0]}, max_len>{pos}) first",
                                field="generate")
        with torch.no_grad():
            x = torch.nn.functional.embedding(ids, self.embed)
            if self.pos_embed is not None:
                x = x + self.pos_embed[pos:pos + 1]
            if self.rd:
                self._cos_sin = (self.cos[pos:pos + 1], self.sin[pos:pos + 1])
            self._pos = pos
            for i, L in enumerate(self.layers):
                x = self._block(x, i, L, self._decode_attend)
            return self._head(x[:, 0])
