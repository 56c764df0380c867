"""Exhaustive search: every design of a discrete space, scored in chunks, the exact Pareto front kept.

A space is enumerable when every dimension is discrete: categorical choices, ints (a log
int too: Optuna draws every integer of its range), floats with a ``step``. Conditional
dimensions (``when``) take part only where their condition holds, exactly as ``suggest``
samples them, so the designs enumerated are the designs a sampler could propose.

Designs are enumerated hardware dimensions first and compression last (the innermost
loop), so the designs of a chunk share their chips: :class:`.metrics.Evaluator` builds
each derived spec once per chunk and scores the chunk with one vectorised engine call per
workload, the same path every trial takes. Memory is bounded by one chunk plus the front.

Per chunk: the feasible designs' non-dominated set is merged with the running front
(:func:`.front.pareto_mask` on the union), so the front is exact at the end, ties included.
Only the front is stored: as completed Optuna trials with the attributes a sampled trial
gets (``metrics``, constraints, ``worker``) plus ``exhaustive: true``, so ``best``,
``export``, plots and the report read it unchanged. Constraint statistics (designs,
valid, feasible, how often each constraint is violated, the most common errors) and the
front's bounds are kept in the study's user attribute ``codesign.exhaustive``.

A long enumeration stores the front so far and its position at most every
``CHECKPOINT_S`` seconds, at a timeout and on Ctrl-C; the next run continues from there
(the order is fixed by the space, which the study's fingerprint pins). Front designs
stored at a checkpoint that a later chunk dominates stay in the study as ordinary
dominated trials.
"""
from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import optuna
from optuna.trial import TrialState

from .front import pareto_mask, to_costs
from .metrics import Outcome
from .space import Dim, Space, params_key

ATTR = "codesign.exhaustive"
CHUNK = 10_000            # designs per Evaluator call: ~0.2 GB in flight (50,000 took 0.8 GB, no faster)
CHECKPOINT_S = 30.0       # store the front so far at most this often
KEEP_ERRORS = 20          # distinct error messages kept in the statistics (the most common)


# -- the space -------------------------------------------------------------------------

def continuous_dims(space: Space) -> list[Dim]:
    return [d for d in space.dims if d.level_count() is None]


def _order(space: Space) -> list[Dim]:
    """Hardware dimensions first, compression last, every condition's controller before its
    dependents (space.dims is already in dependency order; this keeps it so)."""
    pending = sorted(space.dims, key=lambda d: d.target == "compression")
    out: list[Dim] = []
    while pending:
        d = next(d for d in pending if all(c in {o.name for o in out} for c, _ in d.when))
        out.append(d)
        pending.remove(d)
    return out


def count_designs(space: Space, cap: int | None = None) -> int:
    """The number of designs (conditions respected); stops counting once above ``cap``."""
    dims = _order(space)
    controllers = {c for d in dims for c, _ in d.when}

    def count(i: int, params: dict) -> int:
        if i == len(dims):
            return 1
        d = dims[i]
        if not d.active(params):
            return count(i + 1, params)
        if d.name not in controllers:        # its value changes nothing downstream: multiply
            n = d.level_count()
            assert n is not None             # callers count only discrete spaces (no continuous_dims)
            return n * count(i + 1, params)
        total = 0
        for v in d.levels():
            params[d.name] = v
            total += count(i + 1, params)
            if cap is not None and total > cap:
                break
        params.pop(d.name, None)
        return total
    return count(0, {})


def iter_designs(space: Space):
    """Every design's parameters, in a fixed order (compression varies fastest)."""
    dims = _order(space)
    levels = [d.levels() for d in dims]

    def walk(i: int, params: dict):
        if i == len(dims):
            yield dict(params)
            return
        d = dims[i]
        if not d.active(params):
            yield from walk(i + 1, params)
            return
        for v in levels[i]:
            params[d.name] = v
            yield from walk(i + 1, params)
        del params[d.name]
    yield from walk(0, {})


def chunks(iterable, size: int):
    it = iter(iterable)
    while batch := list(itertools.islice(it, size)):
        yield batch


# -- statistics and the running front ----------------------------------------------------

@dataclass
class Tally:
    """Constraint statistics of an enumeration (stored as the study attribute ``codesign.exhaustive``)."""
    designs: int                                   # in the space
    done: int = 0                                  # enumerated so far
    valid: int = 0                                 # the engine could score them
    feasible: int = 0                              # valid and every constraint held
    front: int = 0                                 # designs on the exact front (so far)
    violated: dict = field(default_factory=dict)   # constraint -> valid designs violating it
    errors: dict = field(default_factory=dict)     # why designs were invalid (the most common)
    ideal: list | None = None                      # best cost of each objective on the front
    nadir: list | None = None                      # worst cost of each objective on the front
    seconds: float = 0.0
    complete: bool = False

    def add(self, outcomes: list[Outcome]) -> None:
        violated, errors = Counter(self.violated), Counter(self.errors)
        for o in outcomes:
            if o.error is not None:
                errors[o.error] += 1
                continue
            self.valid += 1
            bad = [k for k, v in o.constraints.items() if v > 0]
            violated.update(bad)
            self.feasible += not bad
        self.done += len(outcomes)
        self.violated = dict(violated.most_common())
        # error messages may name numbers, so they need not repeat: keep the most common ones
        self.errors = dict(errors.most_common(KEEP_ERRORS))

    def summary(self) -> str:
        parts = [f"{self.done:,} designs enumerated" + ("" if self.complete else f" of {self.designs:,}"),
                 f"{self.valid:,} valid", f"{self.feasible:,} feasible", f"{self.front:,} on the exact Pareto front"]
        if self.violated:
            name, n = next(iter(self.violated.items()))
            parts.append(f"most violated constraint: {name} ({n:,} of {self.valid:,} valid designs)")
        if self.errors:
            msg, n = next(iter(self.errors.items()))
            parts.append(f"most common error ({n:,} designs): {msg}")
        return "; ".join(parts)


