"""``codesign study run|resume|status|best|export``: optimisation studies (codesign.search)."""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import click

from ..errors import CodesignError
from ..io import library
from ..search import load_study, parse_ref
from ..search.exhaustive import ATTR, Tally
from ..search.export import export_study, trials_frame, unique_front
from ..search.front import MARGIN
from ..search.runner import describe_trial, open_optuna_study, resolve_study, run_study, stale_trials
from ..search.space import params_key
from ..search.storage import JOURNAL_FILE, SQLITE_FILE, guard
from .common import echo_json, echo_table, with_units

_STORAGE = click.option("--storage", default=None, metavar="URL",
                        help="sqlite:///path.db, postgresql://user@host/db, or a .journal path "
                             "(default: results/<name>/study.journal).")
_RESULTS = click.option("--results-dir", default="results", show_default=True, type=click.Path(file_okay=False),
                        help="Folder of the default embedded storages.")


@click.group("study")
def study():
    """Optimisation studies: tune chip parameters and compression with Optuna.

    \b
    Examples:
      codesign study list
      codesign study run studies/quickstart.yaml
      codesign study run studies/edge-npu-10w.yaml --workers 2 --trials 2000
      codesign study status quickstart
      codesign study best quickstart
      codesign study export quickstart --out out/quickstart
    """


def _run_opts(f):
    f = click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")(f)
    f = click.option("--batch", type=click.IntRange(min=1), default=None,
                     help="Trials asked and evaluated together (default: the sampler's generation size).")(f)
    f = click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Processes sharing the study's storage on this machine.")(f)
    f = click.option("--timeout", type=float, default=None, help="Stop after this many seconds.")(f)
    f = click.option("--trials", type=click.IntRange(min=1), default=None,
                     help="Completed trials the study should hold (default: the study file's 'trials'); "
                          "an enumerated space is scored in full instead.")(f)
    return _RESULTS(_STORAGE(f))


def _go(st, sref, trials, timeout, workers, batch, progress, fail_stale=None):
    rep = run_study(st, sref, trials=trials, timeout=timeout, workers=workers, batch=batch, progress=progress,
                    say=click.echo, fail_stale=fail_stale)
    if rep.interrupted_marked:
        click.echo(f"marked {rep.interrupted_marked} interrupted trial(s) of a killed run as FAIL")
    if rep.exhaustive is not None:
        tally = Tally(**rep.exhaustive)
        rate = tally.done / tally.seconds if tally.seconds > 0 else math.nan
        click.echo(f"{rep.name}: {tally.summary()} ({tally.seconds:.1f} s in all, {rate:,.0f} designs/s)")
        if not tally.complete:
            click.echo("stopped before the end: run it again to continue the enumeration")
        click.echo(f"{rep.completed} trials stored, {rep.pareto} distinct designs on the Pareto front")
    else:
        click.echo(f"{rep.name}: {rep.completed} completed trials ({rep.new} new in {rep.seconds:.1f} s, "
                   f"{rep.trials_per_s:.1f} trials/s), {rep.distinct} distinct designs, {rep.feasible} feasible, "
                   f"{rep.pareto} on the Pareto front")
    if rep.pareto:
        click.echo(f"hypervolume of the front: {rep.hypervolume:.4f} (objectives scaled by {rep.hv_basis}; "
                   f"reference point: the nadir + {MARGIN:.0%} of each range)")
    click.echo(f"storage: {rep.storage}")
    if rep.credibility:
        shown = sorted(rep.credibility.items())[:3]
        click.echo(f"note: {len(rep.credibility)} of the {rep.pareto} front designs are outside the chips that exist "
                   f"(study export lists each design's reasons), e.g.")
        for number, notes in shown:
            click.echo(f"  trial {number}: {'; '.join(notes)}")
    if rep.running_elsewhere:
        shown = "; ".join(rep.running_elsewhere[:3]) + (" ..." if len(rep.running_elsewhere) > 3 else "")
        click.echo(f"note: {rep.completed} of the {trials or st.spec.trials} trials are complete; "
                   f"{len(rep.running_elsewhere)} are still RUNNING under other workers ({shown}). If those workers "
                   f"are gone, `codesign study resume {st.name} --fail-stale` marks them FAIL and goes on")
    if rep.failure:
        raise CodesignError(rep.failure, file=st.file)


@study.command("run")
@click.argument("file")
@_run_opts
def run_cmd(file, storage, results_dir, trials, timeout, workers, batch, progress):
    """Run the study in FILE (continues it when it already exists in the storage)."""
    st = load_study(file)
    _go(st, parse_ref(storage, st.name, results_dir), trials, timeout, workers, batch, progress)


@study.command("resume")
@click.argument("ref", metavar="NAME|FILE")
@_run_opts
@click.option("--fail-stale", "fail_stale", is_flag=False, flag_value=-1.0, default=None, type=float,
              metavar="[SECONDS]", help="Mark FAIL the trials other hosts (or no owner) left RUNNING longer than "
                                        "this (alone: codesign.search.runner.STALE_AFTER_S, 10 min).")
def resume_cmd(ref, storage, results_dir, trials, timeout, workers, batch, progress, fail_stale):
    """Continue a study (by name, as stored) until it holds its number of trials."""
    st, sref = resolve_study(ref, storage, results_dir)
    _go(st, sref, trials, timeout, workers, batch, progress, fail_stale)


