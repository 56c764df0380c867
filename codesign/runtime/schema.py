"""Runtime (software stack) schema: what a stack does to the op graph, and how well.

Every figure carries a source, as in hardware specs; fitted figures also name the
measurement rows they came from (``fitted``). Unknown fields are errors.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from ..hardware.schema import DEVICE_CLASSES, Frozen, SourceField, Time
from ..workload.ops import ALL_KINDS, FUSABLE_KINDS

DeviceClass = Literal[DEVICE_CLASSES]  # type: ignore[valid-type]
FusableKind = Literal[FUSABLE_KINDS]  # type: ignore[valid-type]
OpKindName = Literal[ALL_KINDS]  # type: ignore[valid-type]
TuningKey = Literal[DeviceClass, "default"]
# how much a stack can beat the spec's sustained efficiencies (a spec states one library's
# large-kernel figure; a multiplier above 1 says this stack's kernels do better)
MAX_MULTIPLIER = 2.0


class ClassTuning(Frozen):
    """How well the stack's kernels use one device class, relative to the spec's figures.

    gemm/vector/memory multiply the spec's sustained efficiencies (matrix units, vector
    units, off-chip streaming); the product is capped at 1. latency_factor counts the
    memory latencies each kernel pays before it streams at full bandwidth (Little's law:
    a kernel must first put bandwidth x latency bytes in flight, and drains its tail at
    the end), so small kernels reach a smaller fraction of the bandwidth.
    """
    gemm: float = Field(default=1.0, gt=0, le=MAX_MULTIPLIER)
    vector: float = Field(default=1.0, gt=0, le=MAX_MULTIPLIER)
    memory: float = Field(default=1.0, gt=0, le=MAX_MULTIPLIER)
    latency_factor: float = Field(default=0.0, ge=0, le=50)
    dequant: float = Field(default=1.0, gt=0, le=10)     # multiplies the runtime's dequant_ops
    # bytes per clock per core (SM, CPU core, NPU core) the stack's streaming kernels keep
    # fetching from off-chip memory: Little's law, bytes in flight per core / the memory's
    # latency in core clocks. It caps a level's bandwidth at stream x cores x clock, so a
    # GEMV stack with few loads in flight (llama.cpp MMVQ) falls short of an HBM GPU's
    # bandwidth while a GDDR card of more, faster SMs still reaches its own. None: no cap.
    stream: float | None = Field(default=None, gt=0, le=1e4)


TUNABLE = tuple(ClassTuning.model_fields)


def tensor_type(scheme: str | None) -> str | None:
    """The tensor type a quantisation mix is led by, which picks the stack's kernel: llama.cpp's
    K-quant mixes Q4_K_S / Q4_K_M / Q3_K_L keep most tensors in Q4_K / Q3_K and give a few
    (attn_v, ffn_down in some layers) more bits; other names are tensor types already."""
    return re.sub(r"^(q\d_k)_[sml]$", r"\1", scheme) if scheme else scheme


class Runtime(Frozen):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    display_name: str | None = None
    description: str | None = None
    aliases: tuple[str, ...] = ()
    # regular expressions (lower case) over free-text software names, e.g. a measurements
    # CSV's software_framework column: 'llama\\.cpp' -> this runtime
    frameworks: tuple[str, ...] = ()
    device_classes: tuple[DeviceClass, ...] = ()      # where it runs (empty: anywhere)
    vendors: tuple[str, ...] = ()                      # lower-case vendor names (empty: any)
    # per-kernel host cost (launch/dispatch); None keeps the spec's kernel_overhead
    launch_overhead: Time | None = None
    # per-kernel cost in decode steps (CUDA graphs, a compiled engine); None = launch_overhead
    decode_launch_overhead: Time | None = None
    # decode steps replay a captured graph (CUDA graphs) or a native engine's back-to-back
    # launches: the host never lets the GPU queue drain, so the per-kernel decode cost is
    # device-side (dependent-launch latency, kernel ramp and tail) and the board stays at
    # busy power through it; False: eager host dispatch, real gaps (the class's gap_busy_share, hardware/classes.py)
    decode_graphs: bool = False
    # the host dispatches kernels asynchronously and runs ahead of the device (CUDA/ROCm
    # streams): a phase takes the longer of the host's dispatch and the device's kernels with
    # their own per-kernel gap (the spec's kernel_overhead), not their sum; False: dispatch
    # adds to every kernel (a synchronous backend, or a stack whose launch figure was fitted
    # as what the device waits per kernel)
    dispatch_ahead: bool = False
    # decode attention splits each sequence's KV cache over several work units (FlashDecoding,
    # paged attention v2, TensorRT-LLM multi-block), so any batch fills the device; False: one
    # unit per sequence and KV head (PyTorch SDPA), and few units cannot fill the memory
    # (params.UNIT_BYTES_IN_FLIGHT)
    split_kv: bool = True
    # host work the accelerator waits for: once per request batch before its first token
    # (tokenise, schedule, first sampling), and per sequence in every decode step (batch
    # bookkeeping, sampling, detokenising); None = none
    request_overhead: Time | None = None
    sequence_overhead: Time | None = None
    # the serving front end (HTTP / OpenAI API server), one serial server per replica, read only
    # by the serving simulator (codesign.serve.sim.Frontend): its work per request before the
    # engine sees it (parse, chat template, tokenise; part of request_overhead) and per streamed
    # token before the client sees it (detokenise, format and send one chunk); None = none
    frontend_request: Time | None = None
    frontend_token: Time | None = None
    # operator kinds folded into a neighbouring kernel (epilogues, fused norms; the vector
    # kinds, fusable in workload/ops.py OP_KINDS):
    # they launch nothing and move no memory traffic of their own
    fuse: tuple[FusableKind, ...] = ()
    # kernels the stack launches for one graph op of a kind, where the device spec has no
    # measured kernel profile (which counts them itself): eager PyTorch's rotate-half RoPE is
    # a negation, a concatenation, two products and a sum for q and for k (10); default 1
    kernels_per_op: dict[OpKindName, float] = Field(default_factory=dict)
    attention: Literal["fused", "unfused"] | None = None  # None keeps the scenario's choice
    # KV-cache positions of a fixed-shape compiled graph (Qualcomm AI Hub / Genie compile the
    # prompt processor and token generator for one context_length): every attention reads and
    # scores all of them, masked, however short the sequence; None: the cache holds the sequence
    compiled_context: int | None = Field(default=None, gt=0)
    # which kernels the Little's-law streaming cap (ClassTuning.stream) binds: 'all', or only
    # 'packed' ones, those that unpack packed weights (llama.cpp's MMVQ/MMQ), where the stack
    # sends float-weight products to a library GEMM or a float GEMV with more loads in flight
    stream_kernels: Literal["all", "packed"] = "all"
    # prompt tokens per physical pass (ggml's n_ubatch): a longer prompt runs as several passes,
    # each re-streaming the weights at the smaller GEMM shapes; None: the whole prompt at once
    prefill_ubatch: int | None = Field(default=None, gt=0)
    # the keys a sliding-window layer scores in a prompt pass: 'window', those inside each
    # query's window (FlashAttention's window_size skips the tiles outside it); 'cache', every
    # position of the pass's windowed cache, the window plus the pass's own tokens, masked
    # (llama.cpp's iswa cache holds n_swa + n_ubatch cells and its kernels skip no tile before
    # the window)
    prefill_window: Literal["window", "cache"] = "window"
    # recurrent mixers (Recurrent.kind) whose prompt the stack runs token by token in one kernel,
    # the state held in registers (llama.cpp's GATED_DELTA_NET, MLX's gated_delta kernel): few
    # FLOPs, but one dependent memory round trip per token; any other runs the chunked form as
    # matrix products per chunk (FLA's and the SSD kernels)
    sequential_recurrences: tuple[Literal["gated_deltanet", "mamba2"], ...] = ()
    # device architectures (HardwareSpec compute.arch) where the stack has no native FP4 kernel for
    # routed experts: a W4A4 (NVFP4) model's experts dequantise their FP4 weights and multiply at
    # the 16-bit rate (weight-only, as Marlin does) while its dense layers stay on the FP4 units
    weight_only_fp4_experts: tuple[str, ...] = ()
    # quantised weights in prefill: 'fused' dequantises inside the GEMM; 'separate' writes a
    # 16-bit copy first (one read of the packed weights + one 16-bit write and read) and
    # runs the GEMM at the 16-bit rate, as llama.cpp's cuBLAS path does for large batches
    prefill_dequant: Literal["fused", "separate"] = "fused"
    # weight-only quantised GEMMs: 'activation' multiplies in the activation datatype after
    # dequantising in the kernel (Marlin, AWQ, TensorRT-LLM W4A16); 'int8' quantises the
    # activations to 8 bits on the fly and runs on the int8 units (llama.cpp MMQ); 'native'
    # hands the packed weights to matrix units that multiply them with 16-bit activations
    # directly (RKNPU's float16 x int4/int8 matmul types): no unpacking work
    quantized_matmul: Literal["activation", "int8", "native"] = "activation"
    # accumulation of 16-bit matrix products: fp16 reaches the half-accumulate peaks a spec
    # gives (full rate on GeForce cards; llama.cpp's cuBLAS calls use CUBLAS_COMPUTE_16F)
    gemm_accumulate: Literal["fp32", "fp16"] = "fp32"
    # unpacking quantised weights inside the GEMM: operations per weight element, repeated
    # for every block of `dequant_tile_rows` activation rows (a kernel re-unpacks each
    # weight tile for each row tile; None: once per GEMM), on the vector units or on the
    # integer lanes (llama.cpp MMQ unpacks with integer ops: its prompt speed follows
    # cores x clock, not the tensor peak)
    dequant_ops: float = Field(default=2.0, ge=0, le=1000)
    dequant_tile_rows: int | None = Field(default=None, gt=0)
    dequant_units: Literal["vector", "integer"] = "vector"
    # quantisation schemes (Compression.scheme) whose prefill GEMM is a tiled kernel that reuses
    # each unpacked weight tile across a block of activation rows (llama.cpp CPU repacks Q4_0 and
    # IQ4_NL into interleaved 4x4 / 4x8 / 8x8 blocks: dequant_tile_rows); a product in any other
    # named scheme runs the stack's per-row dot-product kernel (ggml vec_dot: one weight row
    # against one activation row at a time), which unpacks every weight again for each
    # activation row, at unpack_ops vector operations per weight of its scheme (else
    # dequant_ops). Empty: no such distinction; a product without a named scheme is tiled
    tiled_schemes: tuple[str, ...] = ()
    unpack_ops: dict[str, float] = Field(default_factory=dict)
    # bits per element of the LM head (and embedding table) in the stack's quantised model
    # files: a head is never narrower than the other weights, so max(weight bits, head_bits);
    # None: it stays 16-bit (vLLM and TensorRT-LLM keep lm_head unquantised by default).
    # Decode reads the whole head every step: 13% of Llama-3.1-8B's bytes at 4 bits, 30% of
    # a 1B model's
    head_bits: float | None = Field(default=None, gt=0, le=16)
    # bits per KV-cache value the stack stores where the compression names none (AI Hub's
    # exports keep the cache in int8); None: the scenario's datatype
    kv_bits: Literal[8] | None = None
    layout: Literal["tensor", "pipeline"] = "tensor"   # how several devices split a model
    batching: Literal["static", "continuous"] = "static"
    tuning: dict[TuningKey, ClassTuning] = Field(default_factory=dict)
    sources: dict[str, SourceField] = Field(default_factory=dict)
    # fitted figures: dotted path -> the measurement rows (file and row ids) it came from
    fitted: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self):
        missing = [p for p in self.figure_paths() if not self._sourced(p)]
        if missing:
            raise ValueError(f"sources: no source for {missing[0]} (every figure needs "
                             "'<datasheet|paper|measured|estimate|derived|website>: ref')")
        return self

    def tuning_for(self, device_class: str) -> ClassTuning:
        """The class's tuning, else the 'default' entry, else neutral (all 1, no ramps)."""
        return self.tuning.get(device_class) or self.tuning.get("default") or ClassTuning()

    def runs_on(self, device_class: str, vendor: str | None) -> bool:
        ok_class = not self.device_classes or device_class in self.device_classes
        ok_vendor = not self.vendors or any(v in (vendor or "").lower() for v in self.vendors)
        return ok_class and ok_vendor

    def row_unpack_ops(self, scheme: str | None) -> float:
        """Unpacking operations per weight that a product in ``scheme`` pays again for every
        activation row (no tiled kernel for it, see tiled_schemes); 0 where it is tiled."""
        scheme = tensor_type(scheme)
        if not (self.tiled_schemes and scheme) or scheme in self.tiled_schemes:
            return 0.0
        return self.unpack_ops.get(scheme, self.dequant_ops)

    def figure_paths(self) -> list[str]:
        out = [k for k in ("launch_overhead", "decode_launch_overhead", "request_overhead", "sequence_overhead",
                           "frontend_request", "frontend_token", "dequant_tile_rows", "head_bits", "kv_bits",
                           "compiled_context", "prefill_ubatch") if getattr(self, k) is not None]
        out += [f"kernels_per_op.{k}" for k in self.kernels_per_op]
        out += [f"unpack_ops.{k}" for k in self.unpack_ops]
        if "dequant_ops" in self.model_fields_set:
            out.append("dequant_ops")
        for cls, t in self.tuning.items():
            out += [f"tuning.{cls}.{f}" for f in sorted(t.model_fields_set)]
        return out

    def _sourced(self, path: str) -> bool:
        parts = path.split(".")
        return any(".".join(parts[:i]) in self.sources for i in range(1, len(parts) + 1))

