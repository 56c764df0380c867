"""Hugging Face ``config.json`` (on disk, never fetched) -> a workload.

``hf_config_to_dict`` turns the parsed JSON into a workload dict for
``workload_from_dict``; ``import_hf_config`` reads the file (or a model folder)
and returns the validated :class:`ModelSpec`.

Only what changes FLOPs, bytes or parameter counts is read. The defaults used
when a key is absent are those of the matching ``transformers`` config class /
modeling file (e.g. ``GPT2Config.n_inner=None`` -> 4 x ``n_embd``,
``GPTNeoXConfig.rotary_pct=0.25``), so a config that relies on them imports as
the real model. Ignored on purpose: RoPE scaling (changes the angles, not the
work), dropout, initialisers, token ids, dtype.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import CodesignError
from ..io import read_text
from .schema import workload_from_dict

# transformers activation names (``ACT2FN`` keys) -> schema activation
_ACTIVATIONS = {
    "silu": "silu", "swish": "silu",
    "gelu": "gelu",                                   # exact erf GELU
    "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_python_tanh": "gelu_tanh",                  # tanh approximations of GELU
    "relu": "relu", "relu2": "relu2",
}

# Llama-style decoders (pre-norm RMSNorm, gated MLP, RoPE):
# model_type -> (family, tie_word_embeddings default, q/k/v bias, o bias).
# A bias of None means "read config['attention_bias'] (default False)"; True/False is
# fixed by the modeling file (Qwen2Attention: q/k/v bias=True, o_proj bias=False).
_LLAMA_LIKE = {
    "llama": ("llama", False, None, None),
    "mistral": ("mistral", False, False, False),
    "mixtral": ("mistral", False, False, False),
    "qwen2": ("qwen", False, True, False),
    "phi3": ("phi", False, None, None),
    "gemma": ("gemma", True, None, None),
    "gemma2": ("gemma", True, None, None),
    "gemma3_text": ("gemma", True, None, None),
    "qwen3": ("qwen", False, None, None),
    "qwen3_moe": ("qwen", False, None, None),
    "qwen2_moe": ("qwen", False, True, False),
    "olmo2": ("olmo", False, None, None),
    "internlm2": ("internlm", False, None, None),
    "gpt_oss": ("gpt-oss", False, None, None),
}


class _Config:
    """Typed access to one config.json; every problem names the file and the key."""

    def __init__(self, data: dict, file, prefix: str = ""):
        self.data, self.file, self.prefix = data, str(file), prefix

    def error(self, key: str, message: str) -> CodesignError:
        return CodesignError(message, file=self.file, field=self.prefix + key)

    def text(self) -> _Config:
        """A vision-language config's ``text_config`` (Qwen3.5), else this config."""
        sub = self.data.get("text_config")
        if sub is None:
            return self
        if not isinstance(sub, dict):
            raise self.error("text_config", f"expected a mapping, got {sub!r}")
        return _Config(sub, self.file, self.prefix + "text_config.")

    def int_list(self, key: str) -> list[int]:
        value = self.data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise self.error(key, f"expected a list of layer indices, got {value!r}")
        return value

    def _check(self, key, value, kind):
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.error(key, f"expected an integer, got {value!r}")
        if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise self.error(key, f"expected a number, got {value!r}")
        if kind is bool and not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        if kind is str and not isinstance(value, str):
            raise self.error(key, f"expected a string, got {value!r}")
        return value

    def req(self, key: str, kind=int):
        value = self.data.get(key)
        if value is None:
            model_type = self.data.get("model_type")
            raise self.error(key, f"required field is missing (needed to import model_type {model_type!r})")
        return self._check(key, value, kind)

    def opt(self, key: str, default, kind=int):
        """The value, or ``default`` when the key is absent or null (as transformers does)."""
        value = self.data.get(key)
        return default if value is None else self._check(key, value, kind)

    def activation(self, key: str, default: str) -> str:
        name = self.opt(key, default, str)
        if name not in _ACTIVATIONS:
            raise self.error(key, f"unsupported activation {name!r}; expected one of {', '.join(sorted(_ACTIVATIONS))}")
        return _ACTIVATIONS[name]


