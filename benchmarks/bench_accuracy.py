#!/usr/bin/env python
"""Accuracy benchmark: codesign against the published measurements in data/.

    python benchmarks/bench_accuracy.py [--measurements FILE.csv] [--runtime R] [--csv out.csv] [--json]

A thin wrapper over ``codesign accuracy`` (codesign/accuracy): every row of
data/published-measurements.csv is mapped to a (spec, workload, scenario, compression,
runtime) and predicted with the runtimes as they are (in-sample: their fitted figures
came from these rows), then again with every runtime refitted without the row's source
(leave-one-source-out: the headline). Targets (issue 11): LOSO MAPE <= 20% overall,
decode <= 15%, prefill <= 25%, energy per token <= 25%.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:          # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from codesign.cli import run  # noqa: E402

TARGETS = {"all": 0.20, "decode": 0.15, "prefill": 0.25, "energy": 0.25}


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    run(["accuracy", "--by", "class,runtime,publisher", "--worst", "15", *argv])


if __name__ == "__main__":
    main()
