"""Per-operator time, traffic and energy: roofline over a memory hierarchy.

For op i on design d, each resource j gives a time that is affine in the decode
context c (c counted from the op's base context):

    t_ij(c) = a_ij + b_ij * c          j in {compute, transcendental, dequant, level_0..L-1, link}
    time_i(c) = calls_i * overhead + max_j t_ij(c)

the roofline of Williams et al. (CACM 2009) extended to every memory level: the op is
bound by whichever resource is slowest, and the result names it. Overlap of compute and
memory is assumed perfect (max, not sum); the per-call overhead is serial.

Traffic per level (Hong & Kung 1981 reuse argument): operand X is read from level l at
least once if X lives at l or outside it; a GEMM tiled to fit the next-inner level
(capacity S per instance) re-reads A once per column tile and B once per row tile,
with square output tiles t = sqrt(S) (the C tile stays in the inner level while A and B
stream through: traffic ~ 2mnk/sqrt(S), the Hong-Kung bound's order), or reads each operand
once when the smaller one fits in S/2. The innermost level re-reads with the unit geometry
(GPU thread-block tile, systolic array); without geometry it is taken as resident.
Fused attention keeps scores on chip and streams K/V once per query block of
S/(4·d) rows (FlashAttention, Dao et al. 2022). Vector ops stream in + out once per pass.

Utilisation of the matrix units (device-class models):
- gpu: wave quantisation (CTAs of block_tile over SMs, split-K when CTAs < SMs) times MMA
  tile padding (m,n,k rounded up to the mma shape).
- tpu/npu with an array: weight-stationary systolic array R x C; a fold of R x C weights
  costs max(m, R) cycles (weight load overlapped with streaming), plus R + C - 2 fill and
  drain once: cycles = ceil(folds/units) * max(m, R) + R + C - 2 (SCALE-Sim, Samajdar 2018).
- fpga: DSPs x clock x packing x usable share, no geometry.
- cpu: the spec's kernel profile (calls, passes, efficiency) per op kind.

Approximations: in decode, the utilisation and re-read factors of attention are those of
the base context (the context grows by at most the generated tokens); caches hold nothing
across operators (each kernel starts cold); launch overlap (CUDA graphs) is not modelled,
so the spec's kernel_overhead should be the effective per-kernel gap.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..hardware.classes import CLASSES
from ..hardware.schema import OFFCHIP_KINDS, HardwareSpec
from ..workload.ops import OP_KINDS, Op
from .params import UNIT_BYTES_IN_FLIGHT, host_launch

# op columns kept as arrays
_COLS = ("count", "batch", "m", "n", "k", "elements", "flops", "transcendentals", "weight_elems", "act_in_elems",
         "act_out_elems", "kv_read_elems", "kv_write_elems", "state_bytes", "serial_steps", "chains", "link_devices",
         "context", "d_flops",
         "d_transcendentals", "d_kv_read_elems", "d_act_in_elems", "d_act_out_elems")
_UNQUANTIZED = ("embedding", "embedding_add", "lm_head", "router", "pooler")   # kept at 16-bit
_NON_LAYER = ("embedding", "embedding_add", "embedding_norm", "final_norm", "lm_head", "pooler")


@dataclass(frozen=True)
class OpTable:
    ops: tuple[Op, ...]
    cols: dict            # name -> float array (N,)
    is_matrix: np.ndarray
    is_attn: np.ndarray
    act_dtype: np.ndarray      # matrix products in the activation datatype: the attention core, the recurrence
    is_link: np.ndarray
    quantized: np.ndarray  # GEMMs whose weights take the compressed format
    link_factor: np.ndarray    # bytes-on-the-wire multiplier of the collective
    link_steps: np.ndarray     # latency terms of the collective
    is_gemm: np.ndarray        # right operand is a weight matrix
    is_fused: np.ndarray       # fused attention (scores stay on chip)
    is_layer: np.ndarray       # repeated per layer (split over pipeline stages)
    slope_cols: np.ndarray     # indices of ops whose work grows with the decode context
    matrix_cols: np.ndarray    # indices of matrix ops
    matrix_pos: np.ndarray     # op -> its position among matrix_cols (-1: not a matrix op)
    is_decode: np.ndarray      # decode-step op (a runtime may launch these differently)
    fused_away: np.ndarray     # folded into a neighbouring kernel by the runtime: no launch, no traffic
    launches: np.ndarray              # kernels the runtime launches per op without a spec profile
    is_expert: np.ndarray      # a routed expert's GEMM (few rows each: T x top_k / experts)
    _profiles: dict = field(default_factory=dict, compare=False, repr=False)

    def profiles(self, spec: HardwareSpec):
        """(calls, passes, efficiency or NaN) per op from the spec's kernel profiles (cached)."""
        key = id(spec)
        hit = self._profiles.get(key)
        if hit is None or hit[0] is not spec:
            prof = [_profile(spec, o) for o in self.ops]
            hit = (spec, np.array([(pf.calls + pf.calls_per_batch * o.batch) if pf else launches
                                   for pf, o, launches in zip(prof, self.ops, self.launches)]),
                   np.array([pf.passes if pf else 1.0 for pf in prof]),
                   np.array([pf.efficiency if (pf and pf.efficiency) else np.nan for pf in prof]))
            self._profiles.clear()
            self._profiles[key] = hit
        return hit[1:]


