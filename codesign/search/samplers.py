"""Optuna samplers for a study, with the settings we measured (shared/notes/optuna.md).

- ``nsga2`` (default, multi-objective): ~1-2 ms per trial, scales to 10k+ trials;
  batch = one generation (``population_size``, default 50). Conditional dimensions
  that are inactive are simply absent (NSGA-II draws off-space values at random).
- ``nsga3``: as NSGA-II with reference points, for 3+ objectives.
- ``tpe``: ``multivariate=True, group=True`` (cheaper and a better hypervolume than
  Optuna 5's independent default on our spaces), ``constant_liar`` for batched asks.
  Its cost grows with the number of trials (~70 ms/trial at 400 trials).
- ``gp``: Gaussian process (needs torch); seconds per trial; batch 1.
- ``random``, ``grid`` (every dimension needs a step or choices).
Constraints reach every sampler through ``trial.set_constraint`` (Optuna 5 core API),
not the deprecated ``constraints_func``.
"""
from __future__ import annotations

import math
import warnings

from ..errors import CodesignError

DEFAULT_BATCH = {"tpe": 8, "gp": 1, "random": 64, "grid": 64}


def default_batch(study) -> int:
    s = study.spec.sampler
    if s.name in ("nsga2", "nsga3"):
        return int(s.options.get("population_size", 50))
    return DEFAULT_BATCH[s.name]


def build_sampler(study, seed_offset: int = 0):
    import optuna
    s = study.spec.sampler
    seed = None if s.seed is None else s.seed + seed_offset
    opts = dict(s.options)
    where = "sampler.options"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            if s.name == "nsga2":
                return optuna.samplers.NSGAIISampler(seed=seed, **opts)
            if s.name == "nsga3":
                return optuna.samplers.NSGAIIISampler(seed=seed, **opts)
            if s.name == "tpe":
                opts.setdefault("multivariate", True)
                opts.setdefault("group", opts["multivariate"])
                opts.setdefault("constant_liar", True)
                return optuna.samplers.TPESampler(seed=seed, **opts)
            if s.name == "gp":
                opts.setdefault("deterministic_objective", True)
                opts.setdefault("warn_independent_sampling", False)   # conditional dims: documented fallback
                return optuna.samplers.GPSampler(seed=seed, **opts)
            if s.name == "random":
                return optuna.samplers.RandomSampler(seed=seed, **opts)
            if s.name == "grid":
                space = {d.name: d.grid_values() for d in study.space.dims}
                from .space import MAX_GRID_POINTS
                points = math.prod(len(v) for v in space.values())
                if points > MAX_GRID_POINTS:
                    raise CodesignError(f"the grid has {points:,} points (limit {MAX_GRID_POINTS:,}): use larger "
                                        "steps or fewer dimensions", file=study.file, field="sampler.name")
                if any(d.when for d in study.space.dims):
                    raise CodesignError("the grid sampler cannot take conditional dimensions ('when')",
                                        file=study.file, field="sampler.name")
                return optuna.samplers.GridSampler(space, seed=seed, **opts)
        except (TypeError, ValueError) as e:
            raise CodesignError(f"{s.name}: {e}", file=study.file, field=where) from None
        except ImportError as e:
            raise CodesignError(f"{s.name} needs an optional package: {e}", file=study.file,
                                field="sampler.name") from None
    raise CodesignError(f"unknown sampler {s.name!r}", file=study.file, field="sampler.name")
