"""Re-predict the GPU validation measurements with this checkout's model (no GPU needed).

The measured times and energies in docs/validation/<run>/ stay what the device measured; the
predictions are made again with the code and specs of this checkout, for the calibrated spec
written in that run and for the library spec of the card, so the README's GPU table can be
reproduced (and moves when the model does):

    python benchmarks/bench_gpu_validation.py [--dir docs/validation/h200-2026-11-26] [--library h200]

e2e points are split into the 4 of the first calibrated run (whose symptoms set the runtime's
structural figures: dispatch ahead, kernels per op, split-KV) and the rest, measured after.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from codesign.hardware import load_hardware
from codesign.perf import evaluate, op_times
from codesign.validate.compare import LONG_KERNEL_S, SHAPE_SETS, _signature, runner_runtime, shape_ops
from codesign.workload.ops import MATRIX_KINDS
from codesign.workload.scenario import Scenario

ROOT = Path(__file__).resolve().parents[1]


def kernels(spec, measured: pd.DataFrame) -> dict:
    """MAPE of every kernel of the gpu shape set whose label was measured."""
    meas = measured.set_index("kernel")["measured_s"]
    rows, seen = [], set()
    for s in SHAPE_SETS["gpu"]:
        ops, _ = shape_ops(s, "bf16")
        ops = [o for o in ops if _signature(o) not in seen]
        seen.update(_signature(o) for o in ops)
        pred = op_times(spec, ops, dtype="bf16", runtime=runner_runtime("torch"))
        for o, (_, r) in zip(ops, pred.iterrows()):
            label = f"{s.label}/{o.name}"
            if label in meas:
                rows.append((o.kind, r["time_s"], meas[label]))
    df = pd.DataFrame(rows, columns=["kind", "predicted", "measured"])
    err = 100 * (df.predicted - df.measured) / df.measured
    long = df.kind.isin(MATRIX_KINDS) & (df.measured >= LONG_KERNEL_S)
    return {"kernels": len(df), "all": err.abs().mean(), "long_matrix": err[long].abs().mean(), "long_n": int(long.sum())}


def e2e(spec, files: list[tuple[str, Path]]) -> pd.DataFrame:
    rows = []
    for model, path in files:
        for r in pd.read_csv(path).itertuples():
            s = evaluate(spec, model, Scenario(batch=r.batch, prompt=r.prompt, generate=r.generate,
                                               runtime="pytorch-graphs")).summary
            rows.append({"file": path.name, "model": model, "batch": r.batch, "prompt": r.prompt,
                         "ttft": 100 * (s["ttft_s"] - r.ttft_measured_s) / r.ttft_measured_s,
                         "tpot": 100 * (s["tpot_s"] - r.tpot_measured_s) / r.tpot_measured_s,
                         "energy": 100 * (s["energy_per_token_j"] - r.energy_per_token_measured_j)
                         / r.energy_per_token_measured_j})
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> str:
    parts = []
    for m in ("ttft", "tpot", "energy"):
        e = df[m].to_numpy()
        parts.append(f"{m} {np.mean(np.abs(e)):.1f}% ({int((np.abs(e) <= 10).sum())}/{len(e)} within 10%)")
    return ", ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=str(ROOT / "docs" / "validation" / "h200-2026-11-26"))
    ap.add_argument("--library", default="h200")
    a = ap.parse_args()
    d = Path(a.dir)
    specs = {"calibrated": load_hardware(d / "gpu-cal.yaml"), "library": load_hardware(a.library)}
    first = [("llama-3.1-8b", d / "e2e-run3.csv")]
    later = ([("llama-3.1-8b", d / "e2e-calibrated.csv")]
             + [(p.stem.removeprefix("e2e-more-"), p) for p in sorted(d.glob("e2e-more-*.csv"))])
    for name, spec in specs.items():
        k = kernels(spec, pd.read_csv(d / ("kernels-calibrated.csv" if name == "calibrated" else "kernels-library.csv")))
        print(f"{name} ({spec.name}): kernels {k['all']:.1f}% MAPE over {k['kernels']}; GEMM + attention >= "
              f"{LONG_KERNEL_S * 1e6:.0f} us {k['long_matrix']:.1f}% over {k['long_n']}")
        a_, b_ = e2e(spec, first), e2e(spec, later)
        print(f"  e2e, the 4 points that set figures: {summary(a_)}")
        print(f"  e2e, the {len(b_)} points measured after: {summary(b_)}")
        print(f"  e2e, all {len(a_) + len(b_)}: {summary(pd.concat([a_, b_]))}")
    if (d / "e2e-mixtral.csv").exists():
        print(f"mixtral-8x7b, calibrated: {summary(e2e(specs['calibrated'], [('mixtral-8x7b', d / 'e2e-mixtral.csv')]))}")


if __name__ == "__main__":
    main()
