"""Trials tables, read for analysis: objectives, feasibility, the Pareto front, distinct
designs and parameter importance.

The study plots (``codesign.plots.studies``) and the study report draw what this module
computes; nothing here draws. A trials table is either ``codesign study export``'s
trials.csv / :func:`codesign.search.export.trials_frame` (``params.<name>``, plain metric
columns, ``feasible``, ``constraints.<name>``) or Optuna's ``study.trials_dataframe()``
(``params_<name>``, ``values_<metric>``, ``system_attrs_constraints``); an
``optuna.Study`` is turned into the latter by :func:`optuna_trials_frame`.
"""
from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import optuna
import pandas as pd
from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

from ..errors import CodesignError
from ..metrics import bare, direction, display
from .front import pareto_mask as _pareto_mask_of_costs
from .front import to_costs

if TYPE_CHECKING:
    from optuna.importance import BaseImportanceEvaluator
    from optuna.trial import FrozenTrial

__all__ = ["Trials", "pareto_mask", "optuna_trials_frame", "as_trials", "param_importance", "numeric_column",
           "category_labels", "categorical_params", "spearman"]


class Trials:
    """A normalised view of a trials table: objective columns, senses, feasibility, front."""

    def __init__(self, df, objectives=None, directions=None):
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
        self.names = [bare(c) for c in self.columns]
        if directions is None:
            directions = [direction(n) for n in self.names]
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

    @property
    def distinct_front(self) -> np.ndarray:
        """The front with each design once: the first trial of every distinct parameter set
        (as ``codesign study``'s count and export, ``search.export.unique_front``); without
        parameter columns, of every distinct objective vector. A sampler may propose the same
        design twice; it is one choice for the buyer."""
        out = np.zeros(len(self.df), bool)
        idx = np.flatnonzero(self.front)
        idx = idx[np.argsort(self.df["number"].to_numpy()[idx], kind="stable")]      # the first trial of a design
        cols = self.params or self.columns
        rows = self.df.loc[idx, cols]
        seen: set = set()
        for i, row in zip(idx, rows.astype(object).where(rows.notna(), None).itertuples(index=False, name=None)):
            if row not in seen:
                seen.add(row)
                out[i] = True
        return out

    def scaled(self, i) -> np.ndarray:
        """Objective ``i`` in its plot unit (ms, mJ/token, ...)."""
        return self.values[:, i] * display(self.names[i])[2]


def pareto_mask(values, directions) -> np.ndarray:
    """Non-dominated rows of ``values`` (n x k) under ``directions`` ('minimize'/'maximize');
    a row with a missing or infinite value is never on the front and dominates nothing
    (:func:`codesign.search.front.pareto_mask` on the finite rows)."""
    v = np.asarray(values, float)
    if v.ndim != 2 or not len(v):
        return np.zeros(len(v), bool)
    finite = np.isfinite(v).all(1)
    out = np.zeros(len(v), bool)
    if finite.any():
        out[finite] = _pareto_mask_of_costs(to_costs(v[finite], [str(d).lower() for d in directions]))
    return out


def optuna_trials_frame(study):
    """An optuna Study as a trials DataFrame (Optuna's columns, values_ named by the study's
    metric names, and ``feasible``)."""
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


def as_trials(trials, objectives=None, directions=None) -> Trials:
    """:class:`Trials` from a trials DataFrame or an optuna Study (its directions by default)."""
    if hasattr(trials, "trials_dataframe") and hasattr(trials, "directions"):
        if directions is None:
            directions = [d.name.lower() for d in trials.directions]
            if objectives is not None and len(objectives) != len(directions):
                directions = None
        trials = optuna_trials_frame(trials)
    return Trials(trials, objectives, directions)


def spearman(x, y) -> float:
    """Spearman rank correlation (0 when either side is constant or shorter than 3)."""
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


def _optuna_importance(study, objectives) -> tuple[dict, str]:
    ev: BaseImportanceEvaluator
    if importlib.util.find_spec("sklearn") is not None:      # fANOVA's random forest; optional
        ev, method = FanovaImportanceEvaluator(seed=0), "fANOVA (optuna.importance)"
    else:
        ev, method = PedAnovaImportanceEvaluator(), "PED-ANOVA (optuna.importance; fANOVA needs scikit-learn)"
    n_obj = len(study.directions)
    names = list(objectives) if objectives is not None else list(
        study.metric_names or [f"objective {i}" for i in range(n_obj)])
    if len(names) != n_obj:
        raise CodesignError(f"the study has {n_obj} objective(s); name all of them in order, got {names}",
                            field="objectives")
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes")  # sign handled below
        for i, n in enumerate(names):
            # PED-ANOVA takes lower as better: negate maximised objectives (fANOVA is sign-blind)
            sign = -1.0 if study.directions[i].name == "MAXIMIZE" else 1.0
            out[bare(n)] = dict(optuna.importance.get_param_importances(
                study, evaluator=ev, target=_signed_objective(i, sign)))
    return out, method


def param_importance(trials, objectives=None, *, directions=None) -> tuple[dict, str]:
    """({objective: {param: importance}}, method). An optuna Study gets fANOVA
    (optuna.importance, needs scikit-learn) or, without scikit-learn, Optuna 5's default
    PED-ANOVA; a DataFrame gets |Spearman rank correlation| between each parameter and the
    objective over feasible trials (categoricals target-encoded by their mean objective):
    a screening measure of monotone association, not a variance decomposition."""
    if hasattr(trials, "trials_dataframe") and hasattr(trials, "directions"):
        return _optuna_importance(trials, objectives)
    t = as_trials(trials, objectives, directions)
    df = t.df[t.feasible]
    if len(df) < 3:
        raise CodesignError(f"parameter importance needs at least 3 feasible trials, got {len(df)}")
    out = {}
    for i, n in enumerate(t.names):
        y = t.values[t.feasible, i]
        imp = {}
        for p in t.params:
            x = df[p]
            is_num, xv = numeric_column(x)
            if not is_num:          # target encoding: each category at its mean objective value
                lab = category_labels(x)
                xv = lab.map(pd.Series(y, index=x.index).groupby(lab).mean()).to_numpy(float)
            ok = np.isfinite(xv)    # a conditional parameter counts where it was sampled
            imp[p[len("params_"):]] = abs(spearman(xv[ok], y[ok]))
        out[n] = imp
    return out, "|Spearman rank correlation| (fallback: correlation, not fANOVA)"


def numeric_column(col) -> tuple[bool, np.ndarray]:
    """(is numeric, float values with NaN where unset): a parameter is numeric when every
    value that was sampled parses as a number (conditional parameters leave gaps)."""
    num = pd.to_numeric(col, errors="coerce")
    return bool(num.notna().any() and (num.notna() == col.notna()).all()), num.to_numpy(float)


def category_labels(col):
    """Category labels as strings, '(not sampled)' for gaps."""
    return col.map(lambda v: "(not sampled)" if v is None or v != v else str(v))


def categorical_params(trials) -> set:
    """Names of the parameters whose sampled values are not all numbers."""
    df = trials if isinstance(trials, pd.DataFrame) else trials.trials_dataframe()
    return {c[len("params_"):] for c in df.columns
            if c.startswith(("params_", "params.")) and not numeric_column(df[c])[0]}
