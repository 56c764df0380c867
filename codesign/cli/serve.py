"""``codesign serve``: a device (or cluster) under request traffic."""
from __future__ import annotations

import math

import click
import pandas as pd

from .. import plots
from ..errors import CodesignError
from ..serve import Policy, draft_engine, engines, load_trace, make_requests, simulate
from ..serve import find_max_rate as max_rate_under_slos  # serve_cmd's flag has the function's name
from ..serve.api import MTP_ACCEPTANCE
from ..units import format_number, format_quantity
from ..workload import load_workload
from .common import (
    build_compression,
    build_scenario,
    check_out,
    check_writable,
    compression_options,
    echo_json,
    echo_table,
    split_names,
    split_rates,
)

_SHOWN = [("ttft", "TTFT", "time"), ("tpot", "TPOT", "time"), ("itl", "inter-token", "time"),
          ("e2e", "end-to-end", "time"), ("queue", "queueing", "time")]


def _table(s: dict) -> list[dict]:
    rows = [{"metric": label, "mean": format_quantity(s[f"{k}_mean_s"], dim),
             **{f"p{q}": format_quantity(s[f"{k}_p{q}_s"], dim) for q in (50, 90, 99)}} for k, label, dim in _SHOWN]
    return rows


def _summary_lines(s: dict) -> list[tuple[str, str]]:
    out = [("requests completed", f"{s['completed']} of {s['requests']} in {format_quantity(s['duration_s'], 'time')}"),
           ("throughput", f"{s['throughput_req_per_s']:.3g} req/s, {s['output_tokens_per_s']:.4g} output tok/s"),
           ("mean decode batch", f"{s['mean_decode_batch']:.1f} sequences"),
           ("devices busy (kernels)", f"{s['device_busy_share']:.0%} of the time"),
           ("KV cache occupancy", f"mean {s['kv_occupancy_mean']:.0%}, max {s['kv_occupancy_max']:.0%} "
                                  f"of {s['kv_capacity_tokens']:,} tokens"),
           ("preemptions", str(s["preemptions"])),
           ("energy per output token", format_quantity(s["energy_per_token_j"], "energy")),
           ("average power per device", format_quantity(s["avg_power_w"], "power")),
           ("cost per M output tokens", f"{s['cost_per_mtok_usd']:.3g} USD")]
    if "goodput_req_per_s" in s:
        out.append(("goodput (all SLOs met)", f"{s['goodput_req_per_s']:.3g} req/s "
                                             f"({s['slo_attainment']:.1%} of requests)"))
    return out


def _requests(rate, requests, duration, burstiness, prompt_dist, output_dist, trace, seed, max_context, concurrency):
    if concurrency is not None:
        if rate is not None or trace:
            raise CodesignError("a closed loop sets its own arrivals: drop --rate/--trace", field="--concurrency")
        rate = 1.0
    if trace:
        if rate is not None or duration is not None:
            raise CodesignError("a trace sets its own arrivals: drop --rate/--duration", field="--trace")
        return load_trace(trace)
    if rate is None:
        raise CodesignError("give --rate R (requests/s) or --trace FILE.csv", field="--rate")
    if duration is not None:
        if not duration > 0:
            raise CodesignError(f"expected seconds > 0, got {duration}", field="--duration")
        requests = max(1, math.ceil(rate * duration))
    return make_requests(rate, requests, prompt_dist, output_dist, burstiness, seed, max_context)


@click.command("serve")
@click.option("--hardware", "-H", required=True, help="Library device name or YAML file; several comma-separated.")
@click.option("--workload", "-w", required=True, help="Library model name, YAML file or HF config.json.")
@click.option("--runtime", default="vllm", show_default=True, help="Software stack (codesign runtime list).")
@click.option("--dtype", type=click.Choice(["fp32", "tf32", "bf16", "fp16", "fp8", "int8"]), default="bf16",
              show_default=True)
@click.option("--tp", type=int, default=1, show_default=True, help="Tensor-parallel devices per engine.")
@click.option("--pp", type=int, default=1, show_default=True, help="Pipeline stages per engine.")
@click.option("--ep", type=int, default=1, show_default=True, help="Expert-parallel degree (MoE), within tp.")
@click.option("--replicas", type=int, default=1, show_default=True, help="Engines behind the router.")
@compression_options
@click.option("--policy", type=click.Choice(["static", "continuous", "chunked", "disaggregated"]), default="chunked",
              show_default=True, help="Scheduler.")
