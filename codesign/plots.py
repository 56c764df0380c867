"""Plots that show a decision to someone else: pure functions that return matplotlib Figures.

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot, no global
backend switch), so plotting is headless and leaves the caller's matplotlib state alone;
``save(fig, "x.png")`` writes PNG, SVG or PDF by extension. matplotlib is imported inside
the functions: ``import codesign`` never imports it.

Inputs are what the rest of codesign produces:
- engine plots take :class:`codesign.perf.Result` objects (``evaluate()``): one, a list,
  or a ``{label: Result}`` mapping;
- study plots take a trials DataFrame, either ``codesign study export``'s trials.csv /
  ``codesign.search.export.trials_frame`` (``params.<name>``, plain metric columns,
  ``feasible``, ``constraints.<name>``) or Optuna's ``study.trials_dataframe()``
  (``params_<name>``, ``values_<metric>``, ``system_attrs_constraints``), or an
  ``optuna.Study``; the Pareto front is computed here over the feasible trials;
- ``validation`` takes the kernel runner's DataFrame (kernel, kind, phase, predicted_s,
  measured_s, error_pct).

One style for all: the Okabe-Ito colour-blind-safe palette (Okabe & Ito 2008, "Color
Universal Design"), a title on every figure, units on every axis, legends outside the
data area (to the right), the same colour for the same device / operator kind / binding
resource across the panels of one figure.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from itertools import combinations
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CodesignError
from .metrics import METRICS

if TYPE_CHECKING:
    from optuna.importance import BaseImportanceEvaluator
    from optuna.trial import FrozenTrial

    from .perf import Result

# ---------------------------------------------------------------------------- style
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
STYLE: MappingProxyType[str, Any] = MappingProxyType({
    "palette": OKABE_ITO,                 # categorical colours, in order of use
    "hatches": ("", "//", "..", "xx", "\\\\", "++"),   # when categories outnumber the palette
    "muted": "#9A9A9A",                   # dominated / infeasible / background data
    "sequential": "cividis",              # perceptually uniform, colour-blind-safe colour map
    "phase_markers": MappingProxyType({"prefill": "o", "decode": "^"}),
    "width": 7.5,                         # inches per panel row
    "dpi": 150,
    "rc": MappingProxyType({
        "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "figure.titlesize": 11,
        "legend.fontsize": 8, "legend.frameon": False, "axes.spines.top": False,
        "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5,
        "axes.axisbelow": True, "savefig.bbox": "tight", "svg.fonttype": "none",
    }),
})
FORMATS = ("png", "svg", "pdf")

# metric -> (what it is, unit shown, factor from SI to the unit shown), from the one registry
METRIC_DISPLAY = MappingProxyType({n: (m.label, m.plot_unit, m.plot_factor) for n, m in METRICS.items()})
_SUFFIX_UNITS = (("_s", "s"), ("_j", "J"), ("_w", "W"), ("_bytes", "B"), ("_usd", "USD"), ("_pct", "%"),
                 ("_mm2", "mm²"), ("_per_s", "1/s"))
COMPARE_METRICS = ("ttft_s", "tpot_s", "throughput_tokens_per_s", "energy_per_token_j", "cost_per_mtok_usd")
BOUND_ORDER = ("compute", "memory", "link", "transcendental", "dequant", "overhead")


# ---------------------------------------------------------------------------- helpers
def _mpl():
    """matplotlib, imported on first use (never at package import)."""
    import matplotlib
    return matplotlib


def _figure(nrows=1, ncols=1, *, width=None, height=None, **kw):
    """A constrained-layout Figure and its axes array, built under the shared style."""
    mpl = _mpl()
    from matplotlib.figure import Figure
    with mpl.rc_context(dict(STYLE["rc"])):
        fig = Figure(figsize=(width or STYLE["width"], height or 3.2 * nrows + 0.6), dpi=STYLE["dpi"],
                     layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _styled(fn):
    """Run a plot builder under the shared rc settings (artists read them when created)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _mpl().rc_context(dict(STYLE["rc"])):
            return fn(*args, **kwargs)
    return wrapper


