"""Figures of served traffic (``codesign.serve``): latency distributions and the engine's
state over time for one run, tail latency and goodput against offered load."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import CodesignError
from .style import STYLE, colours, legend_outside, log_ticks, metric_label, new_figure, styled


def _cdf(ax, x, colour, label):
    x = np.sort(np.asarray(x, float)[np.isfinite(x)])
    if len(x):
        ax.plot(x, np.arange(1, len(x) + 1) / len(x), color=colour, lw=1.4, label=label)


@styled
def serve_run(results: dict, *, slo_ttft: float | None = None, slo_tpot: float | None = None,
              title: str | None = None):
    """Served traffic, one colour per run (``{label: codesign.serve.ServeResult}``): CDFs of
    TTFT and time per output token (SLOs as dashed lines), and over time the decode batch
    and the share of the KV cache in use (first engine of each run)."""
    if not results:
        raise CodesignError("no serving results to plot", field="results")
    col = colours(list(results))
    fig, axes = new_figure(2, 2, height=6.4)
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
        log_ticks(ax.xaxis)
        ax.set_ylabel("Share of requests")
        ax.set_ylim(0, 1.02)
    a_ttft.set_xlabel(metric_label("ttft_s"))
    a_tpot.set_xlabel(metric_label("tpot_s"))
    a_batch.set_xlabel("Time (s)")
    a_batch.set_ylabel("Decode batch (sequences)")
    a_kv.set_xlabel("Time (s)")
    a_kv.set_ylabel("KV cache in use (%)")
    a_kv.set_ylim(0, 102)
    legend_outside(a_tpot)
    fig.suptitle(title or "Serving under traffic")
    return fig


@styled
def serve_rates(curves, *, slo_ttft: float | None = None, slo_tpot: float | None = None, percentile: float = 99,
                title: str | None = None):
    """Request rate against tail TTFT and TPOT and against goodput, one line per device.
    ``curves``: a DataFrame with columns label, rate, ttft_p{q}_s, tpot_p{q}_s, throughput_req_per_s
    (and goodput_req_per_s when SLOs are set)."""
    df = pd.DataFrame(curves)
    if df.empty:
        raise CodesignError("no rate points to plot", field="curves")
    q = f"p{percentile:g}"
    col = colours(list(dict.fromkeys(df.label)))
    fig, axes = new_figure(1, 3, height=3.8)
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
    legend_outside(a3)
    fig.suptitle(title or "Load against tail latency")
    return fig
