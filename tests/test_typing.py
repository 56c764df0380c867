"""Static types (issue 16): the modules listed here stay mypy-clean.

mypy reads its settings from pyproject.toml ([tool.mypy]). The modules below are
checked explicitly; the modules they import are analysed for their types but their
own errors are not reported (``--follow-imports=silent``), so one module that is not
clean yet does not fail the others. When a module becomes clean, add it here.

Not clean yet: none. Every module of the package (``codesign`` and all its submodules)
is listed, so ``mypy codesign`` reports no errors either.
"""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CLEAN_MODULES = (
    "codesign",
    "codesign.accuracy",
    "codesign.accuracy.bands",
    "codesign.accuracy.core",
    "codesign.accuracy.fit",
    "codesign.accuracy.mapping",
    "codesign.assess",
    "codesign.cli",
    "codesign.cli.__main__",
    "codesign.cli.accuracy",
    "codesign.cli.common",
    "codesign.cli.evaluate",
    "codesign.cli.hardware",
    "codesign.cli.plot",
    "codesign.cli.serve",
    "codesign.cli.study",
    "codesign.cli.validate",
    "codesign.cli.workload",
    "codesign.compression",
    "codesign.errors",
    "codesign.hardware",
    "codesign.hardware.area",
    "codesign.hardware.area_fit",
    "codesign.hardware.credibility",
    "codesign.hardware.crosscheck",
    "codesign.hardware.schema",
    "codesign.io",
    "codesign.metrics",
    "codesign.perf",
    "codesign.perf.engine",
    "codesign.perf.evaluate",
    "codesign.perf.params",
    "codesign.perf.steps",
    "codesign.plots",
    "codesign.plots.devices",
    "codesign.plots.serving",
    "codesign.plots.studies",
    "codesign.plots.style",
    "codesign.plots.validation",
    "codesign.quality",
    "codesign.quantize",
    "codesign.report",
    "codesign.runtime",
    "codesign.runtime.fitted",
    "codesign.runtime.schema",
    "codesign.search",
    "codesign.search.definition",
    "codesign.search.exhaustive",
    "codesign.search.export",
    "codesign.search.front",
    "codesign.search.load",
    "codesign.search.metrics",
    "codesign.search.runner",
    "codesign.search.samplers",
    "codesign.search.schema",
    "codesign.search.space",
    "codesign.search.storage",
    "codesign.search.trials",
    "codesign.serve",
    "codesign.serve.api",
    "codesign.serve.metrics",
    "codesign.serve.sim",
    "codesign.serve.traffic",
    "codesign.units",
    "codesign.validate",
    "codesign.validate.calibrate",
    "codesign.validate.compare",
    "codesign.validate.host",
    "codesign.validate.kernels",
    "codesign.validate.runner",
    "codesign.validate.timing",
    "codesign.workload",
    "codesign.workload.graph",
    "codesign.workload.hf",
    "codesign.workload.ops",
    "codesign.workload.scenario",
    "codesign.workload.schema",
)


def test_clean_modules_exist():
    missing = [m for m in CLEAN_MODULES if importlib.util.find_spec(m) is None]
    assert not missing, f"listed as mypy-clean but not found: {missing}"


def test_mypy_clean_modules():
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    args = [a for m in CLEAN_MODULES for a in ("-m", m)]
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--follow-imports=silent", *args]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"mypy found errors in modules listed as clean:\n{r.stdout}{r.stderr}"