def _open(ref, storage, results_dir):
    st, sref = resolve_study(ref, storage, results_dir)
    return st, sref, open_optuna_study(st, sref, create=False)


@study.command("list")
@_RESULTS
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_cmd(results_dir, as_json):
    """Ready studies in the library, and the studies stored under the results folder."""
    rows, seen = [], set()
    for _, path in sorted(library("studies").items()):
        if path in seen:
            continue
        seen.add(path)
        st = load_study(path)
        stored = [f for f in (Path(results_dir) / st.name / JOURNAL_FILE, Path(results_dir) / st.name / SQLITE_FILE)
                  if f.exists()]
        rows.append({"name": st.name, "hardware": st.base.name, "sampler": st.spec.sampler.name,
                     "trials": st.spec.trials, "objectives": ", ".join(st.objectives),
                     "stored": str(stored[0]) if stored else "", "description": st.spec.description or ""})
    names = {r["name"] for r in rows}
    for f in sorted(Path(results_dir).glob(f"*/{JOURNAL_FILE}")) + sorted(Path(results_dir).glob(f"*/{SQLITE_FILE}")):
        if f.parent.name not in names:
            rows.append({"name": f.parent.name, "stored": str(f)})
    echo_json(rows) if as_json else echo_table(rows, ["name", "hardware", "sampler", "trials", "objectives", "stored"])


@study.command("status")
@click.argument("ref", metavar="NAME|FILE")
@_STORAGE
@_RESULTS
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_cmd(ref, storage, results_dir, as_json):
    """Trial counts, feasibility, the best value of each objective, where the study lives."""
    st, sref, ost = _open(ref, storage, results_dir)
    with guard(sref):
        trials = ost.get_trials(deepcopy=False)
        front = unique_front(ost)
    states = Counter(t.state.name for t in trials)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    feas = [t for t in done if all(v <= 0 for v in t.constraints.values())]
    invalid = [t for t in done if t.user_attrs.get("error")]
    errors = Counter(t.user_attrs["error"] for t in invalid).most_common(3)
    violated = Counter(k for t in done for k, v in t.constraints.items() if v > 0)
    best = {}
    for i, (m, d) in enumerate(zip(st.objectives, st.directions)):
        vals = [t.values[i] for t in feas]
        best[m] = (min if d == "minimize" else max)(vals) if vals else math.nan
    enumerated = ost.user_attrs.get(ATTR)
    info = {"name": st.name, "storage": sref.label, "target_trials": st.spec.trials,
            "exhaustive": Tally(**enumerated).summary() if enumerated else "",
            "complete": states.get("COMPLETE", 0), "distinct": len({params_key(t.params) for t in done}),
            "running": states.get("RUNNING", 0),
            "stale": [describe_trial(t) for t in stale_trials(ost)],
            "failed_or_interrupted": states.get("FAIL", 0), "feasible": len(feas), "invalid": len(invalid),
            "pareto": len(front), "best": best, "violations": dict(violated),
            "common_errors": [f"{n} x {e}" for e, n in errors], "dashboard": sref.dashboard_hint()}
    if as_json:
        echo_json(info)
        return
    for k, v in info.items():
        if k == "best":
            for m, x in v.items():
                click.echo(f"  best {m:<24} {x:.4g}")
        elif v not in ({}, [], ""):
            click.echo(f"{k:<22} {v}")


@study.command("best")
@click.argument("ref", metavar="NAME|FILE")
@_STORAGE
@_RESULTS
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--limit", type=int, default=50, show_default=True, help="Rows to show.")
def best_cmd(ref, storage, results_dir, as_json, limit):
    """The feasible Pareto front (distinct designs): parameters and objective values."""
    st, sref, ost = _open(ref, storage, results_dir)
    with guard(sref):
        df = trials_frame(st, ost)
    if df.empty or not df["pareto"].any():
        click.echo("no feasible design yet (see 'codesign study status')")
        return
    params = [c for c in df.columns if c.startswith("params.")]
    front = df[df["pareto"]].drop_duplicates(subset=params)
    front = front.sort_values(st.objectives[0], ascending=st.directions[0] == "minimize")
    cols = ["number"] + list(st.objectives) + [c for c in front.columns if c.startswith("params.")]
    extra = [m for m in ("area_mm2", "power_w", "memory_bytes") if m in front.columns and m not in cols]
    rows = front[cols + extra].head(limit)
    rows = rows.rename(columns={c: c[len("params."):] for c in cols if c.startswith("params.")})
    if as_json:
        echo_json(rows.to_dict(orient="records"))
    else:
        echo_table(with_units(rows.to_dict(orient="records")))


@study.command("export")
@click.argument("ref", metavar="NAME|FILE")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write.")
@_STORAGE
@_RESULTS
def export_cmd(ref, out, storage, results_dir):
    """All trials (CSV + Parquet), the Pareto table and each Pareto design as YAML files."""
    st, sref, ost = _open(ref, storage, results_dir)
    with guard(sref):
        info = export_study(st, ost, out)
    click.echo(f"wrote {info['trials']} trials, {len(info['pareto'])} Pareto designs to {info['folder']}")


COMMANDS = [study]
