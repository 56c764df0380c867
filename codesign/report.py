"""Self-contained HTML reports, and the evaluations and study look-ups behind the plots.

A report is one HTML file with no external resource: the figures are embedded as
base64 PNG (or SVG) data URIs, the CSS is inline, and the inputs used (devices with
their key figures and sources, workload, scenario, compression, or the study
definition) are written out, so it opens offline and can be mailed to someone who has
no codesign. Two kinds:

- :func:`comparison_report`: one workload scenario on several devices: the summary
  table, a comparison chart, the roofline, the latency breakdown, and batch and context
  sweeps;
- :func:`study_report`: an optimisation study: trial counts, the Pareto table, the
  Pareto front with the base and reference devices, history, parameter importance and
  parallel coordinates.

This module renders; what it renders comes from elsewhere: evaluations of several devices
and the sweeps from :mod:`codesign.assess` (``evaluate_many``, ``sweep_results``), a
study's trials and reference devices from :mod:`codesign.search.load` (``load_trials``,
``study_references``).
"""
from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from . import plots
from .accuracy.bands import bands_for_summary
from .assess import sweep_results
from .compression import describe
from .errors import CodesignError
from .metrics import METRICS, direction, display
from .search.load import StudyTrials
from .search.trials import Trials, numeric_column
from .serve import Policy, engines, make_requests, simulate
from .units import format_number, format_quantities, format_quantity, format_si

