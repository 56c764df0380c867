"""Optuna samplers for a study, with the settings we measured (shared/notes/optuna.md),
and ``auto``, the default, which decides between enumerating the space and sampling it.

- ``auto`` (default): ``exhaustive`` when every dimension is discrete (choices, ints,
  floats with a step) and the space has at most ``max_designs`` designs (default 10^7,
  ``sampler.options.max_designs``); otherwise TPE up to ``TPE_MAX_TRIALS`` trials and
  NSGA-II above (see :func:`choose_sampler` for the measurements behind the rule).
- ``exhaustive``: every design, scored in chunks by the batched engine; the exact Pareto
  front is stored as trials (:mod:`.exhaustive`). An error when the space is continuous.
- ``nsga2`` (multi-objective): ~1-2 ms per trial, scales to 10k+ trials;
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
from dataclasses import dataclass

import optuna

from ..errors import CodesignError
from .exhaustive import continuous_dims, count_designs
from .space import MAX_GRID_POINTS

DEFAULT_BATCH = {"tpe": 8, "gp": 1, "random": 64, "grid": 64}
MAX_DESIGNS = 10_000_000      # auto enumerates a discrete space up to this many designs (options.max_designs)
SERVE_MAX_DESIGNS = 500       # ... or this many when a serving metric simulates traffic for each design
# auto's sampler when it cannot enumerate. Against exact fronts (benchmarks/bench_search.py, the
# ready studies with 11 clock levels, mean of 3 seeds): at small budgets TPE reached 1.000 of the
# exact hypervolume where NSGA-II reached 0.963 (fpga-dtype-compression, 800 trials) and 0.993
# (quickstart, 200); at 2,000-3,000 trials both reached 1.000, but TPE's cost per trial grows with
# the trials it has seen (46 s for 2,000 and 136 s for 3,000 trials, against NSGA-II's 5.6 s and
# 13.5 s). So TPE up to 1,000 trials (~10 s), NSGA-II above.
TPE_MAX_TRIALS = 1000


@dataclass(frozen=True)
class Choice:
    """What a run uses: ``name`` is a concrete sampler or ``exhaustive``; ``why`` is one line."""
    name: str
    why: str
    designs: int | None = None          # the size of the space when it is enumerable


def choose_sampler(study, trials: int | None = None) -> Choice:
    """Resolve ``auto`` / ``exhaustive`` for ``study`` at a budget of ``trials`` (default: the study's)."""
    s = study.spec.sampler
    if s.name not in ("auto", "exhaustive"):
        return Choice(s.name, f"{s.name}, as the study names it")
    # a serving metric runs the simulator per design (~0.1-2 s each), not the batched engine
    serving = study.uses_serving
    limit = int(s.options.get("max_designs", SERVE_MAX_DESIGNS if serving else MAX_DESIGNS))
    cont = continuous_dims(study.space)
    n = None if cont else count_designs(study.space, limit)
    if s.name == "exhaustive":
        if cont:
            raise CodesignError(f"exhaustive search needs a discrete space, but dimension {cont[0].name!r} is "
                                "continuous: give it a 'step' or choices, or use sampler auto",
                                file=study.file, field="sampler.name")
        assert n is not None      # no continuous dimension: counted above
        if n > limit:
            raise CodesignError(f"the space has more than {limit:,} designs (sampler.options.max_designs): use larger "
                                "steps, fewer choices or sampler auto", file=study.file, field="sampler.name")
        return Choice("exhaustive", f"exhaustive: {n:,} designs, as the study asks", n)
    if n is not None and n <= limit:
        return Choice("exhaustive", f"auto -> exhaustive: the space is discrete with {n:,} designs "
                                    f"(<= {limit:,}): the exact Pareto front", n)
    why = f"dimension {cont[0].name!r} is continuous" if cont else f"more than {limit:,} designs"
    budget = trials or study.spec.trials
    name = "tpe" if budget <= TPE_MAX_TRIALS else "nsga2"
    return Choice(name, f"auto -> {name}: {why}, so the space is sampled; {name} for {budget:,} trials "
                        f"(TPE up to {TPE_MAX_TRIALS:,} trials, NSGA-II above)")


def default_batch(study, name: str | None = None) -> int:
    s = study.spec.sampler
    name = name or s.name
    if name in ("nsga2", "nsga3"):
        return int(s.options.get("population_size", 50)) if name == s.name else 50
    return DEFAULT_BATCH.get(name, 64)


def build_sampler(study, seed_offset: int = 0, name: str | None = None):
    """The Optuna sampler ``name`` (default: the study's); the study's options apply only to
    the sampler it names (``auto`` resolving to TPE gets TPE's defaults). An exhaustive run
    asks no trials: its Optuna study gets a seeded random sampler."""
    s = study.spec.sampler
    seed = None if s.seed is None else s.seed + seed_offset
    name = name or s.name
    if name in ("auto", "exhaustive"):
        name = choose_sampler(study).name
    if name == "exhaustive":
        return optuna.samplers.RandomSampler(seed=seed)
    opts = dict(s.options) if name == s.name else {}
    where = "sampler.options"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            if name == "nsga2":
                return optuna.samplers.NSGAIISampler(seed=seed, **opts)
            if name == "nsga3":
                return optuna.samplers.NSGAIIISampler(seed=seed, **opts)
            if name == "tpe":
                opts.setdefault("multivariate", True)
                opts.setdefault("group", opts["multivariate"])
                opts.setdefault("constant_liar", True)
                return optuna.samplers.TPESampler(seed=seed, **opts)
            if name == "gp":
                opts.setdefault("deterministic_objective", True)
                opts.setdefault("warn_independent_sampling", False)   # conditional dims: documented fallback
                return optuna.samplers.GPSampler(seed=seed, **opts)
            if name == "random":
                return optuna.samplers.RandomSampler(seed=seed, **opts)
            if name == "grid":
                space = {d.name: d.grid_values() for d in study.space.dims}
                points = math.prod(len(v) for v in space.values())
                if points > MAX_GRID_POINTS:
                    raise CodesignError(f"the grid has {points:,} points (limit {MAX_GRID_POINTS:,}): use larger "
                                        "steps or fewer dimensions", file=study.file, field="sampler.name")
                if any(d.when for d in study.space.dims):
                    raise CodesignError("the grid sampler cannot take conditional dimensions ('when')",
                                        file=study.file, field="sampler.name")
                return optuna.samplers.GridSampler(space, seed=seed, **opts)
        except (TypeError, ValueError) as e:
            raise CodesignError(f"{name}: {e}", file=study.file, field=where) from None
        except ImportError as e:
            raise CodesignError(f"{name} needs an optional package: {e}", file=study.file,
                                field="sampler.name") from None
    raise CodesignError(f"unknown sampler {name!r}", file=study.file, field="sampler.name")