@click.option("--max-num-seqs", type=int, default=256, show_default=True)
@click.option("--max-batched-tokens", type=int, default=8192, show_default=True, help="Token budget per step.")
@click.option("--chunk", type=int, default=None, help="Most prompt tokens of one request per step (chunked).")
@click.option("--block-size", type=int, default=16, show_default=True, help="KV cache block (tokens).")
@click.option("--memory-utilization", type=float, default=0.9, show_default=True,
              help="Share of device memory for weights, activations and KV cache.")
@click.option("--prefix-hit", type=float, default=0.0, show_default=True,
              help="Share of prompt tokens found in the prefix cache.")
@click.option("--preemption", type=click.Choice(["recompute", "swap"]), default="recompute", show_default=True,
              help="What a preempted sequence's KV cache does: dropped and recomputed, or swapped to host memory.")
@click.option("--scheduler-steps", type=int, default=1, show_default=True,
              help="Decode steps per scheduling round (vLLM --num-scheduler-steps).")
@click.option("--draft", default=None,
              help="Speculative decoding: a draft model (library name or file), or 'mtp' for the model's own "
                   "multi-token-prediction module (DeepSeek-V3).")
@click.option("--spec-tokens", type=int, default=None,
              help="Draft tokens per step (with --draft; default 4, or the MTP module count).")
@click.option("--acceptance", type=float, default=None,
              help="Chance each draft token is accepted (with --draft; default 0.7, or 0.85 for mtp).")
@click.option("--router", type=click.Choice(["least-loaded", "round-robin"]), default="least-loaded", show_default=True)
@click.option("--decode-hardware", default=None, help="Decode pool device (disaggregated; default: --hardware).")
@click.option("--decode-replicas", type=int, default=1, show_default=True, help="Decode engines (disaggregated).")
@click.option("--rate", type=float, default=None, help="Requests per second (Poisson unless --burstiness).")
@click.option("--concurrency", type=int, default=None,
              help="Closed loop: this many clients, each sending its next request when its last one ends.")
@click.option("--burstiness", type=float, default=1.0, show_default=True,
              help="Gamma shape of the gaps: 1 Poisson, <1 burstier, inf evenly spaced.")
@click.option("--requests", type=int, default=2000, show_default=True, help="Requests to simulate.")
@click.option("--duration", type=float, default=None, help="Seconds of arrivals (sets --requests = rate x duration).")
@click.option("--prompt-dist", default="lognormal:mean=1024,sd=512", show_default=True,
              help="N, uniform:lo=,hi=, lognormal:mean=,sd=, exponential:mean= or csv:FILE[:COLUMN].")
@click.option("--output-dist", default="lognormal:mean=256,sd=128", show_default=True, help="As --prompt-dist.")
@click.option("--trace", type=click.Path(dir_okay=False), default=None,
              help="CSV of requests: arrival_s, prompt_tokens, output_tokens.")
