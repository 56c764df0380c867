"""``codesign accuracy``, ``codesign fit`` and ``codesign runtime``: how good the numbers are,
and the software stacks that make them."""
from __future__ import annotations

import dataclasses
import datetime
import math

import click

from ..accuracy import bands, evaluate_measurements, load_map, read_rows, resolve_all
from ..accuracy.core import device_class as cls_of
from ..accuracy.core import summarize
from ..accuracy.fit import PARAMS, fit_runtime, fittable, loso_for, neutral_for
from ..errors import CodesignError
from ..hardware.classes import CLASSES
from ..io import write_csv_rows
from ..plots import plot_accuracy
from ..runtime import list_runtimes, load_runtime
from ..runtime.fitted import write_fitted
from ..units import format_quantity
from .common import check_writable, echo_json, echo_table

_MEAS = click.option("--measurements", "csv_path", type=click.Path(dir_okay=False), default=None,
                     help="Measurements CSV (columns of data/published-measurements.csv, optional 'runtime'); "
                          "default: the built-in published measurements.")
_MAP = click.option("--map", "map_path", type=click.Path(dir_okay=False), default=None,
                    help="Name-mapping YAML (default data/accuracy-map.yaml); unlisted names resolve by rules.")


def _pct(x) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x * 100:+.1f}%"


def _mape_rows(table: dict, cv_table: dict | None, prefix: str) -> list[dict]:
    rows = []
    for key, v in table.items():
        scope, group = key.rsplit("/", 1)
        if not (scope == prefix or scope.startswith(prefix + "=")):
            continue
        cv = (cv_table or {}).get(key)
        rows.append({"scope": scope.split("=", 1)[-1], "group": group, "n": v["n"],
                     "MAPE in-sample": f"{v['mape'] * 100:.1f}%", "bias in-sample": _pct(v["bias"]),
                     "MAPE leave-one-publisher-out": f"{cv['mape'] * 100:.1f}%" if cv else "-",
                     "bias LOPO": _pct(cv["bias"]) if cv else "-"})
    return rows


@click.command("accuracy")
@_MEAS
@_MAP
@click.option("--runtime", default=None, help="Evaluate every row under this runtime (else the row's own).")
@click.option("--cv/--no-cv", default=True, show_default=True,
              help="Also refit the runtimes leaving each publisher out (the honest, out-of-sample error).")
@click.option("--by", default="class,runtime", show_default=True,
              help="Break the MAPE down by these columns (class, runtime, publisher, source, hardware, workload).")
@click.option("--worst", type=int, default=10, show_default=True, help="Show the N worst rows.")
@click.option("--rows", "show_rows", is_flag=True, help="Print every row, not only the worst.")
@click.option("--csv", "out_csv", type=click.Path(dir_okay=False), help="Write per-row predictions as CSV.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (rows, skipped, MAPE tables).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Predicted-vs-measured PNG.")
@click.option("--bands", "bands_path", type=click.Path(dir_okay=False),
              help="Write error bands (p10-p90 of the cross-validated residuals per class, runtime and metric) "
                   "as YAML; eval/compare --json read data/error-bands.yaml.")
def accuracy_cmd(csv_path, map_path, runtime, cv, by, worst, show_rows, out_csv, as_json, plot_path, bands_path):
    """Predict every row of a measurements CSV and report MAPE and bias by group.

    \b
    Examples:
      codesign accuracy                                   # the built-in published measurements
      codesign accuracy --measurements mine.csv --runtime vllm --worst 20
    """
    check_writable(out_csv, plot_path, bands_path)
    if bands_path and not cv:
        raise CodesignError("error bands come from cross-validated residuals: drop --no-cv", field="--bands")
    res = evaluate_measurements(csv_path, map_path, runtime, cv=cv)
    cols = [c.strip() for c in by.split(",") if c.strip()]
    rows = res["rows"]
    tables = {"in_sample": summarize(rows, "error", by=cols)}
    if cv:
        tables["cross_validated"] = summarize(rows, "error_cv", by=cols)
    if out_csv:
        write_csv_rows(out_csv, sorted(rows, key=lambda r: r["row"]))
    if plot_path:
        plot_accuracy(rows, plot_path)
    if bands_path:
        table = bands.build(rows)
        bands.write(table, bands_path, f"Error bands of codesign answers: quantiles {bands.QUANTILES} of measured / "
                    f"predicted (as rates), leave-one-publisher-out,\nfrom {len(rows)} rows of "
                    f"{csv_path or 'data/published-measurements.csv'}; written by `codesign accuracy --bands` "
                    f"on {datetime.date.today().isoformat()}.\nKeys: device class / runtime / metric group "
                    f"(* = pooled); groups with fewer than {bands.MIN_ROWS} rows are left out.")
        if not as_json:
            click.echo(f"wrote {len(table)} error bands to {bands_path}")
    if as_json:
        echo_json({"rows": rows, "skipped": res["skipped"], "mape": tables})
        return
    key = "error_cv" if cv else "error"
    bad = sorted((r for r in rows if r["population"] == "held-out" and math.isfinite(r.get(key, math.nan))),
                 key=lambda r: -abs(r[key]))
    shown = sorted(rows, key=lambda r: r["row"]) if show_rows else bad[:worst]
    if shown:
        click.echo(f"{'every row' if show_rows else f'worst {len(shown)} held-out rows'} ({key}):")
        echo_table([{"row": r["row"], "hardware": r["hardware"], "runtime": r["runtime"], "workload": r["workload"],
                     "metric": r["metric"], "measured": r["measured"], "predicted": r["predicted"],
                     "error": _pct(r["error"]), "error LOPO": _pct(r.get("error_cv")), "detail": r["detail"]}
                    for r in shown])
    click.echo(f"\n{len(rows)} rows evaluated, {len(res['skipped'])} skipped (--json lists the reasons)")
    ins, cvt = tables["in_sample"], tables.get("cross_validated", {})
    for pop in ("held-out", "calibration", "proxy"):
        if not ins.get(pop):
            continue
        click.echo(f"\nMAPE, {pop} rows" + (" (the headline)" if pop == "held-out" else ""))
        echo_table(_mape_rows(ins[pop], cvt.get(pop), "all"))
        for col in cols:
            got = _mape_rows(ins[pop], cvt.get(pop), col)
            if got and pop == "held-out":
                click.echo("")
                echo_table([dict(r, scope=f"{col}={r['scope']}") for r in got])


