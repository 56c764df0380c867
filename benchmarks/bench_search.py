"""Search quality: samplers against the exact Pareto front of each ready study.

    python benchmarks/bench_search.py                    # the ready studies whose space is discrete
    python benchmarks/bench_search.py --discretise 11    # also the others, each continuous dimension
                                                         # given 11 levels (samplers search that same
                                                         # space); ~5 min with one seed
    python benchmarks/bench_search.py --max-trials 200 --seeds 3 --samplers study,tpe

For each study: the exact front by enumeration (``sampler: exhaustive``), then each sampler
(the one the study names, TPE, NSGA-II, random) at the study's budget (``trials``, capped
by ``--max-trials``), through ``run_study`` with a journal storage as a user runs it.
Columns: designs in the space; trials and distinct designs evaluated; wall time; ``hv``, the
front's hypervolume divided by the exact front's, both scaled by the exact front's ideal
and nadir points (codesign.search.front: reference point = nadir + 10% of each range);
``found``, the exact front's distinct objective vectors that the sampler's front reached.
``auto`` marks the sampler that ``sampler: auto`` would fall back to for a continuous space
at that budget (for a discrete space that fits, auto enumerates: hv 1 by construction).

Measured here (2 vCPU shared with other work, Optuna 5.0.0, ``--discretise 11 --seeds 3``,
12 min in all; the default run, the two discrete studies only, takes ~15 s; hv: mean (min)
over 3 seeds; seconds: the mean wall time of one run):

    study (designs)                 exhaustive       nsga2 (study's)        tpe                    random
    compression-only (54)           0.1 s            0.997 (0.990) 0.4 s    1.000 (1.000)  1.6 s   1.000 (1.000) 0.3 s
    fpga-dtype-compression (1,620)  0.1 s            0.963 (0.924) 1.4 s    1.000 (1.000)  8.3 s   0.980 (0.947) 1.2 s
    quickstart (7,920)              0.8 s            0.993 (0.987) 0.4 s    0.999 (0.998)  1.2 s   0.980 (0.962) 0.3 s
    datacenter-vs-h100 (16,500)     4.3 s            1.000 (1.000) 5.6 s    1.000 (1.000) 46.3 s   0     (0)     4.2 s
    edge-npu-10w (297,792)         28.7 s            1.000 (1.000) 13.5 s   1.000 (1.000) 136 s    0.609 (0.497) 7.0 s

(The ready studies have since stopped searching on-chip buffer/L2 capacity, which changed no
time in their scenarios: quickstart now has 2,448 designs, datacenter-vs-h100 3,000 and
edge-npu-10w 49,632, enumerated by auto in 0.3 s, 0.8 s and 5.4 s.)

Budgets: the studies' trials (300, 800, 200, 2,000, 3,000). Distinct designs per run were
far below the trials for the Optuna samplers (NSGA-II: 48 of 300, 280 of 800, 172 of 200,
781 of 2,000, 1,131 of 3,000; TPE: 42, 292, 146, 544, 747): repeats are answered from the
study, not evaluated. Enumeration (~10^4 designs/s here) took about as long as NSGA-II at
the study's budget up to ~10^4 designs and twice as long at 3 x 10^5, for the exact front.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from codesign.search import load_study, parse_ref, study_from_dict  # noqa: E402
from codesign.search.exhaustive import continuous_dims  # noqa: E402
from codesign.search.front import hypervolume, to_costs  # noqa: E402
from codesign.search.runner import open_optuna_study, run_study  # noqa: E402
from codesign.search.samplers import TPE_MAX_TRIALS  # noqa: E402


def discretised(study, levels: int):
    """The study with each continuous dimension given ``levels`` evenly spaced values (SI step)."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in study.raw.items()}
    for d in continuous_dims(study.space):
        section = "compression" if d.target == "compression" else "space"
        raw[section][d.name] = dict(raw[section][d.name], step=(d.high - d.low) / (levels - 1), log=False,
                                    type="float")
    return study_from_dict(raw, file=study.file)


def with_sampler(study, name: str, seed: int):
    raw = dict(study.raw)
    keep = study.spec.sampler.name == name          # the study's own settings for its own sampler
    raw["sampler"] = {"name": name, "seed": seed, "options": dict(study.spec.sampler.options) if keep else {}}
    return study_from_dict(raw, file=study.file)


def front_of(study, folder: Path, tag: str):
    ref = parse_ref(str(folder / f"{tag}.journal"))
    ost = open_optuna_study(study, ref, create=False)
    best = ost.best_trials
    return ost, best, to_costs([t.values for t in best], study.directions)


