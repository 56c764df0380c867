#!/usr/bin/env python
"""Area benchmark: the per-class calibrated area model against public die areas.

    python benchmarks/bench_area.py [--dies data/die-areas.csv] [--worst 3] [--rows] [--alternatives]

For every device class of codesign.hardware.area.CLASS_CALIBRATION: the dies of
data/die-areas.csv whose ``use`` is ``fit``, the multipliers a fresh fit gives (compare with the
stored table), the in-sample MAPE and the leave-one-chip-out (LOCO) MAPE - each die predicted by
a fit without it - and the worst dies. Target (issue 17): LOCO MAPE <= 15 % per class over >= 20
dies in >= 4 classes. ``--alternatives`` also fits the other structures that were measured before
the class table was settled (codesign.hardware.area_fit.ALTERNATIVES: per-core control that grows
with the core's datapath, other free pairs, a DRAM / SRAM-only split) and prints their errors.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:          # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from codesign.hardware import area as A  # noqa: E402
from codesign.hardware import area_fit as F  # noqa: E402

TARGET_LOCO = 0.15


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dies", default=None, help="die-area CSV (default data/die-areas.csv)")
    ap.add_argument("--worst", type=int, default=3, help="worst dies (by LOCO error) shown per class")
    ap.add_argument("--rows", action="store_true", help="show every die, not only the worst")
    ap.add_argument("--alternatives", action="store_true", help="also fit the alternative structures per class")
    args = ap.parse_args(argv)

    dies = F.load_dies(args.dies)
    reports = F.report(dies)
    print(f"{len(dies)} dies in {len(reports)} classes ({F.default_path() if args.dies is None else args.dies})\n")
    print(f"{'class':5s} {'n':>3s}  {'datapath':>8s} {'core':>7s} {'sram':>6s}  {'fitted':14s} {'in-sample':>9s} "
          f"{'LOCO':>6s}  target")
    for cls, r in reports.items():
        f, stored = r.fitted, A.CLASS_CALIBRATION[cls]
        ok = "ok" if r.loco_mape <= TARGET_LOCO else "MISSED"
        print(f"{cls:5s} {r.n:3d}  {f.datapath:8.3f} {f.core:7.3f} {f.sram:6.3f}  {','.join(stored.free):14s} "
              f"{r.mape:9.1%} {r.loco_mape:6.1%}  {ok}")
    for cls, r in reports.items():
        rows = sorted(r.rows, key=lambda row: -abs(row[3] / row[1] - 1))
        shown = rows if args.rows else rows[:args.worst]
        print(f"\n{cls}: {'every die' if args.rows else f'worst {len(shown)} by LOCO error'}")
        print(f"  {'die':52s} {'published':>9s} {'in-sample':>10s} {'LOCO':>10s}")
        for chip, pub, est, loco in shown:
            print(f"  {chip[:52]:52s} {pub:9.1f} {est:7.0f} {est / pub - 1:+4.0%} {loco:7.0f} {loco / pub - 1:+4.0%}")
    if args.alternatives:
        print("\nalternative structures (free multipliers fitted; 'rest' x 1):")
        print(f"  {'class':5s} {'structure':55s} {'in-sample':>9s} {'LOCO':>6s}  fitted")
        for cls in reports:
            mine = [d for d in dies if d.device_class == cls]
            for name, free, fixed in F.ALTERNATIVES:
                p, ins, loco = F.alternative(mine, free, fixed)
                fitted = ", ".join(f"{k} {v:.3g}" for k, v in p.items())
                print(f"  {cls:5s} {name[:55]:55s} {ins:9.1%} {loco:6.1%}  {fitted}")
    path = args.dies or F.default_path()
    with open(path, newline="", encoding="utf-8") as fh:
        excluded = [(r["chip"], r["use"]) for r in csv.DictReader(fh) if r["use"].strip() != "fit"]
    if excluded:
        print("\nnot fitted:")
        for chip, why in excluded:
            print(f"  {chip}: {why}")
    n_classes = len(reports)
    met = all(r.loco_mape <= TARGET_LOCO for r in reports.values()) and len(dies) >= 20 and n_classes >= 4
    print(f"\ntarget LOCO <= {TARGET_LOCO:.0%} per class over >= 20 dies in >= 4 classes: {'met' if met else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