def op_table(ops, fuse: tuple = (), kernels_per_op: dict | None = None) -> OpTable:
    """Engine arrays for a list of ops; ``fuse``: vector kinds the runtime folds into
    neighbouring kernels; ``kernels_per_op``: kernels the runtime launches for one op of a
    kind (where the spec has no measured profile of it; default 1)."""
    ops = tuple(ops)
    cols = {c: np.array([getattr(o, c) for o in ops], dtype=float) for c in _COLS}
    kinds = [o.kind for o in ops]
    kind = [OP_KINDS[k] for k in kinds]
    is_mx = [k.unit == "matrix" for k in kind]
    n = cols["link_devices"]
    # a ring collective moves rounds x (n-1)/n of the data per device in rounds x (n-1) steps
    # (all-reduce: 2(n-1)/n); a point-to-point transfer all of it in one
    rounds = np.array([float(k.link_rounds) for k in kind])
    return OpTable(
        ops=ops, cols=cols,
        is_matrix=np.array(is_mx),
        is_attn=np.array([k.attention for k in kind]),
        act_dtype=np.array([(k.attention or k.state) and k.unit == "matrix" for k in kind]),
        is_link=np.array([k.unit == "link" for k in kind]),
        quantized=np.array([k == "gemm" and o.name not in _UNQUANTIZED for k, o in zip(kinds, ops)]),
        link_factor=np.where(rounds > 0, rounds * (n - 1) / np.maximum(n, 1), 1.0),
        link_steps=np.where(rounds > 0, rounds * (n - 1), 1.0),
        is_gemm=np.array([k == "gemm" for k in kinds]),
        is_fused=np.array([k.fused for k in kind]),
        is_layer=np.array([o.name not in _NON_LAYER and o.count > 1 for o in ops]),
        slope_cols=np.array([i for i, o in enumerate(ops) if o.d_flops or o.d_transcendentals or o.d_kv_read_elems
                             or o.d_act_in_elems or o.d_act_out_elems], dtype=int),
        matrix_cols=np.flatnonzero(is_mx),
        matrix_pos=np.cumsum(is_mx) * is_mx - 1,
        is_decode=np.array([o.phase == "decode" for o in ops]),
        fused_away=np.array([k in fuse for k in kinds]),
        launches=np.array([float((kernels_per_op or {}).get(k, 1.0)) for k in kinds]),
        is_expert=np.array([k == "gemm" and "moe" in o.tags and o.name.startswith("expert") for k, o in zip(kinds, ops)]),
    )


@dataclass(frozen=True)
class Prices:
    """What compression and datatype choice make of the ops, per design (arrays (D,1))."""
    w_bytes: np.ndarray        # quantized linear weights, bytes per element
    other_bytes: np.ndarray    # linear weights outside the routed experts (= w_bytes unless set apart)
    other_quantized: np.ndarray  # 1 where those are still in a packed format (unpacked in the kernel)
    table_bytes: np.ndarray      # embedding table and LM head bytes per element (16-bit unless quantized too)
    wire_bytes: float            # collectives move activations in the scenario datatype
    a_bytes: np.ndarray
    kv_bytes: np.ndarray
    gemm_rate: np.ndarray      # matrix FLOP/s for projection GEMMs (sparsity speed-up included)
    attn_rate: np.ndarray      # matrix FLOP/s for attention products
    vec_rate: np.ndarray
    dequant: np.ndarray        # 1 where weights are dequantized in the GEMM kernel
    row_unpack: np.ndarray     # ops per weight where the weights' scheme is unpacked per activation row (else 0)
    gemm_e_op: np.ndarray      # J per FLOP
    attn_e_op: np.ndarray
    vec_e_op: np.ndarray
    # routed experts' GEMMs: as gemm_rate, dequant and gemm_e_op unless the stack runs them in
    # another datatype (Runtime.weight_only_fp4_experts)
    expert_rate: np.ndarray
    expert_dequant: np.ndarray
    expert_e_op: np.ndarray


def _ceil(x):
    return np.ceil(x - 1e-9)


def _profile(spec: HardwareSpec, op: Op):
    """Kernel profile for an op: '<kind>.<impl>', then '<kind>.gemv' (m = 1: GEMMs and
    attention products of one query row) and 'gemm.skinny' (m <= 16), then '<kind>'."""
    if not spec.kernels:
        return None
    keys = [f"{op.kind}.{op.impl}"] if op.impl else []
    if op.m == 1 and op.is_matrix:
        keys.append(f"{op.kind}.gemv")    # matrix-vector products take the library's GEMV path
    if op.kind == "gemm" and op.m <= 16:
        keys.append("gemm.skinny")
    keys.append(op.kind)
    for k in keys:
        if k in spec.kernels:
            return spec.kernels[k]
    return None


def _homes(spec: HardwareSpec, p: dict, weight_bytes, kv_bytes):
    """Index (outermost = 0) of the level each tensor class lives in, per design: the
    innermost level that may hold it and has room for all of it (weights, KV); activations
    live in the innermost level that may hold activations (they are small per op)."""
    cores = p["compute.cores"]
    D = max((np.shape(v)[0] if np.ndim(v) else 1) for v in p.values()) if p else 1
    w_home = np.zeros(D, dtype=int)
    kv_home = np.zeros(D, dtype=int)
    a_home = 0
    first = None
    for i, m in enumerate(spec.memory):
        stores = m.stores()
        if not stores:
            continue
        first = i if first is None else first
        cap = p[f"memory.{m.name}.capacity"] * (cores if m.per_core else 1)
        if "weights" in stores:
            w_home = np.where(cap >= weight_bytes, i, w_home) if i else w_home
        if "kv" in stores:
            kv_home = np.where(cap >= kv_bytes + (weight_bytes if "weights" in stores else 0), i, kv_home) \
                if i else kv_home
        if "activations" in stores:
            a_home = i
    if first:   # outermost levels that hold nothing (none expected) are skipped
        w_home, kv_home = np.maximum(w_home, first), np.maximum(kv_home, first)
        a_home = max(a_home, first)
    return w_home, kv_home, np.full(D, a_home)