def bench_study(study, tmp: Path, samplers, seeds: int, max_trials: int | None) -> list[dict]:
    exact_study = with_sampler(study, "exhaustive", 0)
    t0 = time.perf_counter()
    rep = run_study(exact_study, parse_ref(str(tmp / "exact.journal")), progress=False)
    exact_s = time.perf_counter() - t0
    _, _, exact = front_of(exact_study, tmp, "exact")
    print(f"  {study.name}: exhaustive: {rep.exhaustive['designs']:,} designs in {exact_s:.1f} s", file=sys.stderr,
          flush=True)
    tally = rep.exhaustive
    ideal, nadir = np.array(tally["ideal"]), np.array(tally["nadir"])
    hv_exact = hypervolume(exact, ideal, nadir)
    points = np.unique(exact, axis=0)
    rows = [{"study": study.name, "designs": tally["designs"], "sampler": "exhaustive", "trials": tally["done"],
             "distinct": tally["done"], "seconds": exact_s, "hv": 1.0, "hv_min": 1.0, "found": f"{len(points)}/{len(points)}",
             "note": f"{tally['feasible']:,} feasible"}]
    budget = min(study.spec.trials, max_trials or study.spec.trials)
    fallback = "tpe" if budget <= TPE_MAX_TRIALS else "nsga2"
    own = study.spec.sampler.name if study.spec.sampler.name not in ("auto", "exhaustive") else fallback
    for name in dict.fromkeys(own if s == "study" else s for s in samplers):
        per_seed = []
        for seed in range(seeds):
            st = with_sampler(study, name, seed + (study.spec.sampler.seed or 0))
            tag = f"{name}-{seed}"
            t0 = time.perf_counter()
            r = run_study(st, parse_ref(str(tmp / f"{tag}.journal")), trials=budget, progress=False)
            dt = time.perf_counter() - t0
            _, best, costs = front_of(st, tmp, tag)
            hv = hypervolume(costs, ideal, nadir) / hv_exact if hv_exact > 0 else float("nan")
            found = sum(any(np.allclose(p, c, rtol=1e-12, atol=0) for c in costs) for p in points)
            per_seed.append((r.completed, r.distinct, dt, hv, found))
            print(f"  {study.name}: {name} seed {seed}: hv {hv:.4f}, {found}/{len(points)} found, {dt:.1f} s",
                  file=sys.stderr, flush=True)
        cols = list(zip(*per_seed))
        note = "auto's fallback" if name == fallback else ""
        if name == study.spec.sampler.name:
            note = "the study's sampler" + (f", {note}" if note else "")
        rows.append({"study": study.name, "designs": tally["designs"], "sampler": name, "trials": max(cols[0]),
                     "distinct": statistics.mean(cols[1]), "seconds": statistics.mean(cols[2]),
                     "hv": statistics.mean(cols[3]), "hv_min": min(cols[3]),
                     "found": f"{statistics.mean(cols[4]):.1f}/{len(points)}", "note": note})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--discretise", type=int, default=0, metavar="N",
                    help="give each continuous dimension N levels, so every ready study is enumerable")
    ap.add_argument("--max-trials", type=int, default=None, help="cap each sampler's budget (default: the study's)")
    ap.add_argument("--seeds", type=int, default=1, help="runs per sampler (mean and min of hv reported)")
    ap.add_argument("--samplers", default="study,tpe,nsga2,random",
                    help="comma-separated; 'study' is the sampler the study names")
    ap.add_argument("--studies", default=None, help="comma-separated study names (default: every ready study)")
    args = ap.parse_args(argv)
    import warnings
    warnings.filterwarnings("ignore")
    samplers = list(dict.fromkeys(s.strip() for s in args.samplers.split(",") if s.strip()))
    wanted = set(args.studies.split(",")) if args.studies else None
    rows = []
    for path in sorted((REPO / "studies").glob("*.yaml")):
        study = load_study(path)
        if wanted and study.name not in wanted:
            continue
        cont = continuous_dims(study.space)
        if cont and not args.discretise:
            print(f"{study.name}: skipped, dimension {cont[0].name!r} is continuous (--discretise N to include it)")
            continue
        if cont:
            study = discretised(study, args.discretise)
        with tempfile.TemporaryDirectory() as d:
            rows += bench_study(study, Path(d), samplers, args.seeds, args.max_trials)
    from codesign.cli.common import echo_table
    echo_table(rows)
    return rows


if __name__ == "__main__":
    main()