def _llama_like(c: _Config) -> dict:
    model_type = c.data["model_type"]
    family, tie_default, qkv_bias, o_bias = _LLAMA_LIKE[model_type]
    h, layers, heads = c.req("hidden_size"), c.req("num_hidden_layers"), c.req("num_attention_heads")
    bias_key = "bias" if model_type == "internlm2" else "attention_bias"     # InternLM2 names it 'bias'
    qkv_bias = c.opt(bias_key, False, bool) if qkv_bias is None else qkv_bias
    o_bias = qkv_bias if o_bias is None else o_bias
    d = {
        "family": family, "hidden_size": h, "num_layers": layers,
        "num_heads": heads, "num_kv_heads": c.opt("num_key_value_heads", heads),
        "head_dim": c.opt("head_dim", None), "ffn_size": c.req("intermediate_size"),
        "ffn_type": "gated", "norm": "rmsnorm", "position": "rope",
        "vocab_size": c.req("vocab_size"),
        "tied_embeddings": c.opt("tie_word_embeddings", tie_default, bool),
        "max_position": c.opt("max_position_embeddings", None),
        "attention_bias": qkv_bias, "mlp_bias": c.opt("mlp_bias", False, bool),
    }
    if o_bias != qkv_bias:
        d["attention_out_bias"] = o_bias
    # Gemma: GemmaMLP uses `hidden_activation`, falling back to the tanh GELU whatever
    # `hidden_act` says (transformers >= 4.38 warns about exactly this).
    gemma = model_type in ("gemma", "gemma2", "gemma3_text")
    d["activation"] = (c.activation("hidden_activation", "gelu_pytorch_tanh") if gemma
                       else c.activation("hidden_act", "silu"))
    if model_type in ("gemma2", "gemma3_text"):   # extra norms after attention and MLP (weights counted)
        d["norms_per_layer"] = 4
        d["sliding_window"] = c.opt("sliding_window", 4096 if model_type == "gemma2" else 1024)
        # Gemma 2 alternates local and global layers; Gemma 3 has one global layer in 6
        d["global_every"] = 2 if model_type == "gemma2" else c.opt("sliding_window_pattern", 6)
    # Sliding-window attention caps the KV cache. Qwen2 carries a window in every config
    # but only uses it when use_sliding_window is true.
    if model_type in ("mistral", "mixtral", "phi3") or (
            model_type == "qwen2" and c.opt("use_sliding_window", False, bool)):
        d["sliding_window"] = c.opt("sliding_window", None)
    if model_type == "mixtral":
        d["moe"] = {"num_experts": c.req("num_local_experts"), "top_k": c.req("num_experts_per_tok")}
    if model_type == "gpt_oss":
        d["moe"] = {"num_experts": c.req("num_local_experts"), "top_k": c.req("num_experts_per_tok"),
                    "expert_ffn_size": c.req("intermediate_size")}
        d["mlp_bias"] = True                      # expert gate/up/down biases
        d["attention_sinks"] = True
        _layer_pattern(c, d)
    if model_type in ("qwen3_moe", "qwen2_moe"):
        dense = c.data.get("mlp_only_layers") or []
        if not isinstance(dense, list):
            raise c.error("mlp_only_layers", f"expected a list of layer indices, got {dense!r}")
        if dense:
            raise c.error("mlp_only_layers", "dense layers listed among MoE layers are not supported")
        width = c.req("moe_intermediate_size")
        moe = {"num_experts": c.req("num_experts"), "top_k": c.req("num_experts_per_tok"),
               "expert_ffn_size": width, "every": c.opt("decoder_sparse_step", 1)}
        shared = c.opt("shared_expert_intermediate_size", 0)
        if shared:                 # one wide shared expert = that many expert widths
            if shared % width:
                raise c.error("shared_expert_intermediate_size", f"expected a multiple of moe_intermediate_size "
                              f"({width}), got {shared}")
            moe["shared_experts"] = shared // width
        d["moe"] = moe
    return d


