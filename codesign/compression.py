"""Model compression as a design choice: quantization, sparsity, pruning, distillation.

A :class:`Compression` says what is done to the model; :func:`storage` and
:func:`compute_dtype` say what that does to bytes and to the datatype the matrix
units really run. The perf engine calls these; nothing else decides them.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import CodesignError
from .runtime.schema import tensor_type
from .workload import load_workload


def normalize_sparsity(v) -> str | None:
    """'2:4' (N:M structured) or a density in (0, 1) like '0.5', in one canonical spelling
    (shared by Compression and the quality table so their keys match); ValueError otherwise."""
    if v is None or str(v).strip() == "":
        return None
    v = str(v).strip()
    if ":" in v:
        n, _, m = v.partition(":")
        if not (n.isdigit() and m.isdigit() and 0 < int(n) < int(m)):
            raise ValueError(f"expected N:M with 0 < N < M (e.g. '2:4'), got {v!r}")
        return f"{int(n)}:{int(m)}"
    try:
        d = float(v)
    except ValueError:
        raise ValueError(f"expected 'N:M' (e.g. '2:4') or a density in (0, 1), got {v!r}") from None
    if not 0 < d < 1:
        raise ValueError(f"a density must be in (0, 1), got {v!r}")
    return f"{round(d, 3):g}"


class Compression(BaseModel):
    """Compression choices. The defaults mean "none" (weights/activations/KV in the scenario dtype)."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    weight_bits: Literal[16, 8, 6, 4, 3, 2] | None = None       # None: scenario dtype
    weight_format: Literal["int", "fp8", "fp4", "nf4"] = "int"
    group_size: int | None = Field(default=None, gt=0)           # None: per-channel scales
    act_bits: Literal[16, 8, 4] | None = None    # 4: FP4 activations (NVFP4/MXFP4), with fp4 weights
    kv_bits: Literal[16, 8, 4] | None = None
    sparsity: str | None = None          # "2:4" / "N:M" structured, or a density like "0.5" (unstructured)
    prune_heads: float = Field(default=0.0, ge=0, lt=1)          # fraction of attention heads removed
    prune_ffn: float = Field(default=0.0, ge=0, lt=1)            # fraction of FFN channels removed
    prune_layers: float = Field(default=0.0, ge=0, lt=1)         # fraction of layers removed
    distill_to: str | None = None        # replace the model by this smaller library model
    quantize_embeddings: bool = False    # also quantize the embedding table and LM head (MLC, llama.cpp)
    # MoE checkpoints quantised per part: the routed experts take weight_bits and the other linear
    # layers (attention, shared experts, dense layers) these bits: 16 keeps them in the scenario
    # dtype (gpt-oss's MXFP4 release on Hugging Face), 8 stores them 8-bit with a scale per 32
    # (its GGUF and MLX files: Q8_0 / q8); None: every linear layer at weight_bits
    other_bits: Literal[16, 8] | None = None
    zero_point: bool = True              # int formats store a zero point per group (GPTQ/AWQ); False: symmetric
    # the format's name in the stack that runs it (llama.cpp 'q4_0', 'q4_k', 'iq4_xs'): a stack
    # may have a faster kernel for some formats than for others of the same bits
    # (Runtime.tiled_schemes); None: a generic format of these bits, on the stack's usual kernel
    scheme: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_.-]*$")

    @field_validator("sparsity")
    @classmethod
    def _sparsity(cls, v):
        return normalize_sparsity(v)

    @model_validator(mode="after")
    def _check(self):
        if self.weight_format == "fp8" and self.weight_bits not in (None, 8):
            raise ValueError("weight_format fp8 needs weight_bits 8")
        if self.weight_format in ("fp4", "nf4") and self.weight_bits not in (None, 4):
            raise ValueError(f"weight_format {self.weight_format} needs weight_bits 4")
        if self.other_bits is not None and self.weight_bits in (None, 16):
            raise ValueError("other_bits sets the non-expert layers apart from quantised experts: it needs weight_bits")
        if self.act_bits == 4 and (self.weight_format != "fp4" or self.weight_bits != 4):
            raise ValueError("act_bits 4 (FP4 activations) needs weight_bits 4 with weight_format fp4 (W4A4 on FP4 units)")
        return self

    @property
    def is_none(self) -> bool:
        return self == Compression()