def _legend_outside(ax, handles=None, labels=None, title=None, **kw):
    """Legend to the right of the axes, so it never hides data."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    return ax.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                     borderaxespad=0.0, **kw)


def _colours(keys) -> dict:
    """key -> (colour, hatch), palette first, then palette with hatches."""
    pal, hat = STYLE["palette"], STYLE["hatches"]
    return {k: (pal[i % len(pal)], hat[(i // len(pal)) % len(hat)]) for i, k in enumerate(keys)}


def metric_label(name: str) -> str:
    """Axis label with unit for a metric name ('tpot_s' -> 'Time per output token (ms)')."""
    title, unit, _ = _metric_info(name)
    return f"{title} ({unit})"


def _metric_info(name: str):
    name = _bare(name)
    if name in METRIC_DISPLAY:
        return METRIC_DISPLAY[name]
    for suf, unit in _SUFFIX_UNITS:
        if name.endswith(suf):
            return name[: -len(suf)].replace("_", " "), unit, 1.0
    return name.replace("_", " "), "as exported", 1.0


# unit of a study parameter from the last part of its path (display only; values are SI)
_PARAM_UNITS = (("clock", "Hz"), ("bandwidth", "B/s"), ("capacity", "B"), ("latency", "s"), ("peak", "FLOP/s"),
                ("energy_per_byte", "J/B"), ("energy_per_op", "J/op"), ("tdp", "W"), ("idle", "W"),
                ("power", "W"), ("die_area", "mm²"), ("process_node", "nm"), ("price", "USD"), ("_bits", "bits"),
                ("group_size", "weights/group"), ("prune_", "fraction"), ("efficiency", "fraction"),
                ("cores", "count"), ("units", "count"), ("dsp", "count"), ("array", "PEs"))


def param_label(col: str, numeric: bool = True) -> str:
    """'params_memory.HBM3.bandwidth' -> 'memory.HBM3.bandwidth (B/s)' (unit from the path)."""
    name = col[len("params_"):] if col.startswith(("params_", "params.")) else col
    for key, unit in _PARAM_UNITS:
        if key in name.rsplit(".", 1)[-1] or (key.endswith("_") and name.startswith(key)):
            return f"{name} ({unit})"
    return f"{name} ({'value' if numeric else 'choice'})"


def _bare(col: str) -> str:
    for pre in ("values_", "user_attrs_"):
        if col.startswith(pre):
            return col[len(pre):]
    return col


def _fmt(v: float, unit: str = "") -> str:
    if v is None or not np.isfinite(v):
        return "n/a"
    a = abs(v)
    if 1e3 <= a < 1e6:
        s = f"{v:.0f}"
    else:
        s = f"{v:.3g}" if (a == 0 or 1e-3 <= a < 1e3) else f"{v:.2e}"
    return f"{s} {unit}".strip()


def _si(v: float) -> str:
    """3 significant digits with an SI prefix: 1.99e9 -> '1.99 G', 0.0025 -> '2.5 m'."""
    if v is None or not np.isfinite(v):
        return "n/a"
    if v == 0:
        return "0"
    e = int(np.clip(math.floor(math.log10(abs(v)) / 3), -4, 5))
    prefix = {-4: "p", -3: "n", -2: "µ", -1: "m", 0: "", 1: "k", 2: "M", 3: "G", 4: "T", 5: "P"}[e]
    return f"{v / 1000.0 ** e:.3g} {prefix}".strip()


def _eng(unit=""):
    from matplotlib.ticker import EngFormatter
    return EngFormatter(unit=unit, places=None, sep=" ")


def _log_ticks(axis):
    """Plain-number labels on a log axis ('2', '5', '10 k'), minor ones too when the axis
    spans less than ~1.5 decades (else matplotlib's mixed 2x10^0 labels appear)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter
    axis.set_major_formatter(FuncFormatter(lambda v, _: _si(v)))
    lo, hi = axis.get_view_interval()
    if lo > 0 and hi / lo < 30:
        axis.set_minor_formatter(FuncFormatter(
            lambda v, _: _si(v) if f"{v:.0e}"[0] in "235" else ""))
    else:
        axis.set_minor_formatter(NullFormatter())


def _results(results) -> list[tuple[str, Result]]:
    """(label, Result) pairs from a Result, a list of them, or a {label: Result} mapping."""
    if hasattr(results, "summary") and hasattr(results, "ops"):
        results = [results]
    if isinstance(results, dict):
        pairs = list(results.items())
    else:
        pairs = [(None, r) for r in results]
    if not pairs:
        raise CodesignError("nothing to plot: no results given")
    for _, r in pairs:
        if not (hasattr(r, "summary") and hasattr(r, "hardware")):
            raise CodesignError(f"expected evaluate() results, got {type(r).__name__}")
    if all(lab is not None for lab, _ in pairs):
        return pairs
    # default labels: the device title, plus what differs between results sharing a device
    titles = [r.hardware.title for _, r in pairs]
    out = []
    for (lab, r), t in zip(pairs, titles):
        if lab is None:
            lab = t
            if titles.count(t) > 1:
                lab = f"{t} · {scenario_text(r)}"
        out.append((lab, r))
    return out


def _compression_text(comp) -> str:
    if comp is None or getattr(comp, "is_none", False):
        return ""
    parts = []
    if comp.weight_bits:
        fmt = "" if comp.weight_format == "int" else f" {comp.weight_format}"
        parts.append(f"W{comp.weight_bits}{fmt}" + (f" g{comp.group_size}" if comp.group_size else ""))
    if comp.act_bits:
        parts.append(f"A{comp.act_bits}")
    if comp.kv_bits:
        parts.append(f"KV{comp.kv_bits}")
    if comp.sparsity:
        parts.append(f"sparsity {comp.sparsity}")
    for f, short in (("prune_heads", "heads"), ("prune_ffn", "FFN"), ("prune_layers", "layers")):
        if getattr(comp, f):
            parts.append(f"-{getattr(comp, f):.0%} {short}")
    if comp.distill_to:
        parts.append(f"distilled to {comp.distill_to}")
    return " ".join(parts)


def scenario_text(result) -> str:
    """'llama-3.2-1b · batch 4 · prompt 256 · generate 64 · bf16 [· W4 g128] [· tp 2]'."""
    sc = result.scenario
    parts = [result.model.name, f"batch {sc.batch}", f"prompt {sc.prompt}", f"generate {sc.generate}", sc.dtype]
    par = [f"{k} {getattr(sc, k)}" for k in ("tp", "pp", "dp", "ep") if getattr(sc, k) > 1]
    comp = _compression_text(result.compression)
    return " · ".join(parts + par + ([comp] if comp else []))


def _common_scenario(pairs) -> str:
    texts = {scenario_text(r) for _, r in pairs}
    return texts.pop() if len(texts) == 1 else "several scenarios"


# ---------------------------------------------------------------------------- output
def save(fig, path) -> Path:
    """Write ``fig`` to ``path``; the format (PNG, SVG, PDF) comes from the extension."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise CodesignError(f"expected a file name ending in .png, .svg or .pdf, got {path.name!r}", field="--out")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    with _mpl().rc_context(dict(STYLE["rc"])):
        fig.savefig(path, format=fmt, metadata=_metadata(fmt))
    return path


def figure_bytes(fig, fmt: str = "png") -> bytes:
    """The figure encoded as PNG/SVG/PDF bytes (for embedding in a report)."""
    import io
    if fmt not in FORMATS:
        raise CodesignError(f"expected one of {', '.join(FORMATS)}, got {fmt!r}", field="format")
    buf = io.BytesIO()
    with _mpl().rc_context(dict(STYLE["rc"])):
        fig.savefig(buf, format=fmt, metadata=_metadata(fmt))
    return buf.getvalue()


def _metadata(fmt):
    # reproducible files: no creation date in SVG/PDF, no software stamp in PNG
    return {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}[fmt]


# ---------------------------------------------------------------------------- roofline
def _ceilings(spec, dtypes) -> list[tuple[str, float]]:
    """[(label, FLOP/s)]: matrix peaks for ``dtypes``, then vector peaks; datatypes with the
    same peak share one line ('matrix bf16/fp16')."""
    out: list[tuple[str, float]] = []
    for unit, peak_of in (("matrix", spec.matrix_peak), ("vector", spec.compute.vector.peak.get)):
        same: dict[float, list[str]] = {}
        for dt in dtypes:
            pk = peak_of(dt)
            if pk:
                same.setdefault(pk, []).append(dt)
        out += [(f"{unit} {'/'.join(dts)}", pk) for pk, dts in sorted(same.items(), reverse=True)]
    return out


def _level_bandwidth(spec, level) -> float:
    """Whole-device bandwidth of a level (per-core levels times the core count)."""
    return level.bandwidth * ((spec.compute.cores or 1) if level.per_core else 1)


@_styled
def roofline(results, *, level: str | None = None, phases=("prefill", "decode"), dtypes=None,
             title: str | None = None):
    """Roofline (Williams, Waterman & Patterson, CACM 2009) of one or several devices.

    Ceilings: the datasheet matrix peak per datatype (solid, labelled with its ridge point
    = peak / bandwidth, the intensity above which an operator can be compute-bound) and the
    vector peak (dashed); a bandwidth slope per memory level (performance = intensity x
    bandwidth; per-core levels counted over all cores). The dotted line is the attainable
    roofline the engine uses for the datatype most operators run in (peak x sustained
    efficiency, bandwidth x efficiency), so the points sit on or below it.
    Points: every operator with FLOPs, at x = FLOPs / bytes moved at ``level`` (default:
    each device's main memory) and y = FLOPs / modelled time of one instance; circles
    prefill, triangles decode (decode numbers at the prompt context, time averaged over
    the generated tokens, so long generations sit slightly low); marker area proportional
    to the operator's share of its phase time. Inner levels' slopes bound intensity
    measured at *that* level (hierarchical roofline, Yang et al. 2020), so they are thin
    and dashed. Several devices: colour = device, and only the datatypes the operators use
    and the main level are drawn, to stay readable; one device: colour = operator kind.
    """
    from matplotlib.lines import Line2D

    from .perf.params import spec_params
    from .workload.ops import ALL_KINDS
    pairs = _results(results)
    multi = len(pairs) > 1
    fig, axes = _figure(1, 1, height=4.8, width=9.5)
    ax = axes[0, 0]
    ax.set_xscale("log")
    ax.set_yscale("log")
    dev_col = _colours([lab for lab, _ in pairs])
    kinds = list(dict.fromkeys(k for _, r in pairs for k in r.ops["kind"]))
    kind_col = _colours([k for k in ALL_KINDS if k in kinds] + [k for k in kinds if k not in ALL_KINDS])
    devices: list[dict[str, Any]] = []
    xs_all, ys_all, skipped = [], [], 0
    for lab, r in pairs:
        spec = r.hardware
        ops = r.ops[r.ops["phase"].isin(phases)]
        lvl = next((m for m in spec.memory if m.name == level), None) if level else spec.main_memory()
        if lvl is None:
            raise CodesignError(f"{spec.name} has no memory level {level!r} (levels: "
                                f"{', '.join(m.name for m in spec.memory)})", field="level")
        col = f"bytes_{lvl.name}"
        ok = (ops["flops"] > 0) & (ops[col] > 0) & (ops["time_s"] > 0)
        skipped += int((~ok).sum())
        used = ops.loc[ok]
        x = (used["flops"] / used[col]).to_numpy(float)
        y = (used["flops"] / used["time_s"]).to_numpy(float)
        xs_all += list(x)
        ys_all += list(y)
        phase_tot = used.groupby("phase")["total_s"].transform("sum").to_numpy(float)
        share = np.divide(used["total_s"].to_numpy(float), phase_tot, out=np.zeros(len(used)), where=phase_tot > 0)
        size = 12 + 348 * share                       # marker area 12..360 pt^2 ~ share of phase time
        for ph in phases:
            m = (used["phase"] == ph).to_numpy()
            if m.any():
                colours = ([dev_col[lab][0]] * int(m.sum()) if multi
                           else [kind_col[k][0] for k in used.loc[m, "kind"]])
                ax.scatter(x[m], y[m], s=size[m], c=colours, marker=STYLE["phase_markers"].get(ph, "s"),
                           alpha=0.8, edgecolors="white", linewidths=0.5, zorder=3)
        op_dtypes = list(dict.fromkeys(used["dtype"]))
        want = list(dtypes) if dtypes else (op_dtypes if multi else [d for d in spec.matrix_dtypes() if d != "fp64"])
        ceil = _ceilings(spec, want) or _ceilings(spec, list(spec.compute.vector.peak))
        if multi and not dtypes:
            ceil = [c for c in ceil if c[0].startswith("matrix")] or ceil
        levels = [(m_, _level_bandwidth(spec, m_)) for m_ in spec.memory if not multi or m_.name == lvl.name]
        # the engine's attainable roofline: sustained peak of the dtype most used x sustained bandwidth
        p = spec_params(spec)
        main_dt = used["dtype"].mode().iloc[0] if len(used) else None
        pk_main = spec.matrix_peak(main_dt) if main_dt else None
        attain = None
        if pk_main:
            attain = (pk_main * float(p.get("compute.matrix.efficiency", [1.0])[0]),
                      _level_bandwidth(spec, lvl) * float(p[f"memory.{lvl.name}.efficiency"][0]))
        devices.append(dict(lab=lab, spec=spec, lvl=lvl, ceil=ceil, levels=levels, attain=attain,
                            top=max(pk for _, pk in ceil)))
    if not xs_all:
        raise CodesignError("no operator with FLOPs and memory traffic to place on the roofline")
    xlo = min(min(xs_all) / 4, 0.1)
    xhi = max(max(xs_all) * 4, max(d["top"] / bw for d in devices for _, bw in d["levels"]) * 8)
    xg = np.logspace(math.log10(xlo), math.log10(xhi), 200)
    for d in devices:
        dc = dev_col[d["lab"]][0] if multi else "#333333"
        bw_main = _level_bandwidth(d["spec"], d["lvl"])
        for clab, pk in d["ceil"]:
            ax.plot(xg, np.minimum(pk, xg * bw_main), color=dc, lw=1.1, zorder=2,
                    ls="-" if clab.startswith("matrix") else (0, (4, 2)))
            rx = pk / bw_main                                # ridge point: peak / bandwidth
            ax.plot([rx], [pk], marker="D", ms=4, color=dc, zorder=4)
            ax.annotate(f"{clab} {_fmt(pk / 1e12)} TFLOP/s, ridge {_fmt(rx)} FLOP/B", (xhi, pk), xytext=(-2, 2),
                        textcoords="offset points", ha="right", va="bottom", fontsize=7, color=dc)
        for m_, bw in d["levels"]:
            main = m_.name == d["lvl"].name
            xs = xg[xg * bw <= d["top"]]
            if len(xs) < 2:
                continue
            ax.plot(xs, xs * bw, color=dc, lw=1.1 if main else 0.7, ls="-" if main else "--",
                    alpha=1.0 if main else 0.6, zorder=2)
            at = xs[0] if not multi else xs[len(xs) // 3]
            ax.annotate(f"{m_.name} {_fmt(bw / 1e12)} TB/s", (at, at * bw), xytext=(-3, 3), textcoords="offset points",
                        ha="right" if multi else "left", fontsize=7, color=dc, alpha=1.0 if main else 0.7)
        if d["attain"] is not None:
            pk_s, bw_s = d["attain"]
            ax.plot(xg, np.minimum(pk_s, xg * bw_s), color=dc, lw=1.0, ls=":", zorder=2)
    ylo = min(min(ys_all) / 4, min(bw for d in devices for _, bw in d["levels"]) * xlo)
    ax.set_xlim(xlo, xhi)
    ax.set_ylim(ylo, max(d["top"] for d in devices) * 3)
    ax.yaxis.set_major_formatter(_eng())
    names = {d["lvl"].name for d in devices}
    ax.set_xlabel(f"Arithmetic intensity (FLOP per byte of {names.pop() if len(names) == 1 else 'main-memory'} "
                  "traffic)")
    ax.set_ylabel("Attained performance (FLOP/s)")
    ax.set_title(title or f"Roofline: {', '.join(lab for lab, _ in pairs)}\n{_common_scenario(pairs)}")
    colour_keys = [(lab, dev_col[lab][0]) for lab, _ in pairs] if multi else [(k, c) for k, (c, _) in kind_col.items()]
    handles = [Line2D([], [], color=c, marker="s", ls="", label=k) for k, c in colour_keys]
    handles += [Line2D([], [], color="#555555", marker=STYLE["phase_markers"].get(ph, "s"), ls="", label=ph)
                for ph in phases]
    handles += [Line2D([], [], color="#333333", ls="-", label="datasheet peak / bandwidth"),
                Line2D([], [], color="#333333", ls=":", label="attainable (engine: x efficiency)")]
    if not multi:
        handles += [Line2D([], [], color="#333333", ls=(0, (4, 2)), label="vector peak"),
                    Line2D([], [], color="#333333", ls="--", lw=0.7, label="other memory levels")]
    _legend_outside(ax, handles, [h.get_label() for h in handles], title="marker area = share of phase time")
    if skipped:
        ax.text(0.01, 0.99, f"{skipped} op(s) without FLOPs or traffic not shown", transform=ax.transAxes,
                ha="left", va="top", fontsize=7, color="#555555")
    return fig


# ---------------------------------------------------------------------------- compare
def _metric_values(pairs, metric):
    _, unit, f = _metric_info(metric)
    return np.array([float(r.summary.get(metric, np.nan)) * f for _, r in pairs]), unit


def _better(metric) -> str:
    try:
        from .search.schema import METRICS
        return METRICS[_bare(metric)][0]
    except (ImportError, KeyError):
        return "maximize" if "per_s" in metric else "minimize"


@_styled
def compare(results, metrics=COMPARE_METRICS, *, kind: str = "auto", title: str | None = None):
    """Devices side by side for one workload (or several): one bar panel per metric.

    ``results``: evaluate() results for several devices (and optionally several workloads
    or scenarios). ``kind``: ``"bars"`` (grouped bars, one colour per device, groups =
    workload/scenario), ``"heatmap"`` (rows = device x workload, columns = metrics, colour
    = how many times worse than the best in that column, raw values printed), or
    ``"auto"`` (heat map above 12 device-workload pairs). A hatched bar marks a device the
    model does not fit (see min_devices); "n/a" a metric the spec cannot give (cost
    without a price).
    """
    pairs = _results(results)
    if kind not in ("auto", "bars", "heatmap"):
        raise CodesignError(f"expected kind auto, bars or heatmap, got {kind!r}", field="kind")
    metrics = [m for m in metrics]
    if not metrics:
        raise CodesignError("no metric to compare", field="metrics")
    if kind == "heatmap" or (kind == "auto" and len(pairs) > 12):
        return _compare_heatmap(pairs, metrics, title)
    devices = list(dict.fromkeys(r.hardware.title for _, r in pairs))
    groups = list(dict.fromkeys(scenario_text(r) for _, r in pairs))
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = _figure(nrows, ncols, width=3.3 * ncols + 1.8, height=2.9 * nrows + 0.8)
    col = _colours(devices)
    width = 0.8 / len(devices)
    from .accuracy.bands import band_for
    banded = False
    for i, metric in enumerate(metrics):
        ax = axes.flat[i]
        vals, unit = _metric_values(pairs, metric)
        for j, (_, r) in enumerate(pairs):
            d = devices.index(r.hardware.title)
            g = groups.index(scenario_text(r))
            x = g + (d - (len(devices) - 1) / 2) * width
            fits = bool(r.summary.get("fits", True))
            v = vals[j]
            if np.isfinite(v):
                ax.bar(x, v, width * 0.92, color=col[r.hardware.title][0], hatch="" if fits else "///",
                       edgecolor="white" if fits else "#333333", linewidth=0.5, alpha=1.0 if fits else 0.55,
                       label=r.hardware.title if i == 0 else None)
                band = band_for(r.hardware.device_class, r.scenario.runtime, metric,
                                float(r.summary.get(metric, np.nan)))
                if isinstance(band, dict):
                    f = _metric_info(metric)[2]
                    ax.errorbar(x, v, yerr=[[max(v - band["low"] * f, 0)], [max(band["high"] * f - v, 0)]],
                                fmt="none", ecolor="#333333", elinewidth=0.8, capsize=2)
                    banded = True
                ax.annotate(_fmt(v), (x, v), xytext=(0, 2), textcoords="offset points", ha="center",
                            va="bottom", fontsize=7)
            else:
                ax.annotate("n/a", (x, 0), xytext=(0, 2), textcoords="offset points", ha="center",
                            va="bottom", fontsize=7, color="#555555")
        name, unit, _ = _metric_info(metric)
        arrow = "higher is better" if _better(metric) == "maximize" else "lower is better"
        ax.set_title(f"{name}\n({arrow})")
        ax.set_ylabel(unit)
        ax.margins(y=0.15)
        ax.set_xlim(-0.5, len(groups) - 0.5)       # keep room for devices without a value ("n/a")
        if len(groups) > 1:
            ax.set_xticks(range(len(groups)), [g.split(" · ")[0] + "\n" + " · ".join(g.split(" · ")[1:3])
                                               for g in groups], fontsize=7)
        else:
            ax.set_xticks([])
        ax.grid(axis="x", visible=False)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_axis_off()
    from matplotlib.patches import Patch
    handles = [Patch(facecolor=col[d][0], label=d) for d in devices]
    if not all(bool(r.summary.get("fits", True)) for _, r in pairs):
        handles.append(Patch(facecolor="#cccccc", hatch="///", edgecolor="#333333",
                             label="does not fit in one device's memory"))
    fig.legend(handles=handles, loc="outside right upper", title="device")
    if any(not np.isfinite(float(r.summary.get(m, np.nan))) for m in metrics for _, r in pairs):
        fig.text(0.995, 0.005, "n/a: the spec lacks an input (cost per token needs the device price)",
                 ha="right", va="bottom", fontsize=7, color="#555555")
    if banded:
        fig.text(0.995, 0.62, "whiskers: p10-p90 of\nout-of-sample errors on\npublished measurements\n"
                 "of that device class\nand runtime\n(data/error-bands.yaml)", ha="right", va="top",
                 fontsize=7, color="#555555")
    what = _common_scenario(pairs) if len(groups) == 1 else "several workloads"
    fig.suptitle(title or f"Hardware comparison: {what}")
    return fig


def _compare_heatmap(pairs, metrics, title):
    rows = [(f"{r.hardware.title} · {r.model.name}" if len({rr.model.name for _, rr in pairs}) > 1 else lab)
            + ("" if r.summary.get("fits", True) else " (does not fit)") for lab, r in pairs]
    data = np.array([[float(r.summary.get(m, np.nan)) for m in metrics] for _, r in pairs])
    rel = np.full_like(data, np.nan)
    for j, m in enumerate(metrics):
        col = data[:, j]
        fin = np.isfinite(col) & (col > 0)
        if not fin.any():
            continue
        best = col[fin].max() if _better(m) == "maximize" else col[fin].min()
        rel[fin, j] = best / col[fin] if _better(m) == "maximize" else col[fin] / best
    fig, axes = _figure(1, 1, width=2.0 + 1.4 * len(metrics), height=1.2 + 0.32 * len(rows))
    ax = axes[0, 0]
    mpl = _mpl()
    cmap = mpl.colormaps[STYLE["sequential"]].reversed().with_extremes(bad="#eeeeee")
    vmax = np.nanmax(rel) if np.isfinite(rel).any() else 2.0
    im = ax.imshow(np.log10(np.where(np.isfinite(rel), rel, np.nan)), cmap=cmap, aspect="auto",
                   vmin=0, vmax=max(np.log10(vmax), 0.3))
    for i in range(len(rows)):
        for j, m in enumerate(metrics):
            _, unit, f = _metric_info(m)
            txt = _fmt(data[i, j] * f) if np.isfinite(data[i, j]) else "n/a"
            dark = np.isfinite(rel[i, j]) and np.log10(rel[i, j]) > 0.5 * max(np.log10(vmax), 0.3)
            ax.text(j, i, txt, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set_xticks(range(len(metrics)), [metric_label(m).replace(" (", "\n(") for m in metrics], fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.grid(False)
    cb = fig.colorbar(im, ax=ax, location="right", shrink=0.8)
    ticks = [t for t in (1, 1.5, 2, 3, 5, 10, 20, 50, 100) if np.log10(t) <= max(np.log10(vmax), 0.3)]
    cb.set_ticks(np.log10(ticks), labels=[f"{t:g}x" for t in ticks])
    cb.set_label("x worse than the column's best")
    ax.set_title(title or f"Hardware comparison: {_common_scenario(pairs)}\n(cells: value in the column's unit; "
                          "'does not fit': the model needs more than one device's memory)")
    return fig


# ---------------------------------------------------------------------------- breakdown
def _bound_colours(bounds, main_levels=()) -> dict:
    """Fixed colours for binding resources, the same in every figure: compute blue, main
    memory orange, inner memory levels sky blue / yellow, link green, transcendental purple,
    dequantisation vermillion, overhead grey."""
    pal = STYLE["palette"]
    fixed = {"compute": pal[0], "link": pal[2], "transcendental": pal[4], "dequant": pal[3],
             "overhead": STYLE["muted"]}
    inner = iter([pal[5], pal[6], pal[7]] * 3)
    out = {}
    for b in bounds:
        if b in fixed:
            out[b] = (fixed[b], "")
        elif b.startswith("memory:"):
            out[b] = (pal[1], "") if b in main_levels or b == "memory:main" else (next(inner), "")
        else:
            out[b] = (pal[7], "//")
    return out


def _bound_group(label: str) -> str:
    return "memory" if label.startswith("memory:") else label


@_styled
def breakdown(results, *, normalize: bool = True, title: str | None = None):
    """Where the time goes, per phase: stacked bars by operator kind and by binding resource.

    One bar per (device, phase): the prefill pass (its sum is TTFT for a single pipeline
    stage) and one mean decode step (TPOT). Segments are each category's share of the
    phase time (``normalize=True``, totals printed above the bars) or milliseconds.
    The binding resource of an operator is the term that sets its modelled time
    (compute, a memory level, the device link, transcendentals, dequantisation, or the
    fixed per-kernel overhead).
    """
    pairs = _results(results)
    fig, axes = _figure(1, 2, width=10.5, height=4.6)
    rows = []
    mains = {r.hardware.main_memory().name for _, r in pairs}
    for lab, r in pairs:
        ops = r.ops
        for ph in ("prefill", "decode"):
            sub = ops[ops["phase"] == ph]
            if len(sub):
                if len(mains) > 1:      # devices name their main memory differently: one colour for it
                    main = f"memory:{r.hardware.main_memory().name}"
                    sub = sub.assign(bound=sub["bound"].where(sub["bound"] != main, "memory:main"))
                rows.append((lab, ph, sub))
    if not rows:
        raise CodesignError("nothing to break down: the results have no operators")
    from .workload.ops import ALL_KINDS
    kinds = []
    bounds = []
    for *_, sub in rows:
        kinds += [k for k in sub["kind"].unique() if k not in kinds]
        bounds += [b for b in sub["bound"].unique() if b not in bounds]
    kinds = [k for k in ALL_KINDS if k in kinds] + [k for k in kinds if k not in ALL_KINDS]
    bounds = sorted(bounds, key=lambda b: (BOUND_ORDER.index(_bound_group(b)) if _bound_group(b) in BOUND_ORDER
                                           else len(BOUND_ORDER), b))
    import textwrap
    xt = [textwrap.fill(lab, 14) + f"\n{ph}" if len(pairs) > 1 else ph for lab, ph, _ in rows]
    for ax, by, cats in ((axes[0, 0], "kind", kinds), (axes[0, 1], "bound", bounds)):
        col = _colours(cats) if by == "kind" else _bound_colours(cats, {f"memory:{m}" for m in mains})
        for x, (_, ph, sub) in enumerate(rows):
            tot = float(sub["total_s"].sum())
            per = sub.groupby(by)["total_s"].sum()
            bottom = 0.0
            for c in cats:
                v = float(per.get(c, 0.0))
                if v <= 0:
                    continue
                h = 100 * v / tot if normalize else 1e3 * v
                ax.bar(x, h, 0.7, bottom=bottom, color=col[c][0], hatch=col[c][1], edgecolor="white",
                       linewidth=0.5, label=c if c not in ax.get_legend_handles_labels()[1] else None)
                bottom += h
            unit = "ms/pass" if ph == "prefill" else "ms/step"
            ax.annotate(f"{_fmt(tot * 1e3)} {unit}", (x, bottom), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(rows)), xt, fontsize=7)
        ax.set_ylabel("Share of phase time (%)" if normalize else "Time per pass or step (ms)")
        ax.set_title("by operator kind" if by == "kind" else "by binding resource")
        ax.grid(axis="x", visible=False)
        ax.margins(y=0.08)
        handles, labels = ax.get_legend_handles_labels()
        order = [labels.index(c) for c in cats if c in labels]
        _legend_outside(ax, [handles[i] for i in order], [labels[i] for i in order])
    fig.suptitle(title or f"Latency breakdown: {_common_scenario(pairs)}")
    return fig


# ---------------------------------------------------------------------------- sweeps
@_styled
def sweep(results, *, over: str = "batch", title: str | None = None):
    """Sweeps, one line per device.

    ``over="batch"``: throughput (generated tokens/s) against time per output token as the
    batch grows, points labelled with the batch size: the latency-throughput trade-off.
    ``over="context"``: time per output token against prompt length (log2 axis).
    Hollow markers: the model and KV cache do not fit in one device at that point.
    """
    if over not in ("batch", "context"):
        raise CodesignError(f"expected over='batch' or 'context', got {over!r}", field="over")
    pairs = _results(results)
    by_dev: dict[str, list] = {}
    for _, r in pairs:
        by_dev.setdefault(r.hardware.title, []).append(r)
    col = _colours(list(by_dev))
    fig, axes = _figure(1, 1, width=8.0, height=4.6)
    ax = axes[0, 0]
    any_unfit = False
    for dev, rs in by_dev.items():
        key = (lambda r: r.scenario.batch) if over == "batch" else (lambda r: r.scenario.prompt)
        rs = sorted(rs, key=key)
        tp = np.array([r["tpot_s"] * 1e3 for r in rs])
        if over == "batch":
            x, y = tp, np.array([r["throughput_tokens_per_s"] for r in rs])
        else:
            x, y = np.array([r.scenario.prompt for r in rs], float), tp
        fits = np.array([bool(r["fits"]) for r in rs])
        any_unfit |= not fits.all()
        c = col[dev][0]
        ax.plot(x, y, color=c, lw=1.3, label=dev, zorder=2)
        ax.scatter(x[fits], y[fits], color=c, s=22, zorder=3)
        ax.scatter(x[~fits], y[~fits], facecolors="white", edgecolors=c, s=22, zorder=3)
        if over == "batch":
            for xi, yi, r in zip(x, y, rs):
                ax.annotate(f"b{r.scenario.batch}", (xi, yi), xytext=(3, 3), textcoords="offset points",
                            fontsize=6.5, color=c)
    if over == "batch":
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(metric_label("tpot_s"))
        ax.set_ylabel(metric_label("throughput_tokens_per_s"))
        what = "Throughput vs latency over batch size"
    else:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("Prompt length (tokens)")
        ax.set_ylabel(metric_label("tpot_s"))
        what = "Time per output token vs context"
    _log_ticks(ax.yaxis)
    if over == "batch":
        _log_ticks(ax.xaxis)
    else:
        ctx = sorted({r.scenario.prompt for _, r in pairs})
        ax.set_xticks(ctx, [str(c) for c in ctx])
        ax.xaxis.set_minor_locator(_mpl().ticker.NullLocator())
    handles, labels = ax.get_legend_handles_labels()
    if any_unfit:
        from matplotlib.lines import Line2D
        handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="white", markeredgecolor="#333333"))
        labels.append("does not fit in one device")
    _legend_outside(ax, handles, labels, title="device")
    first = pairs[0][1]
    fixed = (f"{first.model.name} · prompt {first.scenario.prompt} · generate {first.scenario.generate}"
             if over == "batch" else f"{first.model.name} · batch {first.scenario.batch} · generate "
             f"{first.scenario.generate}")
    comp = _compression_text(first.compression)
    ax.set_title(title or f"{what}\n{fixed} · {first.scenario.dtype}" + (f" · {comp}" if comp else ""))
    return fig


# ---------------------------------------------------------------------------- study trials
class Trials:
    """A normalised view of a trials table: objective columns, senses, feasibility, front."""

    def __init__(self, df, objectives=None, directions=None):
        import pandas as pd
        if not isinstance(df, pd.DataFrame):
            raise CodesignError(f"expected a trials DataFrame or an optuna Study, got {type(df).__name__}")
        if "state" in df.columns:
            df = df[df["state"].astype(str).str.upper().str.replace("TRIALSTATE.", "", regex=False) == "COMPLETE"]
        if "number" not in df.columns:
            df = df.assign(number=np.arange(len(df)))
        self.df = df.reset_index(drop=True)
        if objectives is None:
            objectives = [c for c in df.columns if c.startswith("values_")] or (
                ["value"] if "value" in df.columns else [])
        if not objectives:
            raise CodesignError("no objective columns found (expected values_<metric> columns, or name them)",
                                field="objectives")
        self.columns = [self._column(o) for o in objectives]
        self.names = [_bare(c) for c in self.columns]
        if directions is None:
            directions = [_better(n) for n in self.names]
        directions = [str(d).lower().replace("studydirection.", "") for d in directions]
        if len(directions) != len(self.columns):
            raise CodesignError(f"{len(directions)} directions for {len(self.columns)} objectives",
                                field="directions")
        self.directions = directions
        vals = self.df[self.columns].apply(pd.to_numeric, errors="coerce").to_numpy(float)
        self.values = vals
        self.feasible = self._feasibility() & np.isfinite(vals).all(1)
        # the front among feasible trials only (as Optuna's best_trials): an infeasible trial
        # dominates nothing
        self.front = np.zeros(len(vals), bool)
        if self.feasible.any():
            self.front[self.feasible] = pareto_mask(vals[self.feasible], directions)

    def _column(self, name):
        for c in (name, f"values_{name}", f"user_attrs_{name}"):
            if c in self.df.columns:
                return c
        raise CodesignError(f"no column for objective {name!r} (have {', '.join(map(str, self.df.columns))})",
                            field="objectives")

    def _feasibility(self):
        import pandas as pd
        df = self.df
        if "feasible" in df.columns:
            return df["feasible"].astype(bool).to_numpy()
        ok = np.ones(len(df), bool)
        for c in df.columns:
            if c.startswith(("system_attrs_constraints", "constraints_", "constraint_", "user_attrs_constraint")):
                v = df[c]
                if v.map(lambda z: isinstance(z, (list, tuple))).any():
                    v = v.map(lambda z: max(z) if isinstance(z, (list, tuple)) and z else np.nan)
                v = pd.to_numeric(v, errors="coerce").to_numpy(float)
                ok &= ~(v > 0)          # Optuna: feasible when every constraint value <= 0
            elif c == "constraints":
                v = df[c].map(lambda z: max(z) if isinstance(z, (list, tuple)) and z else 0.0)
                ok &= ~(pd.to_numeric(v, errors="coerce").to_numpy(float) > 0)
        return ok

    @property
    def params(self) -> list[str]:
        return [c for c in self.df.columns if c.startswith(("params_", "params."))]   # Optuna / study export

    def scaled(self, i) -> np.ndarray:
        return self.values[:, i] * _metric_info(self.names[i])[2]


def pareto_mask(values, directions) -> np.ndarray:
    """Non-dominated rows of ``values`` (n x k) under ``directions`` ('minimize'/'maximize')."""
    v = np.asarray(values, float).copy()
    if v.ndim != 2 or not len(v):
        return np.zeros(len(v), bool)
    for j, d in enumerate(directions):
        if d.startswith("max"):
            v[:, j] = -v[:, j]
    v = np.where(np.isfinite(v), v, np.inf)
    keep = np.ones(len(v), bool)
    for start in range(0, len(v), 512):       # chunks: 512 x n x k booleans at a time
        blk = v[start:start + 512]
        le = np.all(v[None, :, :] <= blk[:, None, :], axis=-1)
        lt = np.any(v[None, :, :] < blk[:, None, :], axis=-1)
        keep[start:start + 512] = ~np.any(le & lt, axis=1)
    return keep & np.isfinite(np.asarray(values, float)).all(1)


def trials_frame(study):
    """An optuna Study as the trials DataFrame the study plots take (with 'feasible')."""
    df = study.trials_dataframe()
    names = study.metric_names
    if names and len(names) == len(study.directions):
        df = df.rename(columns={f"values_{i}": f"values_{n}" for i, n in enumerate(names)})
    feas = []
    for t in study.trials:
        c = getattr(t, "constraints", None)
        if c is None:
            c = t.system_attrs.get("constraints")
        if isinstance(c, dict):
            c = list(c.values())
        feas.append(not c or all(x <= 0 for x in c))
    return df.assign(feasible=feas)


def _as_trials(trials, objectives, directions):
    if hasattr(trials, "trials_dataframe") and hasattr(trials, "directions"):
        if directions is None:
            directions = [d.name.lower() for d in trials.directions]
            if objectives is not None and len(objectives) != len(directions):
                directions = None
        trials = trials_frame(trials)
    return Trials(trials, objectives, directions)


def _maybe_log(ax, axis, v):
    v = v[np.isfinite(v)]
    if len(v) and (v > 0).all() and v.max() / v.min() > 100:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def _references(references):
    """{label: {metric: SI value}} from a mapping or a DataFrame indexed by label."""
    if references is None:
        return {}
    if hasattr(references, "iterrows"):
        return {str(i): dict(row) for i, row in references.iterrows()}
    return {str(k): dict(v) for k, v in references.items()}


@_styled
def pareto(trials, objectives=None, *, directions=None, references=None, title: str | None = None):
    """Pareto front of a study: one scatter for two objectives, every pair for three or more.

    Grey dots: feasible trials; crosses: infeasible trials (a constraint > 0); coloured:
    the feasible non-dominated trials over *all* objectives (connected in a 2-objective
    plot); large labelled markers: ``references`` ({label: {metric: SI value}}), e.g. the
    study's base device (star) and real devices (diamonds) evaluated on the same workload.
    """
    t = _as_trials(trials, objectives, directions)
    k = len(t.names)
    if k < 2:
        raise CodesignError("a Pareto front needs at least two objectives", field="objectives")
    refs = _references(references)
    pairs = list(combinations(range(k), 2))
    ncols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig, axes = _figure(nrows, ncols, width=max(6.5, 3.8 * ncols), height=3.3 * nrows + 1.1)
    ref_col = _colours(["__front__"] + list(refs))
    front_c = STYLE["palette"][0]
    for n, (i, j) in enumerate(pairs):
        ax = axes.flat[n]
        x, y = t.scaled(i), t.scaled(j)
        feas, front = t.feasible, t.front
        ax.scatter(x[~feas], y[~feas], marker="x", s=12, color=STYLE["muted"], alpha=0.6, linewidths=0.8,
                   label=_only_if("infeasible trial", ~feas))
        ax.scatter(x[feas & ~front], y[feas & ~front], s=10, color=STYLE["muted"], alpha=0.7,
                   label=_only_if("feasible trial", feas & ~front))
        ax.scatter(x[front], y[front], s=26, color=front_c, edgecolors="white", linewidths=0.4, zorder=3,
                   label=_only_if("Pareto-optimal (feasible)", front))
        if k == 2 and front.any():
            o = np.argsort(x[front])
            ax.plot(x[front][o], y[front][o], color=front_c, lw=1.0, drawstyle="steps-post", zorder=2)
        for r, (lab, vals) in enumerate(refs.items()):
            if t.names[i] in vals and t.names[j] in vals:
                fx = _metric_info(t.names[i])[2]
                fy = _metric_info(t.names[j])[2]
                rx, ry = float(vals[t.names[i]]) * fx, float(vals[t.names[j]]) * fy
                ax.scatter([rx], [ry], marker="*" if r == 0 else "D", s=140 if r == 0 else 50,
                           color=ref_col[lab][0], edgecolors="black", linewidths=0.6, zorder=4, label=lab)
                ax.annotate(lab, (rx, ry), xytext=(6, 4 if r % 2 == 0 else -11), textcoords="offset points",
                            fontsize=7)
        _maybe_log(ax, "x", x)
        _maybe_log(ax, "y", y)
        ax.set_xlabel(metric_label(t.names[i]) + _arrow(t.directions[i]))
        ax.set_ylabel(metric_label(t.names[j]) + _arrow(t.directions[j]))
    for ax in list(axes.flat)[len(pairs):]:
        ax.set_axis_off()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for ax in list(axes.flat)[1:len(pairs)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncols=min(len(seen), 4))
    fig.suptitle(title or f"Pareto front: {int(t.front.sum())} of {len(t.df)} trials "
                          f"({int(t.feasible.sum())} feasible)")
    return fig


def _only_if(label: str, mask) -> str:
    """A legend label only for data that is there (matplotlib skips labels starting '_')."""
    return label if np.any(mask) else "_nolegend_"


def _arrow(direction: str) -> str:
    return " ↑" if direction.startswith("max") else " ↓"


@_styled
def history(trials, objectives=None, *, directions=None, title: str | None = None):
    """Optimisation history: every trial's objective value by trial number and the best so far
    (among feasible trials, for each objective on its own), one panel per objective."""
    t = _as_trials(trials, objectives, directions)
    k = len(t.names)
    fig, axes = _figure(k, 1, width=8.0, height=2.5 * k + 0.7, sharex=True)
    num = t.df["number"].to_numpy(float)
    order = np.argsort(num, kind="stable")
    for i in range(k):
        ax = axes[i, 0]
        v = t.scaled(i)
        feas = t.feasible
        ax.scatter(num[feas], v[feas], s=10, color=STYLE["palette"][0], alpha=0.7,
                   label=_only_if("feasible trial", feas))
        ax.scatter(num[~feas], v[~feas], s=12, marker="x", color=STYLE["muted"], linewidths=0.8,
                   label=_only_if("infeasible trial", ~feas))
        vv = np.where(feas, v, np.nan)[order]
        mx = t.directions[i].startswith("max")
        best = (np.fmax.accumulate(vv) if mx else np.fmin.accumulate(vv))
        ax.plot(num[order], best, color=STYLE["palette"][3], lw=1.4, drawstyle="steps-post",
                label="best so far")
        _maybe_log(ax, "y", v)
        ax.set_ylabel(metric_label(t.names[i]) + _arrow(t.directions[i]))
        _legend_outside(ax)
    axes[-1, 0].set_xlabel("Trial number (count)")
    fig.suptitle(title or f"Optimisation history ({len(t.df)} completed trials)")
    return fig


def _spearman(x, y) -> float:
    import pandas as pd
    a = pd.Series(x).rank().to_numpy(float)
    b = pd.Series(y).rank().to_numpy(float)
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _signed_objective(i: int, sign: float) -> Callable[[FrozenTrial], float]:
    """optuna.importance target: ``sign`` x objective ``i`` of a trial."""
    def target(tr: FrozenTrial) -> float:
        values = tr.values
        assert values is not None       # importance evaluators only see completed trials
        return sign * values[i]
    return target


def param_importance(trials, objectives=None, *, directions=None) -> tuple[dict, str]:
    """({objective: {param: importance}}, method). An optuna Study gets fANOVA
    (optuna.importance, needs scikit-learn) or, without scikit-learn, Optuna 5's default
    PED-ANOVA; a DataFrame gets |Spearman rank correlation| between each parameter and the
    objective over feasible trials (categoricals target-encoded by their mean objective):
    a screening measure of monotone association, not a variance decomposition."""
    import pandas as pd
    if hasattr(trials, "trials_dataframe") and hasattr(trials, "directions"):
        import warnings

        import optuna
        from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator
        ev: BaseImportanceEvaluator
        try:
            import sklearn  # noqa: F401  (fANOVA's random forest)
            ev, method = FanovaImportanceEvaluator(seed=0), "fANOVA (optuna.importance)"
        except ImportError:
            ev, method = PedAnovaImportanceEvaluator(), "PED-ANOVA (optuna.importance; fANOVA needs scikit-learn)"
        n_obj = len(trials.directions)
        names = list(objectives) if objectives is not None else list(
            trials.metric_names or [f"objective {i}" for i in range(n_obj)])
        if len(names) != n_obj:
            raise CodesignError(f"the study has {n_obj} objective(s); name all of them in order, got {names}",
                                field="objectives")
        out = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes")  # sign handled below
            for i, n in enumerate(names):
                # PED-ANOVA takes lower as better: negate maximised objectives (fANOVA is sign-blind)
                sign = -1.0 if trials.directions[i].name == "MAXIMIZE" else 1.0
                out[_bare(n)] = dict(optuna.importance.get_param_importances(
                    trials, evaluator=ev, target=_signed_objective(i, sign)))
        return out, method
    t = _as_trials(trials, objectives, directions)
    df = t.df[t.feasible]
    if len(df) < 3:
        raise CodesignError(f"parameter importance needs at least 3 feasible trials, got {len(df)}")
    out = {}
    for i, n in enumerate(t.names):
        y = t.values[t.feasible, i]
        imp = {}
        for p in t.params:
            x = df[p]
            is_num, xv = _numeric(x)
            if not is_num:          # target encoding: each category at its mean objective value
                lab = _labels(x)
                xv = lab.map(pd.Series(y, index=x.index).groupby(lab).mean()).to_numpy(float)
            ok = np.isfinite(xv)    # a conditional parameter counts where it was sampled
            imp[p[len("params_"):]] = abs(_spearman(xv[ok], y[ok]))
        out[n] = imp
    return out, "|Spearman rank correlation| (fallback: correlation, not fANOVA)"


NOT_SAMPLED = -0.1     # parallel-coordinates position of a conditional parameter that was not sampled


def _numeric(col):
    """(is numeric, float values with NaN where unset): a parameter is numeric when every
    value that was sampled parses as a number (conditional parameters leave gaps)."""
    import pandas as pd
    num = pd.to_numeric(col, errors="coerce")
    return bool(num.notna().any() and (num.notna() == col.notna()).all()), num.to_numpy(float)


def _labels(col):
    """Category labels as strings, '(not sampled)' for gaps."""
    return col.map(lambda v: "(not sampled)" if v is None or v != v else str(v))


def _categorical_params(trials) -> set:
    import pandas as pd
    df = trials if isinstance(trials, pd.DataFrame) else trials.trials_dataframe()
    return {c[len("params_"):] for c in df.columns
            if c.startswith(("params_", "params.")) and not _numeric(df[c])[0]}


@_styled
def importance(trials, objectives=None, *, directions=None, title: str | None = None):
    """Parameter importance per objective (horizontal bars); the method is in the title."""
    imp, method = param_importance(trials, objectives, directions=directions)
    params = sorted({p for d in imp.values() for p in d}, key=lambda p: -max(d.get(p, 0) for d in imp.values()))
    if not params:
        raise CodesignError("the trials have no parameters (params_* columns)")
    objs = list(imp)
    categorical = _categorical_params(trials)
    col = _colours(objs)
    fig, axes = _figure(1, 1, width=8.0, height=1.2 + 0.32 * len(params) * max(1, len(objs) / 2))
    ax = axes[0, 0]
    h = 0.8 / len(objs)
    for j, o in enumerate(objs):
        ys = np.arange(len(params)) + (j - (len(objs) - 1) / 2) * h
        vals = [imp[o].get(p, 0.0) for p in params]
        ax.barh(ys, vals, h * 0.9, color=col[o][0], label=metric_label(o))
    ax.set_yticks(range(len(params)), [param_label(p, p not in categorical) for p in params])
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("Importance (share of variance, sums to 1)" if not method.startswith("|Spearman")
                  else "|Spearman ρ| with the objective (0 to 1, unitless)")
    _legend_outside(ax, title="objective")
    ax.set_title(title or f"Parameter importance: {method}")
    return fig


@_styled
def parallel_coordinates(trials, objectives=None, *, directions=None, params=None, title: str | None = None):
    """One line per completed trial across the parameter axes and the objective axes.

    Each axis is scaled to its own range (log when the range spans > 100x, categoricals as
    evenly spaced levels), with its minimum and maximum printed. Colour: the first
    objective (colour bar with its unit); thick lines: Pareto-optimal trials; grey dashed:
    infeasible trials.
    """
    from matplotlib.collections import LineCollection
    t = _as_trials(trials, objectives, directions)
    pcols = list(params) if params else t.params
    pcols = [next((c for c in (p, f"params_{p}", f"params.{p}") if c in t.df.columns), p) for p in pcols]
    for p in pcols:
        if p not in t.df.columns:
            raise CodesignError(f"no parameter column {p!r} (have {', '.join(t.params) or 'none'})", field="params")
    axes_cols = pcols + t.columns
    names = [param_label(p, _numeric(t.df[p])[0]) for p in pcols]
    names += [metric_label(n) for n in t.names]
    n = len(t.df)
    norm = np.zeros((n, len(axes_cols)))
    ticks = []
    for a, c in enumerate(axes_cols):
        raw = t.df[c]
        is_num, v = _numeric(raw)
        if is_num:
            f = _metric_info(_bare(c))[2] if c in t.columns else 1.0
            v = np.where(np.isfinite(v), v * f, np.nan)       # invalid designs carry +-inf objectives
            if np.isnan(v).all():
                v = np.zeros_like(v)
            lo, hi = np.nanmin(v), np.nanmax(v)
            logs = lo > 0 and hi / lo > 100
            tv = np.log10(v) if logs else v
            tlo, thi = (np.log10(lo), np.log10(hi)) if logs else (lo, hi)
            norm[:, a] = np.where(np.isfinite(v), (tv - tlo) / (thi - tlo) if thi > tlo else 0.5, NOT_SAMPLED)
            show = _fmt if c in t.columns else _si       # objectives are already in their display unit
            gap = "(no value)" if c in t.columns else "(not sampled)"
            ticks.append([(show(lo), 0.0), (show(hi), 1.0)] + ([(gap, NOT_SAMPLED)] if np.isnan(v).any() else []))
        else:
            labels = _labels(raw)
            levels = sorted(set(labels) - {"(not sampled)"})
            pos = {lv: i / max(len(levels) - 1, 1) for i, lv in enumerate(levels)}
            pos["(not sampled)"] = NOT_SAMPLED
            norm[:, a] = labels.map(pos).to_numpy(float)
            shown = levels if len(levels) <= 8 else [levels[0], levels[-1]]
            ticks.append([(lv, pos[lv]) for lv in shown]
                         + ([("(not sampled)", NOT_SAMPLED)] if "(not sampled)" in set(labels) else []))
    fig, axes = _figure(1, 1, width=max(7.0, 1.3 * len(axes_cols) + 2.0), height=4.4)
    ax = axes[0, 0]
    xs = np.arange(len(axes_cols))
    c0 = t.scaled(0)
    mpl = _mpl()
    cmap = mpl.colormaps[STYLE["sequential"]]
    fin = c0[np.isfinite(c0)]
    cnorm = mpl.colors.Normalize(*(fin.min(), fin.max()) if len(fin) else (0, 1))
    segs = [np.column_stack([xs, norm[r]]) for r in range(n)]
    feas, front = t.feasible, t.front
    base = feas & ~front
    lc = LineCollection([s for s, b in zip(segs, base) if b], colors=cmap(cnorm(c0[base])), linewidths=0.6,
                        alpha=0.5)
    ax.add_collection(lc)
    if (~feas).any():
        ax.add_collection(LineCollection([s for s, b in zip(segs, ~feas) if b], colors=STYLE["muted"],
                                         linewidths=0.5, linestyles="--", alpha=0.5))
    if front.any():
        ax.add_collection(LineCollection([s for s, b in zip(segs, front) if b], colors=cmap(cnorm(c0[front])),
                                         linewidths=2.0, alpha=1.0))
    for a, tk in enumerate(ticks):
        ax.axvline(a, color="#333333", lw=0.8)
        for text, y in tk:
            ax.annotate(text, (a, y), xytext=(3, 0), textcoords="offset points", fontsize=6.5, va="center",
                        bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7})
    ax.set_xlim(-0.3, len(axes_cols) - 0.7)
    ax.set_ylim(NOT_SAMPLED - 0.05, 1.05)
    ax.set_xticks(xs, [nm.replace(" (", "\n(") for nm in names], fontsize=7, rotation=0)
    ax.set_yticks([])
    ax.set_ylabel("Position on each axis (min at bottom, max at top; unitless)")
    ax.grid(False)
    sm = mpl.cm.ScalarMappable(norm=cnorm, cmap=cmap)
    fig.colorbar(sm, ax=ax, location="right", shrink=0.8, label=metric_label(t.names[0]))
    ax.set_title(title or f"Parallel coordinates: {n} trials (thick: {int(front.sum())} Pareto-optimal, "
                          f"dashed: {int((~feas).sum())} infeasible)")
    return fig


# ---------------------------------------------------------------------------- validation
VALIDATION_COLUMNS = ("kernel", "kind", "predicted_s", "measured_s", "error_pct")


@_styled
def validation(df, *, title: str | None = None):
    """Predicted against measured kernel time (log-log, y = x with ±10 % and ±25 % bands)
    and the signed error by kernel kind (box per kind, every kernel as a dot).

    ``df``: the kernel runner's table (kernel, kind, phase, predicted_s, measured_s,
    error_pct = 100 (predicted - measured) / measured).
    """
    import pandas as pd
    if not isinstance(df, pd.DataFrame):
        raise CodesignError(f"expected a DataFrame of validation rows, got {type(df).__name__}")
    missing = [c for c in VALIDATION_COLUMNS if c not in df.columns]
    if missing:
        raise CodesignError(f"missing column(s) {', '.join(missing)}; expected {', '.join(VALIDATION_COLUMNS)}",
                            field="validation")
    d = df[(pd.to_numeric(df["predicted_s"], errors="coerce") > 0)
           & (pd.to_numeric(df["measured_s"], errors="coerce") > 0)].reset_index(drop=True)
    if d.empty:
        raise CodesignError("no row with positive predicted_s and measured_s", field="validation")
    from .workload.ops import ALL_KINDS
    kinds = list(dict.fromkeys(d["kind"].astype(str)))
    kinds = [k for k in ALL_KINDS if k in kinds] + [k for k in kinds if k not in ALL_KINDS]
    col = _colours(kinds)
    fig, axes = _figure(1, 2, width=11.0, height=4.6)
    ax, bx = axes[0, 0], axes[0, 1]
    meas = d["measured_s"].to_numpy(float)
    pred = d["predicted_s"].to_numpy(float)
    lo, hi = min(meas.min(), pred.min()) / 2, max(meas.max(), pred.max()) * 2
    g = np.logspace(np.log10(lo), np.log10(hi), 50)
    ax.fill_between(g, g * 0.75, g * 1.25, color=STYLE["palette"][5], alpha=0.15, lw=0, label="±25 %")
    ax.fill_between(g, g * 0.9, g * 1.1, color=STYLE["palette"][5], alpha=0.3, lw=0, label="±10 %")
    ax.plot(g, g, color="black", lw=0.8, label="y = x")
    phases = d["phase"].astype(str) if "phase" in d.columns else pd.Series(["kernel"] * len(d))
    for k in kinds:
        for ph in phases.unique():
            m = ((d["kind"].astype(str) == k) & (phases == ph)).to_numpy()
            if m.any():
                ax.scatter(meas[m], pred[m], s=22, color=col[k][0], marker=STYLE["phase_markers"].get(ph, "s"),
                           edgecolors="white", linewidths=0.4, zorder=3, label=k)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("Measured time per kernel (s)")
    ax.set_ylabel("Predicted time per kernel (s)")
    ax.xaxis.set_major_formatter(_eng("s"))
    ax.yaxis.set_major_formatter(_eng("s"))
    from matplotlib.lines import Line2D
    handles, labels = ax.get_legend_handles_labels()
    uniq = {lab: h for h, lab in zip(handles, labels) if lab not in kinds}
    uniq.update({k: Line2D([], [], color=col[k][0], marker="s", ls="") for k in kinds})
    if len(phases.unique()) > 1:
        for ph in phases.unique():
            uniq[f"phase: {ph}"] = Line2D([], [], color="#555555", ls="",
                                          marker=STYLE["phase_markers"].get(ph, "s"))
    _legend_outside(ax, list(uniq.values()), list(uniq))
    ax.set_title("Predicted vs measured")
    err = pd.to_numeric(d["error_pct"], errors="coerce").to_numpy(float)
    data = [err[(d["kind"].astype(str) == k).to_numpy()] for k in kinds]
    bx.boxplot(data, positions=range(len(kinds)), widths=0.5, showfliers=False,
               medianprops={"color": "black"}, boxprops={"color": "#555555"})
    rng = np.random.default_rng(0)                 # fixed jitter: reproducible images
    for i, (k, e) in enumerate(zip(kinds, data)):
        bx.scatter(i + rng.uniform(-0.15, 0.15, len(e)), e, s=12, color=col[k][0], zorder=3)
    for y, ls in ((0, "-"), (10, "--"), (-10, "--"), (25, ":"), (-25, ":")):
        bx.axhline(y, color="#333333", lw=0.7, ls=ls)
    bx.set_xticks(range(len(kinds)), [f"{k}\n(n={len(e)})" for k, e in zip(kinds, data)], fontsize=7, rotation=35, ha="right", rotation_mode="anchor")
    bx.set_ylabel("Signed error, (predicted − measured) / measured (%)")
    bx.set_xlabel("Kernel kind")
    bx.set_title("Error by kernel kind (dashed ±10 %, dotted ±25 %)")
    ae = np.abs(err[np.isfinite(err)])
    fig.suptitle(title or f"Validation: {len(d)} kernels, MAPE {np.mean(ae):.1f} %, "
                          f"{np.mean(ae <= 10):.0%} within ±10 %, {np.mean(ae <= 25):.0%} within ±25 %")
    return fig


# ---------------------------------------------------------------------------- accuracy
@_styled
def accuracy(rows, *, title: str | None = None):
    """Predicted against measured for measurement rows (``codesign accuracy`` results), one
    panel per error kind (in-sample; leave-one-source-out when present), coloured by metric
    group, with ±25 % bands. Values are normalised per row (measured = 1 on the x axis would
    hide the spread), so each panel plots predicted / measured against measured on log axes."""
    rows = [r for r in rows if r.get("population") == "held-out" and np.isfinite(r.get("predicted", np.nan))]
    if not rows:
        raise CodesignError("no held-out row with a finite prediction", field="accuracy")
    panels = [("error", "in-sample")] + ([("error_cv", "leave-one-source-out")] if "error_cv" in rows[0] else [])
    groups = list(dict.fromkeys(r["group"] for r in rows))
    col = _colours(groups)
    fig, axes = _figure(1, len(panels), width=5.6 * len(panels), height=4.4)
    for (key, label), ax in zip(panels, axes[0]):
        for g in groups:
            pts = [(r["measured"], 1 + r[key]) for r in rows if r["group"] == g and np.isfinite(r.get(key, np.nan))]
            if pts:
                x, y = zip(*pts)
                ax.scatter(x, y, s=18, color=col[g][0], edgecolors="white", linewidths=0.4, zorder=3,
                           label=f"{g} (n={len(pts)})")
        ax.axhspan(0.75, 1.25, color=STYLE["palette"][5], alpha=0.15, lw=0)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("Measured value (its own unit)")
        ax.set_ylabel("Predicted / measured")
        err = np.array([abs(r[key]) for r in rows if np.isfinite(r.get(key, np.nan))])
        ax.set_title(f"{label}: MAPE {err.mean() * 100:.1f} % (n={len(err)})")
        _legend_outside(ax)
    fig.suptitle(title or "codesign against published measurements (shaded: ±25 %)")
    return fig


def plot_accuracy(rows, path) -> Path:
    """Draw ``accuracy(rows)`` and save it (PNG/SVG/PDF by the suffix)."""
    return save(accuracy(rows), path)


# ---------------------------------------------------------------------------- serving
def _cdf(ax, x, colour, label):
    x = np.sort(np.asarray(x, float)[np.isfinite(x)])
    if len(x):
        ax.plot(x, np.arange(1, len(x) + 1) / len(x), color=colour, lw=1.4, label=label)


@_styled
def serve_run(results: dict, *, slo_ttft: float | None = None, slo_tpot: float | None = None,
              title: str | None = None):
    """Served traffic, one colour per run (``{label: codesign.serve.ServeResult}``): CDFs of
    TTFT and time per output token (SLOs as dashed lines), and over time the decode batch
    and the share of the KV cache in use (first engine of each run)."""
    if not results:
        raise CodesignError("no serving results to plot", field="results")
    col = _colours(list(results))
    fig, axes = _figure(2, 2, width=9.0, height=6.4)
    (a_ttft, a_tpot), (a_batch, a_kv) = axes
    for label, res in results.items():
        c = col[label][0]
        r = res.requests
        _cdf(a_ttft, r.ttft_s * 1e3, c, label)
        _cdf(a_tpot, r.tpot_s * 1e3, c, label)
        st = res.steps[res.steps.engine == res.steps.engine.min()]
        t = st.t_end_s.to_numpy()
        a_batch.step(t, st.decode_seqs, where="post", color=c, lw=0.8, label=label)
        a_kv.step(t, 100 * st.kv_occupancy, where="post", color=c, lw=0.8, label=label)
    for ax, slo, name in ((a_ttft, slo_ttft, "TTFT"), (a_tpot, slo_tpot, "TPOT")):
        if slo:
            ax.axvline(slo * 1e3, color=STYLE["muted"], ls="--", lw=1, label=f"{name} SLO")
        ax.set_xscale("log")
        _log_ticks(ax.xaxis)
        ax.set_ylabel("Share of requests")
        ax.set_ylim(0, 1.02)
    a_ttft.set_xlabel(metric_label("ttft_s"))
    a_tpot.set_xlabel(metric_label("tpot_s"))
    a_batch.set_xlabel("Time (s)")
    a_batch.set_ylabel("Decode batch (sequences)")
    a_kv.set_xlabel("Time (s)")
    a_kv.set_ylabel("KV cache in use (%)")
    a_kv.set_ylim(0, 102)
    _legend_outside(a_tpot)
    fig.suptitle(title or "Serving under traffic")
    return fig


@_styled
def serve_rates(curves, *, slo_ttft: float | None = None, slo_tpot: float | None = None, percentile: float = 99,
                title: str | None = None):
    """Request rate against tail TTFT and TPOT and against goodput, one line per device.
    ``curves``: a DataFrame with columns label, rate, ttft_p{q}_s, tpot_p{q}_s, throughput_req_per_s
    (and goodput_req_per_s when SLOs are set)."""
    import pandas as pd
    df = pd.DataFrame(curves)
    if df.empty:
        raise CodesignError("no rate points to plot", field="curves")
    q = f"p{percentile:g}"
    col = _colours(list(dict.fromkeys(df.label)))
    fig, axes = _figure(1, 3, width=11.0, height=3.8)
    a1, a2, a3 = axes[0]
    for label, g in df.groupby("label", sort=False):
        g = g.sort_values("rate")
        c = col[label][0]
        a1.plot(g.rate, g[f"ttft_{q}_s"] * 1e3, "o-", color=c, ms=3, lw=1.3, label=label)
        a2.plot(g.rate, g[f"tpot_{q}_s"] * 1e3, "o-", color=c, ms=3, lw=1.3, label=label)
        y = g["goodput_req_per_s"] if "goodput_req_per_s" in g else g["throughput_req_per_s"]
        a3.plot(g.rate, y, "o-", color=c, ms=3, lw=1.3, label=label)
    for ax, slo in ((a1, slo_ttft), (a2, slo_tpot)):
        if slo:
            ax.axhline(slo * 1e3, color=STYLE["muted"], ls="--", lw=1, label="SLO")
        ax.set_yscale("log")
        ax.set_xlabel("Offered load (requests/s)")
    a1.set_ylabel(f"TTFT, {q} (ms)")
    a2.set_ylabel(f"Time per output token, {q} (ms)")
    a3.set_xlabel("Offered load (requests/s)")
    a3.set_ylabel("Goodput (requests/s meeting SLOs)" if "goodput_req_per_s" in df else "Throughput (requests/s)")
    lim = float(df.rate.max())
    a3.plot([0, lim], [0, lim], color=STYLE["muted"], lw=0.8, ls=":")
    _legend_outside(a3)
    fig.suptitle(title or "Load against tail latency")
    return fig
