"""Golden values: key metrics of a few device x workload pairs, pinned (issue 16).

A change to any of them must be a deliberate update of tests/golden/metrics.json:
    python tests/test_golden.py --update
and the commit says why the numbers moved. The pairs cover each device class, the
runtimes that carry fitted figures, compression, MoE, tensor parallelism and serving."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden" / "metrics.json"
KEYS = ("ttft_s", "tpot_s", "throughput_tokens_per_s", "energy_per_token_j", "avg_power_w", "memory_bytes")
CASES = {
    "h100/llama-3.1-8b/vllm/b8": ("h100-sxm", "llama-3.1-8b", dict(batch=8, prompt=1024, generate=256, runtime="vllm"),
                                  None),
    "h100x4/llama-3.1-70b/trtllm/fp8": ("h100-sxm", "llama-3.1-70b",
                                        dict(batch=32, prompt=2048, generate=128, tp=4, runtime="tensorrt-llm"),
                                        dict(weight_bits=8, weight_format="fp8", act_bits=8)),
    "mi300x/mixtral-8x7b": ("mi300x", "mixtral-8x7b", dict(batch=16, prompt=512, generate=128), None),
    "tpu-v5e/llama-2-7b/tp4": ("tpu-v5e", "llama-2-7b", dict(batch=4, prompt=512, generate=128, tp=4), None),
    "rtx-4090/llama-3.1-8b/llama.cpp-q4": ("rtx-4090", "llama-3.1-8b",
                                          dict(batch=1, prompt=512, generate=128, runtime="llama.cpp-cuda", dtype="fp16"),
                                          dict(weight_bits=4, group_size=32)),
    "rk3588/llama-3.2-1b/w4": ("rk3588-npu", "llama-3.2-1b", dict(batch=1, prompt=256, generate=128),
                               dict(weight_bits=4, group_size=128)),
    "u280/llama-3.2-1b": ("alveo-u280", "llama-3.2-1b", dict(batch=1, prompt=256, generate=128), None),
    "xeon/qwen2.5-0.5b": ("intel-xeon-8480plus", "qwen2.5-0.5b", dict(batch=1, prompt=128, generate=64), None),
}
SERVE = ("h100-sxm", "llama-3.1-8b", 8.0, 400)      # device, model, rate, requests
SERVE_KEYS = ("ttft_p99_s", "tpot_mean_s", "throughput_req_per_s", "energy_per_token_j")


def compute() -> dict:
    from codesign.compression import Compression
    from codesign.perf import evaluate
    from codesign.serve import make_requests, serve
    from codesign.workload.scenario import Scenario
    out = {}
    for name, (hw, wl, sc, comp) in CASES.items():
        r = evaluate(hw, wl, Scenario(**sc), Compression(**comp) if comp else None)
        out[name] = {k: float(r.summary[k]) for k in KEYS}
    hw, wl, rate, n = SERVE
    s = serve(hw, wl, make_requests(rate, n, seed=0, max_context=131072), Scenario(runtime="vllm")).summary
    out["serve/h100/llama-3.1-8b/8rps"] = {k: float(s[k]) for k in SERVE_KEYS}
    return out


@pytest.fixture(scope="module")
def now():
    return compute()


def test_golden_metrics_have_not_moved(now):
    pinned = json.loads(GOLDEN.read_text())
    assert set(now) == set(pinned), "cases changed: update the golden file (python tests/test_golden.py --update)"
    moved = [f"{case}.{k}: {pinned[case][k]:.6g} -> {v:.6g}" for case, vals in now.items() for k, v in vals.items()
             if v != pytest.approx(pinned[case][k], rel=1e-6)]
    assert not moved, ("golden values moved (if intended: python tests/test_golden.py --update, and say why):\n"
                       + "\n".join(moved))


if __name__ == "__main__" and "--update" in sys.argv:
    GOLDEN.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
