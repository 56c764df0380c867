"""Predictions for measurement rows, and their errors summarised by group.

Each Case is evaluated with the single evaluation path (``codesign.perf.evaluate_batch``,
or ``op_times`` for one GEMM); ``params`` may override engine figures (``runtime.gemm``,
...) for every row, which is how ``codesign fit`` tries parameter sets.

Metrics (CSV ``metric`` -> prediction):
- decode_tokens_per_s: batch / mean time per output token; tpot_ms: that time;
- prompt_tokens_per_s: prompt tokens / prefill time; ttft_ms, prefill_latency_ms: TTFT;
- throughput_tokens_per_s (and output_/server_): generated tokens / end-to-end time of the
  batch, over all devices (per device when the row's notes say "per GPU");
  total_throughput_tokens_per_s counts prompt tokens too;
- energy_per_token_j: energy of all devices / generated tokens; avg_power_w: per device;
- gemm_tflops: 2·M·N·K / the time of one GEMM op of that shape;
- *_ratio_vs_A100_bf16: the same ratio of two predictions against an A100 in bf16.

Max-throughput rows (batch "max ..."): the serving engine chose the batch; we take the
power of two (<= 4096) that maximises throughput among those that fit in memory. A static
batch stands in for in-flight batching (prefill and decode do not overlap).
Error = predicted / measured - 1 (for ms metrics + means predicted slower).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..errors import CodesignError
from ..hardware import load_hardware
from ..perf import evaluate_batch, op_times
from ..workload import load_workload
from ..workload.ops import Op
from .mapping import Case, publisher

MAX_BATCH_EXP = 12
POPULATIONS = ("held-out", "calibration", "proxy")


def _gemm_op(M: int, N: int, K: int):
    """torch.matmul (M x K) @ (K x N) as the engine's Op: B is the streamed 'weight' operand."""
    return Op(name="gemm", kind="gemm", phase="prefill", m=M, n=N, k=K, flops=2.0 * M * N * K,
              weight_elems=float(K * N), act_in_elems=float(M * K), act_out_elems=float(M * N))


@lru_cache(maxsize=256)
def _spec(hardware: str, hw_overrides: tuple):
    return load_hardware(hardware, overrides=dict(hw_overrides) or None)


@lru_cache(maxsize=256)
def _model(workload: str):
    return load_workload(workload)


def spec_of(case: Case):
    """The case's hardware spec (loaded once per name and overrides; specs are not mutated)."""
    try:
        return _spec(case.hardware, case.hw_overrides)
    except TypeError:       # an override value that is a list: not cacheable
        return _spec.__wrapped__(case.hardware, case.hw_overrides)


def _eval(spec, model, sc, comp, op=None, params=None) -> dict:
    out = evaluate_batch(spec, model, sc, comp, operating_point=op, overrides=params or None)
    return {k: (v[0] if hasattr(v, "__len__") and not isinstance(v, str) else v) for k, v in out.items()}


