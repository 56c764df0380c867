"""The operator record every part of codesign shares (graph builder, engine, kernel runner).

An :class:`Op` is one kernel of a forward pass with its real shapes. GEMM-like ops
are batched matrix products ``batch x (m x k) @ (k x n)``; vector ops process
``elements`` values. Byte counts are per tensor class so that compression can
re-price them (weights, kv, activations). Decode ops whose work grows with the
context carry the slope per context token in ``d_*`` fields: at context ``c`` an op
does ``flops + d_flops * (c - context)``; the engine sums that exactly over a
generation.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal


@dataclass(frozen=True)
class OpKind:
    """One operator kind: the unit that runs it, and how the engine, the serving step
    tables, the runtimes and the kernel runner treat it."""
    name: str
    # the unit that runs it, which sets how the engine prices it: matrix units (tiling,
    # utilisation, the '.gemv' kernel profile at one row), vector units, or the device link
    unit: Literal["matrix", "vector", "link"]
    # a product of the attention core: it runs in the activation datatype (attention rate and
    # energy), reads the KV cache grouped by KV head, and in decode runs one work unit per
    # sequence and KV head unless the runtime splits the cache (engine._unit_occupancy)
    attention: bool = False
    # the whole attention in one kernel, scores kept on chip: K/V streamed once per query
    # block (FlashAttention); the runner runs it as SDPA, or NumPy's blocked loop
    fused: bool = False
    # its decode work grows with the context (the graph's slope terms), and the serving step
    # tables price the graph's op of this name on context grids, not per token (perf/steps.py)
    context: bool = False
    # a runtime may fold it into a neighbouring kernel (``fuse:`` in the runtime's YAML)
    fusable: bool = False
    # it reads and writes a fixed state per sequence instead of a KV cache (a linear-attention
    # or state-space mixer's recurrence, its short convolution's window): its decode work does
    # not grow with the context, the op's state_bytes sit where the KV cache does, a matrix-unit
    # one runs in the activation datatype as the attention core does, and the serving step
    # tables price it per sequence, with the attention core (perf/steps.py)
    state: bool = False
    # the kernel runner (validate/kernels.py) times it: it has a single-device kernel
    runner: bool = True
    # collectives: passes of (n-1)/n of the data per device over a ring of n (all-reduce 2:
    # reduce-scatter then all-gather; all-to-all 1), each with n-1 latency steps; 0: one
    # point-to-point transfer of all of it
    link_rounds: int = 0


OP_KINDS: dict[str, OpKind] = {k.name: k for k in (
    OpKind("gemm", "matrix"),
    OpKind("attn_score", "matrix", attention=True, context=True),
    OpKind("attn_context", "matrix", attention=True, context=True),
    OpKind("attention", "matrix", attention=True, fused=True, context=True),
    OpKind("softmax", "vector", context=True, fusable=True),
    OpKind("norm", "vector", fusable=True),
    OpKind("activation", "vector", fusable=True),
    OpKind("elementwise", "vector", fusable=True),
    OpKind("embedding", "vector", fusable=True),
    OpKind("rope", "vector", fusable=True),
    OpKind("recurrence", "matrix", state=True, runner=False),
    OpKind("conv", "vector", state=True, runner=False),
    OpKind("allreduce", "link", runner=False, link_rounds=2),
    OpKind("alltoall", "link", runner=False, link_rounds=1),
    OpKind("p2p", "link", runner=False),
)}


def kinds(**where) -> tuple[str, ...]:
    """Names of the op kinds whose fields equal ``where`` (e.g. ``unit="matrix"``), in table order."""
    return tuple(k.name for k in OP_KINDS.values() if all(getattr(k, f) == v for f, v in where.items()))


# operator kinds -> which unit runs them
MATRIX_KINDS = kinds(unit="matrix")
VECTOR_KINDS = kinds(unit="vector")
LINK_KINDS = kinds(unit="link")
ALL_KINDS = MATRIX_KINDS + VECTOR_KINDS + LINK_KINDS
ATTENTION_KINDS = kinds(attention=True)      # the attention core's products (scores, context, fused)
CONTEXT_KINDS = kinds(context=True)          # the attention core, its unfused softmax included
STATE_KINDS = kinds(state=True)              # recurrent mixers' ops that keep a per-sequence state
FUSABLE_KINDS = kinds(fusable=True)
RUNNABLE_KINDS = kinds(runner=True)


@dataclass(frozen=True)
class Op:
    name: str                    # 'q_proj', 'attn_score', 'ffn_down', ...
    kind: str                    # one of OP_KINDS
    phase: str                   # 'prefill' | 'decode'
    count: int = 1               # times per forward pass (e.g. layers)
    impl: str = ""               # variant: rmsnorm/layernorm, silu/gelu, add/mul, ...
    batch: int = 1               # GEMM-like: independent products (heads x sequences)
    m: int = 0
    n: int = 0
    k: int = 0
    elements: int = 0            # vector ops: values processed (per op instance)
    flops: float = 0.0           # per op instance
    transcendentals: float = 0.0  # exp/tanh/erf evaluations per op instance
    # bytes per op instance at the scenario datatype, by tensor class, before compression
    weight_elems: float = 0.0    # weight values read
    act_in_elems: float = 0.0    # activation values read
    act_out_elems: float = 0.0   # activation values written
    kv_read_elems: float = 0.0   # KV-cache values read
    kv_write_elems: float = 0.0  # KV-cache values written
    # recurrent state bytes read + written (in the state's own datatype, fp32 unless the model
    # says otherwise; compression does not re-price them); they live where the KV cache does
    state_bytes: float = 0.0
    # a sequential scan (a recurrence run token by token): dependent steps one after another,
    # each waiting on a memory round trip, over `chains` independent chains side by side (one
    # warp each); 0: no such chain (perf.engine._serial_chain)
    serial_steps: int = 0
    chains: int = 0
    link_bytes: float = 0.0      # bytes over the device link (collectives)
    link_devices: int = 1        # participants of the collective
    context: int = 0             # decode: context length these numbers are for
    # decode: growth per extra context token (attention over the KV cache)
    d_flops: float = 0.0
    d_transcendentals: float = 0.0
    d_elements: float = 0.0
    d_kv_read_elems: float = 0.0
    d_act_in_elems: float = 0.0  # e.g. the unfused score matrix grows with context
    d_act_out_elems: float = 0.0
    d_n: float = 0.0             # growth of n (attn_score) per context token
    d_k: float = 0.0             # growth of k (attn_context) per context token
    tags: tuple = field(default_factory=tuple)   # e.g. ('moe',), ('sparse-eligible',)

    @property
    def is_matrix(self) -> bool:
        return self.kind in MATRIX_KINDS

    def at_context(self, c: int) -> Op:
        """The same op at decode context ``c`` (used by the kernel runner and tests)."""
        dc = c - self.context
        if dc == 0:
            return self
        return replace(
            self, context=c, flops=self.flops + self.d_flops * dc,
            transcendentals=self.transcendentals + self.d_transcendentals * dc,
            elements=int(self.elements + self.d_elements * dc),
            kv_read_elems=self.kv_read_elems + self.d_kv_read_elems * dc,
            act_in_elems=self.act_in_elems + self.d_act_in_elems * dc,
            act_out_elems=self.act_out_elems + self.d_act_out_elems * dc,
            n=int(self.n + self.d_n * dc), k=int(self.k + self.d_k * dc))
