"""Running, resuming and inspecting studies.

A study runs in batches: ``batch`` trials are asked (every ``suggest`` happens before
any ``tell``, so TPE's constant liar and NSGA-II's generations see the whole batch),
evaluated together (one vectorised engine call per workload), then told. ``trials``
is the number of *completed* trials the study should hold: ``run`` and ``resume``
both bring it there, so a run killed at trial 700 of 1000 resumes with 300 more.

Workers. ``workers=N`` starts N processes (multiprocessing "spawn") on the same
storage; worker i seeds its sampler with seed + i (+ an offset from the number of
trials already stored, so a resumed random search does not replay its first run).
Several machines share a study through an RDB URL (PostgreSQL): each runs
``codesign study run/resume --storage postgresql://...``; the study stops when it
holds ``trials`` completed trials (workers that start a batch near the end may add
up to one batch each beyond it).

Sampler. ``sampler: auto`` (the default) enumerates a discrete space that fits
(:mod:`.exhaustive`: the exact front is stored as trials) and otherwise samples it
(:func:`.samplers.choose_sampler` says which sampler and why, in one line).

No design twice. Before a batch is evaluated, each asked trial's parameters are looked
up among the study's completed trials (those of every worker and every earlier run): a
design already there is told its stored values, constraints and metrics
(``duplicate_of``: the trial it repeats) instead of being evaluated again. The report
counts distinct designs next to trials.

Interrupted trials. Each trial records its owner (``host:pid``) when asked. A
RUNNING trial whose owner ran on this host and is no longer alive was cut off by a
kill: ``run``/``resume`` mark it FAIL (it never finished; its parameters are simply
sampled afresh). Trials owned by other hosts are left alone.
"""
from __future__ import annotations

import ctypes
import datetime as dt
import json
import math
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Literal, cast

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from tqdm import tqdm

from ..errors import CodesignError
from ..hardware.credibility import credibility_notes
from .definition import Study, load_study, study_from_dict
from .exhaustive import ATTR, run_exhaustive
from .export import unique_front
from .front import bounds, hypervolume, to_costs
from .metrics import Evaluator, Outcome
from .samplers import build_sampler, choose_sampler, default_batch
from .space import params_key
from .storage import StorageRef, guard, open_storage, parse_ref

ATTR_STUDY = "codesign.study"
ATTR_FINGERPRINT = "codesign.fingerprint"
ATTR_FILE = "codesign.file"
RDB_BATCH = 10


def _quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Clip non-finite values")


def owner_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# -- opening --------------------------------------------------------------------------

def open_optuna_study(study: Study, ref: StorageRef, seed_offset: int = 0, create: bool = True,
                      sampler: str | None = None):
    """Create or load the Optuna study for ``study`` on ``ref``; check it is the same study.
    ``sampler``: the resolved sampler name (default: the study's, ``auto`` resolved)."""
    _quiet()
    storage = open_storage(ref, create=create, readonly=not create)
    if sampler is None:       # reading a stored study asks nothing: no need to resolve auto
        sampler = choose_sampler(study).name if create else "random"
    sampler_obj = build_sampler(study, seed_offset, sampler)
    with guard(ref):
        names = {s.study_name for s in storage.get_all_studies()}
        if study.name not in names and not create:
            raise CodesignError(f"no study named {study.name!r} here (have: {sorted(names) or 'none'})",
                                file=ref.label)
        if create:
            ost = optuna.create_study(study_name=study.name, storage=storage, sampler=sampler_obj,
                                      # each sense is "minimize" or "maximize" (schema.Objective)
                                      directions=cast("list[Literal['minimize', 'maximize']]", list(study.directions)),
                                      load_if_exists=True)
        else:                 # reading: load, never create or annotate (nothing is written)
            ost = optuna.load_study(study_name=study.name, storage=storage, sampler=sampler_obj)
        attrs = ost.user_attrs
    stored = attrs.get(ATTR_FINGERPRINT)
    if stored is None and not create:
        if [d.name.lower() for d in ost.directions] != [d for d in study.directions]:
            raise CodesignError(f"study {study.name!r} here has other objectives", file=ref.label)
    elif stored is None:
        if [d.name.lower() for d in ost.directions] != [d for d in study.directions]:
            raise CodesignError(f"study {study.name!r} already exists here with other objectives; "
                                "use another name or --storage", file=ref.label)
        with guard(ref):
            # an enumeration stores the base design itself (exhaustive.py); a sampler asks it first
            if study.spec.baseline and sampler != "exhaustive" and not ost.get_trials(deepcopy=False):
                ost.enqueue_trial(study.space.baseline_params(), user_attrs={"baseline": True})
            ost.set_user_attr(ATTR_STUDY, json.loads(json.dumps(study.raw, default=str)))
            ost.set_user_attr(ATTR_FINGERPRINT, study.fingerprint())
            if study.file:
                ost.set_user_attr(ATTR_FILE, str(study.file))
    elif stored != study.fingerprint():
        raise CodesignError(f"study {study.name!r} in this storage was created from a different definition "
                            f"(space, objectives, constraints, workloads or base hardware changed); resume it "
                            f"by name to continue it as stored, or use a new name or --storage",
                            file=ref.label)
    return ost


