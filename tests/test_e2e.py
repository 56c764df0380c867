"""End-to-end decoder harness (codesign.validate.e2e) on the torch CPU with a tiny model."""
import contextlib
import math
import sys
import time
import types

import pandas as pd
import pytest
from conftest import cli

torch = pytest.importorskip("torch")

from codesign.errors import CodesignError  # noqa: E402
from codesign.validate import e2e  # noqa: E402
from codesign.workload import load_workload  # noqa: E402

TINY = """\
name: tiny-e2e
architecture: decoder
hidden_size: 64
num_layers: 2
num_heads: 4
num_kv_heads: 2
ffn_size: 128
ffn_type: gated
activation: silu
norm: rmsnorm
vocab_size: 256
position: rope
sources:
  architecture: "test fixture"
"""
CPU_SPEC = "intel-xeon-8480plus"


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny-e2e.yaml"
    path.write_text(TINY)
    return path


def _incremental_matches_full(model, gqa="expand", prompt=5, total=9, batch=2):
    dec = e2e.Decoder(model, device="cpu", dtype="fp32", seed=3, gqa=gqa)
    ids = torch.randint(0, model.vocab_size, (batch, total), generator=torch.Generator().manual_seed(1))
    dec.alloc_cache(batch, total)
    full = dec.prefill(ids, all_logits=True)               # (batch, total, vocab), causal
    assert full.shape == (batch, total, model.vocab_size)
    dec.alloc_cache(batch, total)                          # fresh cache for the incremental run
    last = dec.prefill(ids[:, :prompt])
    torch.testing.assert_close(last, full[:, prompt - 1], atol=1e-4, rtol=1e-4)
    for pos in range(prompt, total):
        step = dec.decode(ids[:, pos], pos)
        torch.testing.assert_close(step, full[:, pos], atol=1e-4, rtol=1e-4)
    # the logits are not trivially equal everywhere (the test would pass on a constant model)
    assert (full[:, -1] - full[:, prompt - 1]).abs().max() > 1e-3


def test_incremental_decoding_matches_a_full_causal_forward(tiny):
    _incremental_matches_full(load_workload(tiny))


def test_native_grouped_attention_matches_the_expanded_one(tiny):
    _incremental_matches_full(load_workload(tiny), gqa="native")


@pytest.mark.parametrize("update", [
    {"norm": "layernorm", "ffn_type": "plain", "activation": "gelu", "position": "learned", "max_position": 16,
     "attention_bias": True, "mlp_bias": True, "tied_embeddings": True, "num_kv_heads": None},
    {"parallel_block": True, "activation": "gelu_tanh", "rotary_dim": 8, "lm_head_bias": True},
    {"parallel_block": True, "norms_per_layer": 2, "norm": "layernorm", "activation": "relu2", "num_kv_heads": 1},
])
def test_other_architectures_keep_the_cache_path_exact(tiny, update):
    model = load_workload(tiny).model_copy(update=update)
    _incremental_matches_full(model)


def test_run_e2e_on_cpu_compares_every_grid_point(tiny):
    lines = []
    df, rep = e2e.run_e2e(tiny, CPU_SPEC, runtime="pytorch-eager", device="cpu", dtype="fp32",
                          grid=[(1, 16), (2, 8)], generate=8, min_seconds=0.0, log=lines.append)
    assert len(df) == 2 and list(df["batch"]) == [1, 2] and list(df["prompt"]) == [16, 8]
    for col in ("ttft_measured_s", "tpot_measured_s", "ttft_predicted_s", "tpot_predicted_s",
                "energy_per_token_predicted_j", "power_predicted_w"):
        assert (df[col] > 0).all() and df[col].map(math.isfinite).all(), col
    for m in ("ttft", "tpot"):
        want = 100 * (df[f"{m}_predicted_s"] - df[f"{m}_measured_s"]) / df[f"{m}_measured_s"]
        assert (df[f"{m}_error_pct"] - want).abs().max() < 1e-9
        assert rep[f"{m}_mape_pct"] == pytest.approx(want.abs().mean())
    # no power reading on the CPU: measured energy and its error are NaN, the prediction is not
    assert df["energy_per_token_measured_j"].isna().all() and df["energy_error_pct"].isna().all()
    assert df["power_prefill_w"].isna().all() and math.isnan(rep["energy_mape_pct"])
    assert (df["decode_context"] == df["prompt"] + 4).all()
    assert rep["model"] == "tiny-e2e" and rep["device"] == "cpu" and rep["dtype"] == "fp32"
    assert rep["runtime"] == "pytorch-eager" and rep["hardware"] == CPU_SPEC and "idle_power_w" not in rep
    assert len(lines) >= 2 and "batch 2 prompt 8" in lines[-1]


