"""The one look of every figure: matplotlib setup, colours, labels, number formats, label
placement, saving, and a pixel-free fingerprint of what a figure shows.

matplotlib is imported on first use, in one place (:func:`mpl`), never when codesign is imported.
Every figure is built on a :class:`matplotlib.figure.Figure` with an Agg canvas attached
(no pyplot, no global backend switch), so plotting is headless, leaves the caller's
matplotlib state alone, and text sizes can be measured while a figure is being laid out.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..compression import describe
from ..errors import CodesignError
from ..metrics import METRICS, display
from ..units import format_number, format_rate, format_si

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
# after the eight Okabe-Ito colours: Paul Tol's "muted" scheme, ordered so that each next
# colour is far from those before it (wine, indigo, olive, brown, dark green, ...); scatter
# points cannot carry hatches, so 10+ categories (validation kernel kinds) need colours
EXTENDED = OKABE_ITO + ("#882255", "#332288", "#999933", "#661100", "#117733", "#6699CC", "#DDCC77", "#44AA99",
                        "#AA4499")
STYLE: MappingProxyType[str, Any] = MappingProxyType({
    "palette": OKABE_ITO,                 # categorical colours, in order of use
    "extended": EXTENDED,                 # when categories outnumber the palette
    "hatches": ("", "//", "..", "xx", "\\\\", "++"),   # when they outnumber even that (bars only)
    "muted": "#9A9A9A",                   # dominated / infeasible / background data
    "sequential": "cividis",              # perceptually uniform, colour-blind-safe colour map
    "phase_markers": MappingProxyType({"prefill": "o", "decode": "^"}),
    # one width for every figure: embedded at 100 % in the report, text has one size everywhere
    "width": 10.0,
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


# ---------------------------------------------------------------------------- figures
@functools.cache
def mpl():
    """matplotlib with the submodules codesign draws with, imported on first use: the one
    place codesign imports matplotlib. It takes ~0.3 s, so ``import codesign.plots`` (and
    the CLI that imports it) must not pay for it before a figure is asked for."""
    # lazy on purpose (see the docstring): matplotlib and the submodules the figures use
    import matplotlib
    import matplotlib.backends.backend_agg
    import matplotlib.collections
    import matplotlib.figure
    import matplotlib.lines
    import matplotlib.patches
    import matplotlib.patheffects
    import matplotlib.ticker
    return matplotlib


def new_figure(nrows=1, ncols=1, *, height=None, **kw):
    """A constrained-layout Figure of the common width and its axes array, under the shared style."""
    m = mpl()
    with m.rc_context(dict(STYLE["rc"])):
        fig = m.figure.Figure(figsize=(STYLE["width"], height or 3.2 * nrows + 0.6), dpi=STYLE["dpi"], layout="constrained")
        m.backends.backend_agg.FigureCanvasAgg(fig)     # a renderer to measure text with (fig.canvas.get_renderer())
        axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def styled(fn):
    """Run a plot builder under the shared rc settings (artists read them when created)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with mpl().rc_context(dict(STYLE["rc"])):
            return fn(*args, **kwargs)
    return wrapper


