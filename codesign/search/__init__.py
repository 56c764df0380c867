"""Optimisation studies: a study YAML -> exhaustive enumeration or Optuna trials -> Pareto designs.

    from codesign.search import load_study, run_study, parse_ref
    study = load_study("studies/quickstart.yaml")
    report = run_study(study, parse_ref(None, study.name), trials=200)

Modules: :mod:`.schema` (the YAML), :mod:`.space` (paths, units, conditions, derived
figures), :mod:`.metrics` (evaluation, objectives, constraints), :mod:`.samplers`
(``auto``'s choice), :mod:`.exhaustive` (enumeration, the exact front), :mod:`.front`
(Pareto masks, hypervolume), :mod:`.storage` (journal / SQLite / PostgreSQL),
:mod:`.runner` (batches, workers, resume, no design twice), :mod:`.export` (tables and
design files), :mod:`.trials` (the analysis behind the study plots), :mod:`.load` (a
study's trials by name, file or CSV, and reference devices evaluated the study's way).
"""
from __future__ import annotations

from .definition import Constraint, Study, Workload, load_study, study_from_dict
from .export import export_study, trials_frame
from .load import StudyTrials, load_trials, study_references
from .runner import RunReport, open_optuna_study, resolve_study, run_study, stored_study
from .storage import StorageRef, default_ref, parse_ref

__all__ = ["Study", "Workload", "Constraint", "load_study", "study_from_dict", "StorageRef", "parse_ref",
           "default_ref", "run_study", "resolve_study", "open_optuna_study", "stored_study", "RunReport",
           "export_study", "trials_frame", "StudyTrials", "load_trials", "study_references"]