def stored_study(name: str | None, ref: StorageRef) -> Study:
    """The study definition saved in the storage (what ``resume NAME`` continues)."""
    _quiet()
    storage = open_storage(ref, create=False, readonly=True)
    with guard(ref):
        summaries = storage.get_all_studies()
    names = [s.study_name for s in summaries]
    if name is None:
        if len(names) != 1:
            raise CodesignError(f"name the study to use (this storage holds: {names or 'none'})", file=ref.label)
        name = names[0]
    if name not in names:
        raise CodesignError(f"no study named {name!r} here (have: {names or 'none'})", file=ref.label)
    with guard(ref):
        attrs = optuna.load_study(study_name=name, storage=storage).user_attrs
    raw = attrs.get(ATTR_STUDY)
    if raw is None:
        raise CodesignError(f"study {name!r} was not created by codesign (no stored definition)", file=ref.label)
    file = attrs.get(ATTR_FILE)
    return study_from_dict(raw, file=f"{ref.label}#{name}", base_dir=os.path.dirname(file) if file else None)


def resolve_study(ref: str, storage: str | None, results_dir=None) -> tuple[Study, StorageRef]:
    """NAME or FILE -> (study definition, storage). A stored definition wins over the file."""
    path_like = str(ref).endswith((".yaml", ".yml")) or os.sep in str(ref) or os.path.isfile(str(ref))
    file_study = load_study(ref) if path_like else None
    name = file_study.name if file_study else str(ref)
    sref = parse_ref(storage, name, results_dir)
    exists = (sref.kind != "journal" or os.path.exists(sref.target)) and \
             (not sref.target.startswith("sqlite:") or os.path.exists(sref.target.split(":///", 1)[-1]))
    if exists:
        with guard(sref):
            names = {s.study_name for s in open_storage(sref, create=False, readonly=True).get_all_studies()}
        if name in names:
            return stored_study(name, sref), sref
    return (file_study or load_study(ref)), sref      # not run yet: the file / library study


# -- interrupted trials ---------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


STALE_AFTER_S = 600.0     # a trial RUNNING this long is stale: a batch takes seconds, not minutes


def stale_trials(ost, stale_after: float = STALE_AFTER_S) -> list:
    """RUNNING trials that no live worker will finish: a dead process on this host, or (on
    another host, or with no owner) asked more than ``stale_after`` seconds ago. Optuna's
    heartbeats exist only for RDB storages, so the trial's start time is the heartbeat here."""
    host = socket.gethostname()
    now = dt.datetime.now()
    out = []
    for t in ost.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(t.user_attrs.get("worker", ""))
        h, _, pid = owner.rpartition(":")
        if h == host and pid.isdigit():
            dead = not _alive(int(pid))
        else:
            start = t.datetime_start
            dead = start is None or (now - start).total_seconds() > stale_after
        if dead:
            out.append(t)
    return out