def _layer_pattern(c: _Config, d: dict) -> None:
    """``layer_types`` (sliding_attention / full_attention per layer) -> sliding_window and
    global_every: one full layer every n, the others windowed."""
    types = c.data.get("layer_types")
    if not types:
        return
    if not isinstance(types, list) or not all(t in ("sliding_attention", "full_attention") for t in types):
        raise c.error("layer_types", f"expected a list of 'sliding_attention' / 'full_attention', got {types!r}")
    full = [i for i, t in enumerate(types) if t == "full_attention"]
    if len(full) == len(types):
        return
    period = full[1] - full[0] if len(full) > 1 else len(types)
    if not full or any(b - a != period for a, b in zip(full, full[1:])) or full[0] != period - 1:
        raise c.error("layer_types", "only one full-attention layer every n layers (the n-th) can be expressed")
    d["sliding_window"] = c.req("sliding_window")
    d["global_every"] = period


def _falcon(c: _Config) -> dict:
    """Falcon: parallel attention and MLP, LayerNorm, plain GELU MLP, tied head; multi-query
    (7B) or grouped KV heads with separate attention/MLP norms (new_decoder_architecture, 40B+)."""
    h, heads = c.req("hidden_size"), c.req("num_attention_heads")
    new_arch = c.opt("new_decoder_architecture", False, bool)
    kv = c.req("num_kv_heads") if new_arch else (1 if c.opt("multi_query", True, bool) else heads)
    return {
        "family": "falcon", "hidden_size": h, "num_layers": c.req("num_hidden_layers"), "num_heads": heads,
        "num_kv_heads": kv, "ffn_size": c.opt("ffn_hidden_size", 4 * h), "ffn_type": "plain",
        "activation": c.activation("activation", "gelu"), "norm": "layernorm",
        "vocab_size": c.req("vocab_size"), "tied_embeddings": c.opt("tie_word_embeddings", True, bool),
        "position": "alibi" if c.opt("alibi", False, bool) else "rope",
        "max_position": c.opt("max_position_embeddings", 2048),
        "attention_bias": c.opt("bias", False, bool), "mlp_bias": c.opt("bias", False, bool),
        "parallel_block": c.opt("parallel_attn", True, bool), "norms_per_layer": 2 if new_arch else None,
    }


