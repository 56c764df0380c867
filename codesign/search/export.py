"""Study results as tables and as design files.

``trials_frame`` gives one row per trial: number, state, feasible, pareto, every
parameter (``params.<name>``), the objective values told to Optuna (``values_<metric>``),
every metric (plain names: ``tpot_s``, ``area_mm2``, ...), every constraint value (``constraints.<name>``, feasible when <= 0), the error
of an invalid design, and timing. ``export_study`` writes:

- ``trials.csv`` and ``trials.parquet`` (all trials), ``pareto.csv`` (the feasible
  Pareto front, ``study.best_trials``; a design sampled twice appears twice);
- ``designs/<trial>/hardware.yaml`` (one per distinct Pareto design): the derived spec in full (SI numbers, sources
  kept; every figure the study set cites ``derived: study <name> trial <n>``; when the
  study varies the chip, die_area and price are the area/cost model's estimates that the
  trial was scored with), loadable unchanged by ``codesign eval --hardware``;
- ``designs/<trial>/compression.yaml``: the Compression fields, and
  ``designs/<trial>/design.yaml``: parameters, metrics and the exact ``codesign eval``
  command line for each workload.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import yaml

from ..compression import Compression
from ..hardware.credibility import credibility_notes
from ..hardware.schema import HardwareSpec
from .definition import Study


def unique_front(ost) -> list:
    """``best_trials`` without repeats: the first trial of each distinct parameter set."""
    seen, out = set(), []
    for t in sorted(ost.best_trials, key=lambda t: t.number):
        key = json.dumps(t.params, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


def trials_frame(study: Study, ost) -> pd.DataFrame:
    front = {t.number for t in ost.best_trials}
    rows = []
    for t in ost.get_trials(deepcopy=False):
        cons = t.constraints
        row = {"number": t.number, "state": t.state.name,
               "feasible": bool(t.state.name == "COMPLETE" and all(v <= 0 for v in cons.values())),
               "pareto": t.number in front}
        for k, v in t.params.items():
            row[f"params.{k}"] = v
        for k, v in (t.user_attrs.get("metrics") or {}).items():
            row[k] = v
        if t.values is not None:
            for metric, v in zip(study.objectives, t.values):
                row[f"values_{metric}"] = v          # what Optuna was told (inf for an invalid design)
                row.setdefault(metric, v)
        for k, v in cons.items():
            row[f"constraints.{k}"] = v
        row["error"] = t.user_attrs.get("error")
        row["worker"] = t.user_attrs.get("worker")
        row["datetime_start"] = t.datetime_start
        row["duration_s"] = t.duration.total_seconds() if t.duration else None
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    first = ["number", "state", "feasible", "pareto"]
    params = sorted(c for c in df.columns if c.startswith("params."))
    values = [f"values_{m}" for m in study.objectives if f"values_{m}" in df.columns]
    cons = [c for c in df.columns if c.startswith("constraints.")]
    tail = ["error", "worker", "datetime_start", "duration_s"]
    metrics = [c for c in df.columns if c not in first + params + values + cons + tail]
    return df[first + params + values + metrics + cons + tail]


def _parquet_safe(df):
    """Parquet needs one type per column: mixed object columns become strings."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object:
            kinds = {type(v) for v in out[c] if v is not None and v == v}
            if len(kinds) > 1 or (kinds and not kinds <= {str, bool}):
                out[c] = out[c].map(lambda v: None if v is None or v != v else str(v))
    return out


def design_name(study: Study, number: int) -> str:
    name = f"{study.base.name}-{study.name}-t{number}".lower()
    return re.sub(r"[^a-z0-9._-]", "-", name)


def design_spec(study: Study, params: dict, number: int, metrics: dict | None = None) -> dict:
    """The full hardware mapping of one trial's design, with provenance."""
    hw, overrides = study.space.design(params)
    data = hw.model_dump(mode="json", by_alias=True, exclude_none=True)
    tag = f"derived: study {study.name} trial {number}"
    sources = dict(data.get("sources") or {})
    for path in overrides:
        sources[path] = tag
    if study.varies_hardware and metrics:
        if metrics.get("area_mm2") is not None:
            data["die_area"] = float(metrics["area_mm2"])
            sources["die_area"] = f"estimate: codesign area model (study {study.name} trial {number})"
        if metrics.get("chip_cost_usd") is not None:
            data["price"] = float(metrics["chip_cost_usd"])
            sources["price"] = f"estimate: codesign cost model (study {study.name} trial {number})"
    sources["derived"] = f"{tag} (base {study.base.name})"
    data["name"] = design_name(study, number)
    data["display_name"] = f"{hw.title} ({study.name} trial {number})"
    data["sources"] = sources
    HardwareSpec.model_validate(data)          # what we write must load back
    return data


def eval_command(hw_path: str, workload, comp: Compression) -> str:
    sc = workload.scenario
    model = workload.model.name
    parts = ["codesign eval", f"--hardware {hw_path}", f"--workload {model}"]
    for k, v in sc.model_dump(exclude_defaults=True).items():
        parts.append(f"--{k.replace('_', '-')} {v}")
    for k, v in comp.model_dump(exclude_defaults=True).items():
        parts.append(f"--{k.replace('_', '-')} {v}")
    return " ".join(parts)


def export_study(study: Study, ost, out: Path) -> dict:
    """Write tables and the Pareto designs under ``out``; return what was written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df = trials_frame(study, ost)
    df.to_csv(out / "trials.csv", index=False)
    _parquet_safe(df).to_parquet(out / "trials.parquet", index=False)
    front = df[df["pareto"]] if not df.empty else df
    front.to_csv(out / "pareto.csv", index=False)
    written = []
    for t in unique_front(ost):
        d = out / "designs" / str(t.number)
        d.mkdir(parents=True, exist_ok=True)
        metrics = t.user_attrs.get("metrics") or {}
        spec = design_spec(study, t.params, t.number, metrics)
        _dump(d / "hardware.yaml", spec, f"# {spec['display_name']}: a derived design exported by "
                                         f"'codesign study export'. SI units throughout.\n")
        comp = study.space.compression(t.params)
        _dump(d / "compression.yaml", comp.model_dump(mode="json", exclude_defaults=True),
              "# Compression of this design (fields of codesign.compression.Compression; empty = none).\n")
        info = {"study": study.name, "trial": t.number, "params": dict(t.params),
                "objectives": dict(zip(study.objectives, t.values)), "metrics": metrics,
                "evaluate": [eval_command(str(d / "hardware.yaml"), w, comp) for w in study.workloads]}
        if study.varies_hardware:
            # densities beyond any known chip of the class (hardware.credibility); [] = inside
            info["outside_known_chips"] = credibility_notes(study.space.hardware(t.params))
        _dump(d / "design.yaml", info, "")
        written.append(t.number)
    return {"trials": len(df), "pareto": written, "folder": str(out)}


def _dump(path: Path, data, header: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(header)
        yaml.safe_dump(data, f, sort_keys=False, allow_unicode=True)