def test_layers_cuts_the_run_and_the_prediction_alike(tiny):
    one, rep = e2e.run_e2e(tiny, CPU_SPEC, runtime="pytorch-eager", dtype="fp32", grid=[(1, 8)], generate=4,
                           layers=1, min_seconds=0.0)
    two, _ = e2e.run_e2e(tiny, CPU_SPEC, runtime="pytorch-eager", dtype="fp32", grid=[(1, 8)], generate=4,
                         min_seconds=0.0)
    assert rep["layers"] == 1
    assert one["tpot_predicted_s"][0] < two["tpot_predicted_s"][0]
    with pytest.raises(CodesignError, match="layers"):
        e2e.run_e2e(tiny, CPU_SPEC, runtime="pytorch-eager", dtype="fp32", layers=3, min_seconds=0.0)


def test_unsupported_architectures_are_refused_before_anything_is_allocated(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("allocated")
    monkeypatch.setattr(e2e, "Decoder", boom)
    monkeypatch.setattr(e2e, "evaluate", boom)
    with pytest.raises(CodesignError, match="MLA") as err:
        e2e.run_e2e("deepseek-v2-lite", "h200", device="cpu")
    assert "\n" not in str(err.value) and "not supported by the e2e harness yet" in str(err.value)
    with pytest.raises(CodesignError, match="MLA"):
        e2e.run_e2e("minicpm3-4b", "h200")
    with pytest.raises(CodesignError, match="encoder"):
        e2e.run_e2e("bert-base", "h200")
    with pytest.raises(CodesignError, match="sliding-window"):
        e2e.run_e2e("gemma-2-2b", "h200")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_clear_line(tiny):
    with pytest.raises(CodesignError, match="cuda") as err:
        e2e.run_e2e(tiny, "h200", runtime="pytorch-eager", device="cuda")
    assert "\n" not in str(err.value) and "is_available" in str(err.value)


def test_bad_dtype_and_grid_are_refused(tiny):
    with pytest.raises(CodesignError, match="dtype"):
        e2e.run_e2e(tiny, CPU_SPEC, runtime="pytorch-eager", dtype="int8")
    with pytest.raises(CodesignError, match="grid"):
        e2e.run_e2e(tiny, CPU_SPEC, runtime="pytorch-eager", dtype="fp32", grid=[(0, 8)])
    with pytest.raises(CodesignError, match="runtime"):
        e2e.run_e2e(tiny, CPU_SPEC, runtime="no-such-runtime", dtype="fp32")


def test_weight_bytes_are_the_hand_count(tiny):
    m = load_workload(tiny)
    h, f, V, hd = 64, 128, 256, 16
    per_layer = h * (4 + 2 * 2) * hd + 4 * hd * h + h * 2 * f + f * h + 2 * h   # qkv, o, gate+up, down, 2 norms
    hand = 2 * per_layer + V * h + V * h + h                                    # + embedding, LM head, final norm
    assert e2e.weight_elements(m) == hand == m.param_count()
    need = e2e.memory_estimate(m, batch=2, prompt=8, generate=8, dtype="fp32")
    assert need["weights"] == 4 * hand
    assert need["kv"] == 2 * 2 * 2 * 2 * 16 * hd * 4                              # K+V, layers, batch, kv heads, tokens
    dec = e2e.Decoder(m, dtype="fp32")
    allocated = sum(t.numel() for L in dec.layers for t in (L.qkv, L.o, L.up, L.down, *(w for w, _ in L.norms)))
    allocated += dec.embed.numel() + dec.lm_head.numel() + dec.final_norm[0].numel()
    assert allocated == hand
    # the library's larger models count as the schema does (biases, tied embeddings, learned positions)
    for name in ("llama-3.1-8b", "qwen2-7b", "gpt-j-6b", "gpt-neox-20b", "mixtral-8x7b", "llama-4-scout"):
        big = load_workload(name)
        assert e2e.weight_elements(big) == big.param_count(), name


def test_memory_check_refuses_a_model_far_over_budget(tiny):
    m = load_workload(tiny)
    small = e2e.memory_estimate(m, 1, 8, 8, "fp32")
    e2e.check_fits(m, small, free=2**34, where="test device")
    big = e2e.memory_estimate(load_workload("llama-3.1-70b"), 8, 4096, 512, "bf16")
    assert big["weights"] > 1.3e11
    with pytest.raises(CodesignError, match="does not fit") as err:
        e2e.check_fits(load_workload("llama-3.1-70b"), big, free=80 * 2**30, where="H100", point="batch 8, prompt 4096")
    assert "llama-3.1-70b" in str(err.value) and "GB" in str(err.value) and "\n" not in str(err.value)


def test_power_sampler_discards_the_ramp():
    s = e2e.PowerSampler(lambda: 1.0, "fake")
    s.samples = [(t / 10, 100.0 if t < 2 else 300.0) for t in range(11)]   # 0.0 .. 1.0 s
    assert s.mean(0.0, 1.0) == pytest.approx(300.0)                         # first 20% (ramp) left out
    assert math.isnan(e2e.PowerSampler(None, "none").mean(0.0, 1.0))
    lagged = e2e.PowerSampler(lambda: 1.0, "avg", lag_s=0.5)
    lagged.samples = s.samples
    assert lagged.mean(0.0, 1.0) == pytest.approx(300.0)


class _FakeEvent:
    def __init__(self, enable_timing=False):
        self.t = None

    def record(self):
        self.t = time.perf_counter()

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return (end.t - self.t) * 1e3


class _FakeGraph:
    replays = 0

    def replay(self):
        _FakeGraph.replays += 1
        time.sleep(2e-5)


def _fake_torch(**cuda):
    ns = types.SimpleNamespace
    stream = ns(wait_stream=lambda other: None)
    base = dict(Event=_FakeEvent, synchronize=lambda *a: None, Stream=lambda: stream, current_stream=lambda: stream,
                stream=lambda s: contextlib.nullcontext(), CUDAGraph=_FakeGraph, graph=lambda g: contextlib.nullcontext(),
                get_device_properties=lambda i: ns(uuid="1234-abcd"))
    base.update(cuda)
    return ns(cuda=ns(**base))


def test_cuda_timing_loops_run_their_minimum_counts_and_record_a_window():
    """The CUDA timing helpers' control flow, with events and graphs faked on the CPU."""
    calls = []
    pre = e2e._time_prefill_cuda(_fake_torch(), lambda: (calls.append(1), time.sleep(1e-4)), target_s=0.0)
    assert pre.reps == 3 and len(calls) == 2 + 3 and pre.seconds >= 1e-4      # warm-up, calibration, 3 timed
    assert pre.window[1] > pre.window[0]
    calls.clear()
    _FakeGraph.replays = 0
    dec = e2e._time_decode_graph(_fake_torch(), lambda: calls.append(1), target_s=0.01)
    assert len(calls) == 4                                                    # 3 warm-ups on a side stream + capture
    assert dec.reps >= 20 and _FakeGraph.replays == 3 + 10 + dec.reps
    assert 0 < dec.seconds < 0.01 and dec.window[1] - dec.window[0] >= 0.01 * 0.5


def test_power_reader_prefers_nvml_instant_power_and_falls_back(monkeypatch):
    ns = types.SimpleNamespace
    field = ns(nvmlReturn=0, valueType=1, value=ns(uiVal=250_000))
    nvml = ns(nvmlInit=lambda: None, nvmlDeviceGetHandleByUUID=lambda u: ("h", u), nvmlDeviceGetHandleByIndex=lambda i: i,
              nvmlDeviceGetFieldValues=lambda h, ids: [field], nvmlDeviceGetPowerUsage=lambda h: 190_000)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(e2e.shutil, "which", lambda name: None)
    read, source, lag = e2e.power_reader(_fake_torch(power_draw=lambda i: 200_000), 0)
    assert read() == 250.0 and "instant" in source and lag == 0
    field.nvmlReturn = 3                                      # no instantaneous field on this board/driver
    read, source, lag = e2e.power_reader(_fake_torch(power_draw=lambda i: 200_000), 0)
    assert read() == 200.0 and "power_draw" in source and lag == e2e.AVERAGED_POWER_LAG_S

    def broken(*a):
        raise RuntimeError("no NVML")
    read, source, lag = e2e.power_reader(_fake_torch(power_draw=broken), 0)
    assert read() == 190.0 and "nvml" in source
    monkeypatch.setitem(sys.modules, "pynvml", None)          # nvidia-ml-py missing
    read, source, _ = e2e.power_reader(_fake_torch(power_draw=broken), 0)
    assert read is None and source.startswith("none")


def test_cli_writes_the_table_csv_and_plot(tiny, tmp_path):
    """`codesign validate --e2e` end to end on the CPU: one row per grid point in the CSV, the
    predicted-vs-measured plot, and the three MAPE lines."""
    csv, png = tmp_path / "e2e.csv", tmp_path / "e2e.png"
    r = cli("validate", "--e2e", "--workload", tiny, "--hardware", CPU_SPEC, "--runtime", "pytorch-eager", "--device",
            "cpu", "--dtype", "fp32", "--grid", "1x16,2x8", "--generate", "4", "--csv", csv, "--plot", png, "-q")
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(csv)
    assert list(zip(df["batch"], df["prompt"])) == [(1, 16), (2, 8)]
    assert png.stat().st_size > 10_000
    assert "ttft MAPE:" in r.stdout and "tpot MAPE:" in r.stdout and "energy MAPE: n/a" in r.stdout


TINY_MOE = TINY.replace("name: tiny-e2e", "name: tiny-moe") + """\
moe: {num_experts: 4, top_k: 2, shared_experts: 1, expert_ffn_size: 32, first_dense: 1}
"""


@pytest.fixture
def tiny_moe(tmp_path):
    path = tmp_path / "tiny-moe.yaml"
    path.write_text(TINY_MOE)
    return load_workload(path)


def test_moe_layer_matches_a_per_token_reference(tiny_moe):
    """The grouped, sorted, static-shape MoE equals the plain definition: each token's output
    is the sum over its top-k experts of softmax(top-k logits) x expert(x), plus the shared
    expert; the first layer stays dense (first_dense: 1), as the op graph counts."""
    F = torch.nn.functional
    dec = e2e.Decoder(tiny_moe, dtype="fp32", seed=5)
    assert dec.layers[0].moe is None and dec.layers[1].moe is not None
    X = dec.layers[1].moe
    x = torch.randn(2, 7, 64, generator=torch.Generator().manual_seed(2))
    got = dec._moe(x, X)
    ref = torch.zeros_like(x.reshape(-1, 64))
    for t, xt in enumerate(x.reshape(-1, 64)):
        logits = X.router @ xt
        top = logits.topk(2)
        for w, e in zip(torch.softmax(top.values, -1), top.indices):
            g, u = (xt @ X.up[e]).chunk(2)
            ref[t] += w * ((F.silu(g) * u) @ X.down[e])
        g, u = F.linear(xt, X.shared_up).chunk(2)
        ref[t] += F.linear(F.silu(g) * u, X.shared_down)
    assert torch.allclose(got.reshape(-1, 64), ref, atol=1e-5, rtol=1e-4)


def test_moe_incremental_decoding_matches_a_full_forward(tiny_moe):
    _incremental_matches_full(tiny_moe)


def test_moe_weights_are_the_schema_count(tiny_moe):
    assert e2e.weight_elements(tiny_moe) == tiny_moe.param_count()
    rows, _ = e2e.run_e2e(tiny_moe, CPU_SPEC, runtime="pytorch-eager", dtype="fp32", grid=[(2, 8)], generate=4,
                          min_seconds=0.0)
    assert rows["tpot_measured_s"][0] > 0 and rows["tpot_predicted_s"][0] > 0
