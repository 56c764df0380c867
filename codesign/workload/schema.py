"""Model architecture schema (decoder-only and encoder-only transformers, and hybrids that
interleave attention with recurrent linear-attention / state-space layers)."""
from __future__ import annotations

import math
from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..io import validate

# bytes per element of a recurrent state's datatype
STATE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# the blocks a layer_pattern names (Nemotron-H's hybrid_override_pattern alphabet): each is one
# pre-norm residual sub-layer
BLOCKS = {"*": "softmax attention", "M": "the recurrent mixer", "-": "the dense FFN", "E": "the MoE FFN"}


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MoE(Frozen):
    """Mixture of experts in the FFN: ``num_experts`` routed experts, ``top_k`` per token."""
    num_experts: int = Field(gt=1)
    top_k: int = Field(gt=0)
    shared_experts: int = Field(default=0, ge=0)
    expert_ffn_size: int | None = Field(default=None, gt=0)   # default: the model's ffn_size
    every: int = Field(default=1, gt=0)                       # an MoE FFN every n-th layer
    first_dense: int = Field(default=0, ge=0)                 # leading layers with a dense FFN (DeepSeek: 3)
    # LatentMoE (Nemotron 3 Super): the routed experts work in a latent of this width, between a
    # down-projection (hidden -> latent) and an up-projection back; router and shared experts
    # see the hidden state
    latent_size: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _k(self):
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k ({self.top_k}) cannot exceed num_experts ({self.num_experts})")
        return self


class MLA(Frozen):
    """Multi-head latent attention (DeepSeek-V2/V3): a token's keys and values are rebuilt
    from one cached latent of ``kv_lora_rank`` plus a RoPE key of ``qk_rope_head_dim``
    shared by all heads, so the KV cache holds kv_lora_rank + qk_rope_head_dim values per
    token and layer (DeepSeek-V2 paper, sec. 2.1)."""
    kv_lora_rank: int = Field(gt=0)
    q_lora_rank: int | None = Field(default=None, gt=0)      # None: a plain query projection
    qk_nope_head_dim: int = Field(gt=0)
    qk_rope_head_dim: int = Field(gt=0)
    v_head_dim: int = Field(gt=0)

    @property
    def cached(self) -> int:
        return self.kv_lora_rank + self.qk_rope_head_dim


