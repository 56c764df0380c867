"""Speed next to quality: the performance answer of ``codesign.perf.evaluate`` with the
published quality estimate of its compression (``codesign.quality``) added, one floor above
both, so that the engine never imports the quality table or the kernel runner.

``measure=True`` also runs the kernel runner's quantised-GEMM experiment (a NumPy GEMM,
~0.4 s the first time per compression): asked for by ``codesign eval``, not by studies.

Several evaluations at once, for comparisons and figures: :func:`evaluate_many` (every
device x workload) and :func:`sweep_results` (over batch sizes or prompt lengths).
"""
from __future__ import annotations

from .errors import CodesignError
from .perf import evaluate as evaluate_speed
from .perf.evaluate import Result
from .quality import estimate_quality, measured_gemm_proxy
from .workload.scenario import Scenario

DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)
DEFAULT_CONTEXTS = (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


def with_quality(result: Result, measure: bool = False) -> Result:
    """``result`` with quality_ppl_increase_pct / quality_status / quality_note (and, with
    ``measure``, the measured GEMM SQNR) in its summary."""
    q = estimate_quality(result.model, result.compression)
    result.summary.update(quality_ppl_increase_pct=q.ppl_increase_pct, quality_status=q.status,
                          quality_note=q.note)
    if measure:
        result.summary.update(measured_gemm_proxy(result.compression))
    return result


def evaluate(hardware, model, scenario=None, compression=None, *, measure: bool = False, **kwargs) -> Result:
    """:func:`codesign.perf.evaluate` plus the quality estimate (see :func:`with_quality`)."""
    return with_quality(evaluate_speed(hardware, model, scenario, compression, **kwargs), measure)


def evaluate_many(hardware, workloads, scenario=None, compression=None) -> list[Result]:
    """:func:`evaluate` for every device x workload (device-major order)."""
    hardware = [hardware] if isinstance(hardware, str) else list(hardware)
    workloads = [workloads] if isinstance(workloads, str) else list(workloads)
    return [evaluate(h, w, scenario, compression) for h in hardware for w in workloads]


def sweep_results(hardware, workload, scenario=None, compression=None, *, over: str = "batch",
                  values=None) -> list[Result]:
    """:func:`codesign.perf.evaluate` (speed only) of every device over batch sizes
    (``over="batch"``, default :data:`DEFAULT_BATCHES`) or prompt lengths (``"context"``,
    default :data:`DEFAULT_CONTEXTS`)."""
    if over not in ("batch", "context"):
        raise CodesignError(f"expected batch or context, got {over!r}", field="--over")
    field = "batch" if over == "batch" else "prompt"
    values = list(values or (DEFAULT_BATCHES if over == "batch" else DEFAULT_CONTEXTS))
    if any(int(v) != v or v <= 0 for v in values):
        raise CodesignError(f"expected positive integers, got {values}", field="--values")
    sc = scenario or Scenario()
    hardware = [hardware] if isinstance(hardware, str) else list(hardware)
    return [evaluate_speed(h, workload, sc.model_copy(update={field: int(v)}), compression)
            for h in hardware for v in values]
