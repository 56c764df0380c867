"""Error bands: how far off the model has been, out of sample, on answers like this one.

``codesign accuracy --bands FILE`` turns the leave-one-publisher-out residuals into
quantiles of measured / predicted, oriented as rates (a time or an energy per token is
inverted), per (device class, runtime, metric group), with pooled fallbacks per (device
class, metric group) and per metric group. ``band_for`` reads them back for one answer:
a value predicted as v comes with [v x q10, v x q90] for a rate (tokens/s, power) and
[v / q90, v / q10] for a cost (seconds, joules); a group with fewer than MIN_ROWS rows
behind it says ``unvalidated`` instead. The built-in table is ``data/error-bands.yaml``,
written by ``python benchmarks/bench_accuracy.py --bands data/error-bands.yaml``.

Neglected: the band is a property of the group, not of the design point; a study far
from the measured devices (a new chip) is extrapolating, whatever the band says.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from ..errors import CodesignError
from ..io import data_dir, read_yaml
from .mapping import METRICS

MIN_ROWS = 5
QUANTILES = (0.1, 0.9)
# CSV metrics that are costs (bigger = slower or dearer): their ratio is inverted
COST_METRICS = {"tpot_ms", "ttft_ms", "prefill_latency_ms", "energy_per_token_j"}
# evaluation outputs -> (metric group, is a cost)
OUTPUT_GROUPS = {
    "tpot_s": ("decode", True), "decode_tokens_per_s": ("decode", False),
    "decode_tokens_per_s_per_request": ("decode", False),
    "ttft_s": ("prefill", True), "prefill_tokens_per_s": ("prefill", False),
    "prefill_tokens_per_s_per_request": ("prefill", False),
    "throughput_tokens_per_s": ("throughput", False), "e2e_latency_s": ("throughput", True),
    "energy_per_token_j": ("energy", True), "energy_j": ("energy", True),
    "avg_power_w": ("power", False),
}


def rate_ratio(row: dict, predicted_key: str = "predicted_cv") -> float:
    """measured / predicted of one result row, oriented so that > 1 means 'faster or more than predicted'."""
    pred, meas = row.get(predicted_key, math.nan), row["measured"]
    if not (math.isfinite(pred) and pred > 0 and meas > 0):
        return math.nan
    q = meas / pred
    return 1.0 / q if row["metric"] in COST_METRICS else q


def build(results: list[dict], predicted_key: str = "predicted_cv") -> dict:
    """Quantile table from result rows (those of ``codesign accuracy`` with cross-validation)."""
    cells: dict = {}
    for r in results:
        if r.get("population") != "held-out" or METRICS.get(r["metric"]) not in {g for g, _ in OUTPUT_GROUPS.values()}:
            continue
        x = rate_ratio(r, predicted_key)
        if not math.isfinite(x):
            continue
        g = METRICS[r["metric"]]
        for key in (f"{r['class']}/{r['runtime']}/{g}", f"{r['class']}/*/{g}", f"*/*/{g}"):
            cells.setdefault(key, []).append(x)
    out = {}
    for key, xs in sorted(cells.items()):
        if len(xs) >= MIN_ROWS:
            lo, hi = np.quantile(xs, QUANTILES)
            out[key] = {"q10": round(float(lo), 4), "q90": round(float(hi), 4), "n": len(xs)}
    return out


def write(table: dict, path, header: str) -> None:
    body = yaml.safe_dump({"bands": table}, sort_keys=False)
    try:
        Path(path).write_text("".join(f"# {line}\n" for line in header.splitlines()) + body, encoding="utf-8")
    except OSError as e:
        raise CodesignError(f"cannot write: {e.strerror}", file=path) from None


@lru_cache(maxsize=4)
def load(path: str | None = None) -> dict:
    """The band table (default: the built-in data/error-bands.yaml); empty when absent."""
    p = Path(path) if path else data_dir("data") / "error-bands.yaml"
    if not p.exists():
        return {}
    return dict(read_yaml(p).get("bands") or {})


def band_for(device_class: str, runtime: str, metric: str, value: float, table: dict | None = None):
    """{'low', 'high', 'scope', 'n'} for one predicted output, or 'unvalidated'."""
    if metric not in OUTPUT_GROUPS or not (isinstance(value, (int, float)) and math.isfinite(value)):
        return "unvalidated"
    group, cost = OUTPUT_GROUPS[metric]
    table = load() if table is None else table
    for key in (f"{device_class}/{runtime}/{group}", f"{device_class}/*/{group}", f"*/*/{group}"):
        cell = table.get(key)
        if cell:
            lo, hi = cell["q10"], cell["q90"]
            low, high = (value / hi, value / lo) if cost else (value * lo, value * hi)
            return {"low": low, "high": high, "scope": key, "n": cell["n"]}
    return "unvalidated"


def bands_for_summary(summary: dict, device_class: str, runtime: str, table: dict | None = None) -> dict:
    """An error band (or 'unvalidated') for every banded metric of an evaluation summary."""
    return {m: band_for(device_class, runtime, m, summary[m], table) for m in OUTPUT_GROUPS if m in summary}