@click.command("fit")
@_MEAS
@_MAP
@click.option("--runtime", required=True, help="The runtime whose figures to fit (rows run under it).")
@click.option("--class", "device_class", type=click.Choice(list(CLASSES)), default=None,
              help="Device class to fit (default: every class the rows cover).")
@click.option("--params", default="gemm,memory,latency_factor,launch_decode,request,sequence", show_default=True,
              help="Free figures: gemm, vector, memory, latency_factor, launch, launch_decode, request (host "
                   "time per request), sequence (host time per sequence per decode step), dequant (unpacking work), "
                   "stream (bytes per clock per core).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the runtime YAML with the fitted figures (and the rows they came from).")
@click.option("--fresh", is_flag=True, help="Start from the runtime's unfitted figures (neutral tuning, its own "
              "launch cost) and drop every figure an earlier fit wrote.")
@click.option("--json", "as_json", is_flag=True)
def fit_cmd(csv_path, map_path, runtime, device_class, params, out, fresh, as_json):
    """Fit a runtime's free figures by robust least squares in log space, with the
    leave-one-publisher-out error printed next to the in-sample one.

    \b
    Example:
      codesign fit --runtime llama.cpp-cuda --class gpu --out runtimes/llama.cpp-cuda.yaml
    """
    names = [p.strip() for p in params.split(",") if p.strip()]
    bad = [p for p in names if p not in PARAMS]
    if bad:
        raise CodesignError(f"unknown parameter {bad[0]!r} (one of {', '.join(PARAMS)})", field="--params")
    check_writable(out)
    rt = load_runtime(runtime)
    cases, _ = resolve_all(load_map(map_path), read_rows(csv_path))
    mine = [c for c in fittable(cases) if c.runtime == rt.name]
    classes = [device_class] if device_class else sorted({cls_of(c) for c in mine})
    if not classes:
        raise CodesignError(f"no usable rows run under {rt.name} (time metrics, not proxies)", field="--runtime")
    results = []
    for cls in classes:
        fr = fit_runtime(cases, rt.name, cls, names, start=neutral_for(rt.name, cls) if fresh else None)
        loso = loso_for(cases, rt.name, cls, names)
        kept = True
        if fresh and fr.values and not loso < fr.start_mape:
            # figures that do not beat the unfitted ones on publishers they never saw are
            # fitted noise: the runtime keeps its unfitted figures for this class
            kept = False
            fr = dataclasses.replace(fr, values={})
        results.append({"class": cls, "fitted": fr.values, "not fitted": fr.dropped, "rows": len(fr.rows),
                        "sources": len(fr.sources), "MAPE before": fr.start_mape, "MAPE in-sample": fr.in_sample_mape,
                        "MAPE leave-one-publisher-out": loso, "kept": kept, "_fit": fr})
    if out:
        write_fitted(rt, [r["_fit"] for r in results], out, csv_path, fresh=fresh)
    if as_json:
        echo_json([{k: v for k, v in r.items() if k != "_fit"} for r in results])
        return
    for r in results:
        click.echo(f"{rt.name} on {r['class']}: {r['rows']} rows from {r['sources']} sources")
        for k, v in r["fitted"].items():
            click.echo(f"  {k:<16} {v:.4g}")
        for k, why in r["not fitted"].items():
            click.echo(f"  {k:<16} not fitted: {why}")
        click.echo(f"  MAPE {r['MAPE before'] * 100:.1f}% before, {r['MAPE in-sample'] * 100:.1f}% in-sample, "
                   f"{r['MAPE leave-one-publisher-out'] * 100:.1f}% leave-one-publisher-out")
        if not r["kept"]:
            click.echo("  not kept: out of sample the fit is no better than the unfitted figures "
                       "(the runtime keeps those for this class)")
    if out:
        click.echo(f"wrote {out}")


@click.group("runtime")
def runtime_grp():
    """Software stacks (runtimes/): list, show."""


@runtime_grp.command("list")
def runtime_list():
    """Every library runtime with its launch costs, fusions and fitted classes."""
    t = lambda v: "-" if v is None else format_quantity(v, "time", 3)  # noqa: E731
    echo_table([{"name": r.name, "classes": ",".join(r.device_classes) or "any",
                 "launch": t(r.launch_overhead), "decode launch": t(r.decode_launch_overhead),
                 "fuses": ",".join(r.fuse) or "-", "tuned": ",".join(r.tuning) or "-",
                 "display name": r.display_name or ""} for r in list_runtimes()])


@runtime_grp.command("show")
@click.argument("name")
def runtime_show(name):
    """One runtime in full (JSON)."""
    echo_json(load_runtime(name).model_dump(mode="json", exclude_defaults=True))


COMMANDS = (accuracy_cmd, fit_cmd, runtime_grp)