def fail_interrupted(ost, stale_after: float | None = None) -> int:
    """Mark RUNNING trials of dead local processes as FAIL; with ``stale_after`` (seconds),
    also those of other hosts (or no owner) that old. Return how many were marked."""
    host = socket.gethostname()
    n = 0
    for t in stale_trials(ost, stale_after if stale_after is not None else math.inf):
        h = str(t.user_attrs.get("worker", "")).rpartition(":")[0]
        if h != host and stale_after is None:
            continue
        try:
            ost.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            n += 1
        except Exception:   # noqa: BLE001 - another resumer got there first
            pass
    return n


# -- running --------------------------------------------------------------------------

@dataclass
class RunReport:
    name: str
    storage: str
    completed: int              # completed trials in the study now
    new: int                    # completed by this run
    feasible: int
    pareto: int                 # distinct designs on the feasible Pareto front
    seconds: float
    interrupted_marked: int
    sampler: str = ""           # what ran: a sampler's name or "exhaustive"
    why: str = ""               # one line: why that sampler (auto's choice)
    distinct: int = 0           # distinct designs among the completed trials
    invalid: int = 0            # completed trials the engine could not score
    errors: dict = field(default_factory=dict)   # why trials (designs, when enumerated) were invalid
    hypervolume: float = math.nan    # of the feasible front, codesign.search.front
    hv_basis: str = ""          # which bounds scaled the objectives
    exhaustive: dict | None = None   # the enumeration's statistics (exhaustive.Tally)
    failure: str | None = None  # one line when nothing could be scored (the CLI then exits non-zero)
    running_elsewhere: list = field(default_factory=list)   # RUNNING trials that kept it short of the target
    credibility: dict = field(default_factory=dict)   # front trial number -> notes (outside known chips)

    @property
    def trials_per_s(self) -> float:
        return self.new / self.seconds if self.seconds > 0 else math.nan


def _counts(ost):
    trials = ost.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    done = sum(t.state == TrialState.COMPLETE for t in trials)
    return done, len(trials) - done


def _stored_outcome(t):
    """The result a completed trial was told, as the Evaluator gave it."""
    return Outcome(values=list(t.values), constraints=dict(t.constraints), metrics=t.user_attrs.get("metrics") or {},
                   error=t.user_attrs.get("error"))


def _tell(ost, t, o, **attrs) -> None:
    """Tell ``o`` for trial ``t``; a trial another worker already finished is left as it is
    (two processes can pop the same queued trial from an SQLite storage)."""
    try:
        for key, v in o.constraints.items():
            t.set_constraint(key, v)
        t.set_user_attr("metrics", o.metrics)
        if o.error:
            t.set_user_attr("error", o.error)
        for key, v in attrs.items():
            t.set_user_attr(key, v)
        ost.tell(t, o.values)
    except UpdateFinishedTrialError:
        pass
    except ValueError as e:            # optuna: "Cannot tell a COMPLETE trial." (the same race)
        if "Cannot tell a" not in str(e):
            raise


