"""Plots that show a decision to someone else: pure functions that return matplotlib Figures.

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot, no global
backend switch), so plotting is headless and leaves the caller's matplotlib state alone;
``save(fig, "x.png")`` writes PNG, SVG or PDF by extension. matplotlib is imported on the
first figure, in one place (:func:`.style.mpl`): ``import codesign`` (and ``import
codesign.plots``) never imports it.

Modules: :mod:`.style` (matplotlib setup, colours, labels, number formats, label
placement, saving, fingerprints), :mod:`.devices` (roofline, compare, breakdown, sweep
from ``evaluate()`` results), :mod:`.studies` (Pareto front, history, importance,
parallel coordinates from a study's trials; the analysis behind them is
:mod:`codesign.search.trials`), :mod:`.validation` (kernel validation, accuracy against
published measurements), :mod:`.serving` (served traffic).

One style for all: the Okabe-Ito colour-blind-safe palette (Okabe & Ito 2008, "Color
Universal Design"), extended with Paul Tol's muted colours beyond 8 categories; one figure
width; a title on every figure, units on every axis, numbers through ``codesign.units``;
legends outside the data area; the same colour for the same device / operator kind /
binding resource across the panels of one figure; labels placed so that they overlap
neither each other nor the data.
"""
from __future__ import annotations

# trial analysis lives in codesign.search.trials; re-exported for callers of the old plots module
from ..search.trials import Trials, param_importance, pareto_mask
from .devices import BOUND_ORDER, COMPARE_METRICS, breakdown, compare, roofline, sweep
from .serving import serve_rates, serve_run
from .studies import NOT_SAMPLED, history, importance, parallel_coordinates, pareto
from .style import (
    FORMATS,
    METRIC_DISPLAY,
    OKABE_ITO,
    STYLE,
    common_scenario,
    figure_bytes,
    fingerprint,
    labelled,
    metric_label,
    param_label,
    save,
    scenario_text,
)
from .validation import VALIDATION_COLUMNS, accuracy, plot_accuracy, validation

__all__ = ["STYLE", "OKABE_ITO", "FORMATS", "METRIC_DISPLAY", "COMPARE_METRICS", "BOUND_ORDER", "NOT_SAMPLED",
           "VALIDATION_COLUMNS", "save", "figure_bytes", "fingerprint", "metric_label", "param_label", "labelled",
           "scenario_text", "common_scenario", "roofline", "compare", "breakdown", "sweep", "pareto", "history",
           "importance", "parallel_coordinates", "validation", "accuracy", "plot_accuracy", "serve_run",
           "serve_rates", "Trials", "pareto_mask", "param_importance"]
