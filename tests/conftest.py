"""Helpers shared by the tests (import them with ``from conftest import cli``): the command
line run as a user runs it, and a study run (or read back) in a test's own results folder."""
import os
import subprocess
import sys

from codesign.search import open_optuna_study, parse_ref, run_study


def cli(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    """``codesign ARGS`` in a fresh interpreter (what a user runs): returncode, stdout, stderr.
    ``env``: variables added to this process's environment."""
    return subprocess.run([sys.executable, "-m", "codesign.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=None if env is None else {**os.environ, **env})


def run_study_in(study, tmp_path, storage=None, **kw):
    """``run_study`` on ``storage`` (default: the journal under ``tmp_path/results``), no progress bar."""
    kw.setdefault("progress", False)
    return run_study(study, parse_ref(storage, study.name, tmp_path / "results"), **kw)


def optuna_study_in(study, tmp_path, storage=None):
    """The stored Optuna study that :func:`run_study_in` wrote, opened for reading."""
    return open_optuna_study(study, parse_ref(storage, study.name, tmp_path / "results"), create=False)
