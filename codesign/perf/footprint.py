"""Memory per device: weights, KV cache and peak activations, analytic (independent of the
op graph), against the capacity of the levels that hold model state; and the fewest devices
a model needs.

Weights: each device holds its share of the layers (tp splits them, pp gives each stage
ceil(layers/pp) of them) plus the embedding and LM head tables (on the end stages with pp).
KV cache: every cached token of every layer on the device (windowed layers keep the window;
beams share the prompt's cache). Activations: the widest live tensors of one prefill pass.
"""
from __future__ import annotations

import math

import numpy as np

from ..hardware.schema import HardwareSpec
from ..workload.scenario import Scenario
from ..workload.schema import ModelSpec


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
