"""Serving simulator: speed, and accuracy against published serving-under-load results.

    python benchmarks/bench_serve.py              # both
    python benchmarks/bench_serve.py --speed      # 10^4 requests, --find-max-rate
    python benchmarks/bench_serve.py --accuracy [--csv out.csv]

Accuracy: every row of data/serving-measurements.csv that names its lengths and load is
replayed (same device, model, precision, software, lengths, arrival process and request
count) and the published throughput, TTFT and TPOT are compared with the prediction.
Nothing in the serving simulator is fitted to these rows, so every figure is out of
sample. Rows are skipped, with the reason printed, when their input lengths are not
published (MLPerf), when the publisher flags them as unreliable (Lambda: empty outputs), or
when their device or model has no library spec.

Scheduler per software (from their documentation, not fitted): vLLM <= 0.6 and SGLang 0.3
run prefill-only steps between decode steps (``continuous``); TensorRT-LLM (and NIM on it)
batch prompts into the running decode steps (in-flight batching: ``chunked``), with its
defaults: GUARANTEED_NO_EVICT capacity scheduling (a request's output blocks are reserved at
admission, nothing is preempted) and no chunked context (whole prompts). Every run sits
behind its runtime's API server (codesign.serve.sim.runtime_frontend: a serial stage with per-request
and per-streamed-token work, estimates sourced in the runtime files). A row's own vLLM flags
(--num-scheduler-steps, --max-num-seqs, --gpu-memory-utilization) are read from its notes.
ShareGPT rows without published lengths use the dataset's benchmark_serving statistics
(mean 215.7 prompt / 187 output tokens over 1024 prompts, AUGMXNT rows of the same file),
drawn lognormal with a standard deviation equal to the mean (ShareGPT is heavy-tailed).
"""
from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codesign.accuracy.mapping import auto_hardware, auto_model, auto_precision  # noqa: E402
from codesign.compression import Compression  # noqa: E402
from codesign.errors import CodesignError  # noqa: E402
from codesign.serve import Policy, engines, find_max_rate, make_requests, simulate  # noqa: E402
from codesign.workload.scenario import Scenario  # noqa: E402

SHAREGPT = (215.7, 187.0)
# (published column, simulated summary key, label)
METRICS = [("throughput_req_per_s", "throughput_req_per_s", "throughput"),
           ("mean_ttft_ms", "ttft_mean_s", "TTFT mean"), ("median_ttft_ms", "ttft_p50_s", "TTFT median"),
           ("mean_tpot_ms", "tpot_mean_s", "TPOT mean"), ("median_tpot_ms", "tpot_p50_s", "TPOT median"),
           ("mean_itl_ms", "tpot_mean_s", "TPOT mean (GenAI-Perf ITL)"),
           ("mean_e2e_ms", "e2e_mean_s", "e2e mean"), ("median_e2e_ms", "e2e_p50_s", "e2e median")]


def speed():
    cost, _ = engines("h100-sxm", "llama-3.1-8b", Scenario(runtime="vllm"))
    req = make_requests(15.0, 10_000, seed=1, max_context=cost.max_context)
    t = time.perf_counter()
    res = simulate(cost, req, Policy())
    dt = time.perf_counter() - t
    print(f"10^4 requests, Llama-3.1-8B on one H100 (vLLM, chunked, 15 req/s): {dt:.2f} s simulated "
          f"({res.summary['steps']} steps, target <= 2 s)")
    unit = make_requests(1.0, 2000, seed=0, max_context=cost.max_context)
    t = time.perf_counter()
    m = find_max_rate(lambda r: simulate(cost, r, Policy()), unit, 2.0, 0.1,
                      confirm=[make_requests(1.0, 2000, seed=s, max_context=cost.max_context) for s in (1, 2)])
    print(f"--find-max-rate (p99 TTFT <= 2 s, TPOT <= 100 ms, 2000 requests): {m.rate:.2f} req/s in "
          f"{time.perf_counter() - t:.1f} s, {m.runs} runs (target <= 20 s)")


def _runtime(software: str) -> tuple[str, str]:
    s = software.lower()
    if "sglang" in s:
        return "sglang", "continuous"
    if "vllm" in s:
        return "vllm", "continuous"
    if "tensorrt" in s or "nim" in s:
        return "tensorrt-llm", "chunked"
    raise KeyError(software)


def _lengths(r) -> tuple[str, str] | None:
    mi, mo = r["mean_input_tokens"], r["mean_output_tokens"]
    ds = str(r["dataset"]).lower()
    if "stddev 0" in ds:
        return f"fixed:{round(mi)}", f"fixed:{round(mo)}"
    if "sharegpt" in ds:
        mi = mi if mi == mi else SHAREGPT[0]
        mo = mo if mo == mo else SHAREGPT[1]
        return f"lognormal:mean={mi},sd={mi}", f"lognormal:mean={mo},sd={mo}"
    if mi == mi and mo == mo:
        return f"fixed:{round(mi)}", f"fixed:{round(mo)}"
    return None


