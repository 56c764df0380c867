"""Figures of devices running a workload, from :class:`codesign.perf.Result` objects
(``evaluate()``: one, a list, or a ``{label: Result}`` mapping): the roofline, the side by
side comparison, where the time goes, and batch / context sweeps."""
from __future__ import annotations

import math
import textwrap
from typing import Any

import numpy as np

from ..accuracy.bands import band_for
from ..errors import CodesignError
from ..metrics import direction, display
from ..perf.params import spec_params
from ..units import format_number, format_quantity, format_si
from ..workload.ops import ALL_KINDS
from .style import (
    STYLE,
    colours,
    common_scenario,
    eng_formatter,
    labelled,
    legend_outside,
    log_ticks,
    metric_label,
    mpl,
    new_figure,
    num,
    peak_text,
    place_labels,
    scenario_text,
    styled,
    text_colour,
)

COMPARE_METRICS = ("ttft_s", "tpot_s", "throughput_tokens_per_s", "energy_per_token_j", "cost_per_mtok_usd")
BOUND_ORDER = ("compute", "memory", "link", "transcendental", "dequant", "overhead")


def _is_int(dtype: str) -> bool:
    return dtype.startswith(("int", "uint"))


# ---------------------------------------------------------------------------- roofline
def _ceilings(spec, dtypes) -> list[tuple[str, float, bool]]:
    """[(label, peak, matrix?)]: matrix peaks for ``dtypes``, then vector peaks; datatypes
    with the same peak share one line ('matrix bf16/fp16 989 TFLOP/s'), integer ones
    counted in OP/s ('matrix fp8 1.98 PFLOP/s, int8 1.98 POP/s')."""
    out: list[tuple[str, float, bool]] = []
    for unit, peak_of in (("matrix", spec.matrix_peak), ("vector", spec.compute.vector.peak.get)):
        same: dict[float, list[str]] = {}
        for dt in dtypes:
            pk = peak_of(dt)
            if pk:
                same.setdefault(pk, []).append(dt)
        for pk, dts in sorted(same.items(), reverse=True):
            groups = [g for g in ([d for d in dts if not _is_int(d)], [d for d in dts if _is_int(d)]) if g]
            out.append((f"{unit} " + ", ".join(peak_text(pk, g) for g in groups), pk, unit == "matrix"))
    return out


def _level_bandwidth(spec, level) -> float:
    """Whole-device bandwidth of a level (per-core levels times the core count)."""
    return level.bandwidth * ((spec.compute.cores or 1) if level.per_core else 1)


def _roofline_points(ax, pairs, phases, level, multi, dev_col, kind_col, dtypes) -> tuple[list[dict], list, list, int]:
    """Scatter every operator; return each device's ceilings and levels, the points, and
    how many operators had nothing to place."""
    devices: list[dict[str, Any]] = []
    xs_all: list[float] = []
    ys_all: list[float] = []
    skipped = 0
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
                cs = [dev_col[lab][0]] * int(m.sum()) if multi else [kind_col[k][0] for k in used.loc[m, "kind"]]
                ax.scatter(x[m], y[m], s=size[m], c=cs, marker=STYLE["phase_markers"].get(ph, "s"),
                           alpha=0.8, edgecolors="white", linewidths=0.5, zorder=3)
        op_dtypes = list(dict.fromkeys(used["dtype"]))
        want = list(dtypes) if dtypes else (op_dtypes if multi else [d for d in spec.matrix_dtypes() if d != "fp64"])
        ceil = _ceilings(spec, want) or _ceilings(spec, list(spec.compute.vector.peak))
        if multi and not dtypes:
            ceil = [c for c in ceil if c[2]] or ceil
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
                            top=max(pk for _, pk, _ in ceil), integer=any(_is_int(d) for d in op_dtypes)))
    return devices, xs_all, ys_all, skipped