def _geometry_util(spec: HardwareSpec, p: dict, b, m, n, k):
    """Fraction of the matrix peak the shape can use (device-class model, see module doc)."""
    waves = CLASSES[spec.device_class].waves
    mx = spec.compute.matrix
    util = np.ones(np.broadcast(b, m, n, k, p["compute.cores"][:, None]).shape)
    if mx is None:
        return util
    if waves and mx.block_tile:
        bm0, bn = mx.block_tile
        bm = np.minimum(bm0, np.maximum(16, 2 ** _ceil(np.log2(np.maximum(m, 1)))))
        ctas = b * _ceil(m / bm) * _ceil(n / bn)
        sms = p["compute.cores"][:, None]
        split = np.where(ctas < sms, np.maximum(1, np.minimum(sms // np.maximum(ctas, 1), k // 256)), 1)
        ctas = ctas * split
        util = util * np.where(ctas > 0, ctas / np.maximum(_ceil(ctas / sms) * sms, 1), 1.0)
    if mx.tile and waves:
        tm, tn, tk = mx.tile
        pad = lambda x, t: np.where(x > 0, x / (_ceil(x / t) * t), 1.0)   # noqa: E731
        util = util * pad(m, tm) * pad(n, tn) * pad(k, tk)
    if mx.array and "compute.matrix.array.0" in p:
        R, C = p["compute.matrix.array.0"][:, None], p["compute.matrix.array.1"][:, None]
        units = p["compute.matrix.units"][:, None]
        folds = b * _ceil(k / R) * _ceil(n / C)
        cycles = _ceil(folds / units) * np.maximum(m, R) + R + C - 2
        util = util * (b * m * k * n) / (units * R * C * cycles)
    return np.clip(util, 1e-6, 1.0)


def _tile_rereads(S_elems, b, m, n, k, fits_factor=0.5):
    """(A re-read factor, B re-read factor) for a GEMM tiled into capacity S (elements)."""
    t = np.sqrt(np.maximum(S_elems, 1.0))
    fa = _ceil(n / np.minimum(n, t))
    fb = _ceil(m / np.minimum(m, t))
    resident = np.minimum(m * k, k * n) <= S_elems * fits_factor
    return np.where(resident, 1.0, fa), np.where(resident, 1.0, fb)


SKINNY_ROWS = 8     # at most this many activation rows: a GEMV-style kernel (cf. llama.cpp MMVQ_MAX_BATCH_SIZE)


# rows of OpTerms.a and .b (the resources), in this order: compute, transcendental,
# dequant, one row per memory level (outermost first), link
COMPUTE, TRANSCENDENTAL, DEQUANT, FIRST_LEVEL = 0, 1, 2, 3
LINK = -1


@dataclass(slots=True)
class OpTerms:
    """Per-op terms of an op table on D designs (``op_terms``): time per resource, bytes per
    memory level and activity energy, each as a base (at the op's own context) and, for the
    S context-dependent ops ``sl`` only, a slope per extra context token (kept compact)."""
    a: np.ndarray            # (J, D, N) seconds per resource, rows as ``names`` (COMPUTE, ..., LINK)
    b: np.ndarray            # (J, D, S) seconds per context token
    sl: np.ndarray           # (S,) op indices of the slope columns (OpTable.slope_cols)
    names: list              # (J,) compute, transcendental, dequant, each memory level, link
    overhead: np.ndarray     # (D, N) serial launch cost per op (no resource overlaps it)
    traffic_a: np.ndarray    # (L, D, N) bytes per memory level
    traffic_b: np.ndarray    # (L, D, S)
    energy_a: np.ndarray     # (D, N) activity joules (operations and bytes)
    energy_b: np.ndarray     # (D, S)

    def split(self, n: int) -> tuple[OpTerms, OpTerms]:
        """(ops 0..n-1, ops n..): the two phases of a table that holds both (op axis last;
        the compact slope arrays follow their column indices)."""
        return self._cut(slice(0, n), self.sl < n, 0), self._cut(slice(n, None), self.sl >= n, n)

    def _cut(self, cols, keep, shift) -> OpTerms:
        return OpTerms(a=self.a[..., cols], b=self.b[..., keep], sl=self.sl[keep] - shift, names=self.names,
                       overhead=self.overhead[..., cols], traffic_a=self.traffic_a[..., cols],
                       traffic_b=self.traffic_b[..., keep], energy_a=self.energy_a[..., cols],
                       energy_b=self.energy_b[..., keep])


@dataclass(frozen=True)
class ShapeFactors:
    """Matrix-unit utilisation and tiling re-read factors of an op table (``_shape_factors``)."""
    util: np.ndarray              # (D, N) fraction of the matrix peak each op's shape can use (1: vector ops)
    # re-reads per level of the A operand (activations) and the B operand (weights, K/V):
    # (L, 1, N) when every design tiles alike, else (L, D, Nm) on the matrix columns only
    fa: np.ndarray
    fb: np.ndarray
    fb_w: np.ndarray | None       # fb on GEMM weights only, full width (None when per design)
    fa_s: np.ndarray | float      # fa and fb at the context-dependent columns (L, D or 1, S)
    fb_s: np.ndarray | float


@dataclass(slots=True)
class _ComputeTimes:
    """Seconds of arithmetic per op (D, N): matrix or vector work, transcendentals, and
    their slopes per context token."""
    work: np.ndarray
    d_work: np.ndarray
    trans: np.ndarray
    d_trans: np.ndarray


@dataclass(slots=True)
class _Dequant:
    """Weight-only quantization, per op (D, N)."""
    time: np.ndarray         # seconds unpacking weights inside the kernel (vector or integer lanes)
    separate: np.ndarray     # 1 where a separate pass writes a 16-bit copy first (one more launch)
    weights: np.ndarray      # weight bytes the kernel itself reads
    extra: np.ndarray        # bytes of that separate pass (packed in, 16-bit out)


# a table (embedding, LM head) narrower than 16-bit floats is in a packed format (Q6_K, int8)
FLOAT16_BYTES = 2.0


def op_terms(spec: HardwareSpec, p: dict, tab: OpTable, pr: Prices, weight_total, kv_total) -> OpTerms:
    """Time terms per resource: base ``a`` (J, D, N) and slope per context token ``b``
    (J, D, S) for the S context-dependent ops ``sl``; traffic per level (L, D, N) and its
    slope (L, D, S); energy (D, N) and slope (D, S); overhead (D, N); term names (J)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _op_terms(spec, p, tab, pr, weight_total, kv_total)


def _op_terms(spec, p, tab, pr, weight_total, kv_total) -> OpTerms:
    """The stages of op_terms: arithmetic, dequantisation, traffic per level, collectives;
    then the roofline terms, activity energy and launch overhead."""
    calls, passes, prof_eff = tab.profiles(spec)
    # the runtime's multipliers scale the spec's sustained efficiencies (capped at the peak)
    vec_eff = np.minimum(p["compute.vector.efficiency"] * p["runtime.vector"], 1.0)[:, None]
    shape = _shape_factors(spec, p, tab, pr.a_bytes)
    work = _compute_times(p, tab, pr, prof_eff, vec_eff, shape.util)
    dq = _dequant(p, tab, pr, vec_eff)
    traffic_a, traffic_b, traffic_sep = _traffic(spec, p, tab, pr, dq, shape, passes, weight_total, kv_total)
    bw_capped, bw_free, e_byte = _level_arrays(spec, p)
    # a stack whose streaming cap binds only its packed-weight kernels (runtime.stream_kernels)
    # streams a float-weight product at the memory's rate (llama.cpp's cuBLAS and float GEMV)
    bw = bw_capped                                                                        # (L,D,1)
    if (np.isfinite(p["runtime.stream"]) & (p["runtime.stream_packed_only"] > 0)).any():
        packed = (dq.time > 0) | (dq.separate > 0) | (tab.is_gemm & ~tab.quantized & (pr.table_bytes < FLOAT16_BYTES))
        free = tab.is_gemm & ~packed & (p["runtime.stream_packed_only"] > 0)[:, None]     # (D,N)
        bw = np.where(free[None], bw_free, bw_capped)                                     # (L,D,N)
    a, b = _resource_times(spec, p, tab, work, dq.time, _link_time(p, tab, pr), traffic_a, traffic_b, bw)
    # a separate dequantisation pass is its own kernel, run before the GEMM on the same
    # stream: its streaming time (at its slowest level) adds to whichever term binds the GEMM
    # rather than hiding under its arithmetic
    if dq.separate.any():
        a += (traffic_sep / bw_capped).max(0)[None]
        traffic_a = traffic_a + traffic_sep
    energy_a, energy_b = _energy(tab, pr, traffic_a, traffic_b, e_byte)
    launch = np.where(tab.is_decode, host_launch(p, True)[:, None], host_launch(p, False)[:, None])
    overhead = (calls + dq.separate) * launch * ~tab.is_link * ~tab.fused_away
    names = ["compute", "transcendental", "dequant"] + [f"{m_.name}" for m_ in spec.memory] + ["link"]
    return OpTerms(a=a, b=b, sl=tab.slope_cols, names=names, overhead=overhead, traffic_a=traffic_a,
                   traffic_b=traffic_b, energy_a=energy_a, energy_b=energy_b)


def _compute_times(p, tab, pr, prof_eff, vec_eff, util) -> _ComputeTimes:
    """Matrix/vector work and transcendentals at the sustained rate of their unit: the
    spec's (or the kernel profile's) efficiency times the shape's utilisation."""
    c = tab.cols
    is_mx = tab.is_matrix
    mat_eff = np.minimum(p.get("compute.matrix.efficiency", np.array([1.0])) * p["runtime.gemm"], 1.0)[:, None]
    eff = np.where(np.isnan(prof_eff), np.where(is_mx, mat_eff, vec_eff), prof_eff)
    gemm = np.where(tab.is_expert, pr.expert_rate, pr.gemm_rate)
    rate = np.where(tab.act_dtype, pr.attn_rate, np.where(is_mx, gemm, pr.vec_rate)) * eff * util
    # a skinny product (decode GEMV, M of a few rows) pads the matrix unit's tile and runs
    # faster on the vector units (cuBLAS gemv, llama.cpp MMVQ): a kernel takes the faster
    # (a device without matrix units runs every product on its vector units already)
    if "compute.matrix.efficiency" in p:
        rate = np.where(is_mx, np.maximum(rate, pr.vec_rate * vec_eff), rate)
    trans = p["compute.vector.transcendental"][:, None] * np.where(np.isnan(prof_eff), 1.0, prof_eff)
    return _ComputeTimes(work=c["flops"] / rate, d_work=c["d_flops"] / rate, trans=c["transcendentals"] / trans,
                         d_trans=c["d_transcendentals"] / trans)


def _dequant(p, tab, pr, vec_eff) -> _Dequant:
    """Weight-only quantization: ~2 vector ops per weight to unpack and scale (in-kernel).
    A runtime that dequantises separately in prefill (a 16-bit copy, then a 16-bit GEMM)
    instead moves the packed weights once more plus a 16-bit write and read."""
    c = tab.cols
    # the experts' format, or (Compression.other_bits) the other linear layers' own
    other = tab.quantized & ~tab.is_expert & (pr.other_bytes != pr.w_bytes)                  # (D,N)
    wb = np.where(other, pr.other_bytes, np.where(tab.quantized, pr.w_bytes, pr.table_bytes))
    packed = tab.quantized & (~other | (pr.other_quantized > 0))
    dequant = np.where(tab.is_expert, pr.expert_dequant, pr.dequant)                          # (D,N)
    sep = packed & ~tab.is_decode & (dequant * p["runtime.separate_dequant"][:, None] > 0)
    # a skinny product (M <= 8 rows: decode) unpacks each weight once on the vector units
    # (GEMV kernels, llama.cpp MMVQ); wider ones follow the runtime's GEMM kernel
    wide = c["m"] > SKINNY_ROWS
    rows_tile = p["runtime.dequant_tile_rows"][:, None]
    # a scheme without a tiled kernel (Runtime.tiled_schemes) unpacks every weight again for each
    # activation row (ggml vec_dot), at its scheme's cost (Runtime.unpack_ops)
    per_row = wide & (pr.row_unpack > 0)
    rows_tile = np.where(per_row, 1.0, rows_tile)
    row_passes = np.where(wide & (rows_tile > 0), np.ceil(np.maximum(c["m"], 1.0) / np.maximum(rows_tile, 1.0)), 1.0)
    dq_ops = np.where(wide, np.where(per_row, pr.row_unpack, p["runtime.dequant_ops"][:, None])
                      * p["runtime.dequant"][:, None], 2.0)
    dq_rate = np.where(wide & (p["runtime.dequant_integer"][:, None] > 0), p["compute.integer"][:, None] * vec_eff,
                       pr.vec_rate * vec_eff)
    return _Dequant(
        time=np.where(packed & ~sep, dequant * dq_ops * c["weight_elems"] * row_passes / dq_rate, 0.0),
        separate=sep,
        weights=np.where(sep, c["weight_elems"] * pr.table_bytes, c["weight_elems"] * wb),   # the GEMM reads the 16-bit copy
        extra=np.where(sep, c["weight_elems"] * (wb + pr.table_bytes), 0.0))                 # the dequant pass itself


def _traffic(spec, p, tab, pr, dq: _Dequant, shape: ShapeFactors, passes, weight_total, kv_total):
    """Bytes per memory level: base (L, D, N), slope (L, D, S), and a separate dequantisation
    pass's own bytes (L, D, N). Every operand is read once from each level at or inside its
    home, then the re-reads of the matrix ops' tiling (fa: A operand, fb: weights / K,V) on the
    matrix columns only; a kernel profile's passes scale every operand's traffic (what the
    library really moves)."""
    c = tab.cols
    L = len(spec.memory)
    D = pr.w_bytes.shape[0]
    W = dq.weights
    A_in, A_out = c["act_in_elems"] * pr.a_bytes, c["act_out_elems"] * pr.a_bytes
    dA_in, dA_out = c["d_act_in_elems"] * pr.a_bytes, c["d_act_out_elems"] * pr.a_bytes
    KV_r, dKV_r = c["kv_read_elems"] * pr.kv_bytes, c["d_kv_read_elems"] * pr.kv_bytes
    KV_w = c["kv_write_elems"] * pr.kv_bytes
    state = c["state_bytes"]            # recurrent state, in its own datatype (not re-priced)
    if D == 1:
        w_home, kv_home, a_home = _memo(("homes", id(p), float(weight_total[0]), float(kv_total[0])), (p,),
                                        lambda: _homes(spec, p, weight_total, kv_total))
    else:
        w_home, kv_home, a_home = _homes(spec, p, weight_total, kv_total)
    lv = np.arange(L)[:, None, None]                                        # (L,1,1)
    here_w = w_home[None, :, None] <= lv                                    # (L,D,1)
    here_kv = kv_home[None, :, None] <= lv
    here_a = a_home[None, :, None] <= lv
    ps = passes * ~tab.is_link * ~tab.fused_away   # collectives move no memory traffic in this model
    fa, fb, mx = shape.fa, shape.fb, tab.matrix_cols
    if fa.shape[-1] == len(tab.ops):     # one tiling for all designs: full-width factors
        traffic_a = here_a * (A_in * fa + A_out) + here_w * W * shape.fb_w + here_kv * (KV_r * fb + KV_w + state)
    else:                                # per-design tiling: re-reads on the matrix columns only
        traffic_a = here_a * (A_in + A_out) + here_w * W + here_kv * (KV_r + KV_w + state)  # (L,D,N)
        if len(mx):
            gemm = tab.is_gemm[mx]
            traffic_a[..., mx] += (here_a * A_in[:, mx] * (fa - 1) + here_w * (W[:, mx] * gemm) * (fb - 1)
                                   + here_kv * KV_r[:, mx] * (fb - 1))
    traffic_a *= ps
    # slopes are zero except for context-dependent ops (attention over the KV cache): they
    # are kept compact, for the S columns `sl` only
    sl = tab.slope_cols
    traffic_b = (here_a * (dA_in[:, sl] * shape.fa_s + dA_out[:, sl]) + here_kv * dKV_r[:, sl] * shape.fb_s) * ps[sl]
    return traffic_a, traffic_b, here_w * dq.extra


def _link_time(p, tab, pr):
    """Collectives on the device link, (D, N): ring all-reduce 2(n-1)/n·bytes/BW +
    2(n-1)·latency (OpTable.link_factor and link_steps per collective kind)."""
    c = tab.cols
    # collectives move 16-bit activations (NCCL/TRT-LLM all-reduce in the model dtype even
    # when GEMM inputs are 8-bit)
    link_bytes = c["elements"] * pr.wire_bytes * tab.is_link
    if "interconnect.device_link.bandwidth" not in p:
        return np.where(tab.is_link & (c["link_devices"] > 1), np.inf, 0.0)
    lbw = p["interconnect.device_link.bandwidth"][:, None] * p["interconnect.device_link.efficiency"][:, None]
    llat = p["interconnect.device_link.latency"][:, None]
    # (neglected: the copy of collective buffers in and out of memory)
    return np.where(tab.is_link, link_bytes * tab.link_factor / lbw + tab.link_steps * llat, 0.0)


def _resource_times(spec, p, tab, work: _ComputeTimes, t_dq, t_link, traffic_a, traffic_b, bw):
    """The roofline terms, resource-first (J, D, N) so each resource's row is contiguous,
    and their slopes (J, D, S)."""
    L, N = len(spec.memory), len(tab.ops)
    D = traffic_a.shape[1]
    levels = slice(FIRST_LEVEL, FIRST_LEVEL + L)
    a = np.zeros((4 + L, D, N))
    a[COMPUTE], a[TRANSCENDENTAL], a[DEQUANT], a[LINK] = work.work, work.trans, t_dq, t_link
    np.divide(traffic_a, bw, out=a[levels])
    # Little's law: a kernel streams at full bandwidth only once bandwidth x latency bytes are
    # in flight; the ramp-up and the drained tail cost about `latency_factor` latencies of
    # each level it touches, so small kernels (decode GEMVs) fall short of the bandwidth
    stretch = _unit_occupancy(spec, p, tab, bw)
    if stretch is not None:
        a[levels] *= stretch
    a[levels] += (traffic_a > 0) * _ramps(spec, p)
    serial = _expert_serial_load(tab, a[FIRST_LEVEL])
    a[COMPUTE] += serial
    a[DEQUANT] += serial
    chain = _serial_chain(spec, p, tab)
    if chain is not None:
        np.maximum(a[COMPUTE], chain, out=a[COMPUTE])
    sl = tab.slope_cols
    b = np.zeros((4 + L, D, len(sl)))                                        # (J,D,S)
    b[COMPUTE], b[TRANSCENDENTAL] = work.d_work[:, sl], work.d_trans[:, sl]
    np.divide(traffic_b, bw[..., sl] if bw.shape[-1] > 1 else bw, out=b[levels])
    if stretch is not None:
        b[levels] *= stretch[..., sl]
    return a, b


# grouped-GEMM kernels (llama.cpp MMQ, Triton fused_moe, TensorRT-LLM) take a row tile of the
# next power of two of an expert's rows, 16 to 128 (vllm-project/vllm#47593, llama.cpp#26977)
EXPERT_ROW_TILE = 128


def _expert_serial_load(tab, t_outer):
    """The part of a routed expert's weight stream that its arithmetic cannot hide. A dense
    GEMM's weight tile serves many row tiles, so its loads overlap the work of the others and
    the roofline takes the larger of the two; an expert gets T x top_k / experts rows (32 for
    a 512-token batch of Qwen3-30B-A3B), so each weight tile is loaded, unpacked and used by
    one row tile in turn: the load adds to the work. With r row tiles per weight tile 1/r of
    it does. Measured: on one GB10 and build, MoE prompts run ~1.9x slower per FLOP than a
    dense 7B and slow 2-2.6x from 2048- to 512-token batches while the dense model stays flat
    (llama.cpp benches/dgx-spark.md @4c7e9893). Neglects routing, gather/scatter (~5-10%)."""
    tiles = np.ceil(np.maximum(tab.cols["m"], 1.0) / EXPERT_ROW_TILE)
    return np.where(tab.is_expert, t_outer / tiles, 0.0)


# lanes of one chain of a sequential scan: a warp / SIMD-group per value column (llama.cpp's
# gated_delta_net.cu shards a column over a 32-lane warp; MLX's gated_delta kernel over a SIMD group)
CHAIN_LANES = 32


def _serial_chain(spec, p, tab):
    """The latency floor of a sequential scan, (D, N), or None where no op has one: each of
    its steps waits on one round trip to the off-chip memory that holds its inputs (a
    warp issues in order, so step t+1's loads leave after step t's reductions), and chains
    beyond what the cores keep resident (cores x resident threads / CHAIN_LANES) run the
    whole scan again in another wave:

        t = serial_steps x ceil(chains x CHAIN_LANES / (cores x resident_threads)) x latency

    Measured: llama.cpp's GATED_DELTA_NET on an RTX 5090 at 32 value heads of 128 takes
    0.48 us per token (279.6 us at 512 tokens, 525.1 at 1024; ggml-org/llama.cpp#22587), one
    wave at the GDDR7 default latency of 500 ns. Neglects the reductions' own latency and
    a prompt short enough for its inputs to stay in the L2."""
    c = tab.cols
    if not c["serial_steps"].any() or "compute.resident_threads" not in p:
        return None
    offchip = [m_ for m_ in spec.memory if m_.kind in OFFCHIP_KINDS]
    if not offchip:
        return None
    latency = p[f"memory.{offchip[0].name}.latency"][:, None]                              # (D,1)
    resident = (p["compute.cores"] * p["compute.resident_threads"])[:, None]
    waves = np.ceil(c["chains"][None, :] * CHAIN_LANES / resident)
    return c["serial_steps"][None, :] * np.maximum(waves, 1.0) * latency


def _energy(tab, pr, traffic_a, traffic_b, e_byte):
    """Activity energy per op, base (D, N) and slope (D, S): FLOPs x energy per operation of
    its unit and datatype + bytes x energy per byte of every level."""
    c, sl = tab.cols, tab.slope_cols
    gemm = np.where(tab.is_expert, pr.expert_e_op, pr.gemm_e_op)
    e_op = np.where(tab.act_dtype, pr.attn_e_op, np.where(tab.is_matrix, gemm, pr.vec_e_op))
    energy_a = c["flops"] * e_op
    energy_b = c["d_flops"][sl] * e_op[:, sl]
    for l in range(len(e_byte)):
        energy_a = energy_a + traffic_a[l] * e_byte[l]
        energy_b = energy_b + traffic_b[l] * e_byte[l]
    return energy_a, energy_b


_SHAPE_CACHE: dict = {}


def _memo(key, pins, make):
    """Identity-keyed memo for derived arrays of immutable inputs (pinned so ids stay valid)."""
    hit = _SHAPE_CACHE.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], pins)):
        return hit[1]
    if len(_SHAPE_CACHE) > 256:
        _SHAPE_CACHE.clear()
    val = make()
    _SHAPE_CACHE[key] = (pins, val)
    return val