def legend_outside(ax, handles=None, labels=None, title=None, **kw):
    """Legend to the right of the axes, so it never hides data."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    return ax.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                     borderaxespad=0.0, **kw)


def colours(keys) -> dict:
    """key -> (colour, hatch): Okabe-Ito for up to 8 keys, the extended palette for up to
    17, then the extended palette again with hatches (bars only)."""
    keys = list(keys)
    pal = STYLE["palette"] if len(keys) <= len(STYLE["palette"]) else STYLE["extended"]
    hat = STYLE["hatches"]
    return {k: (pal[i % len(pal)], hat[(i // len(pal)) % len(hat)]) for i, k in enumerate(keys)}


def text_colour(background: str) -> str:
    """Black or white, whichever reads better on ``background`` (relative luminance)."""
    r, g, b = mpl().colors.to_rgb(background)
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"


# ---------------------------------------------------------------------------- labels
def metric_label(name: str) -> str:
    """Axis label with unit for a metric name ('tpot_s' -> 'Time per output token (ms)')."""
    title, unit, _ = display(name)
    return f"{title} ({unit})"


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


def num(v: float | None) -> str:
    """A value already in its display unit, 3 significant digits ('4,100', '7.28', 'n/a')."""
    if v is None or not np.isfinite(v):
        return "n/a"
    return format_number(float(v), 3)


def peak_text(value: float, dtypes: Sequence[str]) -> str:
    """'bf16/fp16 989 TFLOP/s'; integer datatypes count operations ('int8 1.98 POP/s')."""
    integer = all(d.startswith(("int", "uint")) for d in dtypes)
    return f"{'/'.join(dtypes)} {format_rate(value, integer)}"


def eng_formatter(unit=""):
    return mpl().ticker.EngFormatter(unit=unit, places=None, sep=" ")


def tick_text(v: float) -> str:
    """A tick label: plain from 0.001 to 999 ('0.1', '250'), an SI prefix beyond ('10 k'),
    so that a unitless axis never reads '100 m'."""
    return format_number(v, 3) if 1e-3 <= abs(v) < 1e3 or v == 0 else format_si(v)


def log_ticks(axis):
    """Plain-number labels on a log axis ('2', '5', '10 k'), minor ones too when the axis
    spans less than ~1.5 decades (else matplotlib's mixed 2x10^0 labels appear)."""
    ticker = mpl().ticker
    FuncFormatter, NullFormatter = ticker.FuncFormatter, ticker.NullFormatter
    axis.set_major_formatter(FuncFormatter(lambda v, _: tick_text(v)))
    lo, hi = axis.get_view_interval()
    if lo > 0 and hi / lo < 30:
        axis.set_minor_formatter(FuncFormatter(lambda v, _: tick_text(v) if f"{v:.0e}"[0] in "235" else ""))
    else:
        axis.set_minor_formatter(NullFormatter())


# ---------------------------------------------------------------------------- results
def labelled(results) -> list[tuple[str, Any]]:
    """(label, Result) pairs from a Result, a list of them, or a {label: Result} mapping;
    default labels are the device titles, plus the scenario where a device repeats."""
    if hasattr(results, "summary") and hasattr(results, "ops"):
        results = [results]
    pairs = list(results.items()) if isinstance(results, dict) else [(None, r) for r in results]
    if not pairs:
        raise CodesignError("nothing to plot: no results given")
    for _, r in pairs:
        if not (hasattr(r, "summary") and hasattr(r, "hardware")):
            raise CodesignError(f"expected evaluate() results, got {type(r).__name__}")
    titles = [r.hardware.title for _, r in pairs]
    return [(lab if lab is not None else (f"{t} · {scenario_text(r)}" if titles.count(t) > 1 else t), r)
            for (lab, r), t in zip(pairs, titles)]


def scenario_text(result) -> str:
    """'llama-3.2-1b · batch 4 · prompt 256 · generate 64 · bf16 [· W4 g128] [· tp 2]'."""
    sc = result.scenario
    parts = [result.model.name, f"batch {sc.batch}", f"prompt {sc.prompt}", f"generate {sc.generate}", sc.dtype]
    par = [f"{k} {getattr(sc, k)}" for k in ("tp", "pp", "dp", "ep") if getattr(sc, k) > 1]
    comp = describe(result.compression)
    return " · ".join(parts + par + ([comp] if comp else []))


def common_scenario(pairs) -> str:
    """The scenario text all (label, Result) pairs share, or 'several scenarios'."""
    texts = {scenario_text(r) for _, r in pairs}
    return texts.pop() if len(texts) == 1 else "several scenarios"


# ---------------------------------------------------------------------------- label placement
def _overlap(box, boxes: np.ndarray, pad: float = 1.0) -> float:
    """Total overlap area of a display-space box (x0, y0, x1, y1) with ``boxes`` (n x 4),
    each grown by ``pad`` pixels."""
    if not len(boxes):
        return 0.0
    w = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + 2 * pad
    h = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + 2 * pad
    return float(np.sum(np.clip(w, 0, None) * np.clip(h, 0, None)))


def point_boxes(ax) -> np.ndarray:
    """Display-space boxes (n x 4) of every scatter point of ``ax`` (obstacles for labels)."""
    boxes = [np.zeros((0, 4))]
    for c in ax.collections:
        if type(c).__name__ != "PathCollection" or not len(c.get_offsets()):
            continue
        xy = c.get_offset_transform().transform(np.asarray(c.get_offsets(), float))
        area = np.asarray(c.get_sizes(), float) if len(c.get_sizes()) else np.array([20.0])
        r = np.broadcast_to(np.sqrt(area) * ax.figure.dpi / 72.0 / 2, (len(xy),))   # sqrt(area in pt^2) = diameter
        ok = np.isfinite(xy).all(1)
        boxes.append(np.column_stack([xy[ok, 0] - r[ok], xy[ok, 1] - r[ok], xy[ok, 0] + r[ok], xy[ok, 1] + r[ok]]))
    return np.concatenate(boxes)


def line_boxes(ax, step: float = 6.0) -> np.ndarray:
    """Zero-size display-space boxes every ``step`` pixels along every line of ``ax`` (a
    label crossing a line pays a little for each, so it prefers clear space but never
    loses to a point or another label)."""
    pts = [np.zeros((0, 2))]
    for ln in ax.lines:
        xy = ax.transData.transform(np.asarray(ln.get_xydata(), float))
        xy = xy[np.isfinite(xy).all(1)]
        if len(xy) == 1:
            pts.append(xy)
        for a, b in zip(xy[:-1], xy[1:]):
            n = max(int(np.hypot(*(b - a)) / step), 1)
            pts.append(a + np.outer(np.arange(n) / n, b - a))
    xy = np.concatenate(pts)
    return np.column_stack([xy, xy])


def place_labels(ax, labels, *, fontsize: float = 7, **text_kw) -> list:
    """Annotate ``ax`` with labels that avoid each other, the scatter points of ``ax``, its
    lines (less strictly) and its edges.

    ``labels``: (text, candidates, kwargs) per label, where candidates are (xy in data
    coordinates, (dx, dy) offset in points, ha, va) in order of preference; each label takes
    the first candidate that collides with nothing, else the one with the least overlap.
    Text has a white halo, so a line under it does not hide it. Call this last, once
    limits, titles and legends are set: the layout is computed here to measure the text,
    and labels are kept out of the layout so that they do not move it afterwards.
    """
    patheffects = mpl().patheffects
    fig = ax.figure
    fig.draw_without_rendering()                     # constrained layout: final axes positions
    renderer = fig.canvas.get_renderer()
    e = ax.get_window_extent(renderer)
    frame = (e.x0, e.y0, e.x1, e.y1)
    hard = [point_boxes(ax)]                         # measured after the layout, like the text
    soft = line_boxes(ax)
    halo = [patheffects.withStroke(linewidth=2.2, foreground="white")]
    out = []
    for text, candidates, kw in labels:
        ann = ax.annotate(text, candidates[0][0], xytext=candidates[0][1], textcoords="offset points",
                          fontsize=fontsize, annotation_clip=False, path_effects=halo, **{**text_kw, **kw})
        ann.set_in_layout(False)
        taken = np.concatenate(hard)
        best, best_cost = candidates[0], math.inf
        for cand in candidates:
            _pose(ann, cand)
            b = ann.get_window_extent(renderer)
            box = (b.x0, b.y0, b.x1, b.y1)
            outside = ((max(frame[0] - box[0], 0) + max(box[2] - frame[2], 0)) * (box[3] - box[1])
                       + (max(frame[1] - box[1], 0) + max(box[3] - frame[3], 0)) * (box[2] - box[0]))
            cost = 10 * outside + 10 * _overlap(box, taken) + _overlap(box, soft)
            if cost < best_cost:
                best, best_cost = cand, cost
            if cost == 0:
                break
        _pose(ann, best)
        b = ann.get_window_extent(renderer)
        hard.append(np.array([[b.x0, b.y0, b.x1, b.y1]]))
        out.append(ann)
    return out


def _pose(ann, candidate) -> None:
    xy, off, ha, va = candidate
    ann.xy = xy
    ann.set_position(off)
    ann.set_horizontalalignment(ha)
    ann.set_verticalalignment(va)


# ---------------------------------------------------------------------------- output
def save(fig, path) -> Path:
    """Write ``fig`` to ``path``; the format (PNG, SVG, PDF) comes from the extension."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise CodesignError(f"expected a file name ending in .png, .svg or .pdf, got {path.name!r}", field="--out")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    with mpl().rc_context(dict(STYLE["rc"])):
        fig.savefig(path, format=fmt, metadata=_metadata(fmt))
    return path


def figure_bytes(fig, fmt: str = "png") -> bytes:
    """The figure encoded as PNG/SVG/PDF bytes (for embedding in a report)."""
    if fmt not in FORMATS:
        raise CodesignError(f"expected one of {', '.join(FORMATS)}, got {fmt!r}", field="format")
    buf = io.BytesIO()
    with mpl().rc_context(dict(STYLE["rc"])):
        fig.savefig(buf, format=fmt, metadata=_metadata(fmt))
    return buf.getvalue()


def _metadata(fmt):
    # reproducible files: no creation date in SVG/PDF, no software stamp in PNG
    return {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}[fmt]


def fingerprint(fig) -> dict:
    """What a figure shows, without its pixels: its size, every text codesign wrote (titles,
    axis labels, annotations, legends; not matplotlib's tick labels) and a hash of its data
    (lines, scatter points, bars, images) at 3 significant digits. It changes when the
    plotting code or the numbers change, not with the matplotlib version or the fonts, so a
    test can tell that a saved image is stale without comparing pixels."""
    Rectangle = mpl().patches.Rectangle

    def r3(a) -> list:
        return [f"{v:.3g}" for v in np.asarray(a, float).ravel()]

    texts = [t.get_text() for t in fig.texts]            # the suptitle is one of them
    data: list = []
    for lg in fig.legends:
        texts += [t.get_text() for t in lg.get_texts()]
    for ax in fig.axes:
        texts += [ax.get_title(loc) for loc in ("left", "center", "right")] + [ax.get_xlabel(), ax.get_ylabel()]
        texts += [t.get_text() for t in ax.texts]
        if ax.get_legend() is not None:
            texts += [t.get_text() for t in ax.get_legend().get_texts()]
        data += [r3(ln.get_xydata()) for ln in ax.lines]
        data += [r3(c.get_offsets()) for c in ax.collections if type(c).__name__ == "PathCollection"]
        data += [r3((p.get_x(), p.get_y(), p.get_width(), p.get_height())) for p in ax.patches
                 if isinstance(p, Rectangle)]
        data += [r3(np.ma.filled(im.get_array(), np.nan)) for im in ax.images]
    digest = hashlib.sha256(json.dumps(data).encode()).hexdigest()[:16]
    return {"size_in": [round(float(v), 2) for v in fig.get_size_inches()], "texts": [t for t in texts if t],
            "data_sha256": digest}
