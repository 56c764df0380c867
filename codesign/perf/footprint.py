"""Memory per device: weights, KV cache and peak activations, analytic (independent of the
op graph), against the capacity of the levels that hold model state; and the fewest devices
a model needs.

Weights: each device holds its share of the layers (tp splits them, pp gives each stage
ceil(layers/pp) of them) plus the embedding and LM head tables (on the end stages with pp).
KV cache: every cached token of every layer on the device (windowed layers keep the window;
beams share the prompt's cache); recurrent mixers (linear attention, state-space layers) keep
no per-token cache but a fixed state per sequence, counted once per sequence. Activations: the
widest live tensors of one prefill pass.
"""
from __future__ import annotations

import math

import numpy as np

from ..hardware.schema import HardwareSpec
from ..workload.scenario import Scenario
from ..workload.schema import STATE_BYTES, ModelSpec


def footprint(model: ModelSpec, sc: Scenario, w_bytes, a_bytes, kv_bytes, table_bytes=2.0, tp=None, pp=None,
              other_bytes=None):
    # table_bytes: embedding table and LM head, per element; other_bytes: the linear weights
    # outside the routed experts when they are stored apart from them (Compression.other_bits)
    """(weights, kv, activations) bytes per device, analytic (independent of the op graph).
    ``kv`` holds the KV cache and, for recurrent mixers, every sequence's fixed state."""
    tp = tp or sc.tp
    pp = pp or sc.pp
    h, L = model.hidden_size, model.num_layers
    per_layer_dev, tables, experts_dev = _layer_weights(model, sc, tp)
    layers_dev = math.ceil(L / pp)
    tables_dev = tables / tp / (1 if pp == 1 else 2)        # embedding and LM head on the end stages
    other = w_bytes if other_bytes is None else other_bytes
    weights = layers_dev * (experts_dev * w_bytes + (per_layer_dev - experts_dev) * other) + tables_dev * table_bytes
    reqs = math.ceil(sc.batch / sc.dp)
    # cached tokens per layer: the whole context, or the window on windowed layers
    # (beams share the prompt's cache and each keeps its own generated tokens); a fixed-shape
    # compiled graph holds its whole cache whatever the sequence (Scenario.kv_slots)
    prompt_kv = model.kv_tokens(sc.prompt)
    kv_tokens = (prompt_kv + sc.beams * (model.kv_tokens(sc.prompt + sc.generate) - prompt_kv)) * layers_dev / L
    if sc.kv_slots:
        kv_tokens = max(kv_tokens, sc.beams * model.kv_tokens(sc.kv_slots) * layers_dev / L)
    # per token and layer on this device: K and V of its KV heads, or MLA's latent (every
    # tensor-parallel rank keeps the whole latent)
    per_token = model.kv_per_token_layer if model.mla is not None else 2 * math.ceil(model.kv_heads / tp) * model.hd
    kv = 0.0 * np.asarray(kv_bytes) if model.architecture == "encoder" else reqs * kv_tokens * per_token * kv_bytes
    if model.recurrent is not None:      # a fixed state per sequence (every beam is one), not per token
        kv = kv + reqs * sc.beams * state_bytes(model, a_bytes, tp, pp)
    tokens = reqs * max(sc.prompt, 1)
    widest = max(h, math.ceil(model.ffn_size / tp) * (2 if model.ffn_type == "gated" else 1),
                 math.ceil(model.vocab_size / tp) * 0)   # logits only for the last tokens
    acts = tokens * (2 * h + widest) * a_bytes
    if sc.attention == "unfused":
        acts = acts + reqs * math.ceil(model.num_heads / tp) * sc.prompt * min(sc.prompt, model.sliding_window or sc.prompt) * a_bytes
    r = model.recurrent
    if r is not None:     # the input projection's output, and the chunked prefill's state per chunk boundary
        heads = math.ceil(r.num_heads / tp)
        acts = acts + tokens * max(0, math.ceil(r.in_width / tp) - widest) * a_bytes
        acts = acts + reqs * math.ceil(max(sc.prompt, 1) / r.chunk) * heads * r.head_dim * r.state_size \
            * STATE_BYTES[r.state_dtype]
    return weights, kv, acts


