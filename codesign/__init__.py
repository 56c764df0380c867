"""codesign: choose or design a chip for LLM inference, and the compression to fit it.

The Python API (every CLI command is a thin layer over these)::

    from codesign import load_hardware, load_workload, evaluate, Scenario, Compression
    r = evaluate(load_hardware("h100-sxm"), load_workload("llama-3.1-8b"), Scenario(batch=8))
    r.summary, r.ops

Heavy dependencies (matplotlib, torch, optuna) are imported only by the parts that use them.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .compression import Compression
from .errors import CodesignError
from .hardware import HardwareSpec, list_hardware, load_hardware
from .workload import ModelSpec, Scenario, list_workloads, load_workload

if TYPE_CHECKING:
    from .assess import evaluate
    from .perf import evaluate_batch

__version__ = "0.1.0"
__all__ = ["Compression", "CodesignError", "HardwareSpec", "ModelSpec", "Scenario", "evaluate", "evaluate_batch",
           "list_hardware", "list_workloads", "load_hardware", "load_workload", "__version__"]

# names that load the engine on first use (PEP 562), so that reading a spec or a workload
# loads no engine (tests/test_layers.py): name -> the module that defines it
_ENGINE = {"evaluate": "codesign.assess", "evaluate_batch": "codesign.perf"}


def __getattr__(name: str):
    """``codesign.evaluate`` (:func:`codesign.assess.evaluate`: the engine plus the quality
    estimate) and ``codesign.evaluate_batch`` (:func:`codesign.perf.evaluate_batch`)."""
    if name in _ENGINE:
        return getattr(importlib.import_module(_ENGINE[name]), name)
    raise AttributeError(f"module 'codesign' has no attribute {name!r}")
