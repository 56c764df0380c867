"""Writing fitted figures back into a runtime YAML, each citing the rows it came from."""
from __future__ import annotations

from pathlib import Path

import yaml

from ..io import library, read_text, read_yaml
from ..units import format_quantity
from . import runtime_from_dict

# fit parameter -> where it lives in the runtime YAML (tuning.<class>.<name> otherwise)
TOP_LEVEL = {"launch": "launch_overhead", "launch_decode": "decode_launch_overhead",
             "request": "request_overhead", "sequence": "sequence_overhead"}


def unfitted(data: dict) -> dict:
    """A runtime's YAML mapping without the figures an earlier fit wrote (and their sources)."""
    for path in list(data.get("fitted") or {}):
        parts = path.split(".")
        node = data
        for part in parts[:-1]:
            node = node.get(part) or {}
        node.pop(parts[-1], None)
        (data.get("sources") or {}).pop(path, None)
    for cls in list(data.get("tuning") or {}):
        if not data["tuning"][cls]:
            del data["tuning"][cls]
    data.pop("fitted", None)
    return data


def write_fitted(rt, fits, out, csv_path=None, fresh: bool = False) -> Path:
    """Copy ``rt``'s YAML with each FitResult's values set, sourced and cited, to ``out``;
    ``fresh`` first drops every figure an earlier fit wrote."""
    src = library("runtimes").get(rt.name)
    data = read_yaml(src) if src else rt.model_dump(mode="json", exclude_defaults=True)
    if fresh:
        data = unfitted(data)
    header = "".join(line + "\n" for line in read_text(src).splitlines() if line.startswith("#")) if src else ""
    where = Path(csv_path).name if csv_path else "data/published-measurements.csv"
    for fr in fits:
        cite = f"{where} rows {','.join(str(r) for r in fr.rows)}"
        note = (f"measured: fitted by `codesign fit` (robust log least squares) to {len(fr.rows)} rows from "
                f"{len(fr.sources)} sources of {where}")
        for name, value in fr.values.items():
            if name in TOP_LEVEL:
                path = TOP_LEVEL[name]
                data[path] = format_quantity(value, "time", 3)
            else:
                path = f"tuning.{fr.device_class}.{name}"
                data.setdefault("tuning", {}).setdefault(fr.device_class, {})[name] = float(f"{value:.4g}")
            data.setdefault("sources", {})[path] = note
            data.setdefault("fitted", {})[path] = cite
    runtime_from_dict(data, out)            # what we write must load
    Path(out).write_text(header + yaml.safe_dump(data, sort_keys=False, width=110), encoding="utf-8")
    return Path(out)