def _unit_occupancy(spec, p, tab, bw):
    """Decode attention without split-KV (``runtime.split_kv`` 0) runs one work unit per
    sequence and KV head (the op's ``batch``); each streams at UNIT_BYTES_IN_FLIGHT / latency
    (Little's law), so its off-chip time stretches by BW / min(BW, units x that): the factor
    per (level, design, op), or None where no op is affected."""
    if "runtime.split_kv" not in p or (p["runtime.split_kv"] > 0).all():
        return None
    sel = tab.is_attn & tab.is_decode
    if not sel.any():
        return None
    nosplit = (p["runtime.split_kv"] == 0)[:, None] & sel[None, :]              # (D, N)
    out = np.ones((len(spec.memory),) + nosplit.shape)
    for l, m_ in enumerate(spec.memory):
        if m_.kind in OFFCHIP_KINDS:
            unit_bw = UNIT_BYTES_IN_FLIGHT / np.maximum(p[f"memory.{m_.name}.latency"], 1e-12)   # (D,)
            stretch = bw[l] / np.minimum(bw[l], tab.cols["batch"][None, :] * unit_bw[:, None])
            out[l] = np.where(nosplit, stretch, 1.0)
    return out


def _ramps(spec, p):
    """Per-kernel latency ramp of each level, (L,D,1): latency x the runtime's factor."""
    return np.stack([p[f"memory.{m_.name}.latency"] * p["runtime.latency_factor"] for m_ in spec.memory])[:, :, None]


