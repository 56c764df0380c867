"""Prediction versus measurement: the engine's ``op_times`` against the kernel runner.

Validation shapes come from real model dimensions through the operator graph
(``build_graph``), so they are the kernels a forward pass really runs; calibration
(:mod:`.calibrate`) uses synthetic shapes (hidden 2560, rows of 1000, head dim 64/96,
skinny weights 2560 x 6912), disjoint from these.

Reported per kernel: predicted and measured seconds for one invocation and the signed
error ``(predicted - measured) / measured``; MAPE overall and per operator kind, the
median signed error, and the share of kernels within 10% and 25%. Whole transformer
blocks (one layer's forward) are compared separately, predicted as the sum of their
ops (the head split/merge copies between kernels are not ops in the graph, so they
count against the model).

A short reference set (a GEMM and a streaming add) is timed before and after; a drift
of more than 10% means the machine's conditions changed during the run, and the report
says so rather than scoring silently.
"""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as _replace
from typing import TYPE_CHECKING, Literal, TypedDict, cast

import numpy as np
import pandas as pd

from ..errors import CodesignError
from ..hardware import load_hardware
from ..perf import op_times
from ..runtime import load_runtime
from ..workload import Scenario, load_workload
from ..workload.graph import build_graph
from ..workload.ops import ATTENTION_KINDS, MATRIX_KINDS, RUNNABLE_KINDS, Op
from .runner import layer_ops, plan_layer, run_block, run_op, runnable_op

if TYPE_CHECKING:
    from ..workload.scenario import Dtype

DRIFT_WARN = 0.10
# columns every consumer of the validation table may rely on (codesign.plots.validation)
VALIDATION_COLUMNS = ("kernel", "kind", "phase", "predicted_s", "measured_s", "error_pct")


@dataclass(frozen=True)
class ShapeSet:
    """One graph to take kernels from: a model, a scenario, a phase."""
    model: str
    phase: str                 # prefill | decode
    context: int               # prompt tokens (prefill) or cached tokens (decode)
    batch: int = 1
    tp: int = 1
    attention: Literal["fused", "unfused"] = "fused"
    block: bool = False        # also run the whole layer
    names: tuple = ()          # only these op names (empty: all)
    layer_only: bool = False   # skip embedding / final norm / LM head

    @property
    def label(self) -> str:
        tp = f"-tp{self.tp}" if self.tp > 1 else ""
        att = "-unfused" if self.attention == "unfused" else ""
        return f"{self.model}{tp}/{self.phase}/b{self.batch}-c{self.context}{att}"


SHAPE_SETS = {
    # ~15-30 s on a 2-core VM: one prefill and one decode of a 7B model, and BERT
    "quick": (
        ShapeSet("llama-2-7b", "prefill", 128, layer_only=True),
        ShapeSet("llama-2-7b", "decode", 1024, block=True),
        ShapeSet("bert-base", "prefill", 128, batch=2, attention="unfused", block=True),
    ),
    "full": (
        ShapeSet("llama-2-7b", "prefill", 128, block=True),
        ShapeSet("llama-2-7b", "prefill", 512, attention="unfused", layer_only=True),
        ShapeSet("llama-2-7b", "decode", 128, attention="unfused"),
        ShapeSet("llama-2-7b", "decode", 1024, block=True, layer_only=True),
        ShapeSet("llama-2-7b", "decode", 4096, attention="unfused", layer_only=True),
        ShapeSet("llama-2-7b", "decode", 512, batch=8, layer_only=True),
        ShapeSet("llama-3.1-8b", "prefill", 256, layer_only=True),
        ShapeSet("llama-3.1-8b", "decode", 2048, block=True),
        ShapeSet("llama-2-70b", "prefill", 128, tp=8, layer_only=True),
        ShapeSet("llama-2-70b", "decode", 1024, tp=8, attention="unfused", layer_only=True),
        ShapeSet("mistral-7b", "prefill", 384, attention="unfused", layer_only=True),
        ShapeSet("mistral-7b", "decode", 3072, layer_only=True),
        ShapeSet("bert-base", "prefill", 128, batch=4, block=True),
        ShapeSet("bert-base", "prefill", 512, attention="unfused"),
    ),
    # a data-centre GPU: real widths (8B, 70B), batch 1-256, context up to 32k, so most kernels
    # run tens of microseconds or more and the measurement is the kernel, not its launch
    "gpu": (
        ShapeSet("llama-3.1-8b", "prefill", 2048, layer_only=True),
        ShapeSet("llama-3.1-8b", "prefill", 512, batch=8, layer_only=True),
        ShapeSet("llama-3.1-8b", "prefill", 32768, layer_only=True),
        ShapeSet("llama-3.1-8b", "decode", 1024, layer_only=True),
        ShapeSet("llama-3.1-8b", "decode", 4096, batch=16, layer_only=True),
        ShapeSet("llama-3.1-8b", "decode", 2048, batch=64, layer_only=True),
        ShapeSet("llama-3.1-8b", "decode", 1024, batch=256, layer_only=True),
        ShapeSet("llama-3.1-8b", "decode", 32768, batch=4, layer_only=True),
        ShapeSet("llama-3.1-70b", "prefill", 4096, layer_only=True),
        ShapeSet("llama-3.1-70b", "decode", 8192, batch=32, layer_only=True),
        ShapeSet("llama-2-7b", "decode", 2048, batch=8, layer_only=True),
    ),
}
# the bar for GPU kernels: GEMM and attention kernels that run at least this long
LONG_KERNEL_S = 50e-6


