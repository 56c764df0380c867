"""``codesign serve``: a device (or cluster) under request traffic."""
from __future__ import annotations

import math

import click

from ..errors import CodesignError
from ..units import format_quantity
from .common import build_compression, build_scenario, check_writable, compression_options, echo_json, echo_table

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
    from ..serve import load_trace, make_requests
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
@click.option("--hardware", "-H", required=True, help="Library device name or YAML file.")
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
@click.option("--scheduler-steps", type=int, default=1, show_default=True,
              help="Decode steps per scheduling round (vLLM --num-scheduler-steps).")
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
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write the per-request table here.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def serve_cmd(hardware, workload, runtime, dtype, tp, pp, ep, replicas, policy, max_num_seqs, max_batched_tokens,
              chunk, block_size, memory_utilization, prefix_hit, scheduler_steps, router, decode_hardware, decode_replicas, rate,
              concurrency, burstiness, requests, duration, prompt_dist, output_dist, trace, max_context, seed, slo_ttft, slo_tpot,
              percentile, find_max_rate, csv_path, as_json, **kwargs):
    """Serve request traffic: latency percentiles, throughput, goodput under SLOs, energy, cost.

    \b
    Examples:
      codesign serve -H h100-sxm -w llama-3.1-8b --rate 10 --requests 5000
      codesign serve -H h100-sxm -w llama-3.1-70b --tp 4 --rate 2 --slo-ttft 2 --slo-tpot 0.1
      codesign serve -H h100-sxm -w llama-3.1-8b --slo-ttft 2 --slo-tpot 0.1 --find-max-rate
    """
    from ..serve import Policy, engines, make_requests, simulate
    from ..serve import find_max_rate as bisect_rate
    check_writable(csv_path)
    if replicas < 1 or decode_replicas < 1:
        raise CodesignError("expected an integer >= 1", field="--replicas")
    if not 0 < percentile <= 100:
        raise CodesignError(f"expected a percentile in (0, 100], got {percentile}", field="--percentile")
    for name, v in (("--slo-ttft", slo_ttft), ("--slo-tpot", slo_tpot)):
        if v is not None and not v > 0:
            raise CodesignError(f"expected seconds > 0, got {v}", field=name)
    sc = build_scenario({"runtime": runtime, "dtype": dtype, "tp": tp, "pp": pp, "ep": ep}, batch=1)
    comp = build_compression(kwargs)
    pol = Policy(name=policy, max_num_seqs=max_num_seqs, max_num_batched_tokens=max_batched_tokens, chunk=chunk,
                 block_size=block_size, memory_utilization=memory_utilization, prefix_hit=prefix_hit, router=router,
                 scheduler_steps=scheduler_steps)
    if decode_hardware and policy != "disaggregated":
        raise CodesignError("--decode-hardware needs --policy disaggregated", field="--decode-hardware")
    if policy == "disaggregated" and not decode_hardware:
        decode_hardware = hardware
    cost, dec = engines(hardware, workload, sc, comp, pol, decode_hardware, max_context)

    def run(reqs):
        return simulate(cost, reqs, pol, replicas=replicas, decode_cost=dec, decode_replicas=decode_replicas)

    what = (f"{cost.model.title} on {replicas} x {cost.devices} {cost.spec.title}"
            + (f" + {decode_replicas} x {dec.devices} {dec.spec.title} (decode)" if dec else "")
            + f", {sc.runtime}, {policy}")
    if find_max_rate:
        if trace:
            raise CodesignError("--find-max-rate draws its own arrivals: drop --trace", field="--trace")
        unit = make_requests(1.0, requests, prompt_dist, output_dist, burstiness, seed, cost.max_context)
        others = [make_requests(1.0, requests, prompt_dist, output_dist, burstiness, seed + k, cost.max_context)
                  for k in (1, 2)]
        m = bisect_rate(run, unit, slo_ttft, slo_tpot, percentile=percentile, confirm=others)
        s = m.result.with_slo(slo_ttft, slo_tpot) if m.result else {}
        out = {"max_rate_per_s": m.rate, "failing_rate_per_s": m.failing_rate, "confirm_seeds_met": m.seeds_met,
               "confirm_seeds": m.seeds, "runs": m.runs, "percentile": percentile,
               "max_rate_per_device": m.rate / max(s.get("devices", 1), 1),
               "max_rate_per_usd_hour": m.rate * 3600 / max(s.get("cost_per_mtok_usd", math.nan), 1e-30)
               if s else 0.0, "summary": s}
        if as_json:
            echo_json(dict(out, hardware=cost.spec.name, workload=cost.model.name, policy=policy))
            return
        click.echo(what)
        if not m.result:
            click.echo(f"no rate meets the SLOs (p{percentile:g}); even {m.failing_rate:.3g} req/s misses them")
            return
        click.echo(f"highest rate meeting p{percentile:g} SLOs: {m.rate:.3g} req/s (misses at {m.failing_rate:.3g}); "
                   f"{m.seeds_met} of {m.seeds} other seeds also meet them at that rate; {m.runs} runs")
        click.echo(f"per device: {out['max_rate_per_device']:.3g} req/s")
        echo_table(_table(s))
        return
    reqs = _requests(rate, requests, duration, burstiness, prompt_dist, output_dist, trace, seed, cost.max_context,
                     concurrency)
    res = simulate(cost, reqs, pol, replicas=replicas, decode_cost=dec, decode_replicas=decode_replicas,
                   concurrency=concurrency)
    if csv_path:
        res.requests.to_csv(csv_path, index=False)
    s = res.with_slo(slo_ttft, slo_tpot)
    if as_json:
        echo_json(dict(s, hardware=cost.spec.name, workload=cost.model.name, runtime=sc.runtime,
                       decode_hardware=dec.spec.name if dec else None, replicas=replicas))
        return
    click.echo(what)
    echo_table(_table(s))
    echo_table([{"metric": k, "value": v} for k, v in _summary_lines(s)])
    if s["completed"] < s["requests"]:
        click.echo(f"note: {s['requests'] - s['completed']} requests did not finish")


COMMANDS = [serve_cmd]
