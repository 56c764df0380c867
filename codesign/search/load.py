"""A study's results for the plots and the report: its trials, loaded by study name or
file (from the study's storage) or from an exported trials CSV, and reference devices
evaluated on the study's workloads with the study's own metric aggregation.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd

from ..errors import CodesignError
from ..io import read_csv_table
from ..metrics import direction
from .definition import Study, study_from_dict
from .export import trials_frame
from .metrics import Evaluator
from .runner import open_optuna_study, resolve_study
from .storage import guard
from .trials import Trials


@dataclass
class StudyTrials:
    """What the study plots need: the trials table, objectives and their directions."""
    trials: pd.DataFrame
    objectives: list
    directions: list
    name: str
    study: Study | None = None                  # when loaded from a study
    optuna_study: optuna.Study | None = None    # when loaded from storage


def load_trials(study: str | None = None, storage: str | None = None, trials_csv=None, objectives=None,
                results_dir=None) -> StudyTrials:
    """A study by name or file (with ``storage``), or an exported trials CSV.

    The CSV is what ``codesign study export`` writes (``trials.csv``: params.<name>, metric
    columns, feasible, constraints.<name>) or Optuna's ``trials_dataframe()`` (params_<name>,
    values_<metric>); a CSV without values_ columns needs ``objectives``.
    """
    if (study is None) == (trials_csv is None):
        raise CodesignError("give either --study NAME|FILE or --trials CSV", field="--study")
    if trials_csv is not None:
        path = Path(trials_csv)
        df = read_csv_table(path)
        objs = list(objectives) if objectives else [c for c in df.columns if c.startswith("values_")]
        if not objs:
            raise CodesignError("no values_<metric> columns: name the objectives (e.g. --objectives "
                                "tpot_s,energy_per_token_j)", file=path)
        t = Trials(df, objs)     # checks the columns exist
        return StudyTrials(df, t.names, t.directions, path.stem)
    assert study is not None        # exactly one of study / trials_csv, checked above
    st, sref = resolve_study(study, storage, results_dir)
    ost = open_optuna_study(st, sref, create=False)
    with guard(sref):
        df = trials_frame(st, ost)
    if df.empty:
        raise CodesignError(f"study {st.name!r} has no trials yet (run it first)", file=sref.label)
    objs = list(objectives) if objectives else list(st.objectives)
    dirs = [st.directions[st.objectives.index(o)] if o in st.objectives else None for o in objs]
    dirs = [d or direction(o) for d, o in zip(dirs, objs)]
    return StudyTrials(df, objs, dirs, st.name, st, ost)


def study_references(study: Study, devices=(), include_base: bool = True) -> dict:
    """{label: metrics} for the study's base device and other devices, each evaluated
    unmodified and uncompressed on the study's workloads with the study's own aggregation
    (codesign.search.metrics: weighted mean over workloads, area/cost model), so the
    points are comparable with the trials. A device that cannot be evaluated is skipped
    with its reason under the key ``"_skipped"``."""
    out, skipped = {}, {}
    raw = {k: v for k, v in study.raw.items() if k not in ("space", "compression", "scale_with")}
    refs = ([(f"base: {study.base.title}", raw["hardware"])] if include_base else [])
    refs += [(d, d) for d in devices]
    for label, hw in refs:
        try:
            ref_study = study_from_dict({**raw, "hardware": hw}, file=study.file)
            o = Evaluator(ref_study)([{}])[0]
        except CodesignError as e:
            skipped[label] = str(e)
            continue
        if o.error:
            skipped[label] = o.error
            continue
        name = label if label.startswith("base: ") else ref_study.base.title
        out[name] = {**o.metrics, **dict(zip(study.objectives, o.values)), "feasible": o.feasible}
    if skipped:
        out["_skipped"] = skipped
    return out