def shape_ops(s: ShapeSet, dtype: str = "fp32") -> tuple[tuple[Op, ...], tuple[Op, ...]]:
    """(the kernels to run, the layer's ops for the block) of one shape set."""
    model = load_workload(s.model)
    gen = 1 if s.phase == "decode" else 0
    sc = Scenario(batch=s.batch, prompt=s.context, generate=gen, dtype=_scenario_dtype(dtype), tp=s.tp,
                  attention=s.attention)
    g = build_graph(model, sc)
    ops = g.phase(s.phase)
    if not ops:
        raise CodesignError(f"{s.label}: the graph has no {s.phase} ops for {s.model}")
    layer = layer_ops(ops)
    plan = None
    try:
        plan = plan_layer(layer)
    except CodesignError:
        pass
    run = [runnable_op(o, plan, head_dim=model.rotary_dims) for o in ops if o.kind in RUNNABLE_KINDS]
    if s.layer_only:
        names = {o.name for o in layer}
        run = [o for o in run if o.name in names]
    if s.names:
        run = [o for o in run if o.name in s.names]
    return tuple(run), layer


def _scenario_dtype(dtype: str) -> Dtype:
    return cast("Dtype", dtype) if dtype in ("fp32", "bf16", "fp16", "int8") else "fp32"


class _RunOptions(TypedDict, total=False):
    """Keyword arguments shared by run_op / run_block calls."""
    backend: str
    device: str
    dtype: str
    threads: int
    max_time: float


def _signature(op: Op) -> tuple:
    return (op.kind, op.impl, op.phase, op.batch, op.m, op.n, op.k, op.elements, op.flops,
            op.act_in_elems, op.kv_read_elems)


def _reference_set(backend: str, device: str, threads: int) -> float:
    """Seconds of a short fixed kernel set (GEMM 384^3 + 1M-element add): a drift probe."""
    g = Op(name="ref_gemm", kind="gemm", phase="prefill", m=384, n=384, k=384, flops=2 * 384**3)
    a = Op(name="ref_add", kind="elementwise", phase="prefill", impl="add", elements=2**20,
           act_in_elems=2 * 2**20, act_out_elems=2**20)
    kw = _RunOptions(backend=backend, device=device, threads=threads, max_time=0.3)
    return sum(run_op(o, **kw).seconds for o in (g, a))


def validate(hardware, *, backend: str = "numpy", device: str = "cpu", dtype: str = "fp32", threads: int = 1,
             shapes="quick", max_time: float = 1.0, blocks: bool = True, log=None):
    """Predict and measure every kernel of the shape sets; return (kernels DataFrame, report dict)."""
    log = log or (lambda msg: None)
    spec = load_hardware(hardware)
    sets = SHAPE_SETS[shapes] if isinstance(shapes, str) else tuple(shapes)
    if isinstance(shapes, str) and shapes not in SHAPE_SETS:
        raise CodesignError(f"shapes must be one of {', '.join(SHAPE_SETS)}, got {shapes!r}", field="shapes")
    rt = runner_runtime(backend)
    ref0 = _reference_set(backend, device, threads)
    rows, block_rows = [], []
    seen: set[tuple] = set()
    kw = _RunOptions(backend=backend, device=device, dtype=dtype, threads=threads, max_time=max_time)
    for s in sets:
        try:
            ops, layer = shape_ops(s, dtype)
        except CodesignError as e:
            log(f"skip {s.label}: {e}")
            continue
        todo = [o for o in ops if _signature(o) not in seen]
        seen.update(_signature(o) for o in todo)
        if todo:
            pred = op_times(spec, todo, dtype=dtype, runtime=rt)
            for o, (_, pr) in zip(todo, pred.iterrows()):
                m = run_op(o, **kw)
                rows.append(_row(s, o, pr, m))
                log(f"  {rows[-1]['kernel']:<48} {pr['time_s'] * 1e6:10.1f} us  {m.seconds * 1e6:10.1f} us  "
                    f"{rows[-1]['error_pct']:+6.1f}%")
        if blocks and s.block:
            try:
                m = run_block(layer, **kw)
            except CodesignError as e:
                log(f"skip block {s.label}: {e}")
                continue
            pred = float(op_times(spec, [_replace(o, count=1) for o in layer], dtype=dtype, runtime=rt)["time_s"].sum())
            block_rows.append({"kernel": f"{s.label}/block", "kind": "block", "phase": s.phase, "model": s.model,
                               "predicted_s": pred, "measured_s": m.seconds,
                               "error_pct": 100 * (pred - m.seconds) / m.seconds,
                               "measured_cpu_s": m.timing.cpu_median_s, "cv": m.timing.cv, "busy": m.timing.busy})
            log(f"  {block_rows[-1]['kernel']:<48} {pred * 1e6:10.1f} us  {m.seconds * 1e6:10.1f} us  "
                f"{block_rows[-1]['error_pct']:+6.1f}%")
    ref1 = _reference_set(backend, device, threads)
    df = pd.DataFrame(rows)
    report = summarize(df, pd.DataFrame(block_rows))
    report["drift_pct"] = 100 * (ref1 - ref0) / ref0
    report["backend"], report["device"], report["dtype"], report["threads"] = backend, device, dtype, threads
    report["hardware"] = spec.name
    return df, report