@styled
def roofline(results, *, level: str | None = None, phases=("prefill", "decode"), dtypes=None,
             title: str | None = None):
    """Roofline (Williams, Waterman & Patterson, CACM 2009) of one or several devices.

    Ceilings: the datasheet matrix peak per datatype (solid, labelled with its ridge point
    = peak / bandwidth, the intensity above which an operator can be compute-bound; integer
    datatypes in OP/s) and the vector peak (dashed); a bandwidth slope per memory level
    (performance = intensity x bandwidth; per-core levels counted over all cores). The
    dotted line is the attainable roofline the engine uses for the datatype most operators
    run in (peak x sustained efficiency, bandwidth x efficiency), so the points sit on or
    below it. Points: every operator with FLOPs, at x = FLOPs / bytes moved at ``level``
    (default: each device's main memory) and y = FLOPs / modelled time of one instance;
    circles prefill, triangles decode (decode numbers at the prompt context, time averaged
    over the generated tokens, so long generations sit slightly low); marker area
    proportional to the operator's share of its phase time. Inner levels' slopes bound
    intensity measured at *that* level (hierarchical roofline, Yang et al. 2020), so they
    are thin and dashed. Several devices: colour = device, and only the datatypes the
    operators use and the main level are drawn, to stay readable; one device: colour =
    operator kind. Labels are placed where they overlap neither each other nor a point.
    """
    Line2D = mpl().lines.Line2D
    pairs = labelled(results)
    multi = len(pairs) > 1
    fig, axes = new_figure(1, 1, height=5.2)
    ax = axes[0, 0]
    ax.set_xscale("log")
    ax.set_yscale("log")
    dev_col = colours([lab for lab, _ in pairs])
    kinds = list(dict.fromkeys(k for _, r in pairs for k in r.ops["kind"]))
    kind_col = colours([k for k in ALL_KINDS if k in kinds] + [k for k in kinds if k not in ALL_KINDS])
    devices, xs_all, ys_all, skipped = _roofline_points(ax, pairs, phases, level, multi, dev_col, kind_col, dtypes)
    if not xs_all:
        raise CodesignError("no operator with FLOPs and memory traffic to place on the roofline")
    xlo = min(min(xs_all) / 4, 0.1)
    xhi = max(max(xs_all) * 4, max(d["top"] / bw for d in devices for _, bw in d["levels"]) * 8)
    xg = np.logspace(math.log10(xlo), math.log10(xhi), 200)
    labels: list = []
    for d in devices:
        dc = dev_col[d["lab"]][0] if multi else "#333333"
        bw_main = _level_bandwidth(d["spec"], d["lvl"])
        for clab, pk, matrix in d["ceil"]:
            ax.plot(xg, np.minimum(pk, xg * bw_main), color=dc, lw=1.1, zorder=2, ls="-" if matrix else (0, (4, 2)))
            rx = pk / bw_main                                # ridge point: peak / bandwidth
            ax.plot([rx], [pk], marker="D", ms=4, color=dc, zorder=4)
            per = "OP/B" if "FLOP/s" not in clab else "FLOP/B"
            # on the flat part of the ceiling, from the right edge leftwards, above or below it
            at = [xhi * (rx * 1.5 / xhi) ** f for f in (0.0, 0.25, 0.5, 0.75)]
            cands = [((x, pk), off, ha, va) for x in at for off, ha, va in
                     (((-2, 2), "right", "bottom"), ((-2, -2), "right", "top"))]
            # several devices: the peak alone (the diamond marks the ridge), or labels crowd out the data
            text = clab.removeprefix("matrix ") if multi else f"{clab}, ridge {format_number(rx, 3)} {per}"
            labels.append((text, cands, {"color": dc}))
        for m_, bw in d["levels"]:
            main = m_.name == d["lvl"].name
            xs = xg[xg * bw <= d["top"]]
            if len(xs) < 2:
                continue
            ax.plot(xs, xs * bw, color=dc, lw=1.1 if main else 0.7, ls="-" if main else "--",
                    alpha=1.0 if main else 0.6, zorder=2)
            # along the slope, left of the line (above it) or right of it (below it)
            cands = [((x, x * bw), off, ha, va) for off, ha, va in (((-3, 3), "right", "bottom"), ((3, -3), "left", "top"))
                     for x in xs[[len(xs) // 6, len(xs) // 3, len(xs) // 2, 2 * len(xs) // 3, 0]]]
            labels.append((f"{m_.name} {format_quantity(bw, 'bandwidth')}", cands,
                           {"color": dc, "alpha": 1.0 if main else 0.7}))
        if d["attain"] is not None:
            pk_s, bw_s = d["attain"]
            ax.plot(xg, np.minimum(pk_s, xg * bw_s), color=dc, lw=1.0, ls=":", zorder=2)
    ylo = min(min(ys_all) / 4, min(bw for d in devices for _, bw in d["levels"]) * xlo)
    ax.set_xlim(xlo, xhi)
    ax.set_ylim(ylo, max(d["top"] for d in devices) * 3)
    ax.yaxis.set_major_formatter(eng_formatter())
    names = {d["lvl"].name for d in devices}
    ax.set_xlabel(f"Arithmetic intensity (FLOP per byte of {names.pop() if len(names) == 1 else 'main-memory'} "
                  "traffic)")
    ax.set_ylabel("Attained performance (FLOP/s" + ("; OP/s for integer datatypes)" if any(
        d["integer"] for d in devices) else ")"))
    who = ", ".join(lab for lab, _ in pairs) if len(pairs) <= 2 else f"{len(pairs)} devices"
    ax.set_title(title or f"Roofline: {who}\n{common_scenario(pairs)}")
    colour_keys = [(lab, dev_col[lab][0]) for lab, _ in pairs] if multi else [(k, c) for k, (c, _) in kind_col.items()]
    handles = [Line2D([], [], color=c, marker="s", ls="", label=k) for k, c in colour_keys]
    handles += [Line2D([], [], color="#555555", marker=STYLE["phase_markers"].get(ph, "s"), ls="", label=ph)
                for ph in phases]
    handles += [Line2D([], [], color="#333333", ls="-", label="datasheet peak / bandwidth"),
                Line2D([], [], color="#333333", ls=":", label="attainable (engine: x efficiency)")]
    if not multi:
        handles += [Line2D([], [], color="#333333", ls=(0, (4, 2)), label="vector peak"),
                    Line2D([], [], color="#333333", ls="--", lw=0.7, label="other memory levels")]
    legend_outside(ax, handles, [h.get_label() for h in handles], title="marker area = share of phase time")
    if skipped:
        ax.text(0.01, 0.99, f"{skipped} op(s) without FLOPs or traffic not shown", transform=ax.transAxes,
                ha="left", va="top", fontsize=7, color="#555555")
    place_labels(ax, labels)
    return fig


# ---------------------------------------------------------------------------- compare
def _metric_values(pairs, metric):
    _, unit, f = display(metric)
    return np.array([float(r.summary.get(metric, np.nan)) * f for _, r in pairs]), unit


@styled
def compare(results, metrics=COMPARE_METRICS, *, kind: str = "auto", title: str | None = None):
    """Devices side by side for one workload (or several): one bar panel per metric.

    ``results``: evaluate() results for several devices (and optionally several workloads
    or scenarios). ``kind``: ``"bars"`` (grouped bars, one colour per device, groups =
    workload/scenario), ``"heatmap"`` (rows = device x workload, columns = metrics, colour
    = how many times worse than the best in that column, raw values printed), or
    ``"auto"`` (heat map above 12 device-workload pairs). A hatched bar marks a device the
    model does not fit (see min_devices); "n/a" a metric the spec cannot give (cost
    without a price); whiskers the validated error band (p10-p90 of out-of-sample errors,
    ``data/error-bands.yaml``) where there is one.
    """
    pairs = labelled(results)
    if kind not in ("auto", "bars", "heatmap"):
        raise CodesignError(f"expected kind auto, bars or heatmap, got {kind!r}", field="kind")
    metrics = list(metrics)
    if not metrics:
        raise CodesignError("no metric to compare", field="metrics")
    if kind == "heatmap" or (kind == "auto" and len(pairs) > 12):
        return _compare_heatmap(pairs, metrics, title)
    devices = list(dict.fromkeys(r.hardware.title for _, r in pairs))
    groups = list(dict.fromkeys(scenario_text(r) for _, r in pairs))
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = new_figure(nrows, ncols, height=2.9 * nrows + 0.8)
    col = colours(devices)
    width = 0.8 / len(devices)
    crowded = len(devices) * len(groups) > 4          # value labels turn upright between narrow bars
    banded = False
    for i, metric in enumerate(metrics):
        ax = axes.flat[i]
        vals, unit = _metric_values(pairs, metric)
        name, unit, f = display(metric)
        for j, (_, r) in enumerate(pairs):
            x = groups.index(scenario_text(r)) + (devices.index(r.hardware.title) - (len(devices) - 1) / 2) * width
            fits = bool(r.summary.get("fits", True))
            v = vals[j]
            if not np.isfinite(v):
                ax.annotate("n/a", (x, 0), xytext=(0, 2), textcoords="offset points", ha="center",
                            va="bottom", fontsize=7, color="#555555")
                continue
            ax.bar(x, v, width * 0.92, color=col[r.hardware.title][0], hatch="" if fits else "///",
                   edgecolor="white" if fits else "#333333", linewidth=0.5, alpha=1.0 if fits else 0.55)
            top = v
            band = band_for(r.hardware.device_class, r.scenario.runtime, metric, float(r.summary.get(metric, np.nan)))
            if isinstance(band, dict):
                ax.errorbar(x, v, yerr=[[max(v - band["low"] * f, 0)], [max(band["high"] * f - v, 0)]],
                            fmt="none", ecolor="#333333", elinewidth=0.8, capsize=2)
                top = max(v, band["high"] * f)
                banded = True
            ax.annotate(num(v), (x, top), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                        fontsize=7, rotation=90 if crowded else 0)
        pos = vals[np.isfinite(vals) & (vals > 0)]
        if len(pos) > 1 and pos.max() / pos.min() > 20:     # an edge device beside a data-centre GPU
            ax.set_yscale("log")
            log_ticks(ax.yaxis)
        elif not len(pos):                                   # nothing but 'n/a': no negative axis
            ax.set_ylim(0, 1)
            ax.set_yticks([])
        arrow = "higher is better" if direction(metric) == "maximize" else "lower is better"
        ax.set_title(f"{name}\n({arrow})")
        ax.set_ylabel(unit)
        ax.margins(y=0.25 if crowded else 0.15)
        ax.set_xlim(-0.5, len(groups) - 0.5)       # keep room for devices without a value ("n/a")
        if len(groups) > 1:
            ax.set_xticks(range(len(groups)), [g.split(" · ")[0] + "\n" + " · ".join(g.split(" · ")[1:3])
                                               for g in groups], fontsize=7)
        else:
            ax.set_xticks([])
        ax.grid(axis="x", visible=False)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_axis_off()
    Line2D, Patch = mpl().lines.Line2D, mpl().patches.Patch
    handles: list = [Patch(facecolor=col[d][0], label=d) for d in devices]
    if not all(bool(r.summary.get("fits", True)) for _, r in pairs):
        handles.append(Patch(facecolor="#cccccc", hatch="///", edgecolor="#333333",
                             label="does not fit in one device's memory"))
    if banded:
        handles.append(Line2D([], [], color="#333333", marker="|", ms=9, ls="",
                              label="p10-p90 of out-of-sample errors\non published measurements of that\n"
                                    "device class and runtime"))
    fig.legend(handles=handles, loc="outside right upper", title="device")
    if any(not np.isfinite(float(r.summary.get(m, np.nan))) for m in metrics for _, r in pairs):
        fig.text(0.995, 0.005, "n/a: the spec lacks an input (cost per token needs the device price)",
                 ha="right", va="bottom", fontsize=7, color="#555555")
    what = common_scenario(pairs) if len(groups) == 1 else "several workloads"
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
        up = direction(m) == "maximize"
        best = col[fin].max() if up else col[fin].min()
        rel[fin, j] = best / col[fin] if up else col[fin] / best
    fig, axes = new_figure(1, 1, height=1.2 + 0.32 * len(rows))
    ax = axes[0, 0]
    cmap = mpl().colormaps[STYLE["sequential"]].reversed().with_extremes(bad="#eeeeee")
    vmax = np.nanmax(rel) if np.isfinite(rel).any() else 2.0
    im = ax.imshow(np.log10(np.where(np.isfinite(rel), rel, np.nan)), cmap=cmap, aspect="auto",
                   vmin=0, vmax=max(np.log10(vmax), 0.3))
    for i in range(len(rows)):
        for j, m in enumerate(metrics):
            txt = num(data[i, j] * display(m)[2])
            dark = np.isfinite(rel[i, j]) and np.log10(rel[i, j]) > 0.5 * max(np.log10(vmax), 0.3)
            ax.text(j, i, txt, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set_xticks(range(len(metrics)), [metric_label(m).replace(" (", "\n(") for m in metrics], fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.grid(False)
    cb = fig.colorbar(im, ax=ax, location="right", shrink=0.8)
    ticks = [t for t in (1, 1.5, 2, 3, 5, 10, 20, 50, 100) if np.log10(t) <= max(np.log10(vmax), 0.3)]
    cb.set_ticks(np.log10(ticks), labels=[f"{t:g}x" for t in ticks])
    cb.set_label("x worse than the column's best")
    ax.set_title(title or f"Hardware comparison: {common_scenario(pairs)}\n(cells: value in the column's unit; "
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


def _phase_rows(pairs) -> tuple[list, list, list, set]:
    """[(label, {phase: ops})], kinds and binding resources in a fixed order, main levels."""
    mains = {r.hardware.main_memory().name for _, r in pairs}
    rows = []
    for lab, r in pairs:
        per = {}
        for ph in ("prefill", "decode"):
            sub = r.ops[r.ops["phase"] == ph]
            if len(sub):
                if len(mains) > 1:      # devices name their main memory differently: one colour for it
                    main = f"memory:{r.hardware.main_memory().name}"
                    sub = sub.assign(bound=sub["bound"].where(sub["bound"] != main, "memory:main"))
                per[ph] = sub
        if per:
            rows.append((lab, per))
    if not rows:
        raise CodesignError("nothing to break down: the results have no operators")
    kinds: list = []
    bounds: list = []
    for _, per in rows:
        for sub in per.values():
            kinds += [k for k in sub["kind"].unique() if k not in kinds]
            bounds += [b for b in sub["bound"].unique() if b not in bounds]
    kinds = [k for k in ALL_KINDS if k in kinds] + [k for k in kinds if k not in ALL_KINDS]
    bounds = sorted(bounds, key=lambda b: (BOUND_ORDER.index(_bound_group(b)) if _bound_group(b) in BOUND_ORDER
                                           else len(BOUND_ORDER), b))
    return rows, kinds, bounds, mains


@styled
def breakdown(results, *, normalize: bool = False, title: str | None = None):
    """Where the time goes: one row of panels per device, one panel per phase, two stacked
    horizontal bars per panel (by operator kind, by binding resource).

    The prefill panel is one prefill pass (its sum is TTFT for a single pipeline stage),
    the decode panel one mean decode step (TPOT). The x axis is milliseconds, each panel on
    its own scale so that a 20x slower device stays readable; segments wide enough carry
    their share of the phase in %, the total is printed at the bar's end. ``normalize``:
    shares of the phase time (%) on the axis instead. The binding resource of an operator
    is the term that sets its modelled time (compute, a memory level, the device link,
    transcendentals, dequantisation, or the fixed per-kernel overhead).
    """
    Patch = mpl().patches.Patch
    pairs = labelled(results)
    rows, kinds, bounds, mains = _phase_rows(pairs)
    phases = [ph for ph in ("prefill", "decode") if any(ph in per for _, per in rows)]
    fig, axes = new_figure(len(rows), len(phases), height=max(2.6, 1.15 * len(rows) + 1.1))
    cols = {"kind": colours(kinds), "bound": _bound_colours(bounds, {f"memory:{m}" for m in mains})}
    for i, (lab, per) in enumerate(rows):
        for j, ph in enumerate(phases):
            ax = axes[i, j]
            sub = per.get(ph)
            if sub is None:
                ax.set_axis_off()
                continue
            tot = float(sub["total_s"].sum())
            scale = 100 / tot if normalize else 1e3          # % of the phase, or ms
            for y, by in enumerate(("kind", "bound")):
                left = 0.0
                for c, v in sub.groupby(by)["total_s"].sum().reindex(kinds if by == "kind" else bounds).items():
                    if not v > 0:
                        continue
                    colour, hatch = cols[by][c]
                    ax.barh(y, v * scale, 0.7, left=left, color=colour, hatch=hatch, edgecolor="white", linewidth=0.5)
                    if v / tot >= 0.09:                     # room for '12%' inside the segment
                        ax.text(left + v * scale / 2, y, f"{100 * v / tot:.0f}%", ha="center", va="center",
                                fontsize=6.5, color=text_colour(colour))
                    left += v * scale
                ax.annotate(format_quantity(tot, "time"), (left, y), xytext=(3, 0), textcoords="offset points",
                            ha="left", va="center", fontsize=7)
            ax.set_xlim(0, (100 if normalize else tot * 1e3) * 1.2)      # room for the total
            ax.set_ylim(1.6, -0.6)
            ax.set_yticks([0, 1], ["by kind", "by resource"] if j == 0 else ["", ""], fontsize=7)
            ax.grid(axis="y", visible=False)
            ax.tick_params(axis="x", labelsize=7)
            # no tick at the right end, where it would touch the next panel's '0'
            ax.xaxis.set_major_locator(mpl().ticker.MaxNLocator(nbins=5, prune="upper"))
            if not normalize:       # ms on the axis, read with a prefix that fits: '500 ms', '40 s'
                ax.xaxis.set_major_formatter(mpl().ticker.FuncFormatter(
                    lambda v, _: format_si(v * 1e-3, "s") if v else "0"))
            if j == 0:
                ax.set_ylabel(textwrap.fill(lab, 22), fontsize=8, rotation=0, ha="right", va="center")
            if i == 0:
                ax.set_title("Prefill pass (sum = TTFT)" if ph == "prefill" else "One decode step (mean = TPOT)")
            if i == len(rows) - 1:
                ax.set_xlabel("Share of phase time (%)" if normalize else "Time per pass or step")
    handles = [Patch(visible=False, label="operator kind")]
    handles += [Patch(facecolor=cols["kind"][k][0], hatch=cols["kind"][k][1], label=k) for k in kinds]
    handles += [Patch(visible=False, label=" "), Patch(visible=False, label="binding resource")]
    handles += [Patch(facecolor=cols["bound"][b][0], hatch=cols["bound"][b][1], label=b) for b in bounds]
    leg = fig.legend(handles=handles, loc="outside right upper")
    for t in leg.get_texts():
        if t.get_text() in ("operator kind", "binding resource"):
            t.set_fontweight("bold")
    fig.suptitle(title or f"Latency breakdown: {common_scenario(pairs)}")
    return fig


# ---------------------------------------------------------------------------- sweeps
@styled
def sweep(results, *, over: str = "batch", title: str | None = None):
    """Sweeps, one line per device.

    ``over="batch"``: throughput (generated tokens/s) against time per output token as the
    batch grows, points labelled with the batch size: the latency-throughput trade-off.
    ``over="context"``: time per output token against prompt length (log2 axis).
    Hollow markers: the model and KV cache do not fit in one device at that point.
    """
    if over not in ("batch", "context"):
        raise CodesignError(f"expected over='batch' or 'context', got {over!r}", field="over")
    pairs = labelled(results)
    by_dev: dict[str, list] = {}
    for _, r in pairs:
        by_dev.setdefault(r.hardware.title, []).append(r)
    col = colours(list(by_dev))
    fig, axes = new_figure(1, 1, height=4.8)
    ax = axes[0, 0]
    any_unfit = False
    labels: list = []
    for dev, rs in by_dev.items():
        rs = sorted(rs, key=(lambda r: r.scenario.batch) if over == "batch" else (lambda r: r.scenario.prompt))
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
            labels += [(f"b{r.scenario.batch}", [((xi, yi), off, ha, va) for off, ha, va in (
                ((3, 3), "left", "bottom"), ((-3, 3), "right", "bottom"), ((3, -3), "left", "top"),
                ((-3, -3), "right", "top"))], {"color": c}) for xi, yi, r in zip(x, y, rs)]
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
    log_ticks(ax.yaxis)
    if over == "batch":
        log_ticks(ax.xaxis)
    else:
        ctx = sorted({r.scenario.prompt for _, r in pairs})
        ax.set_xticks(ctx, [str(c) for c in ctx])
        ax.xaxis.set_minor_locator(mpl().ticker.NullLocator())
    handles, hl = ax.get_legend_handles_labels()
    if any_unfit:
        Line2D = mpl().lines.Line2D
        handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="white", markeredgecolor="#333333"))
        hl.append("does not fit in one device")
    legend_outside(ax, handles, hl, title="device")
    first = pairs[0][1]
    fixed = (f"{first.model.name} · prompt {first.scenario.prompt} · generate {first.scenario.generate}"
             if over == "batch" else f"{first.model.name} · batch {first.scenario.batch} · generate "
             f"{first.scenario.generate}")
    comp = scenario_text(first).split(" · ")[5:]       # compression and parallelism, if any
    ax.set_title(title or f"{what}\n{fixed} · {first.scenario.dtype}" + "".join(f" · {c}" for c in comp))
    if labels:
        place_labels(ax, labels, fontsize=6.5)
    return fig
