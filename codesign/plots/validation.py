"""Figures of the model against measurements: kernel-level validation (the kernel
runner's table) and end-to-end accuracy against published measurements."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CodesignError
from ..workload.ops import ALL_KINDS
from .style import STYLE, colours, eng_formatter, legend_outside, mpl, new_figure, save, styled

VALIDATION_COLUMNS = ("kernel", "kind", "predicted_s", "measured_s", "error_pct")


def _validation_rows(df) -> pd.DataFrame:
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
    return d


@styled
def validation(df, *, title: str | None = None):
    """Predicted against measured kernel time (log-log, y = x with ±10 % and ±25 % bands)
    and the signed error by kernel kind (box per kind, every kernel as a dot).

    ``df``: the kernel runner's table (kernel, kind, phase, predicted_s, measured_s,
    error_pct = 100 (predicted - measured) / measured). One colour per kind, distinct up
    to 17 kinds (the extended palette).
    """
    d = _validation_rows(df)
    kinds = list(dict.fromkeys(d["kind"].astype(str)))
    kinds = [k for k in ALL_KINDS if k in kinds] + [k for k in kinds if k not in ALL_KINDS]
    col = colours(kinds)
    fig, axes = new_figure(1, 2, height=4.8)
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
    ax.xaxis.set_major_formatter(eng_formatter("s"))
    ax.yaxis.set_major_formatter(eng_formatter("s"))
    Line2D = mpl().lines.Line2D
    handles, labels = ax.get_legend_handles_labels()
    uniq = {lab: h for h, lab in zip(handles, labels) if lab not in kinds}
    uniq.update({k: Line2D([], [], color=col[k][0], marker="s", ls="") for k in kinds})
    if len(phases.unique()) > 1:
        for ph in phases.unique():
            uniq[f"phase: {ph}"] = Line2D([], [], color="#555555", ls="", marker=STYLE["phase_markers"].get(ph, "s"))
    legend_outside(ax, list(uniq.values()), list(uniq))
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
    # one line per label: two-line labels rotated into each other once there are ~8 kinds
    bx.set_xticks(range(len(kinds)), [f"{k} (n={len(e)})" for k, e in zip(kinds, data)], fontsize=7, rotation=35,
                  ha="right", rotation_mode="anchor")
    bx.set_ylabel("Signed error, (predicted − measured) / measured (%)")
    bx.set_xlabel("Kernel kind")
    bx.set_title("Error by kernel kind (dashed ±10 %, dotted ±25 %)")
    ae = np.abs(err[np.isfinite(err)])
    fig.suptitle(title or f"Validation: {len(d)} kernels, MAPE {np.mean(ae):.1f} %, "
                          f"{np.mean(ae <= 10):.0%} within ±10 %, {np.mean(ae <= 25):.0%} within ±25 %")
    return fig


@styled
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
    col = colours(groups)
    fig, axes = new_figure(1, len(panels), height=4.6)
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
        legend_outside(ax)
    fig.suptitle(title or "codesign against published measurements (shaded: ±25 %)")
    return fig


def plot_accuracy(rows, path) -> Path:
    """Draw ``accuracy(rows)`` and save it (PNG/SVG/PDF by the suffix)."""
    return save(accuracy(rows), path)
