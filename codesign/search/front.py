"""Pareto fronts and their hypervolume, on arrays of objective values.

Objectives are turned into costs (minimised: a maximised objective is negated), so one
dominance rule serves every study: ``a`` dominates ``b`` when ``a <= b`` in every
objective and ``a < b`` in one. Designs with equal objective values do not dominate each
other and are all kept, as Optuna's ``best_trials`` keeps them.

Hypervolume (Zitzler & Thiele 1998): the volume of the objective space that the front
dominates, up to a reference point. Each objective is scaled so that the ``ideal`` point
(the best value of each objective) maps to 0 and the reference point to 1, where the
reference point is the ``nadir`` (the worst value of each objective among the designs the
bounds come from) plus ``MARGIN`` of the range: a point slightly beyond the nadir, so the
extreme designs of the front still add volume (Ishibuchi et al., "How to specify a
reference point in hypervolume calculation for fair performance comparison", Evol.
Comput. 26(3), 2018). The result is the fraction of that box the front dominates, in
[0, 1]. It is comparable between fronts only when they are scaled with the same bounds:
the search benchmark scales every sampler's front with the ideal and nadir of the exact
(exhaustive) front.
"""
from __future__ import annotations

import numpy as np

# Optuna's WFG hypervolume (a private module of the pinned optuna 5.0.*)
from optuna._hypervolume import compute_hypervolume

MARGIN = 0.1        # reference point = nadir + 10% of the ideal-nadir range in every objective


def to_costs(values, directions) -> np.ndarray:
    """(n, k) objective values -> costs to minimise (maximised objectives negated)."""
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    return np.asarray(values, dtype=float).reshape(-1, len(sign)) * sign


def pareto_mask(costs: np.ndarray) -> np.ndarray:
    """Which rows of ``costs`` no other row dominates (equal rows are all kept).

    The rows are sorted lexicographically (np.unique): a row can then only be dominated by
    an earlier one, so the first remaining row is on the front, and every row it dominates
    or equals is dropped; repeat. Cost: O(front size x n) vectorised comparisons.
    """
    costs = np.asarray(costs, dtype=float)
    if len(costs) == 0:
        return np.zeros(0, dtype=bool)
    uniq, inverse = np.unique(costs, axis=0, return_inverse=True)
    on = np.zeros(len(uniq), dtype=bool)
    rest = np.arange(len(uniq))
    while rest.size:
        on[rest[0]] = True
        rest = rest[np.any(uniq[rest] < uniq[rest[0]], axis=1)]
    return on[inverse.reshape(-1)]


def bounds(costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ideal, nadir): the best and the worst cost of each objective."""
    costs = np.asarray(costs, dtype=float)
    return costs.min(axis=0), costs.max(axis=0)


def hypervolume(costs: np.ndarray, ideal, nadir) -> float:
    """Fraction of the box [ideal, reference point] that the points dominate (see the module doc)."""
    costs = np.asarray(costs, dtype=float)
    if len(costs) == 0:
        return 0.0
    ideal, nadir = np.asarray(ideal, dtype=float), np.asarray(nadir, dtype=float)
    span = np.where(nadir > ideal, nadir - ideal, 1.0)       # a flat objective: any unit will do
    scaled = (costs - ideal) / ((1 + MARGIN) * span)
    scaled = scaled[np.all(scaled < 1.0, axis=1)]            # beyond the reference point: no volume
    if len(scaled) == 0:
        return 0.0
    if scaled.shape[1] == 1:
        return float(1.0 - scaled.min())
    scaled = scaled[pareto_mask(scaled)]
    return float(compute_hypervolume(scaled, np.ones(scaled.shape[1]), assume_pareto=True))
