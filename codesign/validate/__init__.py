"""Checking the model against reality: a real kernel runner, host calibration, validation.

- :mod:`.runner`: run any operator (or one transformer layer) as a real NumPy / PyTorch
  kernel with cold inputs and time it (``run_op``, ``run_block``, ``check_op``).
- :mod:`.calibrate`: measure this machine and write a hardware spec (``codesign calibrate``;
  the function is ``codesign.validate.calibrate.calibrate``: the package attribute is the module).
- :mod:`.compare`: engine prediction vs measurement on real model shapes (``codesign validate``).
- :mod:`.e2e`: a whole decoder from a workload YAML in torch (CUDA-graph decode, board power)
  against ``evaluate`` (``codesign validate --e2e``); :mod:`.decoder` builds that decoder.

PyTorch, an optional dependency, is imported only when used (``kernels.require_torch``).
"""
from __future__ import annotations

from .compare import validate
from .runner import check_block, check_op, run_block, run_op

__all__ = ["run_op", "run_block", "check_op", "check_block", "validate"]