@click.option("--max-context", type=int, default=None, help="Longest prompt + output (default: the model's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--slo-ttft", type=float, default=None, help="TTFT target, seconds.")
@click.option("--slo-tpot", type=float, default=None, help="Time-per-output-token target, seconds.")
@click.option("--percentile", type=float, default=99.0, show_default=True, help="SLO percentile for --find-max-rate.")
@click.option("--find-max-rate", is_flag=True, help="Bisect for the highest rate that meets the SLOs.")
@click.option("--rates", default=None, help="Comma-separated request rates: a load sweep (same requests, rescaled).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Write a figure (.png/.svg/.pdf): latency CDFs and timelines, or rate curves with --rates.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write the per-request table here.")
@click.option("--timeline", "timeline_path", type=click.Path(dir_okay=False),
              help="Write the per-step timeline here (time, decode batch, prompt tokens, KV occupancy, queue).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def serve_cmd(hardware, workload, runtime, dtype, tp, pp, ep, replicas, policy, max_num_seqs, max_batched_tokens,
              chunk, block_size, memory_utilization, prefix_hit, preemption, scheduler_steps, draft, spec_tokens, acceptance,
              router, decode_hardware, decode_replicas, rate, concurrency, burstiness, requests, duration,
              prompt_dist, output_dist, trace, max_context, seed, slo_ttft, slo_tpot, percentile, find_max_rate,
              rates, plot_path, csv_path, timeline_path, as_json, **kwargs):
    """Serve request traffic: latency percentiles, throughput, goodput under SLOs, energy, cost.

    \b
    Examples:
      codesign serve -H h100-sxm -w llama-3.1-8b --rate 10 --requests 5000
      codesign serve -H h100-sxm -w llama-3.1-70b --tp 4 --rate 2 --slo-ttft 2 --slo-tpot 0.1
      codesign serve -H h100-sxm -w llama-3.1-8b --slo-ttft 2 --slo-tpot 0.1 --find-max-rate
      codesign serve -H h100-sxm,a100-80gb -w llama-3.1-8b --rates 2,4,8,16 --slo-ttft 2 --plot load.png
    """
    check_writable(csv_path, plot_path, timeline_path)
    if plot_path:
        check_out(plot_path)
    if replicas < 1 or decode_replicas < 1:
        raise CodesignError("expected an integer >= 1", field="--replicas")
    if not 0 < percentile <= 100:
        raise CodesignError(f"expected a percentile in (0, 100], got {percentile}", field="--percentile")
    for name, v in (("--slo-ttft", slo_ttft), ("--slo-tpot", slo_tpot)):
        if v is not None and not v > 0:
            raise CodesignError(f"expected seconds > 0, got {v}", field=name)
    sc = build_scenario({"runtime": runtime, "dtype": dtype, "tp": tp, "pp": pp, "ep": ep}, batch=1)
    comp = build_compression(kwargs)
    if draft:
        if spec_tokens is None:
            spec_tokens = load_workload(workload).mtp_layers if draft == "mtp" else 4
        if acceptance is None:
            acceptance = MTP_ACCEPTANCE if draft == "mtp" else 0.7
    pol = Policy(name=policy, max_num_seqs=max_num_seqs, max_num_batched_tokens=max_batched_tokens, chunk=chunk,
                 block_size=block_size, memory_utilization=memory_utilization, prefix_hit=prefix_hit, router=router,
                 scheduler_steps=scheduler_steps, speculative_k=spec_tokens if draft else 0,
                 acceptance=acceptance if acceptance is not None else 0.7,
                 preemption=preemption)
    if decode_hardware and policy != "disaggregated":
        raise CodesignError("--decode-hardware needs --policy disaggregated", field="--decode-hardware")
    modes = sum(bool(x) for x in (find_max_rate, rates))
    if modes > 1:
        raise CodesignError("choose one of --find-max-rate and --rates", field="--rates")
    if (find_max_rate or rates) and (trace or concurrency):
        raise CodesignError("--find-max-rate and --rates draw their own arrivals: drop --trace/--concurrency",
                            field="--trace" if trace else "--concurrency")
    rate_list = split_rates(rates, "--rates") if rates else None
    devices = split_names(hardware)
    runs, rows = {}, []
    reqs = None
    for hw in devices:
        cost, dec = engines(hw, workload, sc, comp, pol, decode_hardware or (hw if policy == "disaggregated" else None),
                            max_context)

        dcost = draft_engine(dec or cost, draft, max_context) if draft else None

        def run(r, concurrency=None, cost=cost, dec=dec, dcost=dcost):
            return simulate(cost, r, pol, replicas=replicas, decode_cost=dec, decode_replicas=decode_replicas,
                            concurrency=concurrency, draft_cost=dcost)
        label = cost.spec.name if not dec or dec.spec.name == cost.spec.name else f"{cost.spec.name}+{dec.spec.name}"
        what = (f"{cost.model.title} on {replicas} x {cost.devices} {cost.spec.title}"
                + (f" + {decode_replicas} x {dec.devices} {dec.spec.title} (decode)" if dec else "")
                + f", {sc.runtime}, {policy}")
        if find_max_rate:
            rows.append(_max_rate(run, cost, requests, prompt_dist, output_dist, burstiness, seed, slo_ttft, slo_tpot,
                                  percentile, label, what, as_json))
            continue
        if rate_list:
            unit = make_requests(1.0, requests, prompt_dist, output_dist, burstiness, seed, cost.max_context)
            for r in rate_list:
                rows.append(dict(label=label, rate=r, **run(unit.scaled(r)).with_slo(slo_ttft, slo_tpot)))
            continue
        if reqs is None:
            reqs = _requests(rate, requests, duration, burstiness, prompt_dist, output_dist, trace, seed,
                             cost.max_context, concurrency)
        runs[label] = (what, run(reqs, concurrency))
    if plot_path:
        if find_max_rate:
            raise CodesignError("--plot draws a run or a --rates sweep", field="--plot")
        fig = (plots.serve_rates(rows, slo_ttft=slo_ttft, slo_tpot=slo_tpot, percentile=percentile) if rate_list
               else plots.serve_run({k: v[1] for k, v in runs.items()}, slo_ttft=slo_ttft, slo_tpot=slo_tpot))
        click.echo(f"wrote {plots.save(fig, plot_path)}", err=True)
    if find_max_rate:
        if as_json:
            echo_json(rows if len(rows) > 1 else rows[0])
        return
    if rate_list:
        _echo_rates(rows, as_json, percentile)
        return
    if csv_path or timeline_path:
        for path, table in ((csv_path, "requests"), (timeline_path, "steps")):
            if path:
                pd.concat([getattr(res, table).assign(hardware=k) for k, (_, res) in runs.items()]).to_csv(path, index=False)
    out = {k: dict(res.with_slo(slo_ttft, slo_tpot), hardware=k, workload=workload, runtime=sc.runtime,
                   replicas=replicas) for k, (_, res) in runs.items()}
    if as_json:
        echo_json(next(iter(out.values())) if len(out) == 1 else list(out.values()))
        return
    if len(out) > 1:
        keys = [("ttft_p50_s", "TTFT p50"), ("ttft_p99_s", "TTFT p99"), ("tpot_p50_s", "TPOT p50"),
                ("tpot_p99_s", "TPOT p99"), ("e2e_mean_s", "end-to-end mean"), ("throughput_req_per_s", "requests/s"),
                ("output_tokens_per_s", "output tok/s"), ("goodput_req_per_s", "goodput req/s"),
                ("energy_per_token_j", "energy/token"), ("cost_per_mtok_usd", "USD / M tokens")]
        echo_table([{"metric": label, **{k: _cell(key, s.get(key)) for k, s in out.items()}} for key, label in keys
                    if any(key in s for s in out.values())])
        return
    what, s = next(iter(runs.values()))[0], next(iter(out.values()))
    click.echo(what)
    echo_table(_table(s))
    echo_table([{"metric": k, "value": v} for k, v in _summary_lines(s)])
    if s["completed"] < s["requests"]:
        click.echo(f"note: {s['requests'] - s['completed']} requests did not finish")