def _level_arrays(spec, p):
    """Sustained bandwidth (all instances) of each level with and without the runtime's
    streaming cap, and energy per byte, (L,D,1) each. The runtime's memory multiplier applies
    to off-chip streaming (capped at the bandwidth); its Little's-law cap is cores x clock x
    the bytes per clock each core keeps streaming (``runtime.stream``; fmin, as a spec
    without a clock has no cap)."""
    def make():
        cap = p["runtime.stream"] * p["compute.cores"] * p["compute.clock"]
        free = np.stack([p[f"memory.{m_.name}.bandwidth"] * (p["compute.cores"] if m_.per_core else 1.0)
                         * (p[f"memory.{m_.name}.efficiency"] if m_.kind not in OFFCHIP_KINDS else
                            np.minimum(p[f"memory.{m_.name}.efficiency"] * p["runtime.memory"], 1.0))
                         for m_ in spec.memory])[:, :, None]
        offchip = np.array([m_.kind in OFFCHIP_KINDS for m_ in spec.memory])[:, None, None]
        capped = np.where(offchip, np.fmin(free, cap[None, :, None]), free)
        e_byte = np.stack([p[f"memory.{m_.name}.energy_per_byte"] for m_ in spec.memory])[:, :, None]
        return capped, free, e_byte
    return _memo(("levels", id(p)), (p,), make) if len(p["compute.cores"]) == 1 else make()


