"""Serving metrics: latency distributions, throughput, goodput under SLOs, energy and cost,
and the highest request rate that meets the SLOs.

Definitions (as vLLM's benchmark_serving and MLPerf's server scenario use them):
TTFT = first token - arrival; TPOT = (finish - first token) / (output tokens - 1);
inter-token latency (ITL) = the gap between consecutive tokens of a sequence (weighted by
sequences); end-to-end = finish - arrival; queueing = first scheduled - arrival. Goodput
(DistServe) = requests per second that meet every SLO. Energy = every device's static
power over the run + busy power over kernel time (a share of it in a step's gaps) + activity energy (the engine's board
power model); cost = the devices' price over 3 years of service for the run's time +
electricity, per million output tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import CodesignError
from ..perf.evaluate import AMORTIZATION_YEARS, ELECTRICITY_USD_PER_J, SECONDS_PER_YEAR
from .traffic import Requests

PERCENTILES = (50, 90, 99)


def weighted_percentile(values, weights, q: float) -> float:
    """The q-th percentile of ``values`` repeated ``weights`` times (lower value at a tie)."""
    v = np.asarray(values, dtype=float)
    if not len(v):
        return math.nan
    w = np.asarray(weights, dtype=float)
    order = np.argsort(v)
    cw = np.cumsum(w[order])
    k = np.searchsorted(cw, q / 100.0 * cw[-1], side="left")
    return float(v[order][min(k, len(v) - 1)])


def _stats(prefix: str, x: np.ndarray, out: dict):
    x = x[np.isfinite(x)]
    out[f"{prefix}_mean_s"] = float(x.mean()) if len(x) else math.nan
    for q in PERCENTILES:
        out[f"{prefix}_p{q}_s"] = float(np.percentile(x, q)) if len(x) else math.nan


@dataclass
class ServeResult:
    """Per-request table, per-step table and summary of one simulated run."""
    requests: pd.DataFrame
    steps: pd.DataFrame
    summary: dict
    itl: tuple                      # (intervals, sequences) arrays

    @classmethod
    def build(cls, req: Requests, log, policy, cost, decode_cost, replicas, decode_replicas, mean_in_system,
              request_overhead):
        arrival = req.arrival
        ttft = log.first - arrival
        tpot = np.where(req.output > 1, (log.finish - log.first) / np.maximum(req.output - 1, 1), np.nan)
        df = pd.DataFrame({"arrival_s": arrival, "prompt_tokens": req.prompt, "output_tokens": req.output,
                           "first_token_s": log.first, "finish_s": log.finish, "ttft_s": ttft, "tpot_s": tpot,
                           "e2e_s": log.finish - arrival, "queue_s": log.start - arrival - request_overhead,
                           "preemptions": log.preempted})
        steps = pd.DataFrame(log.steps, columns=["t_end_s", "duration_s", "decode_seqs", "prompt_tokens",
                                                 "kv_occupancy", "waiting", "engine"])
        itl = np.array([x[0] for x in log.itl]), np.array([x[1] for x in log.itl])
        s: dict = {"policy": policy.name, "requests": len(req)}
        done = np.isfinite(log.finish)
        s["completed"] = int(done.sum())
        t0, t1 = float(arrival.min()), float(np.nanmax(log.finish)) if done.any() else float(arrival.max())
        span = max(t1 - t0, 1e-12)
        s["duration_s"] = span
        s["offered_rate_per_s"] = (len(req) - 1) / max(float(arrival.max() - arrival.min()), 1e-12) if len(req) > 1 else math.nan
        s["throughput_req_per_s"] = s["completed"] / span
        out_tokens = float(req.output[done].sum())
        s["output_tokens_per_s"] = out_tokens / span
        s["total_tokens_per_s"] = (out_tokens + float(req.prompt[done].sum())) / span
        for name in ("ttft", "tpot", "e2e", "queue"):
            _stats(name, df[f"{name}_s"].to_numpy(), s)
        s["itl_mean_s"] = float(np.average(itl[0], weights=itl[1])) if len(itl[0]) else math.nan
        for q in PERCENTILES:
            s[f"itl_p{q}_s"] = weighted_percentile(itl[0], itl[1], q)
        dec = steps[steps.decode_seqs > 0]
        s["mean_decode_batch"] = float(np.average(dec.decode_seqs, weights=dec.duration_s)) if len(dec) else 0.0
        s["steps"] = len(steps)
        s["kv_occupancy_mean"] = float(np.average(steps.kv_occupancy, weights=steps.duration_s)) if len(steps) else 0.0
        s["kv_occupancy_max"] = float(steps.kv_occupancy.max()) if len(steps) else 0.0
        s["preemptions"] = int(log.preempted.sum())
        s["mean_in_system"] = mean_in_system
        # energy: static power of every device over the run + busy and activity energy of the steps
        pools = [(cost, replicas)] + ([(decode_cost or cost, decode_replicas)] if policy.name == "disaggregated" else [])
        devices = sum(c.devices * r for c, r in pools)
        static = sum(c.power["power.static"] * c.devices * r for c, r in pools) * span
        energy = static + log.energy
        s["devices"] = devices
        # share of the devices' time spent in kernels (the rest: launch gaps, host work, idle)
        s["device_busy_share"] = log.busy_device_s / (devices * span)
        s["energy_j"] = energy
        s["energy_per_token_j"] = energy / max(out_tokens, 1)
        s["avg_power_w"] = energy / span / devices
        price = sum(c.price * c.devices * r for c, r in pools)
        usd = price / (AMORTIZATION_YEARS * SECONDS_PER_YEAR) * span + energy * ELECTRICITY_USD_PER_J
        s["cost_per_mtok_usd"] = usd / max(out_tokens, 1) * 1e6
        s["kv_capacity_tokens"] = cost.kv_capacity_tokens
        return cls(requests=df, steps=steps, summary=s, itl=itl)

    def with_slo(self, ttft: float | None = None, tpot: float | None = None) -> dict:
        """The summary plus goodput and attainment under the SLOs (each request must meet all)."""
        s = dict(self.summary)
        if ttft is None and tpot is None:
            return s
        ok = np.isfinite(self.requests.finish_s.to_numpy())
        if ttft is not None:
            ok &= self.requests.ttft_s.to_numpy() <= ttft
            s["slo_ttft_s"] = ttft
        if tpot is not None:
            tp = self.requests.tpot_s.to_numpy()
            ok &= np.where(np.isnan(tp), True, tp <= tpot)
            s["slo_tpot_s"] = tpot
        s["slo_attainment"] = float(ok.mean())
        s["goodput_req_per_s"] = float(ok.sum()) / s["duration_s"]
        return s


def meets(result: ServeResult, ttft: float | None, tpot: float | None, percentile: float) -> bool:
    """Whether the run's ``percentile`` TTFT and TPOT are within the SLOs (unfinished fail)."""
    r = result.requests
    if not np.isfinite(r.finish_s.to_numpy()).all():
        return False
    ok = True
    if ttft is not None:
        ok &= float(np.percentile(r.ttft_s, percentile)) <= ttft
    if tpot is not None:
        tp = r.tpot_s.dropna()
        ok &= (not len(tp)) or float(np.percentile(tp, percentile)) <= tpot
    return bool(ok)