def _cell(key: str, v) -> str:
    if v is None:
        return "-"
    if key.endswith("_s") and not key.endswith("per_s"):
        return format_quantity(v, "time")
    if key.endswith("_j"):
        return format_quantity(v, "energy")
    return format_number(v)


def _max_rate(run, cost, requests, prompt_dist, output_dist, burstiness, seed, slo_ttft, slo_tpot, percentile,
              label, what, as_json) -> dict:
    """Bisect one device's highest rate under the SLOs; print it unless JSON is asked for."""
    unit = make_requests(1.0, requests, prompt_dist, output_dist, burstiness, seed, cost.max_context)
    others = [make_requests(1.0, requests, prompt_dist, output_dist, burstiness, seed + k, cost.max_context)
              for k in (1, 2)]
    m = max_rate_under_slos(run, unit, slo_ttft, slo_tpot, percentile=percentile, confirm=others)
    s = m.result.with_slo(slo_ttft, slo_tpot) if m.result else {}
    # what one dollar buys: requests served per USD of device time and electricity at that rate
    usd_per_s = s["cost_per_mtok_usd"] * s["output_tokens_per_s"] / 1e6 if s else math.nan
    out = {"hardware": label, "max_rate_per_s": m.rate, "failing_rate_per_s": m.failing_rate,
           "confirm_seeds_met": m.seeds_met, "confirm_seeds": m.seeds, "robust_rate_per_s": m.robust_rate, "runs": m.runs, "percentile": percentile,
           "max_rate_per_device": m.rate / max(s.get("devices", 1), 1),
           "requests_per_usd": m.rate / usd_per_s if s else 0.0, "summary": s}
    if as_json:
        return out
    click.echo(what)
    if not m.result:
        click.echo(f"no rate meets the SLOs (p{percentile:g}); even {m.failing_rate:.3g} req/s misses them")
        return out
    click.echo(f"highest rate meeting p{percentile:g} SLOs: {m.rate:.3g} req/s (misses at {m.failing_rate:.3g}); "
               f"{m.seeds_met} of {m.seeds} other draws of the traffic also meet them there, all "
               f"{m.seeds + 1} at {m.robust_rate:.3g} req/s; {m.runs} runs")
    click.echo(f"per device: {out['max_rate_per_device']:.3g} req/s; {out['requests_per_usd']:.4g} requests per USD")
    echo_table(_table(s))
    return out


def _echo_rates(rows: list[dict], as_json: bool, percentile: float):
    if as_json:
        echo_json(rows)
        return
    q = f"p{percentile:g}" if f"ttft_p{percentile:g}_s" in rows[0] else "p99"
    echo_table([{"hardware": r["label"], "rate/s": f"{r['rate']:.3g}", f"TTFT {q}": _cell("t_s", r[f"ttft_{q}_s"]),
                 f"TPOT {q}": _cell("t_s", r[f"tpot_{q}_s"]), "requests/s": f"{r['throughput_req_per_s']:.3g}",
                 **({"goodput/s": f"{r['goodput_req_per_s']:.3g}"} if "goodput_req_per_s" in r else {}),
                 "KV max": f"{r['kv_occupancy_max']:.0%}", "preempted": r["preemptions"]} for r in rows])


COMMANDS = [serve_cmd]