def _shape_factors(spec, p, tab, a_bytes) -> ShapeFactors:
    """Matrix-unit utilisation (D,N) and the A/B re-read factors per level of the matrix
    ops (L, D or 1, Nm).

    They depend only on the device geometry, capacities and the op shapes, so a single
    evaluation (one design, no overrides) computes them once per (spec, graph, activation
    width); a batch of designs always recomputes them."""
    if a_bytes.shape[0] != 1:
        return _compute_shape_factors(spec, p, tab, a_bytes)
    return _memo(("shape", id(p), id(tab), float(a_bytes[0, 0])), (p, tab),
                 lambda: _compute_shape_factors(spec, p, tab, a_bytes))


def _compute_shape_factors(spec, p, tab, a_bytes) -> ShapeFactors:
    """See _shape_factors. Re-read factors are for the matrix columns only, (L, D or 1, Nm):
    vector ops stream every operand once."""
    c = tab.cols
    L = len(spec.memory)
    is_mx = tab.is_matrix
    D = a_bytes.shape[0]
    N = len(tab.ops)
    util = np.ones((D, N))
    Nm = int(is_mx.sum())
    if not Nm:
        ones = np.ones((L, 1, N))
        return ShapeFactors(util, ones, ones, ones, 1.0, 1.0)
    b_, m, n, k = (c[x][is_mx] for x in ("batch", "m", "n", "k"))
    geo_keys = [k_ for k_ in ("compute.cores", "compute.matrix.array.0", "compute.matrix.array.1",
                              "compute.matrix.units") if k_ in p]
    if D > 1 and all((p[k_] == p[k_][0]).all() for k_ in geo_keys):    # same geometry for all designs
        util[:, is_mx] = _geometry_util(spec, {k_: p[k_][:1] for k_ in p}, b_, m, n, k)
    else:
        util[:, is_mx] = _geometry_util(spec, p, b_, m, n, k)
    mx = spec.compute.matrix
    # per level l, the tile that the next-inner level (capacity S) allows: square t = sqrt(S)
    # (or the whole smaller operand resident); the innermost level uses the unit geometry
    S = np.stack([p[f"memory.{spec.memory[l + 1].name}.capacity"] for l in range(L - 1)]
                 + [np.full_like(p["compute.cores"], np.inf)])[:, :, None] / a_bytes[None]   # (L,D,1)
    t = np.sqrt(S)
    tm = np.broadcast_to(t, (L, D, 1)).copy()
    tn = tm.copy()
    inner_resident = True
    if mx is not None and mx.array and "compute.matrix.array.0" in p:
        tm[-1], tn[-1] = p["compute.matrix.array.0"][:, None], p["compute.matrix.array.1"][:, None]
        inner_resident = False
    elif mx is not None and mx.block_tile:
        tm[-1], tn[-1] = mx.block_tile
        inner_resident = False
    fused = tab.is_fused[is_mx]
    small = np.minimum(m * k, k * n)
    rows = 1 if all(((S[l] == S[l][0]).all() and (tm[l] == tm[l][0]).all() and (tn[l] == tn[l][0]).all())
                    for l in range(L)) else D
    fa = np.ones((L, rows, Nm))
    fb = np.ones((L, rows, Nm))
    for l in range(L):
        S_l, tm_l, tn_l = S[l], tm[l], tn[l]                                  # (D,1)
        # a level whose capacity and tile are the same for every design is computed once
        same = (S_l == S_l[0]).all() and (tm_l == tm_l[0]).all() and (tn_l == tn_l[0]).all()
        if same:
            S_l, tm_l, tn_l = S_l[:1], tm_l[:1], tn_l[:1]
        resident = small <= S_l * 0.5
        if l == L - 1 and inner_resident:
            resident = np.ones_like(resident)
        fa_l = np.where(resident, 1.0, _ceil(n / np.minimum(n, tn_l)))
        fb_l = np.where(resident, 1.0, _ceil(m / np.minimum(m, tm_l)))
        if fused.any():   # FlashAttention: K/V streamed once per query block of S/(4d) rows
            q_rows = np.clip(S_l / (4 * np.maximum(k, 1)), 1, np.maximum(m, 1))
            fa_l = np.where(fused, 1.0, fa_l)
            fb_l = np.where(fused, _ceil(np.maximum(m, 1) / q_rows), fb_l)
        fa[l] = fa_l
        fb[l] = fb_l
    # the same factors at the context-dependent columns (slope terms)
    pos = tab.matrix_pos[tab.slope_cols]
    fa_s = np.where(pos >= 0, fa[..., np.maximum(pos, 0)], 1.0)
    fb_s = np.where(pos >= 0, fb[..., np.maximum(pos, 0)], 1.0)
    fb_w = None
    if rows == 1:    # shared by every design: spread to full width once (ones on vector ops)
        full_a, full_b = np.ones((L, 1, N)), np.ones((L, 1, N))
        full_a[..., is_mx], full_b[..., is_mx] = fa, fb
        fa, fb = full_a, full_b
        fb_w = np.where(tab.is_gemm, fb, 1.0)        # weights are the B operand of GEMMs only
    return ShapeFactors(util=util, fa=fa, fb=fb, fb_w=fb_w, fa_s=fa_s, fb_s=fb_s)


