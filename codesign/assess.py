"""Speed next to quality: the performance answer of ``codesign.perf.evaluate`` with the
published quality estimate of its compression (``codesign.quality``) added, one floor above
both, so that the engine never imports the quality table or the kernel runner.

``measure=True`` also runs the kernel runner's quantised-GEMM experiment (a NumPy GEMM,
~0.4 s the first time per compression): asked for by ``codesign eval``, not by studies.
"""
from __future__ import annotations

from .perf import evaluate as evaluate_speed
from .perf.evaluate import Result
from .quality import estimate_quality, measured_gemm_proxy


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
