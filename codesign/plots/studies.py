"""Figures of an optimisation study, from a trials table or an ``optuna.Study`` (see
:mod:`codesign.search.trials` for the tables it reads and the analysis behind them): the
Pareto front with reference devices, the optimisation history, parameter importance and
parallel coordinates."""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from ..errors import CodesignError
from ..metrics import bare, display
from ..search.trials import as_trials, categorical_params, category_labels, numeric_column, param_importance
from ..units import format_si
from .style import (
    STYLE,
    colours,
    legend_outside,
    log_ticks,
    metric_label,
    mpl,
    new_figure,
    num,
    param_label,
    place_labels,
    styled,
)

NOT_SAMPLED = -0.1     # parallel-coordinates position of a conditional parameter that was not sampled


def _references(references):
    """{label: {metric: SI value}} from a mapping or a DataFrame indexed by label."""
    if references is None:
        return {}
    if hasattr(references, "iterrows"):
        return {str(i): dict(row) for i, row in references.iterrows()}
    return {str(k): dict(v) for k, v in references.items()}


def _only_if(label: str, mask) -> str:
    """A legend label only for data that is there (matplotlib skips labels starting '_')."""
    return label if np.any(mask) else "_nolegend_"


def _arrow(direction: str) -> str:
    return " ↑" if direction.startswith("max") else " ↓"


def _maybe_log(ax, axis, v):
    v = v[np.isfinite(v)]
    if len(v) and (v > 0).all() and v.max() / v.min() > 100:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def _view(front: np.ndarray, feasible: np.ndarray) -> tuple[float, float, bool]:
    """(low, high, log) of one axis zoomed on the front: its range plus 35 % each side (in
    log space when the front spans more than 30x), or +-25 % around a single value, never
    wider than the feasible trials. Dominated trials far from the front are left out of
    view (counted in the panel), so the front does not shrink into a corner."""
    f = front[np.isfinite(front)]
    feas = feasible[np.isfinite(feasible)]
    if not len(f):
        f = feas if len(feas) else np.array([0.0, 1.0])
    lo, hi = float(f.min()), float(f.max())
    log = lo > 0 and hi / lo > 30
    if log:
        pad = 0.35 * (math.log10(hi) - math.log10(lo))
        lo, hi = lo / 10 ** pad, hi * 10 ** pad
    elif hi > lo:
        lo, hi = lo - 0.35 * (hi - lo), hi + 0.35 * (hi - lo)
    else:
        d = abs(lo) * 0.25 or 1.0
        lo, hi = lo - d, hi + d
    if len(feas):           # no blank margin beyond the last feasible trial
        lo = max(lo, float(feas.min()) - 0.02 * (hi - lo)) if not log else max(lo, float(feas.min()) / 1.05)
        hi = min(hi, float(feas.max()) + 0.02 * (hi - lo)) if not log else min(hi, float(feas.max()) * 1.05)
    if lo > 0 and not log and hi / lo > 100:
        log = True
    return lo, hi, log


def _edge(v: float, lo: float, hi: float, log: bool, inset: float = 0.02) -> tuple[float, int]:
    """(value clipped ``inset`` of the axis inside [lo, hi], -1 below / 0 inside / +1 above)."""
    if lo <= v <= hi:
        return v, 0
    if log and lo > 0:
        span = math.log10(hi / lo)
        return (lo * 10 ** (inset * span), -1) if v < lo else (hi / 10 ** (inset * span), 1)
    span = hi - lo
    return (lo + inset * span, -1) if v < lo else (hi - inset * span, 1)