@dataclass
class MaxRate:
    rate: float            # highest rate found that meets the SLOs (req/s)
    failing_rate: float    # lowest rate found that misses them
    seeds_met: int         # of the confirmation runs at ``rate`` (other seeds), how many met them
    seeds: int
    runs: int
    result: ServeResult | None
    robust_rate: float = math.nan   # a rate that every confirmation draw meets as well


def find_max_rate(run, requests_at_unit_rate: Requests, ttft: float | None, tpot: float | None, *,
                  percentile: float = 99.0, tolerance: float = 0.03, confirm=()) -> MaxRate:
    """Bisection on the request rate (geometric, to ``tolerance``) for the highest rate at
    which ``run(requests)`` meets the SLOs at ``percentile``; the same requests are replayed
    at every rate (common random numbers), and ``confirm`` holds other seeds' unit-rate
    requests run at the rate found (how robust the answer is to the draw)."""
    if ttft is None and tpot is None:
        raise CodesignError("--find-max-rate needs --slo-ttft and/or --slo-tpot", field="--find-max-rate")
    runs = 0

    def ok(rate):
        nonlocal runs
        runs += 1
        res = run(requests_at_unit_rate.scaled(rate))
        return meets(res, ttft, tpot, percentile), res
    # saturation throughput (everything arrives at once) bounds the rate from above
    burst = run(requests_at_unit_rate.scaled(1e9))
    runs += 1
    cap = burst.summary["throughput_req_per_s"]
    hi = cap * 1.25
    good, _ = ok(hi)
    while good and runs < 40:
        hi *= 2
        good, _ = ok(hi)
    lo = cap / 64
    good, best = ok(lo)
    while not good and lo > cap * 1e-6:
        hi, lo = lo, lo / 8
        good, best = ok(lo)
    if not good:
        return MaxRate(0.0, lo, 0, 0, runs, None, 0.0)
    while hi / lo > 1 + tolerance:
        mid = math.sqrt(lo * hi)
        good, res = ok(mid)
        if good:
            lo, best = mid, res
        else:
            hi = mid
    met = sum(meets(run(r.scaled(lo)), ttft, tpot, percentile) for r in confirm)
    runs += len(confirm)
    # the rate every draw meets: step down from the bracket until the other seeds agree too
    robust = lo
    tries = 0
    while confirm and tries < 8:
        if all(meets(run(r.scaled(robust)), ttft, tpot, percentile) for r in confirm):
            break
        runs += len(confirm)
        robust /= 1 + 2 * tolerance
        tries += 1
    return MaxRate(lo, hi, met, len(confirm), runs, best, robust if confirm else lo)