def _work(study: Study, ost, target: int, deadline: float | None, batch: int, on_batch=None, ev=None) -> int:
    """Ask/evaluate/tell in batches until the study holds ``target`` completed trials.

    A design the study already holds (any worker's, any run's) is told its stored result
    rather than evaluated again (the module doc)."""
    ev = ev or Evaluator(study)
    owner = owner_tag()
    known: dict = {}            # params key -> the first completed trial of that design
    seen: set = set()           # trial numbers already indexed
    made = 0
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            break
        every = ost.get_trials(deepcopy=False)
        current = [t for t in every if t.state in (TrialState.COMPLETE, TrialState.RUNNING)]
        for t in current:
            if t.state == TrialState.COMPLETE and t.number not in seen:
                seen.add(t.number)
                known.setdefault(params_key(t.params), t)
        remaining = target - len(current)
        if remaining <= 0:
            break
        # trial numbers are handed out in order across every worker: the one numbered past the
        # target (counting the failed and pruned trials before it) is surplus, another worker
        # having asked the rest since we looked
        last_number = target + sum(t.state in (TrialState.FAIL, TrialState.PRUNED) for t in every)
        trials, params = [], []
        for _ in range(min(batch, remaining)):
            # The owner is written with the trial itself (a queued trial that ask() then takes):
            # a kill between ask() and a later set_user_attr would leave an owner-less RUNNING
            # trial that no resume could tell from a live one, and the study would stall.
            ost.enqueue_trial({}, user_attrs={"worker": owner})
            t = ost.ask()
            if t.number >= last_number:
                t.set_user_attr("surplus", "asked after the study's target was taken by other workers")
                ost.tell(t, state=TrialState.PRUNED)
                break
            if t.user_attrs.get("worker") != owner:     # another worker's queued trial: claim it
                t.set_user_attr("worker", owner)
            trials.append(t)
            params.append(study.space.suggest(t))
        n = len(trials)
        if not n:
            continue
        keys = [params_key(p) for p in params]
        fresh = {k: p for k, p in zip(keys, params) if k not in known}
        scored = dict(zip(fresh, ev(list(fresh.values()), cache=False)))
        for t, k in zip(trials, keys):
            if k in scored:
                _tell(ost, t, scored[k])
            else:
                _tell(ost, t, _stored_outcome(known[k]), duplicate_of=known[k].number)
        made += n
        if on_batch:
            on_batch(n)
    return made