class Recurrent(Frozen):
    """A recurrent token mixer in place of softmax attention: per head a fixed matrix state of
    head_dim x state_size values, updated once per token, so a sequence keeps a constant state
    instead of a per-token KV cache.

    gated_deltanet (Yang et al. 2024, arXiv 2412.06464; Qwen3-Next, Qwen3.5): num_heads value
    heads of head_dim (linear_num_value_heads, linear_value_head_dim), groups key heads of
    state_size (linear_num_key_heads, linear_key_head_dim); the state of a value head is
    d_k x d_v. mamba2 (Dao & Gu 2024, arXiv 2405.21060; Nemotron-H): num_heads SSM heads of
    head_dim (P), state_size N (ssm_state_size), groups B/C groups (n_groups); the state of a
    head is P x N. Both run a short causal depthwise convolution (conv_kernel taps) over the
    q/k/v (x/B/C) channels before the recurrence, and a gated RMSNorm after it."""
    kind: Literal["gated_deltanet", "mamba2"]
    num_heads: int = Field(gt=0)              # value heads (DeltaNet) / SSM heads (Mamba-2)
    head_dim: int = Field(gt=0)               # d_v (DeltaNet) / P (Mamba-2)
    state_size: int = Field(gt=0)             # d_k (DeltaNet key head dim) / N (Mamba-2 ssm_state_size)
    groups: int = Field(gt=0)                 # key heads (DeltaNet) / B and C groups (Mamba-2 n_groups)
    conv_kernel: int = Field(default=4, gt=1)
    conv_bias: bool = False                   # Mamba-2 (use_conv_bias): a bias per conv channel
    expand: float | None = Field(default=None, gt=0)   # Mamba-2: num_heads x head_dim = expand x hidden_size
    chunk: int = Field(default=64, gt=0)      # chunk length of the chunked (prefill) form
    state_dtype: Literal["fp32", "bf16", "fp16"] = "fp32"   # the recurrent state's datatype

    @model_validator(mode="after")
    def _groups(self):
        if self.num_heads % self.groups:
            raise ValueError(f"groups ({self.groups}) must divide num_heads ({self.num_heads})")
        return self

    @property
    def inner(self) -> int:
        """Value width: num_heads x head_dim (Mamba-2's intermediate size)."""
        return self.num_heads * self.head_dim

    @property
    def key_width(self) -> int:
        """Key (DeltaNet q and k each) / B and C (Mamba-2, each) width: groups x state_size."""
        return self.groups * self.state_size

    @property
    def conv_channels(self) -> int:
        """Channels of the causal convolution: q, k, v (DeltaNet) or x, B, C (Mamba-2)."""
        return self.inner + 2 * self.key_width

    @property
    def gates(self) -> int:
        """Per-head scalars the input projection also makes: DeltaNet's decay a and write
        strength beta, Mamba-2's step dt."""
        return 2 if self.kind == "gated_deltanet" else 1

    @property
    def in_width(self) -> int:
        """Output width of the input projection: q, k, v and the output gate z (DeltaNet), or
        z, x, B, C (Mamba-2), plus the per-head gates."""
        return 2 * self.inner + 2 * self.key_width + self.gates * self.num_heads

    @property
    def state_elems(self) -> int:
        """Recurrent state values per sequence and layer: heads x head_dim x state_size."""
        return self.num_heads * self.head_dim * self.state_size

    @property
    def conv_state_elems(self) -> int:
        """The convolution's window per sequence and layer: (conv_kernel - 1) past inputs."""
        return (self.conv_kernel - 1) * self.conv_channels

    @property
    def state_bytes(self) -> int:
        """Recurrent state bytes per sequence and layer, in state_dtype (the convolution window
        is kept in the activation datatype, see perf/footprint.py)."""
        return self.state_elems * STATE_BYTES[self.state_dtype]

    def params(self, hidden: int) -> int:
        """Weights of one layer: in_proj, conv (+ bias), per-head A_log and dt_bias (+ D for
        Mamba-2), the gated norm (DeltaNet: one head_dim vector shared by the heads; Mamba-2:
        the whole inner width), out_proj."""
        conv = self.conv_channels * self.conv_kernel + (self.conv_channels if self.conv_bias else 0)
        per_head = (2 if self.kind == "gated_deltanet" else 3) * self.num_heads
        norm = self.head_dim if self.kind == "gated_deltanet" else self.inner
        return hidden * self.in_width + conv + per_head + norm + self.inner * hidden