@styled
def pareto(trials, objectives=None, *, directions=None, references=None, title: str | None = None):
    """Pareto front of a study: one scatter for two objectives, every pair for three or more.

    Grey dots: feasible trials; crosses: infeasible trials (a constraint > 0); coloured:
    the feasible non-dominated designs over *all* objectives, each distinct design once
    (the count in the title is the one ``codesign study`` prints; connected in a
    2-objective plot). Each panel is zoomed on the front; trials out of view are counted
    in the corner. Large labelled markers: ``references`` ({label: {metric: SI value}}),
    e.g. the study's base device (star) and real devices (diamonds) evaluated on the same
    workload; a reference beyond the view sits on the edge as a triangle pointing its way,
    with its values in the label.
    """
    t = as_trials(trials, objectives, directions)
    k = len(t.names)
    if k < 2:
        raise CodesignError("a Pareto front needs at least two objectives", field="objectives")
    refs = _references(references)
    pairs = list(combinations(range(k), 2))
    ncols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig, axes = new_figure(nrows, ncols, height=(3.6 if ncols > 1 else 4.6) * nrows + 1.1)
    ref_col = colours(["__front__"] + list(refs))
    front_c = STYLE["palette"][0]
    distinct = t.distinct_front
    to_place = []                     # (axes, labels), placed once the figure is laid out (below)
    for n, (i, j) in enumerate(pairs):
        ax = axes.flat[n]
        x, y = t.scaled(i), t.scaled(j)
        feas = t.feasible
        ax.scatter(x[~feas], y[~feas], marker="x", s=12, color=STYLE["muted"], alpha=0.6, linewidths=0.8,
                   label=_only_if("infeasible trial", ~feas))
        ax.scatter(x[feas & ~t.front], y[feas & ~t.front], s=10, color=STYLE["muted"], alpha=0.7,
                   label=_only_if("feasible trial", feas & ~t.front))
        ax.scatter(x[distinct], y[distinct], s=26, color=front_c, edgecolors="white", linewidths=0.4, zorder=3,
                   label=_only_if("Pareto-optimal (feasible)", distinct))
        if k == 2 and distinct.any():
            o = np.argsort(x[distinct])
            ax.plot(x[distinct][o], y[distinct][o], color=front_c, lw=1.0, drawstyle="steps-post", zorder=2)
        (xlo, xhi, xlog), (ylo, yhi, ylog) = _view(x[distinct], x[feas]), _view(y[distinct], y[feas])
        if xlog:
            ax.set_xscale("log")
        if ylog:
            ax.set_yscale("log")
        ax.set_xlim(xlo, xhi)
        ax.set_ylim(ylo, yhi)
        for on, axis in ((xlog, ax.xaxis), (ylog, ax.yaxis)):
            if on:
                log_ticks(axis)
        hidden = int(np.sum(np.isfinite(x) & np.isfinite(y) & ((x < xlo) | (x > xhi) | (y < ylo) | (y > yhi))))
        labels: list = []
        corners: dict = {}                # edge markers already in each corner
        if hidden:                        # in the emptiest corner
            labels.append((f"{hidden} trial(s) beyond the view", [((cx, cy), (0, 0), ha, va) for cx, cy, ha, va in (
                (0.99, 0.99, "right", "top"), (0.01, 0.01, "left", "bottom"), (0.99, 0.01, "right", "bottom"),
                (0.01, 0.99, "left", "top"))], {"xycoords": "axes fraction", "color": "#555555"}))
        _, ux, fx = display(t.names[i])
        _, uy, fy = display(t.names[j])
        for r, (lab, vals) in enumerate(refs.items()):
            if t.names[i] not in vals or t.names[j] not in vals:
                continue
            rx, ry = float(vals[t.names[i]]) * fx, float(vals[t.names[j]]) * fy
            if not (np.isfinite(rx) and np.isfinite(ry)):
                continue
            (cx, sx), (cy, sy) = _edge(rx, xlo, xhi, xlog), _edge(ry, ylo, yhi, ylog)
            if sx and sy:                 # several references beyond the same corner: stack them along it
                k = corners[sx, sy] = corners.get((sx, sy), -1) + 1
                cy = _edge(ry, ylo, yhi, ylog, 0.02 + 0.06 * k)[0]
            c = ref_col[lab][0]
            if sx or sy:                  # beyond the view: an edge marker pointing its way
                marker = {1: ">", -1: "<"}[sx] if sx else {1: "^", -1: "v"}[sy]
                ax.scatter([cx], [cy], marker=marker, s=70, color=c, edgecolors="black", linewidths=0.6, zorder=4,
                           label=f"{lab} (beyond the view)", clip_on=False)
                text = f"{lab}: {num(rx)} {ux}, {num(ry)} {uy}"
            else:
                ax.scatter([cx], [cy], marker="*" if r == 0 else "D", s=140 if r == 0 else 50, color=c,
                           edgecolors="black", linewidths=0.6, zorder=4, label=lab)
                text = lab
            labels.append((text, [((cx, cy), off, ha, va) for off, ha, va in (
                ((7, 4), "left", "bottom"), ((7, -4), "left", "top"), ((-7, 4), "right", "bottom"),
                ((-7, -4), "right", "top"), ((0, 9), "center", "bottom"), ((0, -9), "center", "top"),
                ((10, 16), "left", "bottom"), ((-10, -16), "right", "top"), ((10, -16), "left", "top"),
                ((-10, 16), "right", "bottom"))], {}))
        ax.set_xlabel(metric_label(t.names[i]) + _arrow(t.directions[i]))
        ax.set_ylabel(metric_label(t.names[j]) + _arrow(t.directions[j]))
        to_place.append((ax, labels))
    for ax in list(axes.flat)[len(pairs):]:
        ax.set_axis_off()
    seen: dict = {}
    for ax in list(axes.flat)[:len(pairs)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncols=min(len(seen), 4))
    fig.suptitle(title or f"Pareto front: {int(distinct.sum())} distinct designs of {len(t.df)} trials "
                          f"({int(t.feasible.sum())} feasible)")
    for ax, labels in to_place:
        if labels:
            place_labels(ax, labels)
    return fig


