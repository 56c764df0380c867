"""Serving metrics in studies (issue 13): a serve block per workload, serving choices (tp,
replicas), a device chosen from a list, and the ready study serving-70b."""
from __future__ import annotations

import json

import pytest

from codesign.errors import CodesignError
from codesign.search import parse_ref, study_from_dict

SERVE = {"rate": 3, "requests": 60, "prompt": "fixed:512", "output": "fixed:64", "slo_ttft": "1 s",
         "slo_tpot": "50 ms"}
BASE = {
    "name": "srv",
    "hardware": ["h100-sxm", "l40s"],
    "serving": {"tp": {"type": "categorical", "choices": [1, 2]}, "replicas": {"type": "int", "low": 1, "high": 2}},
    "workloads": [{"workload": "llama-3.2-1b", "runtime": "vllm", "serve": SERVE}],
    "objectives": [{"metric": "goodput_per_usd"}, {"metric": "p99_tpot_s"}],
    "constraints": {"p99_ttft_s": {"max": "1 s"}},
}


def study(**changes):
    data = json.loads(json.dumps(BASE))
    data.update(changes)
    return study_from_dict(data)


def test_serving_metrics_equal_the_simulator_run_directly():
    from codesign.search.metrics import Evaluator
    from codesign.serve import Policy, make_requests, simulate
    from codesign.serve.api import engines
    from codesign.workload.scenario import Scenario
    st = study()
    ev = Evaluator(st)
    outs = ev([{"hardware": "l40s", "tp": 2, "replicas": 2}, {"hardware": "h100-sxm", "tp": 1, "replicas": 1}])
    assert all(o.error is None for o in outs), [o.error for o in outs]
    m = outs[0].metrics
    assert m["devices"] == 4
    cost, _ = engines("l40s", "llama-3.2-1b", Scenario(runtime="vllm", tp=2), None, Policy())
    req = make_requests(1.0, 60, "fixed:512", "fixed:64", seed=0, max_context=cost.max_context).scaled(3)
    s = simulate(cost, req, Policy(), replicas=2).with_slo(1.0, 0.05)
    assert m["p99_tpot_s"] == pytest.approx(s["tpot_p99_s"], rel=1e-9)
    assert m["goodput_req_per_s"] == pytest.approx(s["goodput_req_per_s"], rel=1e-9)
    # one H100 costs less per request than four L40S at a rate either serves
    assert outs[1].metrics["goodput_per_usd"] > m["goodput_per_usd"]


def test_serving_study_enumerates_devices_and_layouts(tmp_path):
    from codesign.search.runner import run_study
    st = study()
    rep = run_study(st, parse_ref(None, st.name, tmp_path / "results"), progress=False)
    assert rep.sampler == "exhaustive" and rep.exhaustive["done"] == 8
    assert rep.pareto >= 1 and rep.failure is None


@pytest.mark.parametrize("change, words", [
    ({"workloads": [{"workload": "llama-3.2-1b"}]}, "needs a serve block"),
    ({"workloads": [{"workload": "llama-3.2-1b", "serve": {"rate": 2}}],
      "objectives": [{"metric": "max_rate_under_slo"}]}, "needs slo_ttft"),
    ({"workloads": [{"workload": "llama-3.2-1b", "serve": {"slo_ttft": "1 s"}}]}, "measured at a request rate"),
    ({"serving": {"cores": {"type": "int", "low": 1, "high": 2}}}, "not a serving choice"),
    ({"space": {"compute.cores": {"type": "int", "low": 64, "high": 132}}}, "cannot also change"),
    ({"hardware": ["h100-sxm", "h100-sxm"]}, "listed twice"),
])
def test_bad_serving_studies_are_one_clear_error(change, words):
    with pytest.raises(CodesignError, match=words):
        study(**change)


def test_the_ready_serving_study_loads_and_is_enumerable():
    from codesign.search import load_study
    from codesign.search.samplers import choose_sampler
    st = load_study("serving-70b")
    c = choose_sampler(st)
    assert c.name == "exhaustive" and c.designs == 80
    assert st.uses_serving and set(st.space.devices) == {"h100-sxm", "h200", "a100-80gb", "mi300x", "l40s"}
