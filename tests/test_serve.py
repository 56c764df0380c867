"""The serving simulator against closed forms (Little's law, M/D/1), the engine it prices
steps with, and the behaviour a scheduler must show (batching, KV limits, disaggregation)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from codesign.cli import main, run
from codesign.errors import CodesignError
from codesign.perf.evaluate import evaluate
from codesign.perf.steps import step_cost
from codesign.serve import Frontend, Policy, Requests, find_max_rate, load_trace, make_requests, meets, sample_lengths, simulate
from codesign.workload.scenario import Scenario

HW, MODEL = "h100-sxm", "llama-3.2-1b"


@pytest.fixture(scope="module")
def cost():
    return step_cost(HW, MODEL, Scenario(runtime="vllm"), max_tokens=4096, max_seqs=128, max_context=8192)


def _fixed(rate, n, prompt, output, seed=0):
    return make_requests(rate, n, f"fixed:{prompt}", f"fixed:{output}", seed=seed)


def _capacity(cost, policy, prompt=512, output=64):
    """Requests/s when everything arrives at once (the saturated throughput)."""
    return simulate(cost, _fixed(1e9, 400, prompt, output), policy).summary["throughput_req_per_s"]


def test_step_cost_matches_the_engine(cost):
    for batch, ctx in ((1, 512), (32, 2048)):
        r = evaluate(HW, MODEL, Scenario(runtime="vllm", batch=batch, prompt=ctx, generate=2))
        step = cost.step(decode_seqs=batch, decode_ctx_sum=batch * ctx).time
        assert step == pytest.approx(r.summary["tpot_s"], rel=0.02)
    r = evaluate(HW, MODEL, Scenario(runtime="vllm", batch=1, prompt=1024, generate=1))
    assert cost.step(chunks=[(0, 1024)]).time == pytest.approx(r.summary["ttft_s"], rel=0.03)
    # a prompt in two chunks costs about what it costs whole (attention split exactly)
    whole = cost.step(chunks=[(0, 2048)])
    halves = cost.step(chunks=[(0, 1024)]).time + cost.step(chunks=[(1024, 1024)]).time
    assert whole.time < halves < 1.6 * whole.time
    # more context, more time; more sequences, more time
    assert cost.step(decode_seqs=8, decode_ctx_sum=8 * 4000).time > cost.step(decode_seqs=8, decode_ctx_sum=8 * 100).time
    assert cost.step(decode_seqs=64, decode_ctx_sum=64 * 500).time > cost.step(decode_seqs=8, decode_ctx_sum=8 * 500).time


def test_little_law(cost):
    pol = Policy(name="chunked", max_num_seqs=128, max_num_batched_tokens=4096)
    lam = 0.6 * _capacity(cost, pol)
    res = simulate(cost, make_requests(lam, 6000, "lognormal:mean=512,sd=256", "lognormal:mean=64,sd=32", seed=3), pol)
    s = res.summary
    # the loop's time-averaged count in the system = arrival rate x mean time in the system
    assert s["mean_in_system"] == pytest.approx(s["offered_rate_per_s"] * s["e2e_mean_s"], rel=0.05)
    assert s["completed"] == 6000


def test_md1_queue_matches_closed_form(cost):
    """One request at a time, fixed lengths, Poisson arrivals: an M/D/1 queue, whose mean
    wait is rho D / (2 (1 - rho)) (Pollaczek-Khinchine with zero service variance)."""
    prompt, output = 256, 4
    service = cost.step(chunks=[(0, prompt)]).time + sum(
        cost.step(decode_seqs=1, decode_ctx_sum=prompt + k).time for k in range(output - 1))
    rho = 0.7
    lam = rho / service
    # the engine alone is the server (no API-server stage in front of it: a tandem queue)
    res = simulate(cost, _fixed(lam, 30000, prompt, output, seed=0), Policy(name="static", max_num_seqs=1),
                   frontend=Frontend())
    wait = res.requests.queue_s.mean()
    assert res.requests.e2e_s.min() == pytest.approx(service, rel=1e-6)
    rho = res.summary["offered_rate_per_s"] * service       # the load this draw really offered
    assert wait == pytest.approx(rho * service / (2 * (1 - rho)), rel=0.05)


def test_continuous_beats_static(cost):
    lam = 0.5 * _capacity(cost, Policy(name="static", max_num_seqs=64))
    req = make_requests(lam, 3000, "lognormal:mean=512,sd=256", "lognormal:mean=64,sd=48", seed=2)
    st = simulate(cost, req, Policy(name="static", max_num_seqs=64)).summary
    co = simulate(cost, req, Policy(name="continuous", max_num_seqs=64)).summary
    assert co["e2e_mean_s"] < st["e2e_mean_s"]
    assert co["ttft_p99_s"] < st["ttft_p99_s"]
    # static batching pads: a batch decodes until its longest output is done
    assert st["tpot_mean_s"] > co["tpot_mean_s"]


def test_p99_ttft_rises_with_rate(cost):
    pol = Policy(name="chunked", max_num_seqs=128, max_num_batched_tokens=2048)
    cap = _capacity(cost, pol)
    base = make_requests(1.0, 3000, "lognormal:mean=512,sd=256", "lognormal:mean=64,sd=32", seed=4)
    p99 = [simulate(cost, base.scaled(f * cap), pol).summary["ttft_p99_s"] for f in (0.3, 0.6, 0.9)]
    assert p99[0] < p99[1] < p99[2]


def test_kv_capacity_limits_admission():
    # a KV cache of about 8 requests' worth: never more sequences than fit, preemption on growth
    small = step_cost(HW, MODEL, Scenario(runtime="vllm"), max_tokens=4096, max_seqs=128, max_context=8192,
                      memory_utilization=0.9)
    tokens_per_req = 1024 + 512
    pol = Policy(name="continuous", max_num_seqs=128)
    kv_tokens = 8 * tokens_per_req
    small.kv_capacity_tokens = kv_tokens
    res = simulate(small, _fixed(1e9, 60, 1024, 512), pol)
    s = res.summary
    assert s["completed"] == 60
    assert s["kv_occupancy_max"] <= 1.0
    assert res.steps.decode_seqs.max() <= kv_tokens // 1024    # admission needs the prompt's blocks
    assert s["preemptions"] > 0                                # outputs grow past what is free
    roomy = simulate(step_cost(HW, MODEL, Scenario(runtime="vllm"), max_tokens=4096, max_seqs=128, max_context=8192),
                     _fixed(1e9, 60, 1024, 512), pol).summary
    assert roomy["preemptions"] == 0 and roomy["mean_decode_batch"] > s["mean_decode_batch"]


def test_disaggregation_moves_prefill_off_decode(cost):
    lam = 0.4 * _capacity(cost, Policy(name="continuous"), prompt=2048, output=128)
    req = _fixed(lam, 2000, 2048, 128, seed=6)
    co = simulate(cost, req, Policy(name="continuous")).summary
    dis = simulate(cost, req, Policy(name="disaggregated"), decode_cost=cost).summary
    # prefill steps stall the decodes they share an engine with; a decode pool has none
    assert dis["itl_p99_s"] < 0.5 * co["itl_p99_s"]
    assert dis["tpot_p99_s"] < co["tpot_p99_s"]
    assert dis["devices"] == 2 * co["devices"]


def test_energy_and_cost_add_up(cost):
    res = simulate(cost, _fixed(5.0, 500, 512, 64), Policy())
    s = res.summary
    static = cost.power["power.static"] * s["duration_s"]
    assert s["energy_j"] > static
    assert s["avg_power_w"] == pytest.approx(s["energy_j"] / s["duration_s"], rel=1e-9)
    assert cost.power["power.static"] < s["avg_power_w"] <= cost.power["power.limit"] * 1.0001


def test_find_max_rate_is_a_boundary(cost):
    pol = Policy(name="chunked", max_num_seqs=128, max_num_batched_tokens=2048)
    unit = make_requests(1.0, 800, "fixed:512", "fixed:64", seed=7)

    def run(r):
        return simulate(cost, r, pol)
    m = find_max_rate(run, unit, ttft=0.5, tpot=0.05, tolerance=0.02)
    assert m.rate > 0 and m.failing_rate <= m.rate * 1.03
    assert meets(run(unit.scaled(m.rate)), 0.5, 0.05, 99)
    assert not meets(run(unit.scaled(m.failing_rate)), 0.5, 0.05, 99)


def test_lengths_and_traces(tmp_path):
    rng = np.random.default_rng(0)
    x = sample_lengths("lognormal:mean=1000,sd=500", 200000, rng)
    assert x.mean() == pytest.approx(1000, rel=0.02) and x.std() == pytest.approx(500, rel=0.05)
    assert set(np.unique(sample_lengths("uniform:lo=3,hi=5", 1000, rng))) == {3, 4, 5}
    assert (sample_lengths("fixed:7", 5, rng) == 7).all() and (sample_lengths(9, 3, rng) == 9).all()
    gaps = np.diff(make_requests(4.0, 100000, 8, 8, burstiness=0.25, seed=1).arrival)
    assert gaps.mean() == pytest.approx(0.25, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(2.0, rel=0.05)     # cv = 1/sqrt(shape)
    p = tmp_path / "t.csv"
    p.write_text("arrival_s,prompt_tokens,output_tokens\n2.0,100,10\n1.0,50,5\n")
    tr = load_trace(p)
    assert list(tr.prompt) == [50, 100] and list(tr.arrival) == [0.0, 1.0]
    bad = tmp_path / "bad.csv"
    bad.write_text("arrival_s,prompt_tokens\n0,1\n")
    with pytest.raises(CodesignError, match="output_tokens"):
        load_trace(bad)
    bad.write_text("arrival_s,prompt_tokens,output_tokens\n0,x,1\n")
    with pytest.raises(CodesignError, match="row 2, column prompt_tokens"):
        load_trace(bad)
    for spec in ("lognormal:mean=x", "uniform:lo=5,hi=1", "zipf:1", "csv:/nonexistent.csv"):
        with pytest.raises(CodesignError):
            sample_lengths(spec, 3, rng)


def test_policy_checks():
    with pytest.raises(CodesignError, match="prefix_hit"):
        Policy(prefix_hit=1.5)
    with pytest.raises(CodesignError, match="max_num_seqs"):
        Policy(max_num_seqs=0)


def test_prefix_cache_cuts_ttft(cost):
    req = _fixed(10.0, 1000, 2048, 32, seed=8)
    cold = simulate(cost, req, Policy()).summary
    warm = simulate(cost, req, Policy(prefix_hit=0.75)).summary
    assert warm["ttft_mean_s"] < cold["ttft_mean_s"]


def test_cli_serve(tmp_path, capsys):
    r = CliRunner().invoke(main, ["serve", "-H", HW, "-w", MODEL, "--rate", "5", "--requests", "200", "--json",
                                  "--slo-ttft", "1", "--slo-tpot", "0.1", "--csv", str(tmp_path / "r.csv")])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["completed"] == 200 and 0 <= out["slo_attainment"] <= 1
    assert (tmp_path / "r.csv").read_text().count("\n") == 201
    r = CliRunner().invoke(main, ["serve", "-H", HW, "-w", MODEL, "--rate", "5", "--requests", "50",
                                  "--timeline", str(tmp_path / "t.csv")])
    assert r.exit_code == 0, r.output
    head = (tmp_path / "t.csv").read_text().splitlines()
    assert head[0].startswith("t_end_s,duration_s,decode_seqs,prompt_tokens,kv_occupancy") and len(head) > 50

    def fails(*args):
        with pytest.raises(SystemExit) as e:
            run(["serve", "-H", HW, "-w", MODEL, *args])
        assert e.value.code == 2
        return capsys.readouterr().err
    assert "--rate" in fails("--rate", "-1")
    assert "--trace" in fails()
    assert "--slo-ttft" in fails("--find-max-rate")
    assert "does not fit" in fails("-H", "jetson-orin-nano", "-w", "llama-3.1-70b", "--rate", "1")


def test_requests_scaled_keeps_lengths():
    r = Requests(np.array([0.0, 2.0]), np.array([5, 6]), np.array([1, 2]))
    s = r.scaled(2.0)
    assert list(s.arrival) == [0.0, 1.0] and list(s.prompt) == [5, 6]


def test_closed_loop_obeys_the_response_time_law(cost):
    """C clients with no think time: throughput x mean response time = C (interactive law)."""
    res = simulate(cost, _fixed(1.0, 3000, 512, 64), Policy(), concurrency=20)
    s = res.summary
    assert s["completed"] == 3000
    assert s["throughput_req_per_s"] * s["e2e_mean_s"] == pytest.approx(20, rel=0.03)
    more = simulate(cost, _fixed(1.0, 3000, 512, 64), Policy(), concurrency=60).summary
    assert more["throughput_req_per_s"] > s["throughput_req_per_s"] and more["tpot_mean_s"] > s["tpot_mean_s"]


def test_multi_step_scheduling_delays_new_prompts(cost):
    req = _fixed(5.0, 800, 512, 128, seed=9)
    one = simulate(cost, req, Policy(name="continuous")).summary
    ten = simulate(cost, req, Policy(name="continuous", scheduler_steps=10)).summary
    assert ten["ttft_p50_s"] > one["ttft_p50_s"]
    assert ten["tpot_mean_s"] <= one["tpot_mean_s"] * 1.01      # fewer prefill interruptions


def test_cli_rate_sweep_and_plots(tmp_path):
    out = tmp_path / "load.png"
    r = CliRunner().invoke(main, ["serve", "-H", f"{HW},a100-80gb", "-w", MODEL, "--rates", "2,16", "--requests", "150",
                                  "--slo-ttft", "1", "--plot", str(out), "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output[r.output.index("["):])
    assert [(x["label"], x["rate"]) for x in rows] == [(HW, 2.0), (HW, 16.0), ("a100-80gb", 2.0), ("a100-80gb", 16.0)]
    assert out.stat().st_size > 10_000
    # TTFT rises as the same requests arrive faster (8x the rate; at light load a 150-request
    # p99 is one long prompt's own prefill, flat within the arrivals' coincidences)
    for lo, hi in ((rows[0], rows[1]), (rows[2], rows[3])):
        assert hi["ttft_p50_s"] > lo["ttft_p50_s"] and hi["ttft_p99_s"] > lo["ttft_p99_s"]
    run = tmp_path / "run.svg"
    r = CliRunner().invoke(main, ["serve", "-H", HW, "-w", MODEL, "--rate", "4", "--requests", "100", "--plot", str(run)])
    assert r.exit_code == 0, r.output
    assert run.read_text().startswith("<?xml")


def test_speculative_decoding_follows_the_expected_acceptance(cost):
    """One request at a time: time per token = (target pass over k+1 tokens + k draft
    steps) / E[tokens per step], E = (1 - a^(k+1)) / (1 - a) (Leviathan et al. 2023)."""
    from codesign.serve import draft_engine
    k, a, prompt = 4, 0.8, 256
    target = step_cost(HW, "llama-3.1-8b", Scenario(runtime="vllm"), max_tokens=4096, max_seqs=64, max_context=8192)
    draft = draft_engine(target, MODEL)
    ctx = prompt + 200
    per_step = target.step(decode_seqs=1, decode_ctx_sum=ctx, extra_tokens=k).time + k * draft.step(
        decode_seqs=1, decode_ctx_sum=ctx).time
    expected = per_step / ((1 - a ** (k + 1)) / (1 - a))
    req = _fixed(0.05, 60, prompt, 400, seed=10)
    spec = simulate(target, req, Policy(speculative_k=k, acceptance=a), draft_cost=draft).summary
    plain = simulate(target, req, Policy()).summary
    assert spec["tpot_mean_s"] == pytest.approx(expected, rel=0.06)
    assert spec["tpot_mean_s"] < 0.7 * plain["tpot_mean_s"]
    assert spec["completed"] == 60


def test_report_has_a_serving_section(tmp_path):
    out = tmp_path / "r.html"
    r = CliRunner().invoke(main, ["report", "-H", HW, "-w", MODEL, "--serve-rates", "2,6", "--slo-ttft", "1",
                                  "--no-sweeps", "--out", str(out)])
    assert r.exit_code == 0, r.output
    html = out.read_text()
    assert "Serving under traffic" in html and html.count("<img") >= 5


def test_swap_preemption_keeps_the_kv_cache():
    """Swapped sequences come back without a recompute prefill: fewer prompt tokens computed
    than with recompute, the swaps cost host-link time, and every request still finishes."""
    small = step_cost(HW, MODEL, Scenario(runtime="vllm"), max_tokens=4096, max_seqs=128, max_context=8192)
    small.kv_capacity_tokens = 8 * (1024 + 512)
    req = _fixed(1e9, 60, 1024, 512)
    rec = simulate(small, req, Policy(name="continuous"))
    swp = simulate(small, req, Policy(name="continuous", preemption="swap"))
    assert rec.summary["preemptions"] > 0 and swp.summary["preemptions"] > 0
    assert swp.summary["completed"] == 60
    assert swp.steps.prompt_tokens.sum() < rec.steps.prompt_tokens.sum()
    assert swp.steps.prompt_tokens.sum() == 60 * 1024             # each prompt computed once


def test_mtp_module_drafts_for_deepseek_v3():
    """DeepSeek-V3's own multi-token-prediction block as the draft (k = 1, 85% acceptance, its
    report's figure): about 1.8x the decode speed, as the report states; a model without an
    MTP module says so."""
    from codesign.serve import draft_engine
    from codesign.serve.api import MTP_ACCEPTANCE, mtp_draft
    from codesign.workload import load_workload
    v3 = load_workload("deepseek-v3")
    assert mtp_draft(v3).num_layers == 1 and mtp_draft(v3).moe.first_dense == 0
    cost = step_cost("h200", v3, Scenario(tp=8, dtype="fp8", runtime="vllm"), max_tokens=4096, max_seqs=64,
                     max_context=8192)
    d = draft_engine(cost, "mtp")
    req = _fixed(0.5, 30, 512, 128, seed=11)
    plain = simulate(cost, req, Policy()).summary["tpot_mean_s"]
    spec = simulate(cost, req, Policy(speculative_k=1, acceptance=MTP_ACCEPTANCE), draft_cost=d).summary["tpot_mean_s"]
    assert 1.4 < plain / spec < 2.0
    with pytest.raises(CodesignError, match="no multi-token-prediction"):
        draft_engine(step_cost(HW, MODEL, Scenario(), max_tokens=1024, max_seqs=16, max_context=4096), "mtp")


def test_devices_are_busier_under_more_load(cost):
    shares = [simulate(cost, _fixed(r, 300, 512, 64, seed=12), Policy()).summary["device_busy_share"] for r in (1, 8)]
    assert 0 < shares[0] < shares[1] <= 1


def test_frontend_is_a_serial_stage(cost):
    from codesign.serve import runtime_frontend
    pol = Policy(name="chunked", max_num_seqs=128, max_num_batched_tokens=4096)
    req = _fixed(1e9, 600, 256, 64)
    base = simulate(cost, req, pol, concurrency=64, frontend=Frontend()).summary
    # by default a run sits behind its runtime's front end
    own = runtime_frontend(cost.scenario)
    assert simulate(cost, req, pol, concurrency=64).summary == simulate(cost, req, pol, concurrency=64,
                                                                        frontend=own).summary
    # an idle server: its request work is part of request_overhead, so one request's TTFT is unchanged
    one = _fixed(1.0, 1, 256, 64)
    slow_host = dataclasses.replace(cost, request_overhead=5e-3)
    fe = Frontend(request_s=1e-3, token_s=0.0)
    assert simulate(slow_host, one, pol, frontend=fe).summary["ttft_mean_s"] == pytest.approx(
        simulate(slow_host, one, pol, frontend=Frontend()).summary["ttft_mean_s"], rel=1e-9)
    # a slow front end caps a closed loop at its own capacity, 1 / (request + output x token work)
    slow = Frontend(request_s=2e-3, token_s=2e-4)
    s = simulate(cost, req, pol, concurrency=64, frontend=slow).summary
    cap = 1.0 / (slow.request_s + 64 * slow.token_s)
    assert s["throughput_req_per_s"] <= cap * 1.01
    assert s["throughput_req_per_s"] > 0.9 * cap               # and reaches it: the engine is faster
    assert s["throughput_req_per_s"] < base["throughput_req_per_s"]
    # Little's law still holds: requests leave when their last token reaches the client
    assert s["mean_in_system"] == pytest.approx(s["throughput_req_per_s"] * s["e2e_mean_s"], rel=0.05)
    # more front-end work per token never makes anything faster
    faster = simulate(cost, req, pol, concurrency=64, frontend=Frontend(2e-3, 1e-4)).summary
    assert faster["e2e_mean_s"] <= s["e2e_mean_s"] and faster["throughput_req_per_s"] >= s["throughput_req_per_s"]
    # the runtimes that declare one (their sources say estimate)
    assert runtime_frontend("vllm").token_s > 0 and not runtime_frontend("generic").active
    with pytest.raises(CodesignError):
        Frontend(request_s=-1.0)


def test_no_evict_reserves_the_output_and_never_preempts():
    small = step_cost(HW, MODEL, Scenario(runtime="vllm"), max_tokens=4096, max_seqs=128, max_context=8192)
    small.kv_capacity_tokens = 8 * (1024 + 512)
    req = _fixed(1e9, 60, 1024, 512)
    vllm = simulate(small, req, Policy(name="chunked")).summary
    trt = simulate(small, req, Policy(name="chunked", no_evict=True, whole_prompts=True))
    assert vllm["preemptions"] > 0
    assert trt.summary["preemptions"] == 0 and trt.summary["completed"] == 60
    # a request is admitted only when its prompt and its whole output fit
    assert trt.steps.decode_seqs.max() <= 8
    # whole prompts: no step carries a part of one (1024-token prompts, a 4096-token budget)
    assert (trt.steps.prompt_tokens % 1024 == 0).all()