@styled
def history(trials, objectives=None, *, directions=None, title: str | None = None):
    """Optimisation history: every trial's objective value by trial number and the best so far
    (among feasible trials, for each objective on its own), one panel per objective."""
    t = as_trials(trials, objectives, directions)
    k = len(t.names)
    fig, axes = new_figure(k, 1, height=2.5 * k + 0.7, sharex=True)
    number = t.df["number"].to_numpy(float)
    order = np.argsort(number, kind="stable")
    for i in range(k):
        ax = axes[i, 0]
        v = t.scaled(i)
        feas = t.feasible
        ax.scatter(number[feas], v[feas], s=10, color=STYLE["palette"][0], alpha=0.7,
                   label=_only_if("feasible trial", feas))
        ax.scatter(number[~feas], v[~feas], s=12, marker="x", color=STYLE["muted"], linewidths=0.8,
                   label=_only_if("infeasible trial", ~feas))
        vv = np.where(feas, v, np.nan)[order]
        best = np.fmax.accumulate(vv) if t.directions[i].startswith("max") else np.fmin.accumulate(vv)
        ax.plot(number[order], best, color=STYLE["palette"][3], lw=1.4, drawstyle="steps-post", label="best so far")
        _maybe_log(ax, "y", v)
        ax.set_ylabel(metric_label(t.names[i]) + _arrow(t.directions[i]))
        legend_outside(ax)
    axes[-1, 0].set_xlabel("Trial number (count)")
    fig.suptitle(title or f"Optimisation history ({len(t.df)} completed trials)")
    return fig


@styled
def importance(trials, objectives=None, *, directions=None, title: str | None = None):
    """Parameter importance per objective (horizontal bars); the method is in the title."""
    imp, method = param_importance(trials, objectives, directions=directions)
    params = sorted({p for d in imp.values() for p in d}, key=lambda p: -max(d.get(p, 0) for d in imp.values()))
    if not params:
        raise CodesignError("the trials have no parameters (params_* columns)")
    objs = list(imp)
    categorical = categorical_params(trials)
    col = colours(objs)
    fig, axes = new_figure(1, 1, height=1.2 + 0.32 * len(params) * max(1, len(objs) / 2))
    ax = axes[0, 0]
    h = 0.8 / len(objs)
    for j, o in enumerate(objs):
        ys = np.arange(len(params)) + (j - (len(objs) - 1) / 2) * h
        ax.barh(ys, [imp[o].get(p, 0.0) for p in params], h * 0.9, color=col[o][0], label=metric_label(o))
    ax.set_yticks(range(len(params)), [param_label(p, p not in categorical) for p in params])
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("Importance (share of variance, sums to 1)" if not method.startswith("|Spearman")
                  else "|Spearman ρ| with the objective (0 to 1, unitless)")
    legend_outside(ax, title="objective")
    ax.set_title(title or f"Parameter importance: {method}")
    return fig