def _die_with_parent(parent: int) -> None:
    """Stop this worker when the study process that started it dies (SIGKILL included):
    the kernel's parent-death signal on Linux, and a watchdog thread everywhere."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))   # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:          # it died before we could ask
        os._exit(1)

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)
    threading.Thread(target=watch, name="codesign-parent-watch", daemon=True).start()


def _worker_entry(raw: dict, file: str | None, ref: StorageRef, index: int, target: int,
                  deadline_s: float | None, batch: int, seed_base: int, barrier=None, parent: int | None = None,
                  sampler: str | None = None) -> None:
    """Body of a spawned worker process."""
    if parent is not None:
        _die_with_parent(parent)
    try:
        study = study_from_dict(raw, file=file, base_dir=os.path.dirname(file) if file and os.path.exists(file) else None)
        with guard(ref):            # a database outage is one line, as in a single-process run
            ost = open_optuna_study(study, ref, seed_offset=seed_base + index, sampler=sampler)
        ev = Evaluator(study)
        ev([study.space.baseline_params()])   # warm every cache first: start-up must not decide who works
        if barrier is not None:          # start together: a fast starter would otherwise take every trial
            try:
                barrier.wait(timeout=120)
            except Exception:   # noqa: BLE001 - a broken barrier (a sibling failed) must not stop this one
                pass
        deadline = time.monotonic() + deadline_s if deadline_s else None
        with guard(ref):
            _work(study, ost, target, deadline, batch, ev=ev)
    except CodesignError as e:
        if barrier is not None:
            barrier.abort()              # let the others start instead of waiting for this one
        print(f"error: worker {index}: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        # Ctrl-C reaches every process of the group: the parent says it once; a worker leaves
        # quietly (its running trial is marked FAIL by the next run, as after a kill)
        if barrier is not None:
            barrier.abort()
        os._exit(130)
    except BaseException:
        if barrier is not None:
            barrier.abort()
        raise


def run_study(study: Study, ref: StorageRef, *, trials: int | None = None, timeout: float | None = None,
              workers: int = 1, batch: int | None = None, progress: bool | None = None, say=None,
              fail_stale: float | None = None) -> RunReport:
    """Run (or continue) ``study`` on ``ref`` until it holds ``trials`` completed trials, or, when
    its space is enumerated (``auto``/``exhaustive``), until every design has been scored.
    ``say``: where to print one-line notes (the sampler chosen and why). ``fail_stale``: also
    mark FAIL the trials other hosts (or no owner) left RUNNING longer than this (seconds)."""
    if workers < 1:
        raise CodesignError(f"--workers must be at least 1, got {workers}")
    choice = choose_sampler(study, trials)
    say = say or (lambda line: None)
    say(choice.why)
    used = set(study.objectives) | {c.metric for c in study.constraints}
    if any(d.target == "compression" for d in study.space.dims) and "quality_ppl_increase_pct" not in used:
        say("note: the study searches compression but neither optimises nor bounds quality_ppl_increase_pct, "
            "so compressed designs look free: add it as an objective or a constraint")
    target = trials or study.spec.trials
    timeout = timeout if timeout is not None else study.spec.timeout_s
    if not batch and not study.spec.batch and ref.kind == "rdb":
        # RDB storages re-read every RUNNING trial from the database on each suggest: a batch
        # of 40 ran at half the speed of a batch of 10 on SQLite here (benchmarks/bench_study.py)
        batch = min(default_batch(study, choice.name), RDB_BATCH)
    batch = batch or study.spec.batch or default_batch(study, choice.name)
    if choice.name == "gp":
        batch = 1
    t0 = time.monotonic()
    deadline = t0 + timeout if timeout else None

    probe = open_optuna_study(study, ref, sampler=choice.name)
    with guard(ref):
        marked = fail_interrupted(probe, STALE_AFTER_S if fail_stale is not None and fail_stale < 0 else fail_stale)
        start_done, _ = _counts(probe)
        n_all = len(probe.get_trials(deepcopy=False))
    seed_base = 0 if n_all == 0 else 1009 * n_all      # a resumed run draws fresh random streams

    bar_opts = dict(desc=study.name, disable=(not progress) if progress is not None else None, dynamic_ncols=True,
                    leave=False)
    tally = None
    owners = {owner_tag()}       # the processes whose completed trials are this run's
    if choice.name == "exhaustive":
        if workers > 1:
            say("the enumeration runs in this process (--workers applies to samplers)")
        before = (probe.user_attrs.get(ATTR) or {}).get("done", 0)
        bar = tqdm(total=choice.designs, initial=before, unit="design", **bar_opts)
        try:
            with guard(ref):
                tally, _ = run_exhaustive(study, probe, Evaluator(study), attrs={"worker": owner_tag()},
                                          deadline=deadline, designs=choice.designs, on_chunk=bar.update)
        finally:
            bar.close()
    else:
        bar = tqdm(total=target, initial=min(start_done, target), unit="trial", **bar_opts)
        try:
            if workers == 1:
                ost = open_optuna_study(study, ref, seed_offset=seed_base, sampler=choice.name) if seed_base else probe
                with guard(ref):
                    _work(study, ost, target, deadline, batch, on_batch=bar.update)
            else:
                owners = _run_workers(study, ref, workers, target, timeout, batch, seed_base, probe, bar,
                                      choice.name)
        finally:
            bar.close()
    with guard(ref):
        rep = _report(study, probe, tally)
    # new: completed by this run's own processes (a concurrent run's trials are not ours)
    with guard(ref):
        new = (rep["completed"] - start_done if choice.name == "exhaustive" else
               sum(1 for t in probe.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.number >= n_all
                   and t.user_attrs.get("worker") in owners))
    with guard(ref):
        cred = front_credibility(study, probe)
    rep.update(name=study.name, storage=ref.label, new=new, seconds=time.monotonic() - t0,
               interrupted_marked=marked, sampler=choice.name, why=choice.why, credibility=cred)
    if choice.name != "exhaustive" and rep["completed"] < target:
        # the target counts RUNNING trials as on their way: name the ones that hold it back
        with guard(ref):
            rep["running_elsewhere"] = [describe_trial(t) for t in probe.get_trials(deepcopy=False)
                                        if t.state.name == "RUNNING"]
    return RunReport(**rep)


def front_credibility(study: Study, ost) -> dict[int, list[str]]:
    """Pareto-front designs outside the envelope of known chips (hardware.credibility):
    trial number -> notes. Empty when the study does not derive hardware."""
    if not study.varies_hardware:
        return {}
    out = {}
    for t in unique_front(ost):
        try:
            notes = credibility_notes(study.space.hardware(t.params))
        except (CodesignError, ValueError):
            continue
        if notes:
            out[t.number] = notes
    return out


def describe_trial(t) -> str:
    """'trial 12 (host:pid, running 14 min)'."""
    age = (dt.datetime.now() - t.datetime_start).total_seconds() if t.datetime_start else math.nan
    return f"trial {t.number} ({t.user_attrs.get('worker') or 'no owner'}, running {age / 60:.0f} min)"


def _report(study: Study, ost, tally) -> dict:
    """Counts, the front's hypervolume, and a failure line when nothing could be scored."""
    done = [t for t in ost.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    errors = Counter(t.user_attrs["error"] for t in done if t.user_attrs.get("error"))
    front = unique_front(ost)
    costs = to_costs([t.values for t in front], study.directions)
    exact = ost.user_attrs.get(ATTR) or {}
    hv, basis = math.nan, ""
    if exact.get("complete") and exact.get("ideal") is not None:
        ideal, nadir, basis = exact["ideal"], exact["nadir"], "the exact front's ideal and nadir points"
    elif len(costs):
        (ideal, nadir), basis = bounds(costs), "this front's own ideal and nadir points"
    if len(costs):
        hv = hypervolume(costs, ideal, nadir)
    if tally is not None:     # an enumeration: its designs, not the few trials it stored, are what was scored
        scored, valid, reasons = tally.done, tally.valid, tally.errors
    else:
        scored, valid, reasons = len(done), len(done) - sum(errors.values()), dict(errors.most_common(5))
    failure = None
    if scored and not valid:
        msg, n = next(iter(reasons.items()))
        failure = (f"all {scored:,} {'designs' if tally is not None else 'trials'} of study {study.name!r} are "
                   f"invalid; the most common reason ({n:,} of them): {msg}")
    return dict(completed=len(done), feasible=sum(1 for t in done if all(v <= 0 for v in t.constraints.values())),
                pareto=len(front), distinct=len({params_key(t.params) for t in done}), invalid=sum(errors.values()),
                errors=dict(errors.most_common(5)), hypervolume=hv, hv_basis=basis,
                exhaustive=asdict(tally) if tally is not None else None, failure=failure)


def _run_workers(study, ref, workers, target, timeout, batch, seed_base, probe, bar, sampler):
    ctx = mp.get_context("spawn")
    raw = json.loads(json.dumps(study.raw, default=str))
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_worker_entry, args=(raw, study.file, ref, i, target, timeout, batch, seed_base,
                                                     barrier, os.getpid(), sampler), daemon=False)
             for i in range(workers)]
    for p in procs:
        p.start()
    try:
        last = bar.n
        while any(p.is_alive() for p in procs):
            time.sleep(0.5)
            with guard(ref):
                done, _ = _counts(probe)
            if done > last:
                bar.update(min(done, target) - last)
                last = min(done, target)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    finally:
        for p in procs:
            p.join()
    bad = [i for i, p in enumerate(procs) if p.exitcode not in (0, None)]
    if bad:
        # a storage failure the workers died of is this process's too: read the storage once more
        # so it says the same one line (the polls above may have missed it between two reads)
        with guard(ref):
            _counts(probe)
        raise CodesignError(f"{len(bad)} of {workers} workers failed (exit codes "
                            f"{[procs[i].exitcode for i in bad]}); finished trials are kept — resume to continue")
    return {f"{socket.gethostname()}:{p.pid}" for p in procs}
