"""Checking the model against reality: a real kernel runner, host calibration, validation.

- :mod:`.runner`: run any operator (or one transformer layer) as a real NumPy / PyTorch
  kernel with cold inputs and time it (``run_op``, ``run_block``, ``check_op``).
- :mod:`.calibrate`: measure this machine and write a hardware spec (``codesign calibrate``).
- :mod:`.compare`: engine prediction vs measurement on real model shapes (``codesign validate``).
- :mod:`.e2e`: a whole decoder from a workload YAML in torch (CUDA-graph decode, board power)
  against ``evaluate`` (``codesign validate --e2e``); :mod:`.decoder` builds that decoder.

PyTorch and matplotlib are imported only when used.
"""
from __future__ import annotations

__all__ = ["run_op", "run_block", "check_op", "check_block", "calibrate", "validate"]


def __getattr__(name):
    if name in ("run_op", "run_block", "check_op", "check_block"):
        from . import runner
        return getattr(runner, name)
    if name == "calibrate":
        from .calibrate import calibrate
        return calibrate
    if name == "validate":
        from .compare import validate
        return validate
    raise AttributeError(name)