def max_throughput(spec, model, sc, comp, op=None, params=None, layouts: bool = False,
                   tpot_limit: float | None = None, ttft_limit: float | None = None) -> tuple[dict | None, dict | None]:
    """The fitting power-of-two batch (<= 4096) with the highest throughput_tokens_per_s, and
    with ``layouts`` the best tensor-parallel x replica split of the devices as well (a
    throughput benchmark's submitter tunes both). A latency-bounded run (MLPerf Server) keeps
    only batches that meet its limits: ``tpot_limit`` on the p99 over requests of the time per
    output token each sees under continuous batching (``tail_tpot``), ``ttft_limit`` on the
    p99 time to first token of Poisson arrivals (``queued_ttft``). Returns the summary and the
    scenario fields it chose (batch, and tp/dp)."""
    best, best_set = None, None
    splits = [(tp, sc.devices // tp) for tp in (1, 2, 4, 8, 16, 32, 64)
              if sc.devices % tp == 0 and tp <= sc.devices] if layouts else [(sc.tp, sc.dp)]
    for tp, dp in splits:
        alone = 0.0             # a prompt's marginal prefill on one replica (the queues' service time), once
        for e in range(MAX_BATCH_EXP + 1):
            setting = {"batch": 2 ** e * (dp if layouts else 1), "tp": tp, "dp": dp, "pp": 1 if layouts else sc.pp}
            try:
                s2 = sc.model_copy(update=setting)
                out = _eval(spec, model, s2, comp, op, params)
            except (ValueError, CodesignError):        # tp that does not divide the heads
                break
            if not out["fits"]:
                break
            tpot = served_tpot(out, s2)
            if not alone and (tpot_limit is not None or ttft_limit is not None):
                alone = _marginal_prefill(spec, model, s2, comp, op, params)
            joins = s2.batch / s2.dp / max(s2.generate, 1)        # prompts joining a replica per step
            if tpot_limit is not None and tail_tpot(float(out["tpot_s"]), alone, joins, s2.generate) > tpot_limit:
                break
            if ttft_limit is not None and queued_ttft(alone, joins / tpot) > ttft_limit:
                break
            if best is None or out["throughput_tokens_per_s"] > best["throughput_tokens_per_s"]:
                best, best_set = out, setting
    return best, best_set


def _marginal_prefill(spec, model, sc, comp, op, params) -> float:
    """A prompt's prefill as the queue serves it (s): what one more prompt adds to a replica's
    prefill, T(2 prompts) - T(1). A served prompt joins engine steps that already stream the
    weights for the running batch, so the weight reads a lone prompt pays but cannot share
    (an MoE's experts, each hit by a few rows) are not its own; for a compute-bound dense
    prompt the difference is one prompt's prefill, as before."""
    def batch_prefill(n):
        s = sc.model_copy(update={"batch": n * sc.dp})
        return float(whole_prefill(_eval(spec, model, s, comp, op, params), s))
    return max(batch_prefill(2) - batch_prefill(1), 0.0)


def tail_tpot(step_s: float, prefill_s: float, joins_per_step: float, generate: int,
              quantile: float = 0.99, prompt_cv2: float = 1.0, samples: int = 40000) -> float:
    """The ``quantile`` over requests of the time per output token under continuous batching
    (s; MLPerf's limit is on the p99 of each request's own mean). A request that decodes for w
    steps sees the K prompts that join meanwhile, Poisson with mean ``joins_per_step`` x w, each
    adding its prefill (``prefill_s`` on average, squared coefficient of variation
    ``prompt_cv2`` from the spread of prompt lengths, Gamma-distributed) to a step it shares:
    TPOT = step + (their prefill) / w. Output lengths are geometric with mean ``generate``; both
    spreads are maximum-entropy stand-ins for a dataset known only by its means. Short requests
    carry the tail; the mean is ``served_tpot``'s. Sampled with a fixed seed, so a row's
    prediction is deterministic. Neglected: chunked prefill that
    spreads a prompt over steps, and the queueing of arrivals near saturation."""
    if prefill_s <= 0 or joins_per_step <= 0:
        return step_s
    rng = np.random.default_rng(0)
    steps = rng.geometric(1.0 / max(float(generate), 1.0), samples).astype(float)
    joined = rng.poisson(joins_per_step * steps)
    work = rng.gamma(np.maximum(joined / prompt_cv2, 1e-12), prefill_s * prompt_cv2) * (joined > 0)
    return float(np.quantile(step_s + work / steps, quantile))


def queued_ttft(prefill_s: float, arrivals_per_s: float, quantile: float = 0.99) -> float:
    """The ``quantile`` time to first token (s) when prompts arrive as a Poisson stream at
    ``arrivals_per_s`` on one replica whose prefill of one prompt takes ``prefill_s`` and runs
    ahead of decode (the prefill queue is M/D/1 at load rho = arrivals x prefill). The wait
    takes Kingman's heavy-traffic form: with probability rho a prompt waits, exponentially,
    with the M/D/1 mean rho S / (2 (1 - rho)) over rho, so its tail quantile is that mean x
    ln(rho / (1 - quantile)). Neglects the batching of queued prompts (which shortens the
    wait) and the decode iteration a prompt joins behind (which lengthens it)."""
    rho = arrivals_per_s * prefill_s
    if rho >= 1.0:
        return math.inf
    tail = rho / (1.0 - quantile)
    wait = prefill_s / (2.0 * (1.0 - rho)) * math.log(tail) if tail > 1.0 else 0.0
    return prefill_s + wait


def served_tpot(out: dict, sc) -> float:
    """Mean time per output token a request sees when ``sc.batch`` sequences are served by
    continuous batching in steady state (s). Each sequence lives ``generate`` iterations, so
    batch/generate new prompts join per iteration and their prefill runs inside it:
    TPOT = decode step + prefill of the whole batch / generate, which is the static batch's
    end-to-end time / generate. Neglects chunking that spreads a prompt unevenly and the
    queueing of Poisson arrivals near saturation."""
    return float(out["e2e_latency_s"]) / max(sc.generate, 1)


def whole_prefill(out: dict, sc):
    """Seconds to prefill the whole batch's prompts (every replica's, in parallel): the
    engine's prompt rate counts all of them."""
    return sc.batch * sc.prompt / np.asarray(out["prefill_tokens_per_s"], float)


def wave_ttft(out: dict, sc):
    """Mean TTFT (s) of ``sc.batch`` closed-loop clients that start together and, their
    lengths being fixed, stay in step: each wave's prompts all arrive at once and are
    prefilled first come first served, so the k-th of a replica's n prompts sees k/n of the
    whole wave's prefill and the mean is (n + 1) / 2n of it. Neglected: the stagger that
    the first wave's prefill order leaves in later waves (which shortens their waits)."""
    n = max(sc.batch // max(sc.dp, 1), 1)
    return whole_prefill(out, sc) * (n + 1) / (2 * n)


def read_metric(metric: str, out: dict, sc, per_device: bool = False, ttft: str = "request"):
    """The CSV metric from an evaluation's summary (scalars, or arrays over design points);
    ``per_device`` throughputs are divided by the devices of the layout. ``ttft`` says which
    first-token time a TTFT row measured: 'request' (the one a request sees, the engine's
    ``ttft_s``), 'wave' (closed-loop clients in step, ``wave_ttft``) or 'batch' (a static-batch
    benchmark's: the whole batch's prefill)."""
    if metric == "ttft_ms" and ttft != "request":
        return (wave_ttft(out, sc) if ttft == "wave" else whole_prefill(out, sc)) * 1e3
    share = 1.0 / sc.devices if per_device else 1.0
    if metric == "total_throughput_tokens_per_s":
        return (np.asarray(out["throughput_tokens_per_s"], float) * share
                * (sc.prompt + sc.generate) / max(sc.generate, 1))
    if metric.endswith("throughput_tokens_per_s"):
        return np.asarray(out["throughput_tokens_per_s"], float) * share
    return np.asarray({"decode_tokens_per_s": lambda: out["decode_tokens_per_s"],
                  "tpot_ms": lambda: out["tpot_s"] * 1e3,
                  "prompt_tokens_per_s": lambda: out["prefill_tokens_per_s"],
                  "prefill_latency_ms": lambda: out["ttft_s"] * 1e3,
                  "ttft_ms": lambda: out["ttft_s"] * 1e3,
                  "energy_per_token_j": lambda: out["energy_per_token_j"],
                  "avg_power_w": lambda: out["avg_power_w"]}[metric](), float)


def _setting(batch) -> dict:
    """Scenario fields a max-throughput search fixed: a batch, or a batch and a layout."""
    return dict(batch) if isinstance(batch, dict) else {"batch": batch}


def predict_values(case: Case, params: dict, batch: int | None = None) -> np.ndarray:
    """The metric for D parameter sets at once: ``params`` maps engine figures to arrays of
    length D (one vectorised evaluation). Rates and times only; a max-throughput row needs
    its ``batch`` (the fit keeps the one found at its start)."""
    assert case.scenario is not None        # rates and times of a model row (a GEMM row has no scenario)
    sc = case.scenario if batch is None else case.scenario.model_copy(update=_setting(batch))
    out = evaluate_batch(spec_of(case), _model(case.workload), sc, case.compression,
                         operating_point=case.operating_point, overrides=params)
    return read_metric(case.metric, out, sc, case.per_device, case.ttft)


def predict(case: Case, params: dict | None = None, batch: int | None = None) -> tuple[float, str, dict]:
    """(predicted value, a short detail, the evaluation's summary). ``batch`` fixes the
    batch of a max-throughput row (the fit keeps the batch found at its start)."""
    spec = spec_of(case)
    if case.gemm:
        M, N, K, dt = case.gemm
        t = op_times(spec, [_gemm_op(M, N, K)], dtype=dt, runtime=case.runtime)
        return 2.0 * M * N * K / float(t["time_s"].iloc[0]) / 1e12, f"bound={t['bound'].iloc[0]}", {}
    model = _model(case.workload)
    sc = case.scenario
    assert sc is not None       # every row but a GEMM one has its scenario
    if case.search and batch is None:
        out, got = max_throughput(spec, model, sc, case.compression, case.operating_point, params, case.tune_layout,
                                  case.tpot_limit, case.ttft_limit)
        if out is None:
            return math.nan, "no batch fits", {}
        assert got is not None      # found together with out
        sc = sc.model_copy(update=got)
        lay = f" tp={got['tp']}x{got['dp']}" if case.tune_layout else ""
        return (float(read_metric(case.metric, out, sc, case.per_device, case.ttft)), f"B={got['batch']}{lay} bound={out['bound']}",
                dict(out, batch=got if case.tune_layout else got["batch"]))
    if batch is not None:
        sc = sc.model_copy(update=_setting(batch))
    out = _eval(spec, model, sc, case.compression, case.operating_point, params)
    detail = f"bound={out['bound']}" + ("" if out["fits"] else " DOES-NOT-FIT")
    if case.group == "ratio":   # the same scenario on the baseline device, uncompressed
        bl = case.baseline
        assert bl is not None       # resolve_row gives every ratio row its baseline
        base = _eval(load_hardware(bl["spec"]), model, sc.model_copy(update={"dtype": bl["dtype"]}), None)
        if case.metric.startswith("decode_throughput"):
            return out["decode_tokens_per_s"] / base["decode_tokens_per_s"], detail, out
        return base["energy_per_token_j"] / out["energy_per_token_j"], detail, out   # tokens per joule
    return float(read_metric(case.metric, out, sc, case.per_device, case.ttft)), detail, dict(out, batch=sc.batch)


def population(case: Case) -> str:
    if case.calibrated:
        return "calibration"
    return "proxy" if case.match == "proxy" else "held-out"


def device_class(case: Case) -> str:
    return spec_of(case).device_class


def describe(c: Case) -> str:
    if c.gemm:
        return f"M={c.gemm[0]} N={c.gemm[1]} K={c.gemm[2]} {c.gemm[3]}"
    s = c.scenario
    assert s is not None        # every row but a GEMM one has its scenario
    comp = c.compression.model_dump(exclude_defaults=True) if c.compression else {}
    b = "max" if c.search else s.batch
    lay = "".join(f" {k}={getattr(s, k)}" for k in ("tp", "pp", "dp") if getattr(s, k) > 1)
    return (f"B={b} in={s.prompt} out={s.generate} {s.dtype}{lay}"
            + (" " + ",".join(f"{k}={v}" for k, v in comp.items()) if comp else ""))


def run(cases, params_for=None, progress=None) -> list[dict]:
    """One result row per case; ``params_for(case)`` may give engine overrides per row."""
    out = []
    for i, c in enumerate(cases):
        try:
            pred, detail, _ = predict(c, params_for(c) if params_for else None)
        except CodesignError as e:          # one row the engine cannot price must not stop the rest
            pred, detail = math.nan, f"not evaluated: {e}"
        err = pred / c.measured - 1 if math.isfinite(pred) and pred > 0 else math.nan
        out.append({"row": c.row, "source": c.source, "publisher": publisher(c.source), "class": device_class(c), "hardware": c.hardware,
                    "runtime": c.runtime, "workload": c.workload or "GEMM {}x{}x{} {}".format(*c.gemm),
                    "metric": c.metric, "group": c.group, "measured": c.measured, "predicted": pred,
                    "error": err, "match": c.match, "population": population(c),
                    "calibrated": c.calibrated or "", "detail": detail, "scenario": describe(c)})
        if progress:
            progress(i + 1, len(cases))
    return out


def summarize(results: list[dict], error_key: str = "error",
              by=("class", "runtime", "group", "source")) -> dict:
    """MAPE and mean signed error per population: overall, per metric group, and per
    value of each ``by`` column crossed with the group."""
    summary = {}
    for pop in POPULATIONS:
        rs = [r for r in results if r["population"] == pop and math.isfinite(r.get(error_key, math.nan))]
        cells: dict = {}
        for r in rs:
            keys = {"all/all", f"all/{r['group']}"}
            keys |= {f"{col}={r[col]}/{r['group']}" for col in by if col != "group"}
            for key in keys:
                cells.setdefault(key, []).append(r[error_key])
        summary[pop] = {k: {"n": len(v), "mape": float(np.mean(np.abs(v))), "bias": float(np.mean(v))}
                        for k, v in sorted(cells.items())}
    return summary