def state_bytes(model: ModelSpec, a_bytes, tp: int = 1, pp: int = 1):
    """Bytes one sequence keeps on a device whatever its length: per recurrent layer the state
    (its heads' share x head_dim x state_size in state_dtype) and the convolution's window
    ((conv_kernel - 1) inputs per channel, in the activation datatype). 0 without recurrent
    mixers. Pipeline stages hold their share of the layers."""
    r = model.recurrent
    if r is None:
        return 0.0 * np.asarray(a_bytes)
    heads, groups = math.ceil(r.num_heads / tp), math.ceil(r.groups / tp)
    state = heads * r.head_dim * r.state_size * STATE_BYTES[r.state_dtype]
    window = (r.conv_kernel - 1) * (heads * r.head_dim + 2 * groups * r.state_size) * np.asarray(a_bytes)
    share = math.ceil(model.num_layers / pp) / model.num_layers
    return model.recurrent_layers() * (state + window) * share


def _layer_weights(model: ModelSpec, sc: Scenario, tp: int) -> tuple[float, float, float]:
    """(weights of one layer on one device (the mean layer), parameters of the tables:
    embedding, positions, final norm, LM head, and the routed experts' part of the first).
    Routed experts are split over ep (or tp), all other layer weights tp ways."""
    L = model.num_layers
    n_moe = model.moe_layers()
    moe = model.moe
    if model.layer_pattern is not None:
        n = model.block_counts()
        split = sum(count * model.block_params(b) for b, count in n.items())
        experts_dev = 0.0
        if moe is not None:
            routed = n["E"] * moe.num_experts * model.routed_expert_params()
            split -= routed
            experts_dev = routed / (sc.ep if sc.ep > 1 else tp)
        return (split / tp + experts_dev) / L, model.param_count() - model.layer_weights(), experts_dev / L
    dense_layer = model.layer_params()
    per_layer_linear = (L - n_moe) * dense_layer / L
    experts_dev = 0.0
    if n_moe:
        assert moe is not None      # moe_layers() is 0 without a MoE block
        shared = moe.shared_experts * model._ffn_params(model.expert_ffn)
        attn_etc = model.layer_params(True) - moe.num_experts * model.routed_expert_params() - shared
        experts_dev = moe.num_experts * model.routed_expert_params() / (sc.ep if sc.ep > 1 else tp)
        moe_layer_dev = attn_etc / tp + experts_dev + shared / tp
        per_layer_dev = ((L - n_moe) * dense_layer / tp + n_moe * moe_layer_dev) / L
    else:
        per_layer_dev = per_layer_linear / tp
    tables = model.param_count() - L * (per_layer_linear + (model.layer_params(True) * n_moe / L if n_moe else 0))
    return per_layer_dev, tables, n_moe * experts_dev / L


def capacity(spec: HardwareSpec, p: dict):
    """Bytes of every device level that can hold model state (host memory excluded unless
    the device streams weights from it, as USB accelerators do)."""
    levels = [m for m in spec.memory if m.stores() and (m.kind != "host" or m.holds is not None)]
    levels = levels or [m for m in spec.memory if m.stores()]
    return sum(p[f"memory.{m.name}.capacity"] * (p["compute.cores"] if m.per_core else 1) for m in levels)


def priced_footprint(model: ModelSpec, sc: Scenario, pr, tp=None, pp=None):
    """footprint() at the bytes per element of a design's prices (perf.engine.Prices, (D,1))."""
    return footprint(model, sc, pr.w_bytes[:, 0], pr.a_bytes[:, 0], pr.kv_bytes[:, 0], pr.table_bytes[:, 0],
                     tp=tp, pp=pp, other_bytes=pr.other_bytes[:, 0])


def min_devices(model, sc, spec, p, pr) -> np.ndarray:
    """Smallest tp x pp (powers of two, tp up to the link's max_devices) that fits, per design."""
    cap = capacity(spec, p)
    link = spec.interconnect.device_link
    max_tp = (link.max_devices or 8) if link else 1
    out = np.full(np.broadcast(cap, pr.w_bytes[:, 0]).shape, np.nan)
    for e in range(0, 13):
        n = 2 ** e
        tp = min(n, max_tp)
        pp = n // tp
        w, kv, act = priced_footprint(model, sc.model_copy(update={"tp": tp, "pp": pp, "dp": 1, "ep": 1}), pr,
                                      tp=tp, pp=pp)
        ok = (w + kv + act <= cap) & np.isnan(out)
        out = np.where(ok, n, out)
        if not np.isnan(out).any():
            break
    return out
