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

from dataclasses import dataclass, field

# operator kinds -> which unit runs them
MATRIX_KINDS = ("gemm", "attn_score", "attn_context", "attention")
VECTOR_KINDS = ("softmax", "norm", "activation", "elementwise", "embedding", "rope")
LINK_KINDS = ("allreduce", "alltoall", "p2p")
ALL_KINDS = MATRIX_KINDS + VECTOR_KINDS + LINK_KINDS


@dataclass(frozen=True)
class Op:
    name: str                    # 'q_proj', 'attn_score', 'ffn_down', ...
    kind: str                    # one of ALL_KINDS
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
        from dataclasses import replace
        return replace(
            self, context=c, flops=self.flops + self.d_flops * dc,
            transcendentals=self.transcendentals + self.d_transcendentals * dc,
            elements=int(self.elements + self.d_elements * dc),
            kv_read_elems=self.kv_read_elems + self.d_kv_read_elems * dc,
            act_in_elems=self.act_in_elems + self.d_act_in_elems * dc,
            act_out_elems=self.act_out_elems + self.d_act_out_elems * dc,
            n=int(self.n + self.d_n * dc), k=int(self.k + self.d_k * dc))