def describe(comp: Compression | None) -> str:
    """Short text of a compression for titles and tables: 'W4 g128 A8 KV8 -25% FFN'; '' for none."""
    if comp is None or comp.is_none:
        return ""
    parts = []
    if comp.weight_bits:
        fmt = "" if comp.weight_format == "int" else f" {comp.weight_format}"
        parts.append(f"W{comp.weight_bits}{fmt}" + (f" g{comp.group_size}" if comp.group_size else ""))
    if comp.act_bits:
        parts.append(f"A{comp.act_bits}")
    if comp.kv_bits:
        parts.append(f"KV{comp.kv_bits}")
    if comp.other_bits:
        parts.append(f"others W{comp.other_bits}")
    if comp.sparsity:
        parts.append(f"sparsity {comp.sparsity}")
    for f, short in (("prune_heads", "heads"), ("prune_ffn", "FFN"), ("prune_layers", "layers")):
        if getattr(comp, f):
            parts.append(f"-{getattr(comp, f):.0%} {short}")
    if comp.distill_to:
        parts.append(f"distilled to {comp.distill_to}")
    return " ".join(parts)


# -- what compression does (used by the graph builder and the engine) ---------------

_WIDE = {"fp32": 4.0, "tf32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0}
# matrix-unit datatypes to try, in order, when the wanted one is unsupported
_FALLBACK = {"int4": ("int8", "fp8", "fp16", "bf16", "fp32"), "fp4": ("fp8", "fp16", "bf16", "fp32"),
             "int8": ("fp16", "bf16", "fp32"), "fp8": ("bf16", "fp16", "fp32"),
             "bf16": ("fp16", "fp32"), "fp16": ("bf16", "fp32"), "tf32": ("fp32", "bf16", "fp16"),
             "fp32": ("tf32", "fp64", "bf16", "fp16")}


def effective_model(model, comp: Compression | None):
    """The model actually served: the distillation target if any, then width/depth pruning.

    Pruning keeps the GQA ratio (heads are removed whole KV groups at a time, as
    LLM-Pruner/SliceGPT-style structured pruning does) and rounds to whole units.
    """
    if comp is None:
        return model
    if comp.distill_to:
        student = load_workload(comp.distill_to)
        if student.param_count() > model.param_count():
            raise CodesignError(f"distill_to {student.name} ({student.param_count() / 1e9:.1f} B parameters) is larger "
                                f"than {model.name} ({model.param_count() / 1e9:.1f} B): distillation serves a "
                                f"smaller model", field="distill_to")
        model = student
    if not (comp.prune_heads or comp.prune_ffn or comp.prune_layers):
        return model
    group = model.num_heads // model.kv_heads
    kv = max(1, round(model.kv_heads * (1 - comp.prune_heads)))
    upd = {"num_heads": kv * group, "num_kv_heads": kv, "head_dim": model.hd,
           "ffn_size": max(1, round(model.ffn_size * (1 - comp.prune_ffn))),
           "num_layers": max(1, round(model.num_layers * (1 - comp.prune_layers))), "params": None,
           "active_params": None}
    if model.moe and model.moe.expert_ffn_size:
        upd["moe"] = model.moe.model_copy(
            update={"expert_ffn_size": max(1, round(model.moe.expert_ffn_size * (1 - comp.prune_ffn)))})
    return model.model_copy(update=upd)


def density(comp: Compression | None) -> float:
    """Fraction of weights kept by sparsity (1 = dense)."""
    if comp is None or comp.sparsity is None:
        return 1.0
    if ":" in comp.sparsity:
        n, _, m = comp.sparsity.partition(":")
        return int(n) / int(m)
    return float(comp.sparsity)


# Stored bits per weight of named formats, scales included: the format's own block layout where
# every tensor is in it (ggml-common.h block sizes: Q4_0 = 18 bytes per 32 weights = 4.5 bits,
# Q8_0 34/32, K-quants per 256: Q6_K 210 bytes, MXFP4 17/32), and for llama-quantize's mixes the
# average over the linear layers (embedding and output excluded; the output is priced by the
# runtime's head_bits) from the file sizes llama.cpp publishes for Llama-3.1-8B
# (tools/quantize/README.md @311c2c9f: e.g. Q4_K_M 4.58 GiB with a Q4_K embedding and a Q6_K
# output -> 4.80 bits on the other 6.98 B weights; Q3_K_M from the Llama-2-7B table there, 3.91
# bits per file weight). As in llama-quantize, a bare K-quant name is its _M mix (Q4_K = Q4_K_M)
# and Q2_K is a mix too (Q3_K/Q4_K for attn_v and ffn_down).
SCHEME_BITS = {
    "q4_0": 4.5, "q4_1": 5.0, "q5_0": 5.5, "q5_1": 6.0, "q8_0": 8.5, "mxfp4": 4.25,
    "iq2_xxs": 2.0625, "iq2_xs": 2.3125, "iq2_s": 2.5625, "iq3_xxs": 3.0625, "iq3_s": 3.4375,
    "q2_k": 2.94, "q3_k_s": 3.44, "q3_k_m": 3.87, "q3_k": 3.87, "q3_k_l": 4.20, "q4_k_s": 4.53, "q4_k_m": 4.80,
    "q4_k": 4.80, "q5_k_s": 5.50, "q5_k_m": 5.65, "q5_k": 5.65, "q6_k": 6.5625, "iq4_xs": 4.32, "iq4_nl": 4.56,
}


def scheme_bits(scheme: str | None) -> float | None:
    """Stored bits per weight of a named format (SCHEME_BITS), or of the tensor type that leads
    an unlisted mix; None for an unnamed or unknown format (the generic formula applies)."""
    if not scheme:
        return None
    return SCHEME_BITS.get(scheme, SCHEME_BITS.get(tensor_type(scheme) or ""))


def weight_bytes_per_element(comp: Compression | None, dtype: str) -> float:
    """Bytes stored per (dense) weight element of a quantized linear layer.

    A named format (Compression.scheme in SCHEME_BITS) stores what its layout says. Otherwise
    group-wise int formats (GPTQ/AWQ) store an fp16 scale and a packed zero point per
    group: (16 + bits) / group_size extra bits per weight; per-channel scales are
    amortised over a whole row (~0). fp8/nf4 carry an fp16 scale per group, fp4 an 8-bit
    one (MXFP4 E8M0 per 32, NVFP4 E4M3 per 16; NVFP4's per-tensor scale is neglected).
    Sparsity stores only kept values plus their index metadata: N:M keeps N of M with
    ceil(log2 M) bits each (NVIDIA 2:4: 2 bits per kept value); unstructured sparsity uses
    a bitmap (1 bit per original element). Neglects alignment padding.
    """
    bits = float(comp.weight_bits) if comp and comp.weight_bits else 8 * _WIDE[dtype]
    named = scheme_bits(comp.scheme) if comp and comp.weight_bits and comp.weight_bits < 16 else None
    if named is not None:
        bits = named
    elif comp and comp.weight_bits and comp.weight_bits < 16:
        zero = bits if (comp.weight_format == "int" and comp.zero_point) else 0.0
        scale = 8 if comp.weight_format == "fp4" else 16      # FP4 formats scale by E8M0 (MX) / E4M3 (NV)
        bits += (scale + zero) / comp.group_size if comp.group_size else 0.0
    dens = density(comp)
    if dens < 1:
        assert comp is not None and comp.sparsity is not None     # density < 1 only with sparsity
        if ":" in comp.sparsity:
            m = int(comp.sparsity.partition(":")[2])
            bits = dens * (bits + math.ceil(math.log2(m)))
        else:
            bits = dens * bits + 1.0
    return bits / 8


def other_weight_bytes_per_element(comp: Compression | None, dtype: str) -> float:
    """Bytes per weight of the linear layers outside the routed experts: the experts' own
    (weight_bytes_per_element) unless the compression sets them apart (other_bits: 16 = the
    scenario dtype; 8 = 8-bit with an fp16 scale per 32, as Q8_0)."""
    if comp is None or comp.other_bits is None:
        return weight_bytes_per_element(comp, dtype)
    return _WIDE[dtype] if comp.other_bits == 16 else (8 + 16 / 32) / 8


def kv_bytes_per_element(comp: Compression | None, dtype: str, head_dim: int) -> float:
    """KV-cache bytes per value: kv_bits/8 plus an fp16 scale per head vector when quantized
    (KIVI/KVQuant-style per-token scales), else the scenario datatype."""
    if comp and comp.kv_bits and comp.kv_bits < 16:
        return comp.kv_bits / 8 + 2.0 / head_dim
    return _WIDE[dtype]


def act_bytes_per_element(comp: Compression | None, dtype: str) -> float:
    """Activation bytes between kernels (8-bit when activations are quantized, SmoothQuant-
    style). FP4 activations are written 4-bit with an 8-bit scale per 16 values by the kernel
    before the GEMM (TensorRT-LLM's NVFP4 fuses the quantization into the norm/activation
    epilogue): 0.5 + 1/16 bytes."""
    if comp and comp.act_bits == 8:
        return 1.0
    if comp and comp.act_bits == 4:
        return 0.5 + 1.0 / 16
    return _WIDE[dtype]


def wanted_gemm_dtype(comp: Compression | None, dtype: str, quantized_matmul: str = "activation") -> tuple[str, bool]:
    """(datatype the GEMMs want to run in, whether weights must be dequantized first).

    w8a8 runs on int8 (fp8 weights: fp8) matrix units; w4a8 runs int8 after unpacking;
    fp4 weights with fp4 activations (W4A4) run on FP4 matrix units (Blackwell);
    weight-only formats (w4a16, w8a16) keep 16-bit compute and dequantize the weights in
    the kernel (Marlin/AWQ kernels), which costs vector work per weight, unless the
    runtime's ``quantized_matmul`` is ``int8``: it quantizes activations to 8 bits on the
    fly and multiplies on the int8 units (llama.cpp's MMQ kernels since mid-2024), or
    ``native``: the matrix units take the packed weights with 16-bit activations (RKNPU).
    """
    wb = comp.weight_bits if comp and comp.weight_bits else None
    if comp and comp.act_bits == 4:          # W4A4 FP4 (NVFP4/MXFP4): both operands on the FP4 units
        return "fp4", False
    if comp and comp.act_bits == 8 and wb and wb <= 8:
        if comp.weight_format == "fp8":
            return "fp8", False
        return "int8", wb < 8
    if wb and wb < 16:
        assert comp is not None                 # wb comes from comp
        if quantized_matmul == "int8" and comp.weight_format != "fp8":
            # the kernel loads and scales every block even of an 8-bit block format (Q8_0: only
            # the nibble unpacking is skipped; on one GB10 build its dense prompts run 0.78x
            # Q4_0's rate per FLOP, llama.cpp benches/dgx-spark.md)
            return "int8", wb < 8 or comp.group_size is not None
        return ("bf16" if dtype in ("fp8", "int8") else dtype), quantized_matmul != "native"
    return dtype, False


def resolve_dtype(wanted: str, available: tuple[str, ...], rates: dict | None = None) -> tuple[str, str | None]:
    """The datatype actually run, and a note when it had to fall back: the first fallback
    the units support, or with ``rates`` (peak per datatype) the fastest of them, so a host
    that emulates fp16 in software (a calibrated CPU: fp16 GEMMs at 1/200 of fp32) runs fp32."""
    if wanted in available or not available:
        return wanted, None
    alts = [a for a in _FALLBACK.get(wanted, ()) if a in available]
    if alts:
        alt = max(alts, key=lambda a: float((rates or {}).get(a, 0.0))) if rates else alts[0]
        return alt, f"{wanted} not supported by the matrix units: ran {alt}"
    alt = available[0]
    hint = " (the model must be quantized to run here)" if alt.startswith("int") and not wanted.startswith("int") else ""
    return alt, f"{wanted} not supported by the matrix units: ran {alt}{hint}"


def sparse_speedup(comp: Compression | None, spec) -> tuple[float, str | None]:
    """Matrix-rate multiplier from structured sparsity: the spec's speedup when it declares
    the same N:M pattern, else 1 (the weights still shrink)."""
    if comp is None or comp.sparsity is None:
        return 1.0, None
    sp = spec.compute.matrix.sparsity if spec.compute.matrix else None
    if sp is not None and sp.pattern == comp.sparsity:
        return sp.speedup, None
    return 1.0, f"sparsity {comp.sparsity}: no {comp.sparsity} support in the matrix units, only bytes shrink"
