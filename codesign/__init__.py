"""codesign: choose or design a chip for LLM inference, and the compression to fit it.

The Python API (every CLI command is a thin layer over these)::

    from codesign import load_hardware, load_workload, evaluate, Scenario, Compression
    r = evaluate(load_hardware("h100-sxm"), load_workload("llama-3.1-8b"), Scenario(batch=8))
    r.summary, r.ops

Heavy dependencies (matplotlib, torch, optuna) are imported only by the parts that use them.
"""
from __future__ import annotations

from .compression import Compression
from .errors import CodesignError
from .hardware import HardwareSpec, list_hardware, load_hardware
from .workload import ModelSpec, Scenario, list_workloads, load_workload

__version__ = "0.1.0"
__all__ = ["Compression", "CodesignError", "HardwareSpec", "ModelSpec", "Scenario", "evaluate", "evaluate_batch",
           "list_hardware", "list_workloads", "load_hardware", "load_workload", "__version__"]


def evaluate(*args, **kwargs):
    """:func:`codesign.perf.evaluate` with the quality estimate next to the speed
    (:func:`codesign.assess.evaluate`)."""
    from .assess import evaluate as _evaluate
    return _evaluate(*args, **kwargs)


def evaluate_batch(*args, **kwargs):
    """See :func:`codesign.perf.evaluate_batch`."""
    from .perf import evaluate_batch as _evaluate_batch
    return _evaluate_batch(*args, **kwargs)