def runner_runtime(backend: str):
    """The software the runner's kernels are: the device-only model (generic), except that
    torch's attention is SDPA, which gives decode one work unit per sequence and KV head
    (no split of the KV cache; codesign.perf.params.UNIT_BYTES_IN_FLIGHT)."""
    rt = load_runtime("generic")
    return rt.model_copy(update={"split_kv": False}) if backend == "torch" else rt


def _row(s: ShapeSet, o: Op, pr, m) -> dict:
    t = m.timing
    shape = (f"b{o.batch} m{o.m} n{o.n} k{o.k}" if o.is_matrix else
             f"m{o.m} n{o.n}" if o.kind in ("norm", "softmax", "embedding") else f"e{o.elements}")
    return {"kernel": f"{s.label}/{o.name}", "kind": o.kind, "impl": o.impl, "phase": o.phase, "model": s.model,
            "shape": shape, "predicted_s": float(pr["time_s"]), "measured_s": m.seconds,
            "error_pct": 100 * (float(pr["time_s"]) - m.seconds) / m.seconds, "bound": pr.get("bound", ""),
            "measured_cpu_s": t.cpu_median_s, "p10_s": t.p10_s, "p90_s": t.p90_s, "cv": t.cv,
            "samples": t.samples, "busy": t.busy, "dispatch_s": t.dispatch_s}


def kind_class(row) -> str:
    """Report classes: prefill GEMM, decode GEMM (GEMV/skinny), attention, vector ops."""
    k = row["kind"]
    if k == "gemm":
        return "gemm.prefill" if row["phase"] == "prefill" else "gemm.decode"
    if k in ATTENTION_KINDS:
        return f"{k}.{row['phase']}"
    return k


def summarize(df, blocks) -> dict:
    """MAPE overall and per kind/class, median signed error, share within 10% / 25%."""
    out: dict = {"kernels": int(len(df))}
    if len(df):
        err = df["error_pct"].to_numpy()
        out.update(overall_mape_pct=float(np.mean(np.abs(err))), median_signed_pct=float(np.median(err)),
                   within_10pct=float(np.mean(np.abs(err) <= 10)), within_25pct=float(np.mean(np.abs(err) <= 25)))
        classes = df.apply(kind_class, axis=1)
        per = {}
        for cls in sorted(set(classes)):
            e = err[(classes == cls).to_numpy()]
            per[cls] = {"n": int(len(e)), "mape_pct": float(np.mean(np.abs(e))),
                        "median_signed_pct": float(np.median(e)), "within_25pct": float(np.mean(np.abs(e) <= 25))}
        out["per_class"] = per
        long_mx = (df["kind"].isin(MATRIX_KINDS)
                   & (df["measured_s"] >= LONG_KERNEL_S)).to_numpy()
        out["long_matrix_kernels"] = int(long_mx.sum())
        out["long_matrix_mape_pct"] = float(np.mean(np.abs(err[long_mx]))) if long_mx.any() else float("nan")
        busy = df["busy"].dropna()
        out["busy_kernels"] = int((busy > 0.5).sum())
    else:
        out["overall_mape_pct"] = float("nan")
    out["blocks"] = blocks.to_dict("records") if len(blocks) else []
    return out