class Front:
    """The non-dominated feasible designs seen so far (costs: minimised objective values)."""

    def __init__(self, directions) -> None:
        self.directions = tuple(directions)
        self.params: list[dict] = []
        self.outcomes: list[Outcome] = []
        self.costs = np.zeros((0, len(self.directions)))

    def merge(self, params: list[dict], outcomes: list[Outcome]) -> None:
        if not params:
            return
        costs = np.vstack([self.costs, to_costs([o.values for o in outcomes], self.directions)])
        keep = np.flatnonzero(pareto_mask(costs))
        every_p, every_o = self.params + params, self.outcomes + outcomes
        self.params = [every_p[i] for i in keep]
        self.outcomes = [every_o[i] for i in keep]
        self.costs = costs[keep]


# -- running ---------------------------------------------------------------------------

def frozen_trial(study, params: dict, outcome: Outcome, attrs: dict):
    """A completed Optuna trial for a scored design, with the attributes a sampled trial gets."""
    dims = {d.name: d for d in study.space.dims}
    user = {**attrs, "metrics": outcome.metrics}
    if outcome.error:
        user["error"] = outcome.error
    return optuna.trial.create_trial(params=params, distributions={k: dims[k].distribution() for k in params},
                                     values=outcome.values, constraints=outcome.constraints, user_attrs=user)


def run_exhaustive(study, ost, ev, *, attrs: dict, deadline: float | None = None, chunk: int | None = None,
                   designs: int | None = None, on_chunk=None) -> tuple[Tally, int]:
    """Enumerate ``study``'s space into ``ost`` (continuing a stopped enumeration); return the
    statistics and how many trials were stored."""
    size = int(chunk or study.spec.sampler.options.get("chunk_size", CHUNK))
    stored_attr = ost.user_attrs.get(ATTR)
    tally = Tally(**stored_attr) if stored_attr else Tally(designs=designs or count_designs(study.space))
    if tally.complete:
        return tally, 0
    done_trials = ost.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    stored = {params_key(t.params) for t in done_trials}
    # The front starts from the feasible designs the study already holds (a stopped enumeration's
    # checkpoints, or trials of a sampler run): they are designs of this space, scored the same way.
    front = Front(study.directions)
    known = {params_key(t.params): t for t in done_trials if all(v <= 0 for v in t.constraints.values())}
    front.merge([dict(t.params) for t in known.values()],
                [Outcome(values=list(t.values), constraints=dict(t.constraints), metrics=t.user_attrs.get("metrics") or {})
                 for t in known.values()])
    new = 0
    if study.spec.baseline and not done_trials:      # the base design, for comparison, as a sampled study has it
        base = study.space.baseline_params()
        ost.add_trial(frozen_trial(study, base, ev([base], cache=False)[0], {**attrs, "baseline": True}))
        stored.add(params_key(base))
        new += 1

    def checkpoint():
        nonlocal new
        fresh = [(p, o) for p, o in zip(front.params, front.outcomes) if params_key(p) not in stored]
        ost.add_trials([frozen_trial(study, p, o, {**attrs, "exhaustive": True}) for p, o in fresh])
        stored.update(params_key(p) for p, _ in fresh)
        new += len(fresh)
        tally.front = len(front.params)
        if len(front.params):
            tally.ideal, tally.nadir = front.costs.min(axis=0).tolist(), front.costs.max(axis=0).tolist()
        ost.set_user_attr(ATTR, asdict(tally))

    t0 = time.monotonic()
    last = t0
    seconds0 = tally.seconds
    try:
        for batch in chunks(itertools.islice(iter_designs(study.space), tally.done, None), size):
            outs = ev(batch, cache=False)
            tally.add(outs)
            keep = [i for i, o in enumerate(outs) if o.feasible]
            front.merge([batch[i] for i in keep], [outs[i] for i in keep])
            if on_chunk:
                on_chunk(len(batch))
            now = time.monotonic()
            tally.seconds = seconds0 + now - t0
            if deadline is not None and now >= deadline:
                break
            if now - last >= CHECKPOINT_S:
                checkpoint()
                last = now
        tally.complete = tally.done >= tally.designs
    finally:
        tally.seconds = seconds0 + time.monotonic() - t0
        checkpoint()             # the front so far is kept on a timeout, an error or Ctrl-C too
    return tally, new