def _chatglm(c: _Config) -> dict:
    """ChatGLM2/3 (GLM): grouped KV heads (multi_query_group_num), SwiGLU of ffn_hidden_size,
    RMSNorm, q/k/v bias, RoPE on half of each head's dimensions, untied output layer."""
    h, heads = c.req("hidden_size"), c.req("num_attention_heads")
    hd = c.opt("kv_channels", h // heads)
    return {
        "family": "glm", "hidden_size": h, "num_layers": c.req("num_layers"), "num_heads": heads,
        "num_kv_heads": c.req("multi_query_group_num") if c.opt("multi_query_attention", False, bool) else heads,
        "head_dim": hd if hd != h // heads else None, "ffn_size": c.req("ffn_hidden_size"), "ffn_type": "gated",
        "activation": "silu", "norm": "rmsnorm" if c.opt("rmsnorm", True, bool) else "layernorm",
        "vocab_size": c.req("padded_vocab_size"), "tied_embeddings": False,
        "position": "rope", "rotary_dim": hd // 2, "max_position": c.opt("seq_length", None),
        "attention_bias": c.opt("add_qkv_bias", True, bool), "attention_out_bias": False,
    }


def _deepseek(c: _Config) -> dict:
    """DeepSeek-V2/V3: multi-head latent attention, shared + routed experts after
    ``first_k_dense_replace`` dense layers (DeepseekV3ForCausalLM)."""
    heads = c.req("num_attention_heads")
    d = {
        "family": "deepseek", "hidden_size": c.req("hidden_size"), "num_layers": c.req("num_hidden_layers"),
        "num_heads": heads, "head_dim": c.req("v_head_dim"), "ffn_size": c.req("intermediate_size"),
        "ffn_type": "gated", "activation": c.activation("hidden_act", "silu"), "norm": "rmsnorm",
        "position": "rope", "vocab_size": c.req("vocab_size"),
        "tied_embeddings": c.opt("tie_word_embeddings", False, bool),
        "max_position": c.opt("max_position_embeddings", None),
        "mtp_layers": c.opt("num_nextn_predict_layers", 0),
        "mla": {"kv_lora_rank": c.req("kv_lora_rank"), "q_lora_rank": c.opt("q_lora_rank", None),
                "qk_nope_head_dim": c.req("qk_nope_head_dim"), "qk_rope_head_dim": c.req("qk_rope_head_dim"),
                "v_head_dim": c.req("v_head_dim")},
    }
    experts = c.opt("n_routed_experts", None)
    if experts:
        d["moe"] = {"num_experts": experts, "top_k": c.req("num_experts_per_tok"),
                    "shared_experts": c.opt("n_shared_experts", 0), "expert_ffn_size": c.req("moe_intermediate_size"),
                    "first_dense": c.opt("first_k_dense_replace", 0), "every": c.opt("moe_layer_freq", 1)}
    return d


def _gpt2(c: _Config) -> dict:
    """GPT-2 (and GPT-3-style) decoders: learned positions, LayerNorm, biased plain MLP, tied head."""
    h = c.req("n_embd")
    return {
        "family": "gpt", "hidden_size": h, "num_layers": c.req("n_layer"), "num_heads": c.req("n_head"),
        "ffn_size": c.opt("n_inner", 4 * h), "ffn_type": "plain",
        "activation": c.activation("activation_function", "gelu_new"), "norm": "layernorm",
        "vocab_size": c.req("vocab_size"), "tied_embeddings": c.opt("tie_word_embeddings", True, bool),
        "position": "learned", "max_position": c.opt("n_positions", 1024),
        "attention_bias": True, "mlp_bias": True,
    }


def _gptj(c: _Config) -> dict:
    """GPT-J: one LayerNorm feeds attention and MLP in parallel; no q/k/v/o biases; the LM
    head has a bias; RoPE on the first ``rotary_dim`` dims of each head."""
    h, heads = c.req("n_embd"), c.req("n_head")
    rotary = c.opt("rotary_dim", None) if "rotary_dim" in c.data else 64   # GPTJConfig default 64
    return {
        "family": "gpt-j", "hidden_size": h, "num_layers": c.req("n_layer"), "num_heads": heads,
        "ffn_size": c.opt("n_inner", 4 * h), "ffn_type": "plain",
        "activation": c.activation("activation_function", "gelu_new"), "norm": "layernorm",
        "vocab_size": c.req("vocab_size"), "tied_embeddings": c.opt("tie_word_embeddings", False, bool),
        "position": "rope", "max_position": c.opt("n_positions", 2048),
        "rotary_dim": rotary if rotary and rotary != h // heads else None,
        "attention_bias": False, "mlp_bias": True, "lm_head_bias": True, "parallel_block": True,
    }


def _gpt_neox(c: _Config) -> dict:
    """GPT-NeoX / Pythia: parallel residual (x + attn(ln1 x) + mlp(ln2 x)) keeps two
    LayerNorms per layer; RoPE on int(head_dim x rotary_pct) dims (GPTNeoXAttention)."""
    h, heads = c.req("hidden_size"), c.req("num_attention_heads")
    pct = c.opt("rotary_pct", 0.25, float)
    if not 0 < pct <= 1:
        raise c.error("rotary_pct", f"expected a fraction in (0, 1], got {pct!r}")
    hd = h // heads
    rotary = int(hd * pct)        # transformers floors: rotary_ndims = int(head_size * rotary_pct)
    rotary -= rotary % 2          # rotate_half needs an even count
    if rotary < 2:
        raise c.error("rotary_pct", f"{pct!r} x head_dim {hd} leaves no dimension to rotate")
    parallel = c.opt("use_parallel_residual", True, bool)
    return {
        "family": "gpt-neox", "hidden_size": h, "num_layers": c.req("num_hidden_layers"), "num_heads": heads,
        "ffn_size": c.req("intermediate_size"), "ffn_type": "plain",
        "activation": c.activation("hidden_act", "gelu"), "norm": "layernorm",
        "vocab_size": c.req("vocab_size"), "tied_embeddings": c.opt("tie_word_embeddings", False, bool),
        "position": "rope", "max_position": c.opt("max_position_embeddings", 2048),
        "rotary_dim": rotary if rotary != hd else None,
        "attention_bias": c.opt("attention_bias", True, bool), "mlp_bias": True,
        "parallel_block": parallel, "norms_per_layer": 2 if parallel else None,
    }


def _bert(c: _Config) -> dict:
    """BERT encoder (BertModel incl. pooler): post-LN, biased projections, learned
    absolute positions and token-type embeddings."""
    kind = c.opt("position_embedding_type", "absolute", str)
    if kind != "absolute":
        raise c.error("position_embedding_type", f"only 'absolute' is supported, got {kind!r}")
    return {
        "family": "bert", "architecture": "encoder",
        "hidden_size": c.req("hidden_size"), "num_layers": c.req("num_hidden_layers"),
        "num_heads": c.req("num_attention_heads"), "ffn_size": c.req("intermediate_size"),
        "ffn_type": "plain", "activation": c.activation("hidden_act", "gelu"), "norm": "layernorm",
        "vocab_size": c.req("vocab_size"), "position": "learned",
        "max_position": c.opt("max_position_embeddings", 512),
        "type_vocab_size": c.opt("type_vocab_size", 2), "pooler": True,
        "attention_bias": True, "mlp_bias": True,
    }


# -- hybrids: layers of attention and recurrent (linear-attention / state-space) mixers ------
_STATE_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def _pattern(words: list[str]) -> str:
    """Per-layer block words -> the shortest repeating unit, space-separated (one word per
    layer; ModelSpec.layer_pattern repeats it to num_layers)."""
    n = len(words)
    period = next(p for p in range(1, n + 1) if n % p == 0 and words == words[:p] * (n // p))
    if period == 1 and len(words[0]) > 1:     # one word alone would read as one block per layer
        period = 2 if n % 2 == 0 else n
    return " ".join(words[:period])


def _state_dtype(c: _Config, key: str) -> str:
    name = c.opt(key, "float32", str)
    if name not in _STATE_DTYPES:
        raise c.error(key, f"unsupported state datatype {name!r}; expected one of {', '.join(_STATE_DTYPES)}")
    return _STATE_DTYPES[name]


def _shared_experts(c: _Config, key: str, width: int) -> int:
    shared = c.opt(key, 0)
    if shared % width:
        raise c.error(key, f"expected a multiple of the expert width ({width}), got {shared}")
    return shared // width


def _qwen_hybrid(c: _Config) -> dict:
    """Qwen3-Next and Qwen3.5 / 3.6 (dense and MoE; the vision-language configs' text_config):
    Gated DeltaNet layers with a full gated-attention layer every full_attention_interval
    layers (or as layer_types says), each followed by a SwiGLU FFN or sparse MoE block.
    Defaults as Qwen3NextConfig / Qwen3_5TextConfig."""
    model_type = c.data["model_type"]
    moe = model_type in ("qwen3_next", "qwen3_5_moe", "qwen3_5_moe_text")
    t = c.text()
    h, layers, heads = t.req("hidden_size"), t.req("num_hidden_layers"), t.req("num_attention_heads")
    hd = t.opt("head_dim", 256)
    rope = t.data.get("rope_parameters")
    pct = (rope if isinstance(rope, dict) else {}).get("partial_rotary_factor", t.opt("partial_rotary_factor", 0.25, float))
    if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 < pct <= 1:
        raise t.error("partial_rotary_factor", f"expected a fraction in (0, 1], got {pct!r}")
    types = t.data.get("layer_types")
    if types is None:
        every = t.opt("full_attention_interval", 4)
        types = ["full_attention" if (i + 1) % every == 0 else "linear_attention" for i in range(layers)]
    if (not isinstance(types, list) or len(types) != layers
            or not all(x in ("linear_attention", "full_attention") for x in types)):
        raise t.error("layer_types", f"expected {layers} entries of 'linear_attention' / 'full_attention', "
                                     f"got {types!r}")
    dense = set(t.int_list("mlp_only_layers"))
    step = t.opt("decoder_sparse_step", 1)
    words = [("*" if kind == "full_attention" else "M")
             + ("E" if moe and i not in dense and (i + 1) % step == 0 else "-") for i, kind in enumerate(types)]
    d = {
        "family": "qwen", "hidden_size": h, "num_layers": layers, "num_heads": heads,
        "num_kv_heads": t.opt("num_key_value_heads", 2), "head_dim": hd,
        # MoE releases may leave the dense width out (no layer uses it): the expert width then
        "ffn_size": t.opt("intermediate_size", t.opt("moe_intermediate_size", 512)) if moe
        else t.req("intermediate_size"),
        "ffn_type": "gated", "activation": t.activation("hidden_act", "silu"), "norm": "rmsnorm", "position": "rope",
        "rotary_dim": int(hd * pct) if int(hd * pct) != hd else None, "vocab_size": t.req("vocab_size"),
        "tied_embeddings": t.opt("tie_word_embeddings", c.opt("tie_word_embeddings", False, bool), bool),
        "max_position": t.opt("max_position_embeddings", None), "attention_bias": t.opt("attention_bias", False, bool),
        "attention_gate": t.opt("attn_output_gate", True, bool), "layer_pattern": _pattern(words),
        "recurrent": {"kind": "gated_deltanet", "num_heads": t.opt("linear_num_value_heads", 32),
                      "head_dim": t.opt("linear_value_head_dim", 128), "state_size": t.opt("linear_key_head_dim", 128),
                      "groups": t.opt("linear_num_key_heads", 16), "conv_kernel": t.opt("linear_conv_kernel_dim", 4),
                      "state_dtype": _state_dtype(t, "mamba_ssm_dtype")},
    }
    if moe:
        width = t.opt("moe_intermediate_size", 512)
        d["moe"] = {"num_experts": t.opt("num_experts", 512), "top_k": t.opt("num_experts_per_tok", 10),
                    "expert_ffn_size": width,
                    "shared_experts": _shared_experts(t, "shared_expert_intermediate_size", width)}
    return d


# Nemotron-H block names (layers_block_type, old and new spellings) -> pattern characters
_NEMOTRON_BLOCKS = {"mamba": "M", "linear_attention": "M", "attention": "*", "full_attention": "*",
                    "mlp": "-", "moe": "E"}


def _nemotron_h(c: _Config) -> dict:
    """Nemotron-H / Nemotron-Nano-2 / Nemotron 3 (NemotronHForCausalLM): one mixer per layer,
    Mamba-2, attention (no RoPE), a squared-ReLU MLP or MoE (shared expert; LatentMoE in
    Nemotron 3 Super), in the order of hybrid_override_pattern (or layers_block_type).
    Defaults as transformers' NemotronHConfig."""
    pattern = c.data.get("hybrid_override_pattern")
    if pattern is None:
        kinds = c.data.get("layers_block_type")
        if not isinstance(kinds, list) or not kinds or not all(k in _NEMOTRON_BLOCKS for k in kinds):
            raise c.error("layers_block_type", f"expected a list of {', '.join(sorted(_NEMOTRON_BLOCKS))}, "
                                               f"got {kinds!r}")
        pattern = "".join(_NEMOTRON_BLOCKS[k] for k in kinds)
    if not isinstance(pattern, str) or not pattern or set(pattern) - set("M*-E"):
        raise c.error("hybrid_override_pattern", f"expected a string of M, *, - and E, got {pattern!r}")
    if c.opt("mamba_proj_bias", c.opt("use_bias", False, bool), bool):
        raise c.error("mamba_proj_bias", "biases on the Mamba projections are not supported")
    heads = c.opt("num_attention_heads", 32)
    d = {
        "family": "nemotron", "hidden_size": c.req("hidden_size"), "num_layers": len(pattern), "num_heads": heads,
        "num_kv_heads": c.opt("num_key_value_heads", 8),
        "head_dim": c.opt("head_dim", c.opt("attention_head_dim", 128)), "ffn_size": c.opt("intermediate_size", 21504),
        "ffn_type": "plain", "activation": c.activation("mlp_hidden_act", "relu2"), "norm": "rmsnorm",
        "position": "none", "vocab_size": c.opt("vocab_size", 131072),
        "tied_embeddings": c.opt("tie_word_embeddings", False, bool),
        "max_position": c.opt("max_position_embeddings", None), "attention_bias": c.opt("attention_bias", False, bool),
        "mlp_bias": c.opt("mlp_bias", False, bool), "layer_pattern": pattern,
    }
    if "M" in pattern:
        d["recurrent"] = {
            "kind": "mamba2", "num_heads": c.opt("mamba_num_heads", 128), "head_dim": c.opt("mamba_head_dim", 64),
            "state_size": c.opt("ssm_state_size", 128), "groups": c.opt("n_groups", c.opt("mamba_n_groups", 8)),
            "conv_kernel": c.opt("conv_kernel", c.opt("mamba_d_conv", 4)),
            "conv_bias": c.opt("use_conv_bias", c.opt("mamba_conv_bias", True, bool), bool),
            "chunk": c.opt("chunk_size", c.opt("mamba_chunk_size", 128)),
            "state_dtype": _state_dtype(c, "mamba_ssm_cache_dtype")}
    if "E" in pattern:
        width = c.opt("moe_intermediate_size", 7688)
        d["moe"] = {"num_experts": c.opt("n_routed_experts", 8), "top_k": c.opt("num_experts_per_tok", 2),
                    "expert_ffn_size": width,
                    "shared_experts": _shared_experts(c, "moe_shared_expert_intermediate_size", width)
                    if c.opt("n_shared_experts", 1) else 0,
                    "latent_size": c.opt("moe_latent_size", None)}
    return d


def _decilm_ffn(mult, h: int) -> int:
    """DeciLM's FFN width for ffn_mult (modeling_decilm._ffn_mult_to_intermediate_size): 2/3 of
    mult x hidden, rounded up to a multiple of 256."""
    width = int(2 * mult * h / 3)
    return width if width % 256 == 0 else width + 256 - width % 256


def _decilm(c: _Config) -> dict:
    """Llama-Nemotron NAS models (nemotron-nas / DeciLMForCausalLM: Llama-3.3-Nemotron-Super-49B,
    Llama-3.1-Nemotron-Ultra-253B): per layer, attention with n_heads_in_group query heads per
    KV head, or none (no_op); a SwiGLU FFN of ffn_mult x hidden x 2/3, or none. The schema has
    one FFN width: the mean over the FFN layers (same parameters, FLOPs and weight bytes)."""
    h, heads = c.req("hidden_size"), c.req("num_attention_heads")
    blocks = c.data.get("block_configs")
    if not isinstance(blocks, list) or not blocks or not all(isinstance(b, dict) for b in blocks):
        raise c.error("block_configs", f"expected a list of per-layer block configs, got {blocks!r}")
    words, widths, groups = [], [], set()
    for i, b in enumerate(blocks):
        attn, ffn = b.get("attention") or {}, b.get("ffn") or {}
        if attn.get("replace_with_linear") or ffn.get("replace_with_linear"):
            raise c.error(f"block_configs[{i}]", "linear replacement blocks are not supported")
        word = ""
        if not attn.get("no_op"):
            groups.add(attn.get("n_heads_in_group"))
            word += "*"
        if not ffn.get("no_op"):
            mult = ffn.get("ffn_mult")
            if isinstance(mult, bool) or not isinstance(mult, (int, float)) or mult <= 0:
                raise c.error(f"block_configs[{i}].ffn.ffn_mult", f"expected a positive number, got {mult!r}")
            widths.append(_decilm_ffn(mult, h))
            word += "-"
        if not word:
            raise c.error(f"block_configs[{i}]", "a layer with neither attention nor FFN is not supported")
        words.append(word)
    if len(groups) != 1 or not isinstance(next(iter(groups)), int) or heads % next(iter(groups)):
        raise c.error("block_configs", f"attention layers must share one n_heads_in_group dividing "
                                       f"{heads} heads, got {sorted(groups, key=str)}")
    return {
        "family": "nemotron", "hidden_size": h, "num_layers": len(words), "num_heads": heads,
        "num_kv_heads": heads // next(iter(groups)), "head_dim": c.opt("head_dim", None),
        "ffn_size": round(sum(widths) / len(widths)) if widths else 1, "ffn_type": "gated",
        "activation": c.activation("hidden_act", "silu"), "norm": "rmsnorm", "position": "rope",
        "vocab_size": c.req("vocab_size"), "tied_embeddings": c.opt("tie_word_embeddings", False, bool),
        "max_position": c.opt("max_position_embeddings", None), "attention_bias": c.opt("attention_bias", False, bool),
        "mlp_bias": c.opt("mlp_bias", False, bool), "layer_pattern": _pattern(words),
    }


_FAMILIES = {**{t: _llama_like for t in _LLAMA_LIKE}, "gpt2": _gpt2, "gptj": _gptj,
             "gpt_neox": _gpt_neox, "bert": _bert, "deepseek_v2": _deepseek, "deepseek_v3": _deepseek,
             "falcon": _falcon, "chatglm": _chatglm, "nemotron_h": _nemotron_h, "nemotron-nas": _decilm,
             **dict.fromkeys(("qwen3_next", "qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text"), _qwen_hybrid)}
SUPPORTED_MODEL_TYPES = tuple(sorted(_FAMILIES))


def _slug(text: str) -> str:
    """A string -> a valid workload name (lower case, [a-z0-9._-], starting alphanumeric)."""
    s = re.sub(r"[^a-z0-9._-]+", "-", text.strip().lower())
    return re.sub(r"^[^a-z0-9]+", "", s).rstrip("-._")


def hf_config_to_dict(config: dict, file="config.json", name: str | None = None) -> dict:
    """A parsed Hugging Face config -> a workload dict (validate it with ``workload_from_dict``).

    ``file`` is only used in error messages and in ``sources``. The name defaults to
    the last part of ``_name_or_path``, else the folder holding the file.
    """
    c = _Config(config, file)
    model_type = c.req("model_type", str)
    if model_type not in _FAMILIES:
        raise c.error("model_type", f"unsupported model_type {model_type!r}; supported: "
                                    f"{', '.join(SUPPORTED_MODEL_TYPES)}")
    data = _FAMILIES[model_type](c)
    name_or_path = config.get("_name_or_path")
    origin = name_or_path if isinstance(name_or_path, str) else ""
    label = origin.rstrip("/").split("/")[-1] or Path(str(file)).resolve().parent.name
    data["name"] = name or _slug(label) or _slug(model_type)
    data["display_name"] = label or model_type
    # the model's hub name where the config gives it, else the file's folder and name: never
    # this machine's absolute path (a written spec travels)
    where = origin or "/".join(Path(str(file)).parts[-2:])
    data["sources"] = {"architecture": f"Hugging Face config.json ({model_type}): {where}"}
    scaling = config.get("rope_scaling")
    if isinstance(scaling, dict):
        kind = scaling.get("rope_type") or scaling.get("type")
        data["notes"] = f"rope_scaling ({kind}) ignored: it changes rotation angles, not the work"
    return {k: v for k, v in data.items() if v is not None}


def read_hf_config(path) -> tuple[dict, Path]:
    """Parse a config.json (or ``<folder>/config.json``) -> (dict, file)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CodesignError(f"line {e.lineno}, column {e.colno}: invalid JSON: {e.msg}", file=path) from None
    except RecursionError:
        raise CodesignError("JSON nested too deeply for a model config", file=path) from None
    if not isinstance(data, dict):
        raise CodesignError(f"expected a JSON object at the top level, got {type(data).__name__}", file=path)
    return data, path


def import_hf_config(path, name: str | None = None):
    """Read a Hugging Face config.json from disk -> validated :class:`ModelSpec`."""
    config, file = read_hf_config(path)
    return workload_from_dict(hf_config_to_dict(config, file, name=name), file)


__all__ = ["SUPPORTED_MODEL_TYPES", "hf_config_to_dict", "import_hf_config", "read_hf_config"]