def envelope_sum(a, b, lo, hi):
    """Exact sum over integers c in [lo, hi] of max_j(a_j + b_j c) (last axis j).

    max of affine functions is convex and piecewise linear; between consecutive crossing
    points one term dominates, so each integer segment sums as an arithmetic series.
    a, b: (..., J); lo, hi: ints (hi >= lo). Returns (sum (...), per-term share (..., J)).
    """
    live = ~((a == 0) & (b == 0)).reshape(-1, a.shape[-1]).all(0)    # drop terms that never count
    # (a, b here are term-last: (..., J))
    if not live.all():
        tot, sh = envelope_sum(a[..., live], b[..., live], lo, hi)
        full = np.zeros(a.shape)
        full[..., live] = sh
        return tot, full
    J = a.shape[-1]
    da = a[..., :, None] - a[..., None, :]
    db = b[..., None, :] - b[..., :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(db != 0, da / db, np.nan).reshape(*a.shape[:-1], J * J)
    pts = np.clip(np.ceil(np.nan_to_num(x, nan=lo)), lo, hi + 1)
    pts = np.sort(np.concatenate([pts, np.full(a.shape[:-1] + (1,), float(lo)),
                                  np.full(a.shape[:-1] + (1,), float(hi + 1))], -1), -1)
    s, e = pts[..., :-1], pts[..., 1:]                       # segments [s, e)
    cnt = e - s
    csum = (s + e - 1) * cnt / 2                             # sum of c over the segment
    seg = cnt[..., None] * a[..., None, :] + csum[..., None] * b[..., None, :]   # (..., S, J)
    best = seg.max(-1)
    total = best.sum(-1)
    share = np.where(seg == best[..., None], seg, 0.0)
    share = share / np.maximum((seg == best[..., None]).sum(-1, keepdims=True), 1)
    return total, share.sum(-2)
