"""What compression and datatype choice make of an op graph, per design: bytes per element
of weights, activations and KV cache, and the compute rate and energy per operation of the
datatype each kind of product runs in (the engine's ``Prices``).

A GEMM runs in the datatype the compression asks for, or the nearest one the device has
(``compression.resolve_dtype``: the note says which); attention products run in the
activation datatype; vector work in the scenario datatype's nearest vector peak.
"""
from __future__ import annotations

import numpy as np

from ..compression import (
    Compression,
    act_bytes_per_element,
    kv_bytes_per_element,
    other_weight_bytes_per_element,
    resolve_dtype,
    sparse_speedup,
    wanted_gemm_dtype,
    weight_bytes_per_element,
)
from ..hardware.schema import HardwareSpec
from ..workload.scenario import Scenario
from ..workload.schema import ModelSpec
from .engine import Prices
from .params import matrix_rate


def vector_dtype(spec: HardwareSpec, dtype: str) -> str:
    have = tuple(spec.compute.vector.peak)
    got, _ = resolve_dtype(dtype, have)
    return got


def distinct(comps) -> tuple[list, np.ndarray]:
    """(distinct compressions, index of each design's one): objects first (cheap), then values."""
    uniq: dict = {}
    by_id: dict = {}
    for c in comps:
        by_id.setdefault(id(c), c)
    slot = {i: uniq.setdefault(c, len(uniq)) for i, c in by_id.items()}
    return list(uniq), np.array([slot[id(c)] for c in comps])


def prices(spec: HardwareSpec, p: dict, model: ModelSpec, sc: Scenario, comps, notes: set, rt=None) -> Prices:
    """Bytes per element and compute rates for each design's compression; ``comps`` is
    (distinct compressions, per-design index)."""
    mdt = spec.matrix_dtypes()
    uniq, index = comps
    wide = kv_bytes_per_element(None, sc.dtype, 1)
    head = rt.head_bits / 8 if rt is not None and rt.head_bits else None
    rows = []
    for comp in uniq:
        want, deq = wanted_gemm_dtype(comp, sc.dtype, rt.quantized_matmul if rt is not None else "activation")
        rates = spec.compute.matrix.peak if spec.compute.matrix is not None else None
        gdt, note = resolve_dtype(want, mdt, rates) if mdt else (vector_dtype(spec, want), None)
        if note:
            notes.add(note)
        # attention products run in the activation datatype (8-bit with SmoothQuant-style W8A8)
        a_want = ("fp8" if comp.weight_format == "fp8" else "int8") if comp and comp.act_bits == 8 else sc.dtype
        adt, note = resolve_dtype(a_want, mdt, rates) if mdt else (vector_dtype(spec, a_want), None)
        if note:
            notes.add(note)
        speed, note = sparse_speedup(comp, spec)
        if note:
            notes.add(note)
        # a named scheme the stack has no tiled kernel for: unpacked again per activation row
        unpack = rt.row_unpack_ops(comp.scheme) if rt is not None and comp is not None else 0.0
        # ... and pays it even where its bytes need no widening for the units (Q8_0 is int8
        # already, yet ggml's per-row dot product loads and scales every block again per row)
        deq = deq or unpack > 0
        w = weight_bytes_per_element(comp, sc.dtype)
        # embedding table and LM head: quantised with the weights when asked, else at the
        # stack's own head width where it quantises the head (never below the weights'), else 16-bit
        if comp and comp.quantize_embeddings:
            table = w
        elif head and w < wide:
            table = min(max(w, head), wide)
        else:
            table = wide
        other = other_weight_bytes_per_element(comp, sc.dtype)
        if comp is not None and comp.other_bits is not None and model.moe is None:
            notes.add(f"other_bits sets MoE experts apart: {model.name} has none, so every linear layer takes weight_bits")
            other = w
        edt, edeq = _expert_dtype(spec, model, sc, comp, rt, mdt, rates, gdt, deq, notes)
        # the cache at the compression's width, else at the stack's own (kv_bits), else the datatype's
        kv_comp = comp if (comp and comp.kv_bits) or rt is None or not rt.kv_bits else \
            (comp or Compression()).model_copy(update={"kv_bits": rt.kv_bits})
        rows.append((w, act_bytes_per_element(comp, sc.dtype), kv_bytes_per_element(kv_comp, sc.dtype, model.hd),
                     gdt, adt, speed, float(deq), table, unpack, other,
                     float(comp is None or comp.other_bits is None or comp.other_bits < 16), edt, float(edeq)))
    vdt = vector_dtype(spec, sc.dtype)

    def rate(dt):
        r = matrix_rate(spec, p, dt) if mdt else None
        return r if r is not None else p[f"compute.vector.peak.{vector_dtype(spec, dt)}"]

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

    return Prices(w_bytes=col(0), other_bytes=col(9), other_quantized=col(10), table_bytes=col(7), wire_bytes=wide,
                  a_bytes=col(1),
                  kv_bytes=col(2), gemm_rate=per_design(rate, 3) * col(5), attn_rate=per_design(rate, 4),
                  vec_rate=p[f"compute.vector.peak.{vdt}"][:, None], dequant=col(6), row_unpack=col(8),
                  # structured sparsity skips the pruned products: energy per dense FLOP falls with speed
                  gemm_e_op=per_design(e_op, 3) / col(5), attn_e_op=per_design(e_op, 4), vec_e_op=e_op(vdt)[:, None],
                  expert_rate=per_design(rate, 11) * col(5), expert_dequant=col(12),
                  expert_e_op=per_design(e_op, 11) / col(5))


def _expert_dtype(spec: HardwareSpec, model: ModelSpec, sc: Scenario, comp, rt, mdt, rates, gdt: str, deq: bool,
                  notes: set) -> tuple[str, bool]:
    """(datatype, dequantised first) of the routed experts' GEMMs: the other GEMMs' unless the
    model's W4A4 (FP4) experts meet a runtime without a native FP4 expert kernel on this
    architecture (Runtime.weight_only_fp4_experts), which multiplies them weight-only: FP4
    weights unpacked in the kernel, 16-bit activations (Marlin's W4A16). Neglected: the 16-bit
    activations' own bytes into those experts (the FP4 ones are priced)."""
    if (comp is None or comp.act_bits != 4 or model.moe is None or rt is None
            or spec.compute.arch not in rt.weight_only_fp4_experts):
        return gdt, deq
    want, edeq = wanted_gemm_dtype(comp.model_copy(update={"act_bits": None}), sc.dtype, rt.quantized_matmul)
    edt, _ = resolve_dtype(want, mdt, rates)
    notes.add(f"{rt.name} has no native FP4 expert kernel on {spec.compute.arch}: the routed experts run "
              f"weight-only (FP4 weights unpacked, {edt} products), the dense layers on the FP4 units")
    return edt, edeq
