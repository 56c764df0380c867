"""Render the README's example images into docs/images/ (run from the repository root).

    python benchmarks/render_readme_images.py [--out-dir docs/images]

The images are model estimates from the library specs; rerun this script after a spec,
engine or plotting change so the README shows what the code computes:
``tests/test_readme_images.py`` fails until you do. Beside the images it writes
``fingerprints.json``: what each figure shows (its texts and a hash of its data, see
``codesign.plots.fingerprint``), which the test recomputes without drawing a pixel.

Scenario: Llama-3.1-8B, batch 8, 1024-token prompts, 256 generated tokens, bf16 (the
README's ``codesign eval`` example). The comparison, breakdown and sweep put two
data-centre GPUs beside an edge device (the first of EDGE_CANDIDATES in the library); the
roofline is the H100's alone; validation.png is the host's measured kernels
(docs/validation/host-epyc-2vcpu-numpy.csv).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from codesign import plots
from codesign.assess import evaluate_many, sweep_results
from codesign.hardware import list_hardware
from codesign.io import read_csv_table
from codesign.workload.scenario import Scenario

ROOT = Path(__file__).resolve().parents[1]
WORKLOAD = "llama-3.1-8b"
DATACENTER = ("h100-sxm", "a100-80gb")
EDGE_CANDIDATES = ("jetson-agx-orin", "l4")      # l4: a low-power data-centre card when no edge spec exists
VALIDATION_CSV = ROOT / "docs" / "validation" / "host-epyc-2vcpu-numpy.csv"
FINGERPRINTS = "fingerprints.json"


def devices() -> list[str]:
    have = {s.name for s in list_hardware()}
    return [*DATACENTER, next(d for d in EDGE_CANDIDATES if d in have)]


def figures() -> dict:
    """{file name: Figure} of every README image."""
    devs = devices()
    sc = Scenario(batch=8, prompt=1024, generate=256)
    rs = evaluate_many(devs, WORKLOAD, sc)
    return {
        "compare.png": plots.compare(rs),
        "roofline.png": plots.roofline(rs[0]),
        "breakdown.png": plots.breakdown(rs),
        "sweep-batch.png": plots.sweep(sweep_results(devs, WORKLOAD, sc, over="batch",
                                                     values=(1, 2, 4, 8, 16, 32, 64, 128))),
        "validation.png": plots.validation(read_csv_table(VALIDATION_CSV)),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=ROOT / "docs" / "images", type=Path)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    figs = figures()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    prints = {}
    for name, fig in figs.items():
        path = plots.save(fig, args.out_dir / name)
        prints[name] = plots.fingerprint(fig)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    out = args.out_dir / FINGERPRINTS
    out.write_text(json.dumps(prints, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}; devices: {', '.join(devices())}; {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