class ModelSpec(Frozen):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    display_name: str | None = None
    family: str | None = None
    architecture: Literal["decoder", "encoder"] = "decoder"
    hidden_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_kv_heads: int | None = Field(default=None, gt=0)      # default: num_heads (MHA)
    head_dim: int | None = Field(default=None, gt=0)          # default: hidden_size / num_heads
    ffn_size: int = Field(gt=0)
    ffn_type: Literal["gated", "plain"] = "gated"
    activation: Literal["silu", "gelu", "gelu_tanh", "relu", "relu2"] = "silu"
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    vocab_size: int = Field(gt=0)
    tied_embeddings: bool = False
    position: Literal["rope", "learned", "alibi", "none"] = "rope"
    max_position: int | None = Field(default=None, gt=0)
    sliding_window: int | None = Field(default=None, gt=0)
    # with sliding_window: every n-th layer attends the whole context, the others only the
    # window (Gemma 2: 2, Gemma 3: 6, gpt-oss: 2); None: every layer is windowed (Mistral v0.1)
    global_every: int | None = Field(default=None, gt=0)
    attention_bias: bool = False                              # q/k/v(/o) projections have biases
    attention_sinks: bool = False                             # one learned logit per head in each softmax (gpt-oss)
    attention_out_bias: bool | None = None                    # o-projection bias; default: attention_bias (Qwen2: False)
    mlp_bias: bool = False
    lm_head_bias: bool = False                                # GPT-J: the LM head has a bias (vocab_size values)
    parallel_block: bool = False                              # GPT-J/NeoX: attn and MLP read the same block input
    norms_per_layer: int | None = Field(default=None, gt=0)   # default: 1 if parallel_block else 2 (GPT-NeoX: 2)
    rotary_dim: int | None = Field(default=None, gt=0)        # partial RoPE: rotated dims per head (GPT-J 64); default: head_dim
    type_vocab_size: int = Field(default=0, ge=0)             # BERT token-type embeddings
    # multi-token prediction modules (DeepSeek-V3: 1): each is one more transformer block that
    # predicts a further token from the last hidden state; not part of the served model unless
    # used as the draft of speculative decoding (codesign serve --draft mtp)
    mtp_layers: int = Field(default=0, ge=0)
    pooler: bool = False                                      # BERT pooler dense layer
    moe: MoE | None = None
    mla: MLA | None = None
    # hybrids: the model's layers in order, each a word of blocks (BLOCKS: '*' attention, 'M' the
    # recurrent mixer, '-' dense FFN, 'E' MoE FFN), each block a pre-norm residual sub-layer.
    # Words are separated by spaces ('M- M- M- *-': a Qwen3.5 layer is a mixer then its FFN); a
    # pattern without spaces is one block per layer (Nemotron-H's hybrid_override_pattern as it
    # stands), so a repeated multi-block layer needs two words ('*- *-'). A pattern shorter than
    # num_layers repeats. None: every layer is attention + FFN.
    layer_pattern: str | None = Field(default=None, pattern=r"^[*ME-]+( [*ME-]+)*$")
    recurrent: Recurrent | None = None
    # gated attention (Qwen3-Next, Qwen3.5: attn_output_gate): the query projection also makes a
    # sigmoid gate per output channel that scales the attention output before o_proj
    attention_gate: bool = False
    params: float | None = Field(default=None, gt=0)          # published total parameter count
    active_params: float | None = Field(default=None, gt=0)   # published active parameters per token (MoE)
    notes: str | None = None
    sources: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _heads(self):
        kv = self.kv_heads
        if self.num_heads % kv:
            raise ValueError(f"num_kv_heads ({kv}) must divide num_heads ({self.num_heads})")
        if self.head_dim is None and self.hidden_size % self.num_heads:
            raise ValueError("head_dim: required when num_heads does not divide hidden_size")
        if self.mla is not None and self.kv_heads != self.num_heads:
            raise ValueError("mla: latent attention has no KV-head grouping (leave num_kv_heads out)")
        if self.global_every is not None and self.sliding_window is None:
            raise ValueError("global_every: needs a sliding_window for the other layers")
        if self.architecture == "encoder" and self.moe is not None:
            raise ValueError("moe: not supported for encoder models")
        if self.rotary_dim is not None:
            if self.position != "rope":
                raise ValueError("rotary_dim: only meaningful with position: rope")
            if self.rotary_dim > self.hd or self.rotary_dim % 2:
                raise ValueError(f"rotary_dim ({self.rotary_dim}) must be even and at most head_dim ({self.hd})")
        self._check_pattern()
        return self

    def _check_pattern(self) -> None:
        """A layer_pattern and the fields it interacts with (one message, naming the field)."""
        if self.layer_pattern is None:
            if self.recurrent is not None:
                raise ValueError("recurrent: needs a layer_pattern saying which layers are recurrent ('M' blocks)")
            return
        words = len(self.layer_pattern.split(" ")) if " " in self.layer_pattern else len(self.layer_pattern)
        if self.num_layers % words:
            raise ValueError(f"layer_pattern: {words} layers do not repeat evenly into num_layers ({self.num_layers})")
        blocks = self.block_counts()
        clash = {"mla": self.mla is not None, "sliding_window": self.sliding_window is not None,
                 "parallel_block": self.parallel_block, "norms_per_layer": self.norms_per_layer is not None,
                 "architecture": self.architecture != "decoder"}
        for field, bad in clash.items():
            if bad:
                raise ValueError(f"{field}: not supported together with a layer_pattern (decoder blocks only)")
        if not blocks["*"]:
            raise ValueError("layer_pattern: needs at least one attention block '*' (serving sizes the KV cache "
                             "by the attention layers)")
        if bool(blocks["M"]) != (self.recurrent is not None):
            raise ValueError("recurrent: required by the 'M' blocks of layer_pattern" if blocks["M"]
                             else "recurrent: no 'M' block of layer_pattern uses it")
        if bool(blocks["E"]) != (self.moe is not None):
            raise ValueError("moe: required by the 'E' blocks of layer_pattern" if blocks["E"]
                             else "moe: no 'E' block of layer_pattern uses it")
        if self.moe is not None and (self.moe.every != 1 or self.moe.first_dense):
            raise ValueError("moe: with a layer_pattern the 'E' blocks are the MoE layers (every and first_dense "
                             "do not apply)")
        r = self.recurrent
        if r is not None and r.expand is not None and not math.isclose(r.expand * self.hidden_size, r.inner):
            raise ValueError(f"recurrent: num_heads x head_dim ({r.inner}) must be expand x hidden_size "
                             f"({r.expand * self.hidden_size:g})")

    # -- derived shapes ---------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def out_bias(self) -> bool:
        return self.attention_bias if self.attention_out_bias is None else self.attention_out_bias

    @property
    def layer_norm_count(self) -> int:
        """Norm layers per transformer block (pre-attention + pre-MLP, or one shared in a parallel block)."""
        return self.norms_per_layer or (1 if self.parallel_block else 2)

    @property
    def rotary_dims(self) -> int:
        """Dimensions per head that RoPE rotates (0 without RoPE)."""
        return (self.rotary_dim or self.hd) if self.position == "rope" else 0

    @property
    def title(self) -> str:
        return self.display_name or self.name

    @property
    def expert_ffn(self) -> int:
        return (self.moe.expert_ffn_size if self.moe and self.moe.expert_ffn_size else self.ffn_size)

    def layers(self) -> tuple[str, ...]:
        """The layers of a layer_pattern, in order, one word of blocks each (the pattern
        repeated to num_layers; a model cut to fewer layers keeps its first ones)."""
        if self.layer_pattern is None:
            return ()
        words = self.layer_pattern.split(" ") if " " in self.layer_pattern else list(self.layer_pattern)
        return tuple((words * math.ceil(self.num_layers / len(words)))[:self.num_layers])

    def block_counts(self) -> Counter:
        """Blocks of each kind over the layer pattern ('*', 'M', '-', 'E'); a Counter (0 if absent)."""
        return Counter("".join(self.layers()))

    def moe_layers(self) -> int:
        if self.layer_pattern is not None:
            return self.block_counts()["E"]
        return (self.num_layers - self.moe.first_dense) // self.moe.every if self.moe else 0

    def recurrent_layers(self) -> int:
        """Layers with a recurrent mixer ('M' blocks): each keeps a fixed state per sequence."""
        return self.block_counts()["M"] if self.recurrent is not None else 0

    def global_layers(self) -> int:
        """Layers that attend the whole context (the rest attend ``sliding_window`` tokens, or
        are not attention at all with a layer_pattern)."""
        if self.layer_pattern is not None:
            return self.block_counts()["*"]
        if self.sliding_window is None:
            return self.num_layers
        return self.num_layers // self.global_every if self.global_every else 0

    @property
    def kv_per_token_layer(self) -> int:
        """KV-cache elements per token and layer: K and V of every KV head, or MLA's latent."""
        return self.mla.cached if self.mla is not None else 2 * self.kv_heads * self.hd

    def kv_tokens(self, context: int) -> float:
        """Cached tokens summed over the layers at ``context``: windowed layers keep at most
        the window, recurrent and FFN-only blocks none (KV bytes = this x 2 x KV heads x
        head_dim x bytes per element)."""
        g = self.global_layers()
        if self.layer_pattern is not None:
            return g * context
        local = min(context, self.sliding_window) if self.sliding_window else context
        return g * context + (self.num_layers - g) * local

    # -- parameter counts (independent of the operator graph) --------------
    def _ffn_params(self, width: int, width_in: int | None = None) -> int:
        """An FFN of ``width`` columns on ``width_in`` inputs (default the hidden size)."""
        d = width_in or self.hidden_size
        mats = 3 if self.ffn_type == "gated" else 2
        bias = (width * (mats - 1) + d) if self.mlp_bias else 0
        return mats * d * width + bias

    def routed_expert_params(self) -> int:
        """One routed expert (on the LatentMoE latent when there is one)."""
        return self._ffn_params(self.expert_ffn, self.moe.latent_size if self.moe else None)

    def _moe_params(self, active: bool) -> int:
        """Routed experts (all, or the top_k a token uses), shared experts, router and, for
        LatentMoE, the down- and up-projections around the routed experts."""
        m = self.moe
        assert m is not None            # only called for MoE layers
        h = self.hidden_size
        if m.latent_size is None:
            n = (m.top_k if active else m.num_experts) + m.shared_experts
            return n * self._ffn_params(self.expert_ffn) + h * m.num_experts
        routed = (m.top_k if active else m.num_experts) * self.routed_expert_params()
        return (routed + m.shared_experts * self._ffn_params(self.expert_ffn) + h * m.num_experts
                + 2 * h * m.latent_size)

    def attention_params(self) -> int:
        h, hd = self.hidden_size, self.hd
        if self.mla is not None:      # q (down, norm, up), kv down + norm, kv up, output
            a, H = self.mla, self.num_heads
            qk = a.qk_nope_head_dim + a.qk_rope_head_dim
            q = (h * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * H * qk) if a.q_lora_rank else h * H * qk
            return (q + h * a.cached + a.kv_lora_rank + a.kv_lora_rank * H * (a.qk_nope_head_dim + a.v_head_dim)
                    + H * a.v_head_dim * h)
        q, kv = self.num_heads * hd, self.kv_heads * hd
        attn = h * q + 2 * h * kv + q * h + (self.num_heads if self.attention_sinks else 0)
        if self.attention_bias:
            attn += q + 2 * kv
        if self.out_bias:
            attn += h
        if self.attention_gate:
            attn += h * q
        return attn

    def layer_params(self, moe_layer: bool = False, active: bool = False) -> int:
        h = self.hidden_size
        attn = self.attention_params()
        norms = self.layer_norm_count * h * (2 if self.norm == "layernorm" else 1)
        ffn = self._moe_params(active) if (moe_layer and self.moe) else self._ffn_params(self.ffn_size)
        return attn + ffn + norms

    def block_params(self, block: str, active: bool = False) -> int:
        """One block of a layer_pattern with its pre-norm."""
        norm = self.hidden_size * (2 if self.norm == "layernorm" else 1)
        if block == "*":
            return self.attention_params() + norm
        if block == "M":
            assert self.recurrent is not None       # the validator ties 'M' blocks to recurrent
            return self.recurrent.params(self.hidden_size) + norm
        return (self._moe_params(active) if block == "E" else self._ffn_params(self.ffn_size)) + norm

    def layer_weights(self, active: bool = False) -> int:
        """Parameters of all layers (embedding, positions, final norm and LM head excluded)."""
        if self.layer_pattern is not None:
            return sum(n * self.block_params(b, active) for b, n in self.block_counts().items())
        n_moe = self.moe_layers()
        return (self.num_layers - n_moe) * self.layer_params() + n_moe * self.layer_params(True, active)

    def param_count(self, active: bool = False) -> int:
        """Total (or active-per-token) parameters, embeddings and LM head included."""
        h = self.hidden_size
        total = self.layer_weights(active)
        total += self.vocab_size * h                                      # token embedding
        if self.position == "learned":
            total += (self.max_position or 0) * h
        total += self.type_vocab_size * h
        total += h * (2 if self.norm == "layernorm" else 1)               # final / embedding norm
        if self.architecture == "decoder" and not self.tied_embeddings:
            total += self.vocab_size * h                                  # LM head
        if self.architecture == "decoder" and self.lm_head_bias:
            total += self.vocab_size
        if self.pooler:
            total += h * h + h
        return total


def workload_from_dict(data: dict, file=None) -> ModelSpec:
    return validate(ModelSpec, data, file)
