"""Model architecture schema (decoder-only and encoder-only transformers)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
        return self

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

    def moe_layers(self) -> int:
        return (self.num_layers - self.moe.first_dense) // self.moe.every if self.moe else 0

    def global_layers(self) -> int:
        """Layers that attend the whole context (the rest attend ``sliding_window`` tokens)."""
        if self.sliding_window is None:
            return self.num_layers
        return self.num_layers // self.global_every if self.global_every else 0

    @property
    def kv_per_token_layer(self) -> int:
        """KV-cache elements per token and layer: K and V of every KV head, or MLA's latent."""
        return self.mla.cached if self.mla is not None else 2 * self.kv_heads * self.hd

    def kv_tokens(self, context: int) -> float:
        """Cached tokens summed over the layers at ``context``: windowed layers keep at most
        the window (KV bytes = this x 2 x KV heads x head_dim x bytes per element)."""
        g = self.global_layers()
        local = min(context, self.sliding_window) if self.sliding_window else context
        return g * context + (self.num_layers - g) * local

    # -- parameter counts (independent of the operator graph) --------------
    def _ffn_params(self, width: int) -> int:
        mats = 3 if self.ffn_type == "gated" else 2
        bias = (width * (mats - 1) + self.hidden_size) if self.mlp_bias else 0
        return mats * self.hidden_size * width + bias

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
        return attn

    def layer_params(self, moe_layer: bool = False, active: bool = False) -> int:
        h = self.hidden_size
        attn = self.attention_params()
        norms = self.layer_norm_count * h * (2 if self.norm == "layernorm" else 1)
        if moe_layer and self.moe:
            m = self.moe
            n = (m.top_k if active else m.num_experts) + m.shared_experts
            ffn = n * self._ffn_params(self.expert_ffn) + h * m.num_experts  # experts + router
        else:
            ffn = self._ffn_params(self.ffn_size)
        return attn + ffn + norms

    def param_count(self, active: bool = False) -> int:
        """Total (or active-per-token) parameters, embeddings and LM head included."""
        h = self.hidden_size
        n_moe = self.moe_layers()
        total = (self.num_layers - n_moe) * self.layer_params() + n_moe * self.layer_params(True, active)
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