def _axis_positions(t, c) -> tuple[np.ndarray, list]:
    """Positions (0..1, NOT_SAMPLED for gaps) of every trial on the parallel axis of column
    ``c``, and that axis's (text, position) ticks."""
    raw = t.df[c]
    is_num, v = numeric_column(raw)
    if is_num:
        f = display(bare(c))[2] if c in t.columns else 1.0
        v = np.where(np.isfinite(v), v * f, np.nan)       # invalid designs carry +-inf objectives
        if np.isnan(v).all():
            v = np.zeros_like(v)
        lo, hi = np.nanmin(v), np.nanmax(v)
        logs = lo > 0 and hi / lo > 100
        tv = np.log10(v) if logs else v
        tlo, thi = (np.log10(lo), np.log10(hi)) if logs else (lo, hi)
        pos = np.where(np.isfinite(v), (tv - tlo) / (thi - tlo) if thi > tlo else 0.5, NOT_SAMPLED)
        show = num if c in t.columns else format_si         # objectives are already in their display unit
        gap = "(no value)" if c in t.columns else "(not sampled)"
        return pos, [(show(lo), 0.0), (show(hi), 1.0)] + ([(gap, NOT_SAMPLED)] if np.isnan(v).any() else [])
    labels = category_labels(raw)
    levels = sorted(set(labels) - {"(not sampled)"})
    where = {lv: i / max(len(levels) - 1, 1) for i, lv in enumerate(levels)}
    where["(not sampled)"] = NOT_SAMPLED
    shown = levels if len(levels) <= 8 else [levels[0], levels[-1]]
    return labels.map(where).to_numpy(float), ([(lv, where[lv]) for lv in shown]
                                               + ([("(not sampled)", NOT_SAMPLED)] if "(not sampled)" in set(labels)
                                                  else []))


@styled
def parallel_coordinates(trials, objectives=None, *, directions=None, params=None, title: str | None = None):
    """One line per completed trial across the parameter axes and the objective axes.

    Each axis is scaled to its own range (log when the range spans > 100x, categoricals as
    evenly spaced levels), with its minimum and maximum printed. Colour: the first
    objective (colour bar with its unit); thick lines: Pareto-optimal trials; grey dashed:
    infeasible trials.
    """
    LineCollection = mpl().collections.LineCollection
    t = as_trials(trials, objectives, directions)
    pcols = list(params) if params else t.params
    pcols = [next((c for c in (p, f"params_{p}", f"params.{p}") if c in t.df.columns), p) for p in pcols]
    for p in pcols:
        if p not in t.df.columns:
            raise CodesignError(f"no parameter column {p!r} (have {', '.join(t.params) or 'none'})", field="params")
    axes_cols = pcols + t.columns
    names = [param_label(p, numeric_column(t.df[p])[0]) for p in pcols] + [metric_label(n) for n in t.names]
    n = len(t.df)
    norm = np.zeros((n, len(axes_cols)))
    ticks = []
    for a, c in enumerate(axes_cols):
        norm[:, a], tk = _axis_positions(t, c)
        ticks.append(tk)
    fig, axes = new_figure(1, 1, height=4.6)
    ax = axes[0, 0]
    xs = np.arange(len(axes_cols))
    c0 = t.scaled(0)
    m = mpl()
    cmap = m.colormaps[STYLE["sequential"]]
    fin = c0[np.isfinite(c0)]
    cnorm = m.colors.Normalize(*(fin.min(), fin.max()) if len(fin) else (0, 1))
    segs = [np.column_stack([xs, norm[r]]) for r in range(n)]
    feas, front = t.feasible, t.front
    base = feas & ~front
    ax.add_collection(LineCollection([s for s, b in zip(segs, base) if b], colors=cmap(cnorm(c0[base])),
                                     linewidths=0.6, alpha=0.5))
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
    fig.colorbar(m.cm.ScalarMappable(norm=cnorm, cmap=cmap), ax=ax, location="right", shrink=0.8,
                 label=metric_label(t.names[0]))
    ax.set_title(title or f"Parallel coordinates: {n} trials (thick: {int(front.sum())} Pareto-optimal, "
                          f"dashed: {int((~feas).sum())} infeasible)")
    return fig