# ---------------------------------------------------------------------------- HTML pieces
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
.sub{color:#555;margin-top:0}table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.l,th.l{text-align:left}figure{margin:1em 0}
figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{color:#555;font-size:.88em}
.note{color:#8a4b00}details{margin:.5em 0}pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.82em}
.small{font-size:.85em;color:#555}td.best{background:#e3f1e3;font-weight:600}
.band{display:block;color:#666;font-size:.82em;font-weight:400;white-space:nowrap}.verdict{font-size:1.05em}
"""


def _e(x) -> str:
    return html.escape(str(x))


def figure_html(fig, caption: str, fmt: str = "png") -> str:
    """<figure> with the figure as a base64 data URI (PNG or SVG) and a caption."""
    mime = {"png": "image/png", "svg": "image/svg+xml"}.get(fmt)
    if mime is None:
        raise CodesignError(f"expected png or svg for embedded figures, got {fmt!r}", field="--format")
    data = base64.b64encode(plots.figure_bytes(fig, fmt)).decode("ascii")
    return (f'<figure><img alt="{_e(caption)}" src="data:{mime};base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


@dataclass(frozen=True)
class Cell:
    """A table cell with a mark: the best value of its row, and the validated band under it."""
    text: str
    best: bool = False
    band: str = ""


def _td(v, left: bool) -> str:
    if isinstance(v, Cell):
        cls = " ".join(c for c, on in (("l", left), ("best", v.best)) if on)
        band = f'<span class="band">{_e(v.band)}</span>' if v.band else ""
        return f'<td class="{cls}">{_e(v.text)}{band}</td>'
    return f'<td class="{"l" if left else ""}">{_e(_cell(v))}</td>'


def table_html(rows: list[dict], columns: list[str] | None = None, left: int = 1) -> str:
    """A simple HTML table; the first ``left`` columns are left-aligned; :class:`Cell` values
    carry a best-of-row highlight and an error band."""
    if not rows:
        return "<p>(nothing)</p>"
    columns = columns or list(rows[0])
    head = "".join(f'<th class="{"l" if i < left else ""}">{_e(c)}</th>' for i, c in enumerate(columns))
    body = "".join("<tr>" + "".join(_td(r.get(c, ""), i < left) for i, c in enumerate(columns)) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(v) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else ("yes" if v else "no")
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return format_number(v, 3)
    return str(v)


def _page(title: str, subtitle: str, sections: list[str]) -> str:
    try:
        ver = version("codesign")
    except PackageNotFoundError:
        ver = "unknown"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1><p class=\"sub\">{_e(subtitle)}</p>"
            + "\n".join(sections)
            + f"<p class=\"small\">Made by codesign {_e(ver)}: analytical model estimates, not measurements. "
              "Every hardware figure cites its source in the spec files.</p></body></html>\n")


def write_html(text: str, path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise CodesignError(f"expected a file name ending in .html, got {path.name!r}", field="--out")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- comparison report
# summary rows of the comparison table: metric, label, unit dimension for format_quantity (None: plain)
_SUMMARY_ROWS = tuple((k, METRICS[k].label.lower() if k in METRICS else k, METRICS[k].dimension if k in METRICS
                       else None) for k in ("ttft_s", "tpot_s", "throughput_tokens_per_s", "decode_tokens_per_s",
                                            "prefill_tokens_per_s", "e2e_latency_s", "energy_per_token_j",
                                            "avg_power_w", "cost_per_mtok_usd", "memory_bytes", "capacity_bytes",
                                            "fits", "min_devices", "bound"))


def _quantity(v, dim):
    if isinstance(v, bool) or isinstance(v, str) or v is None:
        return _cell(v)
    if isinstance(v, float) and not math.isfinite(v):
        return "n/a"
    return format_quantity(float(v), dim) if dim else format_number(float(v), 3)


def _hardware_rows(specs) -> list[dict]:
    rows = []
    for s in specs:
        mem = s.main_memory()
        dts = s.matrix_dtypes()
        peaks = ", ".join(f"{d} {format_quantity(s.matrix_peak(d), 'rate')}" for d in dts if d != "fp64") or (
            ", ".join(f"{d} {format_quantity(v, 'rate')} (vector)" for d, v in s.compute.vector.peak.items()))
        src = s.sources.get("compute.matrix.peak") or s.sources.get("compute.matrix") or next(iter(s.sources.values()),
                                                                                              None)
        rows.append({"device": s.title, "class": s.device_class, "matrix peaks (dense)": peaks,
                     "main memory": f"{format_quantity(mem.capacity, 'bytes')} {mem.name}",
                     "bandwidth": format_quantity(mem.bandwidth, "bandwidth"),
                     "TDP": format_quantity(s.power.tdp, "power") if s.power.tdp else "n/a",
                     "price": f"{s.price:,.0f} USD" if s.price else "n/a",
                     "peak source": f"{src.kind}: {src.ref}" if src else "n/a"})
    return rows


def _workload_rows(models) -> list[dict]:
    rows = []
    for m in models:
        rows.append({"model": m.title, "parameters": f"{m.param_count() / 1e9:.2f} B", "layers": m.num_layers,
                     "hidden": m.hidden_size, "heads (KV)": f"{m.num_heads} ({m.kv_heads})",
                     "FFN": m.ffn_size, "vocabulary": m.vocab_size,
                     "MoE": f"{m.moe.num_experts} experts" if getattr(m, "moe", None) else "no"})
    return rows


def serving_section(hardware: list[str], workload, scenario=None, compression=None, *, rates, slo_ttft=None,
                    slo_tpot=None, requests: int = 1000, fmt: str = "png") -> str:
    """HTML: each device under the same Poisson traffic (lognormal 1024-token prompts, 256-token
    outputs) at each rate: tail latency and goodput against load, and the run at the middle rate."""
    sc = scenario.model_copy(update={"runtime": "vllm"}) if scenario and scenario.runtime == "generic" else scenario
    pol = Policy()
    rows, runs = [], {}
    mid = sorted(rates)[len(rates) // 2]
    for hw in hardware:
        cost, _ = engines(hw, workload, sc, compression, pol)
        unit = make_requests(1.0, requests, seed=0, max_context=cost.max_context)
        for r in sorted(rates):
            res = simulate(cost, unit.scaled(r), pol)
            rows.append(dict(label=cost.spec.name, rate=r, **res.with_slo(slo_ttft, slo_tpot)))
            if r == mid:
                runs[cost.spec.name] = res
    table = [{"device": r["label"], "offered req/s": f"{r['rate']:g}", "TTFT p99": _quantity(r["ttft_p99_s"], "time"),
              "TPOT p99": _quantity(r["tpot_p99_s"], "time"), "served req/s": format_number(r['throughput_req_per_s'], 3),
              **({"goodput req/s": format_number(r['goodput_req_per_s'], 3)} if "goodput_req_per_s" in r else {}),
              "energy/token": _quantity(r["energy_per_token_j"], "energy")} for r in rows]
    slo = ", ".join(f"{name} <= {format_quantity(v, 'time')}" for name, v in (("TTFT", slo_ttft), ("TPOT", slo_tpot))
                    if v)
    figs = [(plots.serve_rates(rows, slo_ttft=slo_ttft, slo_tpot=slo_tpot),
             "Offered load against p99 TTFT, p99 time per output token and goodput"
             + (f" (SLOs: {slo})" if slo else "") + "."),
            (plots.serve_run(runs, slo_ttft=slo_ttft, slo_tpot=slo_tpot),
             f"At {mid:g} requests/s: latency distributions, decode batch and KV cache over time.")]
    return ("<h2>Serving under traffic</h2><p>" + _e(f"{requests} Poisson requests per point, prompts lognormal "
            f"(mean 1024, sd 512 tokens), outputs lognormal (mean 256, sd 128); runtime {sc.runtime if sc else 'vllm'}, "
            "chunked prefill, paged KV cache (codesign serve).") + "</p>" + table_html(table)
            + "".join(figure_html(f, c, fmt) for f, c in figs))


# ---------------------------------------------------------------------------- verdict
# what a buyer decides on, in order: (key, label, units dimension or None, direction). The two
# ratios are not engine outputs: tokens/s per W = 1 / energy per token (the same number, since
# average power x time = energy), and tokens/s per 1,000 USD of hardware (throughput over the
# price of every device used; per 1,000 so the numbers read 33.5 rather than 0.0335)
VERDICT_ROWS = (("ttft_s", "Time to first token", "time", "minimize"),
                ("tpot_s", "Time per output token", "time", "minimize"),
                ("throughput_tokens_per_s", "Throughput (generated tokens/s)", None, "maximize"),
                ("tokens_per_s_per_w", "Tokens/s per W", None, "maximize"),
                ("tokens_per_s_per_kusd", "Tokens/s per 1,000 USD of hardware", None, "maximize"),
                ("energy_per_token_j", "Energy per token", "energy", "minimize"),
                ("cost_per_mtok_usd", "Cost per million tokens (USD)", None, "minimize"))


def verdict_values(result) -> dict[str, tuple[float, dict | str | None]]:
    """{row key: (value, band)} of :data:`VERDICT_ROWS` for one evaluate() result; the band
    is {'low', 'high', ...} (p10-p90 of out-of-sample errors, ``data/error-bands.yaml``),
    'unvalidated', or None for a number no band applies to. The ratios carry the band of
    the number they are made from (a band scales with it; 1/x swaps its ends)."""
    s, spec = result.summary, result.hardware
    bands = bands_for_summary(s, spec.device_class, result.scenario.runtime)
    out: dict[str, tuple[float, dict | str | None]] = {
        k: (float(s.get(k, math.nan)), bands.get(k)) for k in ("ttft_s", "tpot_s", "throughput_tokens_per_s",
                                                                 "energy_per_token_j", "cost_per_mtok_usd")}
    e, eb = out["energy_per_token_j"]
    per_w = 1.0 / e if e > 0 else math.nan
    out["tokens_per_s_per_w"] = (per_w, {"low": 1 / eb["high"], "high": 1 / eb["low"]} if isinstance(eb, dict) else eb)
    thr, tb = out["throughput_tokens_per_s"]
    usd = (spec.price or math.nan) * float(s.get("devices", 1) or 1) / 1000.0
    per_k = thr / usd if usd > 0 else math.nan
    out["tokens_per_s_per_kusd"] = (per_k, None if not math.isfinite(per_k) else
                                    {"low": tb["low"] / usd, "high": tb["high"] / usd} if isinstance(tb, dict) else tb)
    return out


def _best(values: list[float], sense: str, eligible: list[bool]) -> set[int]:
    ok = [i for i, v in enumerate(values) if eligible[i] and math.isfinite(v)]
    if len({values[i] for i in ok}) < 2:        # nothing to choose between
        return set()
    b = (max if sense == "maximize" else min)(values[i] for i in ok)
    return {i for i in ok if values[i] == b}


def _row_cells(values: list[float], bands: list, dim: str | None, best: set[int]) -> list[Cell]:
    """One row's cells: values in one unit (codesign.units), the band in the same unit."""
    lows = [b["low"] if isinstance(b, dict) else math.nan for b in bands]
    highs = [b["high"] if isinstance(b, dict) else math.nan for b in bands]
    n = len(values)
    if dim:
        texts = format_quantities(values + lows + highs, dim)
    else:
        texts = [format_number(v, 3) if math.isfinite(v) else "n/a" for v in values + lows + highs]
    cells = []
    for i in range(n):
        b = bands[i]
        band = ("unvalidated" if b == "unvalidated" else
                f"{texts[n + i].split(' ')[0]}–{texts[2 * n + i]}" if isinstance(b, dict) else "")
        cells.append(Cell(texts[i], i in best, band))
    return cells


def verdict_section(pairs) -> str:
    """HTML opening a comparison: one sentence naming the best device per decision, and the
    table behind it (best per row highlighted, the validated error band under each number)."""
    vals = [verdict_values(r) for _, r in pairs]
    fits = [bool(r.summary.get("fits", True)) for _, r in pairs]
    labels = [lab for lab, _ in pairs]
    rows, winners = [], {}
    for key, label, dim, sense in VERDICT_ROWS:
        v = [d[key][0] for d in vals]
        if not any(math.isfinite(x) for x in v):
            continue
        best = _best(v, sense, fits)
        winners[key] = [labels[i] for i in sorted(best)]
        rows.append({"": label, **dict(zip(labels, _row_cells(v, [d[key][1] for d in vals], dim, best)))})
    says = [f"{what}: <b>{_e(', '.join(winners[k]))}</b>" for k, what in (
        ("tpot_s", "fastest per output token"), ("ttft_s", "fastest first token"),
        ("tokens_per_s_per_w", "most tokens per joule"), ("tokens_per_s_per_kusd", "most tokens/s per dollar"))
        if winners.get(k)]
    unfit = [lab for lab, f in zip(labels, fits) if not f]
    note = (f" The model does not fit in one device of {_e(', '.join(unfit))}: its numbers are not ranked."
            if unfit else "")
    return ("<h2>Verdict</h2>" + (f'<p class="verdict">{"; ".join(says)}.{note}</p>' if len(pairs) > 1 else "")
            + table_html(rows, [""] + labels)
            + '<p class="small">Highlighted: the best device of each row. Under a number: the band the model has '
              "been in, out of sample, on published measurements of that device class and runtime (p10-p90 of "
              "the measured value given this prediction, data/error-bands.yaml); 'unvalidated': fewer than "
              "5 such measurements. Tokens/s per W equals tokens per joule.</p>")


def _summary_table(pairs) -> str:
    """The key numbers: one row per summary metric, one unit per row, the best highlighted."""
    rs = [r for _, r in pairs]
    fits = [bool(r.summary.get("fits", True)) for r in rs]
    rows = []
    for k, label, dim in _SUMMARY_ROWS:
        if k not in rs[0].summary:
            continue
        v = [r.summary.get(k) for r in rs]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            fv = [float(x) for x in v]
            best = _best(fv, direction(k), fits) if len(rs) > 1 and k in METRICS and k != "capacity_bytes" else set()
            cells: list = _row_cells(fv, [None] * len(fv), dim, best)
        else:
            cells = [_quantity(x, dim) for x in v]
        rows.append({"metric": label, **dict(zip((lab for lab, _ in pairs), cells))})
    return table_html(rows, ["metric"] + [lab for lab, _ in pairs])


def comparison_report(results, *, sweeps: bool = True, fmt: str = "png", title: str | None = None,
                      command: str | None = None, extra: tuple[str, ...] = ()) -> str:
    """HTML for a device comparison of evaluate() results (one or more workloads): the
    verdict first, then the key numbers, the figures and the inputs."""
    pairs = plots.labelled(results)
    rs = [r for _, r in pairs]
    specs = list({r.hardware.name: r.hardware for r in rs}.values())
    models = list({r.model.name: r.model for r in rs}.values())
    title = title or f"{', '.join(m.title for m in models)} on {', '.join(s.title for s in specs)}"
    sections = [verdict_section(pairs), "<h2>Key numbers</h2>" + _summary_table(pairs)]
    notes = sorted({f"{lab}: {n}" for lab, r in pairs for n in r.notes})
    if notes:
        sections.append("<ul>" + "".join(f'<li class="note">{_e(n)}</li>' for n in notes) + "</ul>")
    # -- plots
    figs = [(plots.compare(rs), "TTFT, time per output token, throughput, energy and cost per device "
                                "(hatched: the model does not fit in one device; whiskers: validated error band)."),
            (plots.roofline(rs), "Each operator on each device's roofline; marker area = share of its phase time."),
            (plots.breakdown(rs), "Where the time goes per phase, in milliseconds, by operator kind and by binding "
                                  "resource (shares of the phase inside the segments).")]
    if sweeps:
        for m in models:
            sc = next(r.scenario for r in rs if r.model.name == m.name)
            comp = next(r.compression for r in rs if r.model.name == m.name)
            hw = [s.name for s in specs]
            figs.append((plots.sweep(sweep_results(hw, m, sc, comp, over="batch")),
                         f"{m.title}: throughput against time per output token as the batch grows."))
            figs.append((plots.sweep(sweep_results(hw, m, sc, comp, over="context"), over="context"),
                         f"{m.title}: time per output token against prompt length."))
    sections.append("<h2>Plots</h2>" + "".join(figure_html(f, c, fmt) for f, c in figs))
    sections.extend(extra)
    # -- inputs
    sc_rows = [{"scenario": lab, **r.scenario.model_dump(exclude_none=True),
                "compression": describe(r.compression) or "none"} for lab, r in pairs]
    parts = ["<h2>Inputs</h2>", "<h3>Devices</h3>", table_html(_hardware_rows(specs)),
             "<h3>Workloads</h3>", table_html(_workload_rows(models)),
             "<h3>Scenario and compression</h3>", table_html(sc_rows)]
    if command:
        parts.append(f"<h3>Command</h3><pre>{_e(command)}</pre>")
    sections.append("".join(parts))
    return _page(title, plots.common_scenario(pairs), sections)


# ---------------------------------------------------------------------------- study report
def study_report(st: StudyTrials, *, references: dict | None = None, fmt: str = "png", title: str | None = None,
                 command: str | None = None, max_rows: int = 30) -> str:
    """HTML for an optimisation study: counts, the Pareto table, the study plots, the inputs."""
    refs = {k: v for k, v in (references or {}).items() if not k.startswith("_")}
    t = Trials(st.trials, st.objectives, st.directions)
    sections = []
    counts = [{"trials completed": len(t.df), "feasible": int(t.feasible.sum()),
               "Pareto-optimal designs (distinct)": int(t.distinct_front.sum()),
               "objectives": ", ".join(f"{n} ({d})" for n, d in zip(t.names, t.directions))}]
    sections.append("<h2>Summary</h2>" + table_html(counts, left=0))
    front = t.df[t.distinct_front].copy()
    pcols = t.params
    front = front.sort_values(t.columns[0], ascending=t.directions[0].startswith("min"))
    rows = []
    for _, r in front.head(max_rows).iterrows():
        row: dict[str, Any] = {"trial": int(r["number"])}
        for c, n in zip(t.columns, t.names):
            row[plots.metric_label(n)] = float(r[c]) * display(n)[2]
        for p in pcols:                           # 'params_x' (Optuna) or 'params.x' (study export)
            numeric = numeric_column(t.df[p])[0]
            v = r[p]
            row[plots.param_label(p, numeric)] = format_si(float(v)) if numeric and v == v else v
        rows.append(row)
    more = f"<p class=\"small\">{len(front) - max_rows} more not shown.</p>" if len(front) > max_rows else ""
    sections.append("<h2>Pareto-optimal designs</h2>" + table_html(rows) + more)
    if refs:
        ref_rows = [{"reference": k, **{plots.metric_label(n): float(v.get(n, math.nan)) * display(n)[2]
                                        for n in t.names},
                     "meets constraints": v.get("feasible")} for k, v in refs.items()]
        sections.append("<h3>Reference devices (unmodified, uncompressed, same workloads)</h3>"
                        + table_html(ref_rows))
    skipped = (references or {}).get("_skipped") or {}
    if skipped:
        sections.append("<ul>" + "".join(f'<li class="note">{_e(k)} not shown: {_e(v)}</li>'
                                          for k, v in skipped.items()) + "</ul>")
    figs = []
    if len(t.names) >= 2:
        figs.append((plots.pareto(t.df, t.columns, directions=t.directions, references=refs),
                     "Trials and the feasible Pareto front, with reference devices."))
    figs.append((plots.history(t.df, t.columns, directions=t.directions), "Objective values by trial number."))
    if t.params and int(t.feasible.sum()) >= 3:
        src = st.optuna_study if st.optuna_study is not None else t.df
        objs = st.objectives if st.optuna_study is not None else t.columns
        try:
            figs.append((plots.importance(src, objs, directions=t.directions),
                         "Which parameters move each objective (method in the title)."))
        except (ValueError, RuntimeError) as e:     # importance evaluators refuse degenerate studies
            sections.append(f'<p class="note">parameter importance not computed: {_e(e)}</p>')
        figs.append((plots.parallel_coordinates(t.df, t.columns, directions=t.directions),
                     "Every completed trial across parameters and objectives."))
    sections.append("<h2>Plots</h2>" + "".join(figure_html(f, c, fmt) for f, c in figs))
    if st.study is not None:
        raw = dict(st.study.raw)
        hw = raw.pop("hardware", None)
        raw.pop("workloads", None)          # shown as a table below
        text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
        parts = ["<h2>Inputs</h2>", f"<h3>Study definition</h3><pre>{_e(text)}</pre>",
                 "<h3>Base device</h3>", table_html(_hardware_rows([st.study.base])),
                 "<h3>Workloads</h3>",
                 table_html([{"workload": w.label, "weight": w.weight, **w.scenario.model_dump(exclude_none=True)}
                             for w in st.study.workloads])]
        if hw is not None:
            parts.append("<details><summary>Base device spec as stored with the study</summary><pre>"
                         + _e(yaml.safe_dump(hw, sort_keys=False, allow_unicode=True)) + "</pre></details>")
        sections.append("".join(parts))
    if command:
        sections.append(f"<h3>Command</h3><pre>{_e(command)}</pre>")
    desc = st.study.spec.description if st.study is not None and st.study.spec.description else ""
    return _page(title or f"Study {st.name}", desc or f"{len(t.df)} completed trials", sections)