def replay(r) -> tuple[dict | None, str]:
    """Simulated summary for one published row, or (None, why it is skipped)."""
    if "lambda" in str(r["publisher"]).lower():
        return None, "flagged unreliable by its source (empty outputs, bursts)"
    lengths = _lengths(r)
    if lengths is None:
        return None, "input lengths not published"
    # an H100 whose form factor is not stated is taken as the SXM board (8-GPU servers)
    acc = "h100-sxm" if str(r["accelerator"]) == "h100" else str(r["accelerator"])
    name = re.sub(r"^meta-llama-", "llama-", str(r["model"]).split("/")[-1].lower())
    hw, model = auto_hardware(acc), auto_model(name)
    if hw is None or model is None:
        return None, f"no library spec for {r['accelerator']} / {r['model']}"
    try:
        runtime, policy = _runtime(str(r["software"]))
    except KeyError:
        return None, f"no runtime for {r['software']}"
    prec = auto_precision(str(r["precision"])) or {"dtype": "bf16"}
    tp = int(r["tp"]) if r["tp"] == r["tp"] else 1
    replicas = max(1, int(r["num_accelerators"]) // tp) if r["num_accelerators"] == r["num_accelerators"] else 1
    sc = Scenario(runtime=runtime, tp=tp, dtype=prec["dtype"])
    comp = Compression(**prec["compression"]) if "compression" in prec else None
    # the run's own scheduler flags, where its notes give them (vLLM: --num-scheduler-steps,
    # --max-num-seqs, --gpu-memory-utilization; defaults otherwise)
    notes = str(r["notes"])
    flags = {k: m.group(1) for k, pat in (("steps", r"--num-scheduler-steps[ =](\d+)"),
                                           ("seqs", r"--max[-_]num[-_]seqs[ =](\d+)"),
                                           ("mem", r"--gpu[-_]memory[-_]utilization[ =]([0-9.]+)"))
             if (m := re.search(pat, notes))}
    trt = runtime == "tensorrt-llm"
    pol = Policy(name=policy, scheduler_steps=int(flags.get("steps", 1)),
                 max_num_seqs=int(flags.get("seqs", Policy.max_num_seqs)),
                 memory_utilization=float(flags.get("mem", Policy.memory_utilization)),
                 # TensorRT-LLM's defaults: GUARANTEED_NO_EVICT capacity scheduling, no chunked context
                 no_evict=trt, whole_prompts=trt)
    cost, _ = engines(hw[0], model[0], sc, comp, pol, max_context=4096)
    conc = r["concurrency"] if r["concurrency"] == r["concurrency"] else None
    rate = float(r["request_rate_per_s"]) if r["request_rate_per_s"] == r["request_rate_per_s"] else math.inf
    n = int(r["num_prompts"]) if r["num_prompts"] == r["num_prompts"] else max(500, int(10 * (conc or 50)))
    req = make_requests(1e9 if math.isinf(rate) else rate, min(n, 5000), *lengths, seed=0, max_context=4096)
    res = simulate(cost, req, pol, replicas=replicas, concurrency=int(conc) if conc and math.isinf(rate) else None)
    return res.summary, f"{hw[0]} x{tp} x{replicas} {model[0]} {runtime} {policy}"


def accuracy(csv_out: str | None = None) -> pd.DataFrame:
    df = pd.read_csv(ROOT / "data" / "serving-measurements.csv")
    rows, skipped = [], {}
    for i, r in df.iterrows():
        try:
            s, what = replay(r)
        except CodesignError as e:
            s, what = None, f"cannot run: {e}"
        if s is None:
            skipped[what] = skipped.get(what, 0) + 1
            continue
        for col, key, label in METRICS:
            pub = r[col]
            if pub != pub:
                continue
            pub = float(pub) / (1000.0 if col.endswith("_ms") else 1.0)
            rows.append({"row": i + 2, "publisher": str(r["publisher"]).split("(")[0].strip()[:40], "setup": what,
                         "load": f"conc {r['concurrency']:g}" if r["concurrency"] == r["concurrency"]
                         else f"rate {r['request_rate_per_s']}", "metric": label, "published": pub,
                         "predicted": s[key], "error_pct": 100 * (s[key] - pub) / pub})
    out = pd.DataFrame(rows)
    for why, k in skipped.items():
        print(f"skipped {k} rows: {why}")
    if out.empty:
        return out
    out["abs_err"] = out.error_pct.abs()
    print(f"\n{out.row.nunique()} rows replayed, {len(out)} comparisons; nothing fitted to them (all out of sample)")
    print("\nMAPE by metric:")
    print(out.groupby("metric").abs_err.agg(["mean", "median", "count"]).round(1).to_string())
    print("\nMAPE by setup:")
    print(out.groupby(["publisher", "setup"]).abs_err.agg(["mean", "count"]).round(1).to_string())
    within = (out.abs_err <= 25).mean()
    print(f"\nall comparisons: MAPE {out.abs_err.mean():.1f}%, median {out.abs_err.median():.1f}%, "
          f"{within:.0%} within 25%")
    if csv_out:
        out.to_csv(csv_out, index=False)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--accuracy", action="store_true")
    ap.add_argument("--csv")
    ap.add_argument("--rows", action="store_true", help="print every comparison")
    a = ap.parse_args()
    both = not (a.speed or a.accuracy)
    if a.speed or both:
        speed()
    if a.accuracy or both:
        res = accuracy(a.csv)
        if a.rows and not res.empty:
            with pd.option_context("display.width", 200, "display.max_rows", 500):
                print(res.drop(columns="abs_err").round(4).to_string(index=False))
    np.seterr(all="ignore")
