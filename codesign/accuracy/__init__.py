"""Accuracy against measurements: map rows to evaluations, predict, fit runtimes, cross-validate.

``evaluate_measurements`` is the loop ``codesign accuracy`` and ``benchmarks/bench_accuracy.py``
run: every row is predicted with the library runtimes as they are (in-sample: the runtime
figures were fitted on these rows) and, with ``cv=True``, again with every runtime refitted
without the row's source (leave-one-source-out, the honest figure).
"""
from __future__ import annotations

import math

from .core import POPULATIONS, max_throughput, population, predict, run, summarize
from .fit import cross_validate
from .mapping import METRICS, Case, Skip, load_map, read_rows, resolve_all, resolve_row, source_id

__all__ = ["Case", "Skip", "METRICS", "POPULATIONS", "load_map", "read_rows", "resolve_all", "resolve_row",
           "source_id", "predict", "run", "summarize", "population", "max_throughput", "evaluate_measurements"]

GROUP_ORDER = ("all", "decode", "prefill", "throughput", "energy", "power", "gemm", "ratio")


def evaluate_measurements(csv_path=None, map_path=None, runtime=None, cv: bool = True, progress=None) -> dict:
    """Rows, skipped rows, and MAPE tables: {'rows', 'skipped', 'in_sample', 'cross_validated'}."""
    cases, skipped = resolve_all(load_map(map_path), read_rows(csv_path), runtime)
    results = run(cases, progress=progress)
    if cv:
        loso = cross_validate(cases)
        for r in results:
            pred = loso[r["row"]][0]
            r["predicted_cv"] = pred
            r["error_cv"] = pred / r["measured"] - 1 if math.isfinite(pred) and pred > 0 else math.nan
    out = {"rows": results, "skipped": [s.__dict__ for s in skipped],
           "in_sample": summarize(results, "error")}
    if cv:
        out["cross_validated"] = summarize(results, "error_cv")
    return out
