"""Real kernels for every operator kind, with the op's own shapes and datatype.

An :class:`~codesign.workload.ops.Op` is turned into a :class:`Kernel`: the operands
it reads (canonical shapes, below), a callable that runs the backend's real library
call(s) on them, and a float64 reference of the same mathematics for tests.

Canonical operand shapes (backend-independent; a backend may store a tensor in its
own layout, e.g. PyTorch keeps Linear weights as ``n x k``):

=============  ===========================================================================
gemm           x: (batch?, m, k) activations, w: (batch?, k, n) weights -> (batch?, m, n)
attn_score     q: (B, m, k), kcache: (B/g, n, k)   -> q @ k^T: (B, m, n)   (scale folded in q)
attn_context   p: (B, m, k), vcache: (B/g, k, n)   -> p @ v:   (B, m, n)
attention      q: (B, m, k), K, V: (B/g, n, k)     -> softmax(q k^T / sqrt(k) + causal) V
softmax        x: (batch, m, n) -> softmax over n
norm           x: (m, n), w: (n,) [, b: (n,) layernorm]
activation     x: (elements,)
elementwise    a, b: (elements,)
embedding      table: (V, n) (shared, V rows > 4 x LLC), ids: (m,) -> (m, n)
rope           x: (rows, m, hd) or (rows, hd), cos/sin: (m, hd) -> x cos + rotate_half(x) sin
=============  ===========================================================================

The operator graph packs grouped-query attention itself (batch = requests x KV heads,
m = group x query positions, head-major rows), so K/V are read once per KV head. An op
that instead says batch = requests x query heads is grouped here: g = B n k /
kv_read_elems query heads share a KV head and are computed as one product of g*m rows
(1 when the op reads no KV cache). Causal prefill is recognised from the op's FLOPs
(the graph counts (n+1)/2 keys per query for a causal fused kernel).

Fused attention: PyTorch uses ``scaled_dot_product_attention``; NumPy has no fused
kernel, so it runs a *blocked loop* over (KV head, query block): scores for a block of
query rows (sized so the score block stays in L2), softmax, times V, skipping keys
that the causal mask removes. It never materialises the full score matrix.
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import erf, expit, softmax

from ..errors import CodesignError
from ..workload.ops import ATTENTION_KINDS, MATRIX_KINDS, OP_KINDS, Op
from .host import llc_bytes

EPS = 1e-5
FLOAT_DTYPES = ("fp64", "fp32", "fp16", "bf16")
# Embedding tables are sized to exceed this many LLCs so gathered rows come from DRAM,
# as they do from a real 32k-256k-row vocabulary table.
TABLE_LLC_MULTIPLE = 4
# NumPy blocked attention: score block (rows x context) kept within this many bytes.
ATTN_BLOCK_BYTES = 256 * 1024


@dataclass(frozen=True)
class Operand:
    """One input tensor of a kernel, in canonical layout."""
    name: str
    shape: tuple
    role: str                 # weights | kv | act | index
    scale: float = 1.0        # std of the Gaussian fill
    high: int = 0             # index operands: uniform integers in [0, high)
    shared: bool = False      # one copy for every input set (embedding table)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


# Random fills larger than this repeat a block of this many fresh values: values do not
# change a kernel's speed, and generating gigabytes of Gaussians would dominate runtime.
FILL_BLOCK = 2**20


def gaussian(rng: np.random.Generator, size: int, scale: float = 1.0) -> np.ndarray:
    """``size`` float32 values ~ N(0, scale^2); beyond FILL_BLOCK values the block repeats."""
    block = rng.standard_normal(min(size, FILL_BLOCK), dtype=np.float32)
    if scale != 1.0:
        block *= np.float32(scale)
    return _repeat(block, size)


def _repeat(block: np.ndarray, size: int) -> np.ndarray:
    """``block`` repeated to ``size`` values (copies of doubling length: a few memcpy's)."""
    if size <= block.size:
        return block[:size]
    out = np.empty(size, dtype=block.dtype)
    out[:block.size] = block
    filled = block.size
    while filled < size:
        step = min(filled, size - filled)
        out[filled:filled + step] = out[:step]
        filled += step
    return out


def integers(rng: np.random.Generator, low: int, high: int, size: int, dtype) -> np.ndarray:
    return _repeat(rng.integers(low, high, size=min(size, FILL_BLOCK), dtype=dtype), size)


@dataclass(frozen=True)
class Kernel:
    op: Op
    dtype: str
    backend: str
    operands: tuple                           # canonical Operand descriptions
    fn: Callable                              # fn(*inputs) -> output (backend array)
    note: str = ""
    layout: dict = field(default_factory=dict)   # operand name -> 'T' if stored transposed


# -- shapes --------------------------------------------------------------------

def kv_group(op: Op) -> int:
    """Query heads per KV head, from the op's KV-cache reads (1 if it reads none)."""
    if op.kind not in ATTENTION_KINDS or op.kv_read_elems <= 0:
        return 1
    per_head = 2 * op.n * op.k if OP_KINDS[op.kind].fused else op.n * op.k      # fused: K and V
    g = op.batch * per_head / op.kv_read_elems
    gi = int(round(g))
    if gi < 1 or abs(g - gi) > 1e-6 * g or op.batch % gi:
        return 1
    return gi


def _require(cond: bool, op: Op, what: str):
    if not cond:
        raise CodesignError(f"op {op.name!r} ({op.kind}): {what}", field="op")


def head_dim(op: Op) -> int:
    """RoPE's rotated width: the op's k (or n) if the graph sets it, else 128 (Llama)."""
    return op.k or op.n or 128


def operands(op: Op, llc: int, itemsize: int = 4) -> tuple[Operand, ...]:
    """The canonical inputs of ``op`` (see the module docstring)."""
    kind, B, m, n, k = op.kind, max(op.batch, 1), op.m, op.n, op.k
    if kind in OP_KINDS and not OP_KINDS[kind].runner:
        raise CodesignError(f"op {op.name!r}: collectives ({kind}) have no single-device kernel to run")
    if kind in MATRIX_KINDS:
        _require(m > 0 and n > 0 and k > 0, op, "needs m, n, k > 0")
    lead = (B,) if B > 1 else ()
    if kind == "gemm":
        return (Operand("x", lead + (m, k), "act"),
                Operand("w", lead + (k, n), "weights", scale=1 / math.sqrt(k)))
    g = kv_group(op)
    role = "kv" if op.kv_read_elems > 0 else "act"
    if kind == "attn_score":
        return (Operand("q", (B, m, k), "act", scale=k ** -0.25),
                Operand("kcache", (B // g, n, k), role, scale=k ** -0.25))
    if kind == "attn_context":
        return (Operand("p", (B, m, k), "act", scale=1 / k),
                Operand("vcache", (B // g, k, n), role))
    if kind == "attention":
        return (Operand("q", (B, m, k), "act"), Operand("kcache", (B // g, n, k), role),
                Operand("vcache", (B // g, n, k), role))
    if kind == "softmax":
        _require(m > 0 and n > 0, op, "needs m rows and n > 0 row length")
        rows = max(int(op.elements) // (m * n), 1) if op.elements else B
        return (Operand("x", (rows, m, n), "act", scale=3.0),)
    if kind == "norm":
        _require(m > 0 and n > 0, op, "needs m rows and n = hidden > 0")
        ops = [Operand("x", (m, n), "act"), Operand("w", (n,), "weights")]
        if op.impl == "layernorm":
            ops.append(Operand("b", (n,), "weights"))
        return tuple(ops)
    if kind in ("activation", "elementwise"):
        _require(op.elements > 0, op, "needs elements > 0")
        if kind == "activation":
            return (Operand("x", (int(op.elements),), "act", scale=2.0),)
        return tuple(Operand(f"in{i}", (int(op.elements),), "act") for i in range(elementwise_inputs(op)))
    if kind == "embedding":
        _require(m > 0 and n > 0, op, "needs m tokens and n = hidden > 0")
        rows = max(m, math.ceil(TABLE_LLC_MULTIPLE * llc / (n * itemsize)))
        return (Operand("table", (rows, n), "weights", shared=True),
                Operand("ids", (m,), "index", high=rows))
    if kind == "rope":
        _require(op.elements > 0, op, "needs elements > 0")
        hd = head_dim(op)
        _require(hd % 2 == 0 and op.elements % hd == 0, op, f"elements must be a multiple of an even head_dim ({hd})")
        rows = int(op.elements) // hd
        tokens = op.m if op.m and rows % op.m == 0 else rows
        shape = (rows // tokens, tokens, hd) if tokens != rows else (rows, hd)
        return (Operand("x", shape, "act"), Operand("cos", (tokens, hd), "act"),
                Operand("sin", (tokens, hd), "act"))
    raise CodesignError(f"op {op.name!r}: unknown kind {kind!r}")


def elementwise_inputs(op: Op) -> int:
    """Operands of an elementwise op (a 3-way residual add in parallel blocks reads 3)."""
    if op.impl == "mul" or not op.elements:
        return 2
    return max(2, int(round(op.act_in_elems / op.elements)))


def causal(op: Op) -> bool:
    """Whether a fused attention op is causal, read from the op's own FLOP count.

    The graph counts a causal fused kernel as attending (n+1)/2 keys on average and a
    bidirectional one (encoders) as attending n; decode rows attend every cached key.
    A 'causal' tag, if present, says so directly.
    """
    if op.kind != "attention" or op.phase == "decode" or op.m <= 1:
        return False
    if "causal" in op.tags:
        return True
    full = 4.0 * max(op.batch, 1) * op.m * op.n * op.k
    return op.flops < 0.75 * full


def query_layout(op: Op) -> tuple[int, int, int]:
    """(KV heads, query rows per KV head, query positions) of an attention op.

    Rows of ``q`` are head-major: row r of a KV head's block is query position
    r mod positions. Prefill ops packed by GQA have m = group x positions with
    positions = n (every prompt token is a query).
    """
    g = kv_group(op)
    B = max(op.batch, 1)
    pack = op.m // op.n if (causal(op) and op.m > op.n and op.m % op.n == 0) else 1
    return B // g, g * op.m, op.m // pack


# -- float64 reference (independent formulations) -------------------------------

def _ref_softmax(x):
    return softmax(x, axis=-1)


def reference(op: Op, *xs: np.ndarray) -> np.ndarray:
    """The op's mathematics in float64 on canonical inputs, written independently of the kernels."""
    xs = tuple(np.asarray(x, dtype=np.int64 if np.asarray(x).dtype.kind == "i" else np.float64) for x in xs)
    kind, g = op.kind, kv_group(op)
    if kind == "gemm":
        x, w = xs
        return np.einsum("...mk,...kn->...mn", x, w)
    if kind in ATTENTION_KINDS:
        q = xs[0]
        kv = [np.repeat(t, g, axis=0) for t in xs[1:]]       # expand KV heads (HF repeat_kv)
        if kind == "attn_score":
            return np.einsum("bmk,bnk->bmn", q, kv[0])
        if kind == "attn_context":
            return np.einsum("bmk,bkn->bmn", q, kv[0])
        s = np.einsum("bmk,bnk->bmn", q, kv[0]) / math.sqrt(op.k)
        if causal(op):
            pos = query_layout(op)[2]
            i = np.arange(op.m)[:, None] % pos + (op.n - pos)       # query position of each row
            s = np.where(np.arange(op.n)[None, :] <= i, s, -np.inf)
        return np.einsum("bmn,bnk->bmk", _ref_softmax(s), kv[1])
    if kind == "softmax":
        return _ref_softmax(xs[0])
    if kind == "norm":
        x, w = xs[0], xs[1]
        if op.impl == "layernorm":
            return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + EPS) * w + xs[2]
        return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + EPS) * w
    if kind == "activation":
        x = xs[0]
        impl = op.impl or "silu"
        return {"silu": lambda: x * expit(x), "gelu": lambda: 0.5 * x * (1 + erf(x / math.sqrt(2))),
                "gelu_tanh": lambda: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
                "relu": lambda: np.maximum(x, 0), "relu2": lambda: np.maximum(x, 0) ** 2}[impl]()
    if kind == "elementwise":
        return xs[0] * xs[1] if op.impl == "mul" else np.sum(np.stack(xs), axis=0)
    if kind == "embedding":
        return xs[0][xs[1]]
    if kind == "rope":
        x, c, s = xs
        h = x.shape[-1] // 2
        rot = np.concatenate([-x[..., h:], x[..., :h]], axis=-1)
        return x * c + rot * s
    raise CodesignError(f"op {op.name!r}: unknown kind {kind!r}")


def _chain(add):
    """a + b (+ c ...): one library call per extra operand, as eager code does."""
    def run(a, b, *rest):
        out = add(a, b)
        for c in rest:
            out = add(out, c)
        return out
    return run


# -- NumPy ----------------------------------------------------------------------

ACTIVATIONS = ("silu", "gelu", "gelu_tanh", "relu", "relu2")


def _np_softmax(x):
    # scipy.special.softmax's formulation: max, subtract, exp, sum, divide (5 library calls)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _np_activation(impl: str, dtype) -> Callable:
    if impl == "silu":
        return lambda x: x / (1 + np.exp(-x))
    if impl == "gelu":
        c = 1 / math.sqrt(2)
        if dtype == np.float16:   # scipy has no half-precision erf: evaluate in fp32
            return lambda x: (0.5 * x * (1 + erf((x * c).astype(np.float32)))).astype(np.float16)
        return lambda x: 0.5 * x * (1 + erf(x * dtype(c)))
    if impl == "gelu_tanh":
        a, b = dtype(math.sqrt(2 / math.pi)), dtype(0.044715)
        return lambda x: 0.5 * x * (1 + np.tanh(a * (x + b * x * x * x)))
    if impl == "relu":
        return lambda x: np.maximum(x, 0)
    if impl == "relu2":
        return lambda x: np.square(np.maximum(x, 0))
    raise CodesignError(f"activation impl {impl!r} is not one of {', '.join(ACTIVATIONS)}", field="op.impl")


def _np_rope(x, cos, sin):
    h = x.shape[-1] // 2
    rot = np.concatenate((-x[..., h:], x[..., :h]), axis=-1)      # HF rotate_half
    return x * cos + rot * sin


def _np_attention(op: Op, dtype) -> Callable:
    """Blocked attention over (KV head, query block); exact softmax over each full row."""
    n, k = op.n, op.k
    nkv, rows_per_kv, pos = query_layout(op)
    G = rows_per_kv // pos                    # query rows sharing one position (heads of a group)
    is_causal = causal(op)
    scale = dtype(1 / math.sqrt(k))
    block = max(1, ATTN_BLOCK_BYTES // (np.dtype(dtype).itemsize * n * G))
    offset = n - pos

    def run(q, kc, vc):
        q4 = q.reshape(nkv, G, pos, k)
        out = np.empty((nkv, G, pos, k), dtype=q.dtype)
        for h in range(nkv):
            K, V = kc[h], vc[h]
            for i0 in range(0, pos, block):
                i1 = min(pos, i0 + block)
                nk = min(n, i1 + offset) if is_causal else n      # keys any row of the block sees
                qb = q4[h, :, i0:i1].reshape(-1, k)
                s = (qb @ K[:nk].T) * scale
                if is_causal:
                    mask = np.arange(nk)[None, :] > (np.arange(i0, i1) + offset)[:, None]
                    s.reshape(G, i1 - i0, nk)[:, mask] = -np.inf
                out[h, :, i0:i1] = (_np_softmax(s) @ V[:nk]).reshape(G, i1 - i0, k)
        return out.reshape(q.shape)
    return run


class NumpyBackend:
    """NumPy with its BLAS (OpenBLAS in the wheels) on the CPU; fp64/fp32/fp16 and int8 GEMM.

    NumPy has no bfloat16. float16 arithmetic is done by NumPy's own loops (no BLAS),
    and int8 GEMM (int32 accumulation) by its generic integer matmul loop: both are
    slow, which is what a NumPy user gets.
    """
    name = "numpy"
    device = "cpu"
    sync = None
    event_timer = None
    capture = None
    DTYPES = {"fp64": np.float64, "fp32": np.float32, "fp16": np.float16, "int8": np.int8}

    def np_dtype(self, dtype: str):
        if dtype not in self.DTYPES:
            raise CodesignError(f"the numpy backend has no {dtype} (it supports {', '.join(self.DTYPES)}); "
                                "use --backend torch", field="dtype")
        return self.DTYPES[dtype]

    def llc(self) -> int:
        return llc_bytes()

    def kernel(self, op: Op, dtype: str, llc: int | None = None) -> Kernel:
        dt = self.np_dtype(dtype)
        ops = operands(op, llc or self.llc(), np.dtype(dt).itemsize)
        kind, g = op.kind, kv_group(op)
        if dtype == "int8" and kind != "gemm":
            raise CodesignError(f"op {op.name!r}: int8 is supported for gemm only (got {kind})", field="dtype")
        note = ""
        fn: Callable[..., Any]          # the kernel: operand arrays -> result
        if kind == "gemm":
            if dtype == "int8":
                fn = lambda x, w: np.matmul(x, w, dtype=np.int32)   # noqa: E731
                note = "numpy generic int8->int32 loop (no BLAS)"
            else:
                fn = np.matmul
        elif kind == "attn_score":
            B, m, n = max(op.batch, 1), op.m, op.n
            fn = lambda q, kc: np.matmul(q.reshape(B // g, g * m, -1), kc.swapaxes(-1, -2)).reshape(B, m, n)  # noqa: E731
        elif kind == "attn_context":
            B, m, n = max(op.batch, 1), op.m, op.n
            fn = lambda p, vc: np.matmul(p.reshape(B // g, g * m, -1), vc).reshape(B, m, n)  # noqa: E731
        elif kind == "attention":
            fn = _np_attention(op, dt)
            note = "blocked loop over (KV head, query block)"
        elif kind == "softmax":
            fn = _np_softmax
        elif kind == "norm":
            if op.impl == "layernorm":
                def fn(x, w, b):
                    d = x - x.mean(axis=-1, keepdims=True)
                    return d / np.sqrt(np.mean(d * d, axis=-1, keepdims=True) + dt(EPS)) * w + b
            else:
                fn = lambda x, w: x * (1 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + dt(EPS))) * w  # noqa: E731
        elif kind == "activation":
            fn = _np_activation(op.impl or "silu", dt)
        elif kind == "elementwise":
            fn = np.multiply if op.impl == "mul" else _chain(np.add)
        elif kind == "embedding":
            fn = lambda table, ids: np.take(table, ids, axis=0)  # noqa: E731
        elif kind == "rope":
            fn = _np_rope
        else:
            raise CodesignError(f"op {op.name!r}: unknown kind {kind!r}")
        return Kernel(op, dtype, self.name, ops, fn, note)

    # buffers ------------------------------------------------------------------
    def alloc(self, kern: Kernel, operand: Operand, count: int, rng: np.random.Generator) -> list:
        """``count`` independent arrays for one operand, as views into one allocation."""
        dt = self.np_dtype(kern.dtype)
        if operand.role == "index":
            flat = integers(rng, 0, operand.high, count * operand.numel, np.int64)
        elif dt == np.int8:
            flat = integers(rng, -127, 128, count * operand.numel, np.int8)
        else:
            flat = gaussian(rng, count * operand.numel, operand.scale).astype(dt, copy=False)
        size, shape = operand.numel, operand.shape
        return [flat[i * size:(i + 1) * size].reshape(shape) for i in range(count)]

    def to_numpy(self, x) -> np.ndarray:
        return np.asarray(x)

    def canonical(self, kern: Kernel, operand: Operand, x) -> np.ndarray:
        return np.asarray(x)


# -- PyTorch --------------------------------------------------------------------

def require_torch():
    """The torch module (an optional dependency, codesign[torch]): the one place the kernel
    runner, calibration and the end-to-end harness import it; a clear error without it."""
    try:
        import torch  # optional dependency: only the torch backend and the GPU harness need it
    except ImportError:
        raise CodesignError("PyTorch is not installed: pip install 'codesign[torch]'") from None
    return torch


class TorchBackend:
    """PyTorch on the CPU (MKL/oneDNN) or a CUDA GPU; fp32/fp16/bf16 and int8 GEMM.

    int8 GEMM: on CUDA ``torch._int_mm`` (int8 x int8 -> int32, cuBLASLt); on the CPU the
    fbgemm/x86 dynamically quantised Linear (per-channel int8 weights, activations
    quantised per call), which is the fast CPU int8 path (``torch._int_mm`` on the
    CPU is a slow reference loop).
    """
    name = "torch"

    def __init__(self, device: str = "cpu"):
        self.torch = require_torch()
        if device == "cuda" and not self.torch.cuda.is_available():
            raise CodesignError("device cuda: torch.cuda.is_available() is False on this machine", field="device")
        if device not in ("cpu", "cuda"):
            raise CodesignError(f"device must be cpu or cuda, got {device!r}", field="device")
        self.device = device
        t = self.torch
        self.DTYPES = {"fp64": t.float64, "fp32": t.float32, "fp16": t.float16, "bf16": t.bfloat16, "int8": t.int8}
        if device == "cuda" and hasattr(t, "float8_e4m3fn"):
            self.DTYPES["fp8"] = t.float8_e4m3fn
        self.sync = t.cuda.synchronize if device == "cuda" else None
        self.event_timer = self._cuda_time if device == "cuda" else None
        self.capture = self._cuda_graph if device == "cuda" else None
        if device == "cuda":
            _spin_up(t)

    def _cuda_time(self, run) -> float:
        t = self.torch
        start, end = t.cuda.Event(enable_timing=True), t.cuda.Event(enable_timing=True)
        t.cuda.synchronize()
        start.record()
        run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) * 1e-3

    def _cuda_graph(self, work):
        """Record ``work()`` as a CUDA graph; return replay() -> device seconds (None: not capturable).

        The warm-up call runs on a side stream first, as CUDA-graph capture requires."""
        t = self.torch
        side = t.cuda.Stream()
        side.wait_stream(t.cuda.current_stream())
        with t.cuda.stream(side):
            work()
        t.cuda.current_stream().wait_stream(side)
        t.cuda.synchronize()
        g = t.cuda.CUDAGraph()
        try:
            with t.cuda.graph(g):
                work()
        except RuntimeError:
            t.cuda.synchronize()
            return None
        start, end = t.cuda.Event(enable_timing=True), t.cuda.Event(enable_timing=True)

        def replay() -> float:
            start.record()
            g.replay()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) * 1e-3
        return replay

    def llc(self) -> int:
        if self.device == "cuda":
            return int(getattr(self.torch.cuda.get_device_properties(0), "L2_cache_size", 50 * 2**20))
        return llc_bytes()

    def t_dtype(self, dtype: str):
        if dtype not in self.DTYPES:
            raise CodesignError(f"the torch backend has no {dtype} (it supports {', '.join(self.DTYPES)})", field="dtype")
        return self.DTYPES[dtype]

    def kernel(self, op: Op, dtype: str, llc: int | None = None) -> Kernel:
        t = self.torch
        F = t.nn.functional
        td = self.t_dtype(dtype)
        ops = operands(op, llc or self.llc(), td.itemsize)
        kind, g = op.kind, kv_group(op)
        B, m, n = max(op.batch, 1), op.m, op.n
        layout, note = {}, ""
        if dtype in ("int8", "fp8") and kind != "gemm":
            raise CodesignError(f"op {op.name!r}: {dtype} is supported for gemm only (got {kind})", field="dtype")
        fn: Callable[..., Any]
        if kind == "gemm":
            if dtype == "fp8":
                if B > 1:
                    raise CodesignError(f"op {op.name!r}: batched fp8 gemm is not supported by the torch backend")
                one = t.ones((), device=self.device, dtype=t.float32)
                # cuBLASLt fp8 (e4m3) with per-tensor scales; weights (n, k) row-major are the
                # column-major second operand _scaled_mm needs
                fn = lambda x, w: t._scaled_mm(x, w.t(), scale_a=one, scale_b=one, out_dtype=t.bfloat16)  # noqa: E731
                layout["w"] = "T"
                note = "torch._scaled_mm (cuBLASLt fp8 e4m3, bf16 out)"
            elif dtype == "int8":
                if B > 1:
                    raise CodesignError(f"op {op.name!r}: batched int8 gemm is not supported by the torch backend")
                if self.device == "cuda":
                    fn = t._int_mm
                    note = "torch._int_mm (cuBLASLt int8)"
                else:
                    fn = t.ops.quantized.linear_dynamic
                    layout["w"] = "packed"
                    note = "fbgemm dynamic int8 Linear (per-channel weights, per-tensor dynamic activations)"
            elif B > 1:
                fn = t.bmm
            else:
                fn = F.linear          # weights stored (n, k) as nn.Linear does
                layout["w"] = "T"
        elif kind == "attn_score":
            fn = lambda q, kc: t.matmul(q.view(B // g, g * m, -1), kc.transpose(-1, -2)).view(B, m, n)  # noqa: E731
        elif kind == "attn_context":
            fn = lambda p, vc: t.matmul(p.view(B // g, g * m, -1), vc).view(B, m, n)  # noqa: E731
        elif kind == "attention":
            nkv, rows, pos = query_layout(op)
            G = rows // pos
            mask = None
            if causal(op) and pos != op.n:     # bottom-right aligned causal mask (chunked prefill)
                i = t.arange(pos, device=self.device)[:, None] + (op.n - pos)
                mask = t.arange(op.n, device=self.device)[None, :] <= i
            is_c = causal(op) and mask is None

            def fn(q, kc, vc):
                # (KV heads, G heads, positions, d) against (KV heads, 1, n, d): SDPA's GQA
                o = F.scaled_dot_product_attention(
                    q.view(nkv, G, pos, -1), kc.unsqueeze(1), vc.unsqueeze(1), attn_mask=mask,
                    is_causal=is_c, enable_gqa=G > 1)
                return o.reshape(q.shape)
            note = "torch scaled_dot_product_attention"
        elif kind == "softmax":
            fn = lambda x: t.softmax(x, dim=-1)  # noqa: E731
        elif kind == "norm":
            if op.impl == "layernorm":
                fn = lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b, EPS)  # noqa: E731
            else:
                fn = lambda x, w: F.rms_norm(x, (x.shape[-1],), w, EPS)  # noqa: E731
        elif kind == "activation":
            impl = op.impl or "silu"
            fns: dict[str, Callable[..., Any]] = {"silu": F.silu, "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
                   "relu": F.relu, "relu2": lambda x: t.square(F.relu(x))}
            if impl not in fns:
                raise CodesignError(f"activation impl {impl!r} is not one of {', '.join(fns)}", field="op.impl")
            fn = fns[impl]
        elif kind == "elementwise":
            fn = t.mul if op.impl == "mul" else _chain(t.add)
        elif kind == "embedding":
            fn = lambda table, ids: F.embedding(ids, table)  # noqa: E731
        elif kind == "rope":
            def fn(x, cos, sin):
                h = x.shape[-1] // 2
                return x * cos + t.cat((-x[..., h:], x[..., :h]), dim=-1) * sin
        else:
            raise CodesignError(f"op {op.name!r}: unknown kind {kind!r}")
        return Kernel(op, dtype, self.name, ops, fn, note, layout)

    # buffers ------------------------------------------------------------------
    def alloc(self, kern: Kernel, operand: Operand, count: int, rng: np.random.Generator) -> list:
        t = self.torch
        lay = kern.layout.get(operand.name)
        n = count * operand.numel
        if self.device == "cuda":
            # drawn on the device: gigabytes of operands in milliseconds, every value random
            # (a GPU's power, and so its clock, depends on the data)
            g = t.Generator(device="cuda").manual_seed(int(rng.integers(2**31)))
            if operand.role == "index":
                flat = t.randint(0, operand.high, (n,), device="cuda", generator=g)
            elif kern.dtype == "int8":
                flat = t.randint(-127, 128, (n,), device="cuda", generator=g, dtype=t.int8)
            else:
                flat = t.empty(n, device="cuda").normal_(0.0, operand.scale, generator=g).to(self.t_dtype(kern.dtype))
        elif operand.role == "index":
            flat = t.from_numpy(integers(rng, 0, operand.high, count * operand.numel, np.int64))
        elif kern.dtype == "int8" and not (lay == "packed" or operand.name == "x" and self.device == "cpu"):
            flat = t.from_numpy(integers(rng, -127, 128, count * operand.numel, np.int8))
        else:
            flat = t.from_numpy(gaussian(rng, count * operand.numel, operand.scale))
            if not (kern.dtype == "int8"):
                flat = flat.to(self.t_dtype(kern.dtype))
        flat = flat.to(self.device)
        shape = operand.shape
        if lay in ("T", "packed"):
            shape = shape[:-2] + (shape[-1], shape[-2])
        size = operand.numel
        views = [flat.narrow(0, i * size, size).view(shape) for i in range(count)]
        if lay == "packed":
            views = [self._pack_int8(w) for w in views]
        return views

    def _pack_int8(self, w):
        """Per-output-channel symmetric int8 weights, prepacked for the fbgemm/x86 engine."""
        t = self.torch
        scale = (w.abs().amax(dim=1) / 127).clamp_min(1e-12).double()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qw = t.quantize_per_channel(w, scale, t.zeros(w.shape[0], dtype=t.long), 0, t.qint8)
            return t.ops.quantized.linear_prepack(qw, None)

    def to_numpy(self, x) -> np.ndarray:
        t = self.torch
        x = x.detach().cpu()
        if x.dtype in (t.bfloat16, t.float16):
            x = x.float()
        return x.numpy()

    def canonical(self, kern: Kernel, operand: Operand, x) -> np.ndarray:
        """The operand as a NumPy array in canonical layout (what the reference reads)."""
        t = self.torch
        lay = kern.layout.get(operand.name)
        if lay == "packed":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                qw, _ = t.ops.quantized.linear_unpack(x)
            x = qw.dequantize()
        a = self.to_numpy(x)
        return np.swapaxes(a, -1, -2) if lay in ("T", "packed") else a


SPIN_UP_S = 0.5
_spun: list = []


def _spin_up(t) -> None:
    """Once per process: half a second of large products, so the first kernels timed do not
    run at the idle clock (an idle H200 reads 345 MHz, loaded 1980 MHz)."""
    if _spun:
        return
    _spun.append(True)
    a = t.randn(4096, 4096, device="cuda", dtype=t.bfloat16)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < SPIN_UP_S:
        for _ in range(20):
            a @ a
        t.cuda.synchronize()


def backend(name: str = "numpy", device: str = "cpu"):
    """A backend by name: 'numpy' (CPU) or 'torch' (device 'cpu' or 'cuda')."""
    if name == "numpy":
        if device != "cpu":
            raise CodesignError(f"the numpy backend runs on the cpu only, not {device!r}", field="device")
        return NumpyBackend()
    if name == "torch":
        return TorchBackend(device)
    raise CodesignError(f"backend must be numpy or torch, got {name!r}", field="backend")
