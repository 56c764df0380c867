"""Runtimes as data: validation and errors, fusion and launch arithmetic on hand examples,
Little's-law ramps at their limits, the fit recovering known figures, the accuracy CLI."""
import csv
import json
import math
from pathlib import Path

import pytest
from conftest import cli

from codesign import Scenario, evaluate, load_hardware, load_workload
from codesign.accuracy import load_map, read_rows, resolve_all
from codesign.accuracy.fit import MEMORY_CAP_START, fit_runtime
from codesign.compression import Compression, weight_bytes_per_element
from codesign.errors import CodesignError
from codesign.perf import op_times
from codesign.perf.params import HOST_REFERENCE, UNIT_BYTES_IN_FLIGHT
from codesign.perf.steps import step_cost
from codesign.runtime import list_runtimes, load_runtime, runtime_for_framework
from codesign.workload.ops import LINK_KINDS, Op

ROOT = Path(__file__).resolve().parents[1]
NAMED = ("generic", "tensorrt-llm", "vllm", "sglang", "llama.cpp-cuda", "llama.cpp-metal", "llama.cpp-cpu",
         "mlc-llm", "mlx", "executorch", "pytorch-eager", "pytorch-cudagraph", "jetstream", "rknn-llm", "qnn")


def _write(tmp_path, name, body):
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"name: {name}\n" + body)
    return str(p)


def test_library_has_the_named_stacks_and_every_figure_is_sourced():
    have = {r.name for r in list_runtimes()}
    assert set(NAMED) <= have
    for r in list_runtimes():
        assert all(r._sourced(p) for p in r.figure_paths()), r.name
        for path, rows in r.fitted.items():     # fitted figures cite several rows, never one
            assert "rows" in rows and len(rows.split("rows", 1)[1].split(",")) >= 3, (r.name, path)


def test_aliases_and_framework_text_pick_the_backend():
    assert load_runtime("TRT-LLM").name == "tensorrt-llm"
    assert load_runtime("huggingface_transformers").name == "pytorch-eager"
    assert runtime_for_framework("llama.cpp llama-bench (Metal)", "gpu", "Apple") == "llama.cpp-metal"
    assert runtime_for_framework("llama.cpp llama-bench (CUDA)", "gpu", "NVIDIA") == "llama.cpp-cuda"
    assert runtime_for_framework("llama.cpp", "cpu", "Intel") == "llama.cpp-cpu"
    assert runtime_for_framework("MLX 0.29.2 / mlx-lm 0.28.2", "gpu", "Apple") == "mlx"
    assert runtime_for_framework("MLC LLM", "gpu", "Apple") == "mlc-llm"
    assert runtime_for_framework("ExecuTorch XNNPACK + KleidiAI", "cpu", "Qualcomm") == "executorch"
    assert runtime_for_framework("something else entirely") is None


def test_bad_runtime_files_and_names_are_one_line_exit_2(tmp_path):
    unknown = _write(tmp_path, "bad-field", "fuse: [norm]\nlaunch_ovrhead: 3 us\n")
    unsourced = _write(tmp_path, "unsourced", "launch_overhead: 3 us\n")
    badkind = _write(tmp_path, "bad-kind", "fuse: [gemm]\n")
    badscope = _write(tmp_path, "bad-scope", "prefill_window: everything\n")
    badscan = _write(tmp_path, "bad-scan", "sequential_recurrences: [lstm]\n")
    base = ["eval", "--hardware", "h100-sxm", "--workload", "llama-3.2-1b", "--runtime"]
    for path, want in ((unknown, "launch_ovrhead: unknown field"), (unsourced, "no source for launch_overhead"),
                       (badkind, "fuse"), (badscope, "prefill_window"), (badscan, "sequential_recurrences"),
                       ("no-such-stack", "unknown runtime 'no-such-stack'")):
        r = cli(*base, path)
        assert r.returncode == 2, r.stderr
        assert want in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_generic_runtime_is_the_device_only_model():
    hw, m = load_hardware("h100-sxm"), load_workload("llama-3.2-1b")
    a = evaluate(hw, m, Scenario(batch=4, prompt=256, generate=32))
    b = evaluate(hw, m, Scenario(batch=4, prompt=256, generate=32, runtime="default"))
    assert a["tpot_s"] == b["tpot_s"] and a["ttft_s"] == b["ttft_s"]


def _vec(elements=1024):
    return Op(name="add", kind="elementwise", phase="prefill", impl="add", elements=elements, flops=elements,
              act_in_elems=2 * elements, act_out_elems=elements)


def test_launch_overhead_is_added_once_per_call(tmp_path):
    slow = _write(tmp_path, "slow-launch", "launch_overhead: 1 ms\nsources: {launch_overhead: 'estimate: test'}\n")
    none = _write(tmp_path, "no-launch", "launch_overhead: 0 s\nsources: {launch_overhead: 'estimate: test'}\n")
    t1 = op_times("h100-sxm", [_vec()], runtime=slow)["time_s"].iloc[0]
    t0 = op_times("h100-sxm", [_vec()], runtime=none)["time_s"].iloc[0]
    assert t1 - t0 == pytest.approx(1e-3, rel=1e-9)


def test_host_dispatch_scales_with_the_hosts_single_thread_speed(tmp_path):
    """Host-side dispatch is serial CPU work: on a chip whose performance core scores s in
    Geekbench 6 single-core a launch costs HOST_REFERENCE / s of the runtime's figure (an M1
    Ultra, 2379: 1.58x), except in a decode step replayed as a captured graph."""
    slow = _write(tmp_path, "slow-host", "launch_overhead: 1 ms\nsources: {launch_overhead: 'estimate: test'}\n")
    none = _write(tmp_path, "no-host", "launch_overhead: 0 s\nsources: {launch_overhead: 'estimate: test'}\n")
    graphs = _write(tmp_path, "graph-host", "launch_overhead: 1 ms\ndecode_graphs: true\n"
                    "sources: {launch_overhead: 'estimate: test', decode_graphs: 'estimate: test'}\n")
    score = load_hardware("apple-m1-ultra").host_single_thread
    assert score == 2379 and load_hardware("h100-sxm").host_single_thread is None
    step = Op(name="add", kind="elementwise", phase="decode", impl="add", elements=1024, flops=1024,
              act_in_elems=2048, act_out_elems=1024)

    def extra(hw, op, rt):
        return op_times(hw, [op], runtime=rt)["time_s"].iloc[0] - op_times(hw, [op], runtime=none)["time_s"].iloc[0]
    assert extra("apple-m1-ultra", _vec(), slow) == pytest.approx(1e-3 * HOST_REFERENCE / score, rel=1e-9)
    assert extra("apple-m1-ultra", step, slow) == pytest.approx(1e-3 * HOST_REFERENCE / score, rel=1e-9)
    assert extra("apple-m1-ultra", step, graphs) == pytest.approx(1e-3, rel=1e-9)
    assert extra("h100-sxm", _vec(), slow) == pytest.approx(1e-3, rel=1e-9)     # no score: the reference host


def test_fused_operators_launch_nothing_and_move_no_bytes(tmp_path):
    fused = _write(tmp_path, "fuse-adds", "fuse: [elementwise]\nlaunch_overhead: 10 us\n"
                   "sources: {launch_overhead: 'estimate: test'}\n")
    plain = _write(tmp_path, "plain-adds", "launch_overhead: 10 us\nsources: {launch_overhead: 'estimate: test'}\n")
    hw, m = load_hardware("h100-sxm"), load_workload("llama-3.2-1b")
    sc = dict(batch=1, prompt=128, generate=2)
    rf = evaluate(hw, m, Scenario(**sc, runtime=fused))
    rp = evaluate(hw, m, Scenario(**sc, runtime=plain))
    ops_f, ops_p = rf.ops, rp.ops
    adds_f = ops_f[(ops_f.kind == "elementwise") & (ops_f.phase == "prefill")]
    adds_p = ops_p[(ops_p.kind == "elementwise") & (ops_p.phase == "prefill")]
    assert len(adds_f) > 0 and (adds_f.filter(like="bytes_").to_numpy() == 0).all()
    # prefill: every fused add saves its launch (10 us x its count) and its memory time
    saved = (adds_p.time_s * adds_p["count"]).sum()
    assert rp["ttft_s"] - rf["ttft_s"] == pytest.approx(saved - (adds_f.time_s * adds_f["count"]).sum(), rel=1e-6)
    assert (adds_p.time_s >= 10e-6).all() and (adds_f.time_s < 1e-6).all()


def test_littles_law_ramp_limits(tmp_path):
    """Per-kernel memory time = bytes / sustained BW + latency_factor x latency: a huge
    kernel reaches the streaming bandwidth, a tiny one is pure latency."""
    ramp = _write(tmp_path, "ramp2", "launch_overhead: 0 s\ntuning: {gpu: {latency_factor: 2}}\n"
                  "sources: {launch_overhead: 'estimate: test', tuning: 'estimate: test'}\n")
    flat = _write(tmp_path, "ramp0", "launch_overhead: 0 s\nsources: {launch_overhead: 'estimate: test'}\n")
    hw = load_hardware("h100-sxm")
    lat = hw.memory[0].latency
    big, tiny = _vec(2 ** 28), _vec(64)
    t_big = op_times(hw, [big], runtime=ramp)["time_s"].iloc[0]
    t_big0 = op_times(hw, [big], runtime=flat)["time_s"].iloc[0]
    assert t_big0 / t_big > 0.99                       # ramp negligible: ~streaming bandwidth
    t_tiny = op_times(hw, [tiny], runtime=ramp)["time_s"].iloc[0]
    assert t_tiny == pytest.approx(2 * lat, rel=0.05)   # latency bound
    assert t_tiny > 100 * op_times(hw, [tiny], runtime=flat)["time_s"].iloc[0]


def test_streaming_cap_is_cores_x_clock_x_bytes_per_clock(tmp_path):
    """Little's law per core: with ``stream`` bytes per clock per SM the off-chip bandwidth is
    min(sustained, stream x SMs x clock). A100: 108 SMs x 1.41 GHz x 2 B = 305 GB/s, well under
    its 2 TB/s; a cap of 64 B/clk (9.7 TB/s) never binds."""
    body = "launch_overhead: 0 s\nsources: {launch_overhead: 'estimate: test', tuning: 'estimate: test'}\n"
    capped = _write(tmp_path, "cap2", body + "tuning: {gpu: {stream: 2}}\n")
    loose = _write(tmp_path, "cap64", body + "tuning: {gpu: {stream: 64}}\n")
    flat = _write(tmp_path, "nocap", body)
    hw = load_hardware("a100-80gb")
    big = _vec(2 ** 28)                    # 3 x 2^28 fp16 elements streamed: bandwidth-bound
    t_cap = op_times(hw, [big], runtime=capped)["time_s"].iloc[0]
    t_flat = op_times(hw, [big], runtime=flat)["time_s"].iloc[0]
    assert t_cap == pytest.approx(3 * 2 ** 28 * 2 / (2 * hw.compute.cores * hw.compute.clock), rel=0.01)
    assert op_times(hw, [big], runtime=loose)["time_s"].iloc[0] == pytest.approx(t_flat)
    assert load_runtime(capped).tuning_for("gpu").stream == 2 and load_runtime(flat).tuning_for("gpu").stream is None


def test_streaming_cap_can_bind_packed_kernels_only(tmp_path):
    """``stream_kernels: packed``: the cap binds the GEMVs that unpack packed weights (llama.cpp's
    MMVQ) and the stack's small kernels, not a float-weight GEMV (its F16 GEMV): Llama-3.1-8B
    fp16 decode on an A100 streams its ~16 GB of weights at the memory's rate, 4-bit weights at
    the cap of 2 B/clk x 108 SMs x 1.41 GHz = 305 GB/s."""
    body = ("launch_overhead: 0 s\ntuning: {gpu: {stream: 2}}\n"
            "sources: {launch_overhead: 'estimate: test', tuning: 'estimate: test'}\n")
    every = _write(tmp_path, "every", body)
    packed = _write(tmp_path, "packed", body + "stream_kernels: packed\n")
    hw, m = load_hardware("a100-80gb"), load_workload("llama-3.1-8b")
    cap = 2 * hw.compute.cores * hw.compute.clock
    free = hw.memory[0].bandwidth * hw.memory[0].efficiency
    sc = dict(batch=1, prompt=16, generate=16)

    def gemv_bw(runtime, comp=None):
        ops = evaluate(hw, m, Scenario(**sc, runtime=runtime), comp).ops
        g = ops[(ops.phase == "decode") & (ops.name == "ffn_gate_up")].iloc[0]
        return g["bytes_" + hw.memory[0].name] / g["time_s"]

    assert gemv_bw(every) == pytest.approx(cap, rel=0.02)
    assert gemv_bw(packed) == pytest.approx(free, rel=0.02)
    q4 = Compression(weight_bits=4, group_size=32)
    assert gemv_bw(packed, q4) == pytest.approx(cap, rel=0.02) == gemv_bw(every, q4)
    assert load_runtime("llama.cpp-cuda").stream_kernels == "packed"
    assert load_runtime("llama.cpp-cuda-legacy").stream_kernels == "all"      # DMMV ran F16 until 2024-11


def test_decode_launch_cost_differs_from_prefill(tmp_path):
    graphs = _write(tmp_path, "graphs", "launch_overhead: 20 us\ndecode_launch_overhead: 0 s\n"
                    "sources: {launch_overhead: 'estimate: test', decode_launch_overhead: 'estimate: test'}\n")
    eager = _write(tmp_path, "eager", "launch_overhead: 20 us\nsources: {launch_overhead: 'estimate: test'}\n")
    hw, m = load_hardware("h100-sxm"), load_workload("llama-3.2-1b")
    sc = dict(batch=1, prompt=64, generate=16)
    g, e = evaluate(hw, m, Scenario(**sc, runtime=graphs)), evaluate(hw, m, Scenario(**sc, runtime=eager))
    assert g["ttft_s"] == pytest.approx(e["ttft_s"])
    kernels = e.ops[(e.ops.phase == "decode") & ~e.ops.kind.isin(LINK_KINDS)]["count"].sum()
    assert e["tpot_s"] - g["tpot_s"] == pytest.approx(kernels * 20e-6, rel=0.02)


def _synthetic_csv(tmp_path, truth, hardware=("NVIDIA H100 SXM 80GB", "NVIDIA A100 SXM4 80GB")):
    """Rows of one runtime on two devices and two sources, 'measured' = the engine with
    known figures (an independent draw is not needed: the fit must recover them)."""
    from codesign.accuracy import load_map, read_rows, resolve_all
    from codesign.accuracy.core import predict
    from codesign.accuracy.fit import PARAMS
    cols = ["hardware", "num_devices", "software_framework", "model", "weight_precision", "batch",
            "input_tokens", "output_tokens", "metric", "value", "source", "runtime"]
    rows = []
    for hw in hardware:
        for i, (b, p, g, metric) in enumerate([(1, 512, 0, "prompt_tokens_per_s"), (4, 2048, 0, "prompt_tokens_per_s"),
                                               (1, 1, 128, "decode_tokens_per_s"), (8, 512, 128, "decode_tokens_per_s"),
                                               (1, 64, 64, "decode_tokens_per_s"), (16, 1024, 0, "ttft_ms")]):
            for model in ("Llama-2-7B", "Llama-3.2-1B"):
                rows.append(dict(hardware=hw, num_devices=1, software_framework="synthetic", model=model,
                                 weight_precision="fp16", batch=b, input_tokens=p, output_tokens=g, metric=metric,
                                 value=1.0, source=f"example-{i % 2}.org/source-{i % 2}", runtime="synthetic-stack"))
    path = tmp_path / "synthetic.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    cases, skipped = resolve_all(load_map(), read_rows(path))
    assert not skipped and cases
    over = {PARAMS[k][0]: v for k, v in truth.items()}
    for r, c in zip(rows, cases):
        r["value"] = predict(c, over)[0]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def synthetic_runtime(tmp_path, monkeypatch):
    folder = tmp_path / "rt"
    folder.mkdir()
    (folder / "synthetic-stack.yaml").write_text(
        "name: synthetic-stack\nframeworks: ['synthetic']\nlaunch_overhead: 5 us\n"
        "sources: {launch_overhead: 'estimate: test'}\n")
    monkeypatch.setenv("CODESIGN_RUNTIME_PATH", str(folder))
    return folder


def test_fit_recovers_known_figures_from_synthetic_data(tmp_path, synthetic_runtime):
    from codesign.accuracy import load_map, read_rows, resolve_all
    from codesign.accuracy.fit import fit_runtime
    truth = {"gemm": 0.55, "memory": 0.8, "latency_factor": 3.0, "launch_decode": 9e-6}
    path = _synthetic_csv(tmp_path, truth)
    cases, _ = resolve_all(load_map(), read_rows(path))
    fr = fit_runtime(cases, "synthetic-stack", "gpu", tuple(truth))
    assert fr.start_mape > 0.2 and fr.in_sample_mape < 0.01
    for k, v in truth.items():
        assert fr.values[k] == pytest.approx(v, rel=0.05), (k, fr.values)


def test_fit_finds_a_streaming_cap_from_no_cap(tmp_path, synthetic_runtime):
    """The cap starts from 'none' (no gradient there): the fit scans a few starts, then
    recovers the figure the rows were made with (H100 and A100: it binds on both)."""
    from codesign.accuracy import load_map, read_rows, resolve_all
    from codesign.accuracy.fit import fit_runtime
    truth = {"memory": 0.9, "stream": 5.0}
    path = _synthetic_csv(tmp_path, truth)
    cases, _ = resolve_all(load_map(), read_rows(path))
    fr = fit_runtime(cases, "synthetic-stack", "gpu", ("memory", "stream"))
    assert fr.values["stream"] == pytest.approx(5.0, rel=0.05), fr.values
    assert fr.start_mape > 0.2 and fr.in_sample_mape < 0.02


def test_every_publisher_weighs_the_same_in_the_fit():
    from types import SimpleNamespace

    from codesign.accuracy.fit import publisher_weights
    rows = [SimpleNamespace(source="github.com/big/repo x.md")] * 9 + [SimpleNamespace(source="example.org/small")]
    w = publisher_weights(rows)
    assert w.mean() == pytest.approx(1.0)
    assert (w[:9] ** 2).sum() == pytest.approx(w[9] ** 2)      # nine rows of one publisher = one row of another


def test_cross_validation_refits_only_what_the_shipped_profile_fitted():
    from codesign.accuracy.fit import shipped_params
    from codesign.runtime import load_runtime
    vllm = load_runtime("vllm")
    assert set(shipped_params("vllm", "gpu")) == {p.split(".")[-1].replace("decode_launch_overhead", "launch_decode")
                                                  .replace("sequence_overhead", "sequence")
                                                  .replace("request_overhead", "request") for p in vllm.fitted}
    assert shipped_params("vllm", "tpu") == ()          # no tpu figures fitted: shipped as is
    assert shipped_params("generic", "gpu") == ()


def test_fit_refuses_what_the_data_cannot_support(tmp_path, synthetic_runtime):
    from codesign.accuracy import load_map, read_rows, resolve_all
    from codesign.accuracy.fit import fit_runtime
    path = _synthetic_csv(tmp_path, {"gemm": 0.5})
    cases, _ = resolve_all(load_map(), read_rows(path))
    one_setup = [c for c in cases if c.source.endswith("source-0") and c.hardware == "h100-sxm"]
    fr = fit_runtime(one_setup, "synthetic-stack", "gpu", ("gemm", "memory"))
    assert fr.values == {} and set(fr.dropped) == {"gemm", "memory"}      # one source on one device: nothing
    two_devices = [c for c in cases if c.source.endswith("source-0")]
    assert "gemm" in fit_runtime(two_devices, "synthetic-stack", "gpu", ("gemm",)).values
    with pytest.raises(CodesignError, match="no usable rows"):
        fit_runtime(cases, "synthetic-stack", "tpu")


def test_accuracy_cli_on_a_small_csv(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("hardware,num_devices,software_framework,model,weight_precision,batch,input_tokens,"
                    "output_tokens,metric,value,source,runtime\n"
                    "NVIDIA H100 SXM 80GB,1,vLLM 0.6,Llama-3.1-8B,bf16,1,128,128,decode_tokens_per_s,120,"
                    "example.org/a,vllm\n"
                    "NVIDIA H100 SXM 80GB,1,vLLM 0.6,Llama-3.1-8B,bf16,8,512,0,ttft_ms,90,example.org/b,vllm\n"
                    "Mystery Box 3000,1,x,Llama-3.1-8B,bf16,1,1,1,decode_tokens_per_s,1,example.org/c,vllm\n")
    r = cli("accuracy", "--measurements", str(path), "--no-cv", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    rows = out["rows"]
    assert [x["row"] for x in rows] == [1, 2] and len(out["skipped"]) == 1
    errs = [x["predicted"] / x["measured"] - 1 for x in rows]
    assert [x["error"] for x in rows] == pytest.approx(errs)
    assert out["mape"]["in_sample"]["held-out"]["all/all"]["mape"] == pytest.approx(sum(map(abs, errs)) / 2)
    assert all(x["runtime"] == "vllm" for x in rows)
    bad = tmp_path / "bad.csv"
    bad.write_text("hardware,model,value\nx,y,1\n")
    r = cli("accuracy", "--measurements", str(bad), "--no-cv")
    assert r.returncode == 2 and "missing column 'metric'" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_eval_json_names_the_runtime_and_it_changes_the_answer():
    a = cli("eval", "--hardware", "h100-sxm", "--workload", "llama-3.2-1b", "--json", "--runtime", "llama.cpp")
    b = cli("eval", "--hardware", "h100-sxm", "--workload", "llama-3.2-1b", "--json", "--runtime", "tensorrt-llm")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    assert ja["runtime"] == "llama.cpp-cuda" and jb["runtime"] == "tensorrt-llm"
    assert not math.isclose(ja["tpot_s"], jb["tpot_s"])


def test_continuous_batching_ttft_is_one_requests_prompt_and_throughput_is_unchanged():
    from codesign.perf import evaluate
    from codesign.workload import Scenario
    sc = Scenario(batch=8, prompt=4096, generate=256)
    static = evaluate("h100-sxm", "llama-3.1-8b", sc.model_copy(update={"runtime": "generic"}))
    cont = evaluate("h100-sxm", "llama-3.1-8b", sc.model_copy(update={"runtime": "sglang"}))
    alone = evaluate("h100-sxm", "llama-3.1-8b", sc.model_copy(update={"runtime": "sglang", "batch": 1}))
    # compute-bound prompts: one request's prefill is about an eighth of the batch's
    assert cont["ttft_s"] < 0.3 * static["ttft_s"]
    assert cont["ttft_s"] == pytest.approx(alone["ttft_s"] + cont["tpot_s"], rel=0.05)
    assert cont["prefill_tokens_per_s"] == pytest.approx(8 * 4096 / (cont["e2e_latency_s"] - 255 * cont["tpot_s"]),
                                                         rel=0.01)


def test_host_overheads_add_to_ttft_and_to_each_step():
    import numpy as np

    from codesign.hardware import load_hardware
    from codesign.perf import evaluate_batch
    from codesign.workload import Scenario, load_workload
    sc = Scenario(batch=16, prompt=128, generate=64)
    out = evaluate_batch(load_hardware("h100-sxm"), load_workload("llama-3.1-8b"), sc,
                         overrides={"runtime.request_overhead": np.array([0.0, 0.01]),
                                    "runtime.sequence_overhead": np.array([0.0, 50e-6])})
    assert out["ttft_s"][1] - out["ttft_s"][0] == pytest.approx(0.01)
    assert out["tpot_s"][1] - out["tpot_s"][0] == pytest.approx(16 * 50e-6)


@pytest.mark.parametrize("gemm,kept", [(0.5, True), (1.0, False)])
def test_fit_keeps_figures_only_when_they_beat_the_unfitted_ones_out_of_sample(tmp_path, synthetic_runtime, gemm, kept):
    """--fresh --out writes fitted figures only when leave-one-publisher-out beats the
    unfitted figures: data made with the neutral gemm (1.0) leaves nothing to gain."""
    import yaml
    path = _synthetic_csv(tmp_path, {"gemm": gemm})
    out = tmp_path / "fitted.yaml"
    r = cli("fit", "--measurements", str(path), "--runtime", "synthetic-stack", "--class", "gpu", "--fresh",
             "--params", "gemm", "--out", str(out))
    assert r.returncode == 0, r.stderr
    data = yaml.safe_load(out.read_text())
    assert ("gemm" in (data.get("tuning") or {}).get("gpu", {})) is kept
    assert ("not kept" in r.stdout) is (not kept)


def _ttft(rt_path, prompt, hw=None):
    # figures taken as sustained: no power-limit stretch on top of the launch arithmetic
    hw = hw or load_hardware("h200", {"power.sustained_share": 1.0})
    return evaluate(hw, "llama-3.2-1b", Scenario(batch=1, prompt=prompt, generate=1, runtime=rt_path)).summary["ttft_s"]


SRC = "sources: {launch_overhead: 'estimate: test', kernels_per_op: 'estimate: test'}\n"


@pytest.mark.parametrize("prompt", [16, 4096])      # host-bound, device-bound
def test_dispatch_ahead_overlaps_the_host_with_the_device(tmp_path, prompt):
    """Hand arithmetic: with launches of L, a prefill's additive time is K + H (K: kernels, from a
    zero-launch run; H: the launches). A host that runs ahead makes it max(H, K + H x g / L),
    g the device's own per-kernel gap (the spec's kernel_overhead, 4 us on h200)."""
    L = 20e-6
    zero = _write(tmp_path, "zero", "launch_overhead: 0 s\n" + SRC)
    add = _write(tmp_path, "add", "launch_overhead: 20 us\n" + SRC)
    ahead = _write(tmp_path, "ahead", "launch_overhead: 20 us\ndispatch_ahead: true\n" + SRC)
    K = _ttft(zero, prompt)
    H = _ttft(add, prompt) - K
    g = load_hardware("h200").kernel_overhead
    assert H > 0 and g < L
    assert _ttft(ahead, prompt) == pytest.approx(max(H, K + H * g / L), rel=1e-9)
    assert _ttft(ahead, prompt) < _ttft(add, prompt)


def test_kernels_per_op_multiplies_launches_unless_the_spec_measured_the_kernel(tmp_path):
    """10 kernels for each RoPE op instead of 1: nine more launches per layer (one RoPE op per
    layer, 16 layers in Llama-3.2-1B); a spec with a measured rope profile keeps its own count."""
    one = _write(tmp_path, "one", "launch_overhead: 20 us\n" + SRC)
    ten = _write(tmp_path, "ten", "launch_overhead: 20 us\nkernels_per_op: {rope: 10}\n" + SRC)
    layers = load_workload("llama-3.2-1b").num_layers
    assert _ttft(ten, 64) - _ttft(one, 64) == pytest.approx(layers * 9 * 20e-6, rel=1e-6)
    calibrated = str(ROOT / "docs" / "validation" / "h200-2026-11-26" / "gpu-cal.yaml")   # has a rope profile
    assert _ttft(ten, 64, calibrated) == pytest.approx(_ttft(one, 64, calibrated), rel=1e-12)
    with pytest.raises(CodesignError):
        load_runtime(_write(tmp_path, "bad", "kernels_per_op: {nosuchkind: 2}\n" + SRC))


@pytest.mark.parametrize("units, expect", [(8, None), (512, 1.0)])
def test_decode_attention_without_split_kv_is_bound_by_littles_law_per_unit(units, expect):
    """One work unit per sequence x KV head, each keeping UNIT_BYTES_IN_FLIGHT in flight over the
    HBM latency: 8 units stream 8 x 25 kB / 600 ns = 333 GB/s, a twelfth of the h200's 4.08
    TB/s (4.8 x 0.85); 512 units (21 TB/s of demand) fill it, as a split-KV kernel always does."""
    hw = load_hardware("h200")
    ctx, d = 262144, 128
    op = Op(name="attention", kind="attention", phase="decode", impl="fused", batch=units, m=4, n=ctx, k=d,
            flops=4.0 * units * 4 * ctx * d, act_in_elems=units * 4 * d, act_out_elems=units * 4 * d,
            kv_read_elems=2.0 * units * ctx * d)
    split = load_runtime("generic")
    nosplit = split.model_copy(update={"split_kv": False})
    t_split, t_nosplit = (float(op_times(hw, [op], runtime=rt)["time_s"].iloc[0]) for rt in (split, nosplit))
    hbm = hw.memory[0]
    full = hbm.bandwidth * hbm.efficiency
    per_unit = UNIT_BYTES_IN_FLIGHT / hbm.latency
    want = expect if expect is not None else full / (units * per_unit)
    assert t_nosplit / t_split == pytest.approx(want, rel=0.02)


def test_serving_steps_overlap_dispatch_as_evaluate_does(tmp_path):
    """The serving step model prices a host that runs ahead the same way: a step of one
    512-token chunk takes max(H, K + H x g / L) (K: kernels, from a zero-launch runtime; H: the
    launches; g / L: the device's own gap over the launch), a decode-only step likewise."""
    hw = load_hardware("h200", {"power.sustained_share": 1.0})
    zero = _write(tmp_path, "zero", "launch_overhead: 0 s\n" + SRC)
    add = _write(tmp_path, "add", "launch_overhead: 20 us\n" + SRC)
    ahead = _write(tmp_path, "ahead", "launch_overhead: 20 us\ndispatch_ahead: true\n" + SRC)
    costs = {name: step_cost(hw, "llama-3.2-1b", Scenario(runtime=rt)) for name, rt in
             (("zero", zero), ("add", add), ("ahead", ahead))}
    g = hw.kernel_overhead / 20e-6
    for kw in ({"chunks": [(0, 512)]}, {"decode_seqs": 8, "decode_ctx_sum": 8 * 1024}):
        K = costs["zero"].step(**kw).time
        H = costs["add"].step(**kw).time - K
        assert H > 0
        assert costs["ahead"].step(**kw).time == pytest.approx(max(H, K + H * g), rel=1e-9)


def test_a_scheme_without_a_tiled_kernel_unpacks_its_weights_for_every_row(tmp_path):
    """A runtime that tiles only some schemes (llama.cpp CPU repacks Q4_0): a wide product in
    another named scheme unpacks every weight again for each activation row (ggml vec_dot), at
    its scheme's unpack_ops on the integer lanes: time = ops x weights x rows / (integer rate x
    vector efficiency). A skinny one (decode) and one without a named scheme keep the tiled path."""
    from codesign.compression import Compression
    from codesign.perf.params import spec_params
    rt = _write(tmp_path, "tiles-q4-0", "launch_overhead: 0 s\ntiled_schemes: [q4_0]\nquantized_matmul: int8\n"
                "dequant_units: integer\nunpack_ops: {q4_k: 6, q8_0: 3}\n"
                "sources: {launch_overhead: 'estimate: test', unpack_ops: 'estimate: test'}\n")
    m, n, k = 512, 4096, 4096
    wide = Op(name="up", kind="gemm", phase="prefill", impl="gemm", m=m, n=n, k=k, flops=2 * m * n * k,
              weight_elems=n * k, act_in_elems=m * k, act_out_elems=m * n)
    skinny = Op(name="up", kind="gemm", phase="decode", impl="gemm", m=1, n=n, k=k, flops=2 * n * k,
                weight_elems=n * k, act_in_elems=k, act_out_elems=n)
    hw = load_hardware("rk3588-cpu")
    hw = hw.model_copy(update={"power": hw.power.model_copy(update={"tdp": None})})   # no power limit to mask it

    def times(scheme, bits=4):
        comp = Compression(weight_bits=bits, group_size=32, scheme=scheme)
        df = op_times(hw, [wide, skinny], dtype="fp16", compression=comp, runtime=rt)
        return df["time_s"].to_numpy(), df["bound"].iloc[0]
    (tiled, tiled_dec), _ = times("q4_0")
    (untiled, untiled_dec), bound = times("q4_k")
    (generic, _), _ = times(None)
    p = spec_params(hw, runtime=rt)
    rate = p["compute.integer"][0] * min(p["compute.vector.efficiency"][0], 1.0)
    assert bound == "dequant"
    assert untiled == pytest.approx(6 * n * k * m / rate, rel=1e-6)
    assert untiled > 10 * tiled and generic == pytest.approx(tiled)
    assert untiled_dec < 1.1 * tiled_dec           # decode: no per-row unpacking (Q4_K_M stores 4.8 bits, Q4_0 4.5)
    # a mix (Q4_K_M) runs the kernel of the tensor type that leads it
    (mix, mix_dec), _ = times("q4_k_m")
    assert mix == pytest.approx(untiled) and mix_dec == pytest.approx(untiled_dec)
    # Q8_0 is int8 already (nothing to widen for the int8 units), yet its per-row dot product
    # still pays its own unpack_ops for every activation row
    (untiled8, _), bound8 = times("q8_0", bits=8)
    assert bound8 == "dequant" and untiled8 == pytest.approx(3 * n * k * m / rate, rel=1e-6)


def test_a_separate_dequantisation_pass_adds_its_streaming_time_to_a_compute_bound_gemm(tmp_path):
    """prefill_dequant: separate writes a 16-bit copy of the packed weights before the GEMM, a
    kernel of its own on the same stream: its bytes (packed read + 16-bit write) at the memory's
    bandwidth add to the GEMM's time, even where the GEMM is compute-bound and would have hidden
    them under its arithmetic. Hand example: 4096 x 4096 Q4 weights (0.5625 B each) on an A100,
    512 rows: the pass moves 16.8 M x (0.5625 + 2) B; the 16-bit GEMM stays compute-bound."""
    from codesign.perf.params import spec_params
    body = "launch_overhead: 0 s\nsources: {launch_overhead: 'estimate: test'}\n"
    sep = _write(tmp_path, "sep-pass", body + "prefill_dequant: separate\n")
    m, n, k = 512, 4096, 4096
    gemm = Op(name="up", kind="gemm", phase="prefill", impl="gemm", m=m, n=n, k=k, flops=2 * m * n * k,
              weight_elems=n * k, act_in_elems=m * k, act_out_elems=m * n)
    hw = load_hardware("a100-80gb")
    comp = Compression(weight_bits=4, group_size=32)
    quant = op_times(hw, [gemm], dtype="fp16", compression=comp, runtime=sep).iloc[0]
    plain = op_times(hw, [gemm], dtype="fp16", runtime=sep).iloc[0]
    p = spec_params(hw, runtime=sep)
    bw = hw.memory[0].bandwidth * min(p[f"memory.{hw.memory[0].name}.efficiency"][0], 1.0)
    pass_s = n * k * (weight_bytes_per_element(comp, "fp16") + 2) / bw
    assert plain["bound"] == "compute"
    assert quant["time_s"] == pytest.approx(plain["time_s"] + pass_s, rel=0.02)


def test_fit_lowers_a_gemm_efficiency_a_power_limit_masks(tmp_path, synthetic_runtime):
    """At its full GEMM efficiency a CPU's prompt processing sits on its power limit (the clock,
    not the kernel, sets the time), so a 10% step moves nothing: the fit still finds a figure
    the rows were made with well below it (it also tries a halving, and searches from below)."""
    from codesign.accuracy import load_map, read_rows, resolve_all
    from codesign.accuracy.core import predict
    from codesign.accuracy.fit import fit_runtime
    path = _synthetic_csv(tmp_path, {"gemm": 0.3}, hardware=("Rockchip RK3588 CPU", "Raspberry Pi 5"))
    cases, _ = resolve_all(load_map(), read_rows(path))
    prefill = [c for c in cases if c.group == "prefill"]
    flat = [predict(c, {"runtime.gemm": 1.0})[0] / predict(c, {"runtime.gemm": 1.1})[0] for c in prefill]
    assert max(abs(f - 1) for f in flat) < 1e-3                      # no gradient where the fit starts
    fr = fit_runtime(cases, "synthetic-stack", "cpu", ("gemm",))
    assert fr.values["gemm"] == pytest.approx(0.3, rel=0.05), (fr.values, fr.dropped)


def test_a_stack_that_quantises_the_lm_head_reads_it_at_its_own_width():
    """llama.cpp writes the output tensor as Q6_K (210 bytes per 256 weights) unless the
    weights are wider: decode reads vocab x hidden x max(weight bits, 6.5625) / 8 bytes for the
    LM head, where a stack that keeps it 16-bit reads 2 bytes per element."""
    hw, m = load_hardware("h100-sxm"), load_workload("llama-3.2-1b")

    def head_bytes_per_element(runtime, comp):
        ops = evaluate(hw, m, Scenario(batch=1, prompt=16, generate=4, runtime=runtime), comp).ops
        head = ops[(ops.name == "lm_head") & (ops.phase == "decode")].iloc[0]
        act = (m.hidden_size + m.vocab_size) * 2 / head.weight_elems      # its input and logits, 16-bit
        return head.bytes_HBM3 / head.weight_elems - act
    q4, q8 = Compression(weight_bits=4, group_size=32), Compression(weight_bits=8, group_size=32)
    assert head_bytes_per_element("llama.cpp-cuda", q4) == pytest.approx(6.5625 / 8, rel=1e-6)
    assert head_bytes_per_element("llama.cpp-cuda", q8) == pytest.approx(weight_bytes_per_element(q8, "bf16"), rel=1e-6)
    assert head_bytes_per_element("llama.cpp-cuda", None) == pytest.approx(2.0, rel=1e-6)
    assert head_bytes_per_element("generic", q4) == pytest.approx(2.0, rel=1e-6)
    # the tied table's footprint shrinks with it
    small = evaluate(hw, m, Scenario(batch=1, prompt=16, generate=4, runtime="llama.cpp-cuda"), q4)["weight_bytes"]
    big = evaluate(hw, m, Scenario(batch=1, prompt=16, generate=4), q4)["weight_bytes"]
    assert big - small == pytest.approx(m.vocab_size * m.hidden_size * (2 - 6.5625 / 8), rel=1e-4)


def test_legacy_llama_cpp_keeps_the_current_builds_decode_streaming_cap():
    """Builds before and after PR #8075 decode with the same MMVQ kernels: the legacy profile
    states the streaming cap fitted on the current builds' rows (its own rows are mostly one
    publisher's, who alone cannot set it out of sample)."""
    cur, old = load_runtime("llama.cpp-cuda"), load_runtime("llama.cpp-cuda-legacy")
    assert cur.tuning_for("gpu").stream is not None
    assert old.tuning_for("gpu").stream == cur.tuning_for("gpu").stream
    assert "tuning.gpu.stream" not in old.fitted and "tuning.gpu.stream" in cur.fitted


def test_a_prompt_longer_than_the_ubatch_runs_as_passes_that_restream_the_weights():
    """ggml's n_ubatch (llama.cpp, 512 by default): a 2048-token prompt runs as 4 passes of
    512. Every op but the attention core costs 4 passes of 512 tokens; the attention of the
    passes sums to that of the whole causal 2048-token prompt (chunk k attends its 512 tokens
    and the 512 k cached ones). Hand composition from single-pass runs of the same stack."""
    hw, model = load_hardware("rtx-4090"), load_workload("llama-3.1-8b")

    def run(prompt, ubatch):
        return evaluate(hw, model, Scenario(prompt=prompt, generate=0, dtype="fp16", runtime="llama.cpp-cuda",
                                            ubatch=ubatch), Compression(weight_bits=4, group_size=32))

    def attention(res):
        ops = res.ops
        return float(ops[ops.kind.isin(["attention", "attn_score", "attn_context", "softmax"])].total_s.sum())

    whole, one_pass = run(2048, 4096), run(512, 4096)
    four = run(2048, 512)
    expect = 4 * (one_pass["ttft_s"] - attention(one_pass)) + attention(whole)
    assert four["ttft_s"] == pytest.approx(expect, rel=1e-6)
    assert four["ttft_s"] > whole["ttft_s"]
    gemm_bytes = lambda res: float(res.ops.query("kind == 'gemm'").bytes_GDDR6X.sum())  # noqa: E731
    assert gemm_bytes(four) == pytest.approx(4 * gemm_bytes(one_pass))      # the weights streamed in every pass
    assert float(four.ops.total_s.sum()) == pytest.approx(four["ttft_s"], rel=1e-6)    # the breakdown adds up
    # the runtime's default is 512; a prompt that fits one pass is unchanged
    assert load_runtime("llama.cpp-cuda").prefill_ubatch == 512
    assert run(2048, None)["ttft_s"] == pytest.approx(four["ttft_s"])
    assert run(512, 512)["ttft_s"] == pytest.approx(one_pass["ttft_s"])


def test_ubatch_passes_pipeline_over_a_layer_split():
    """On a layer split (pipeline) the passes overlap as micro-batches do (llama.cpp PR #6017):
    n passes over s stages take (n + s - 1) stage times of one pass, not n x s. With a stage
    half of the layers, 4 passes on 2 stages take ~5/8 of the single device's time; one
    pass takes ~2/2 of it (neglected here: the activation hop and the LM head's stage)."""
    hw, model = load_hardware("rtx-4090"), load_workload("llama-3.1-8b")
    comp = Compression(weight_bits=4, group_size=32)

    def ttft(pp, ubatch):
        sc = Scenario(prompt=2048, generate=0, dtype="fp16", runtime="llama.cpp-cuda", pp=pp, ubatch=ubatch)
        return evaluate(hw, model, sc, comp)["ttft_s"]

    assert ttft(2, 512) / ttft(1, 512) == pytest.approx(5 / 8, rel=0.03)
    assert ttft(2, 2048) / ttft(1, 2048) == pytest.approx(1.0, rel=0.03)


def test_bad_ubatch_is_one_line_exit_2():
    r = cli("eval", "-H", "rtx-4090", "-w", "llama-3.1-8b", "--runtime", "llama.cpp-cuda", "--ubatch", "0")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "ubatch" in r.stderr, r.stderr



def test_an_integer_tiled_kernel_loads_and_scales_8_bit_blocks_too():
    """llama.cpp's MMQ tiles Q8_0 as it tiles Q4_0: the blocks are loaded and scaled in the
    integer lanes (only the nibble unpacking is skipped), so a wide Q8_0 product pays the same
    per-tile work as Q4_0 and is not priced at the bare int8 tensor rate; a stack that hands
    8-bit weights to its matrix units as they are (vLLM, W8A8) pays none."""
    from codesign.compression import Compression
    m, n, k = 2048, 4096, 4096
    wide = Op(name="up", kind="gemm", phase="prefill", impl="gemm", m=m, n=n, k=k, flops=2 * m * n * k,
              weight_elems=n * k, act_in_elems=m * k, act_out_elems=m * n)
    hw = load_hardware("dgx-spark")

    def run(scheme, bits, runtime, act_bits=None):
        comp = Compression(weight_bits=bits, group_size=32, scheme=scheme, act_bits=act_bits)
        df = op_times(hw, [wide], dtype="fp16", compression=comp, runtime=runtime)
        return float(df["time_s"].iloc[0]), df["bound"].iloc[0]
    q8, bound8 = run("q8_0", 8, "llama.cpp-cuda")
    q4, bound4 = run("q4_0", 4, "llama.cpp-cuda")
    assert bound8 == bound4 == "dequant" and q8 == pytest.approx(q4, rel=1e-6)
    w8a8, bound = run(None, 8, "vllm", act_bits=8)
    assert bound != "dequant" and w8a8 < q8


def test_fit_reaches_a_memory_multiplier_at_its_cap(tmp_path, synthetic_runtime):
    """Rows made where the multiplier saturates both devices' streaming share (H100 and A100
    then stream at their full bandwidth; the per-kernel cost sets the rest): the fit, from
    the neutral multiplier of 1, ends at or above the cap (1 / 0.85, the spec share) with the
    launch cost recovered, whichever of its two starts (1 and MEMORY_CAP_START) it keeps."""
    assert MEMORY_CAP_START > 1 / 0.85
    truth = {"memory": 1.4, "launch_decode": 9e-6}
    path = _synthetic_csv(tmp_path, truth)
    cases, _ = resolve_all(load_map(), read_rows(path))
    fr = fit_runtime(cases, "synthetic-stack", "gpu", tuple(truth))
    assert fr.values["memory"] >= 1 / 0.85 - 1e-3, fr.values
    assert fr.values["launch_decode"] == pytest.approx(9e-6, rel=0.02)
    assert fr.start_mape > 0.05 and fr.in_sample_mape < 0.01


def test_a_fixed_shape_graph_reads_its_whole_compiled_cache_every_pass():
    """AI Hub compiles an LLM's prompt processor (128 tokens a pass) and token generator for
    one context_length (4096): the KV cache is a graph input of that length, so each step
    reads all of it, int8 (1 byte + our 2-byte scale per head vector), however short the
    sequence. Hand numbers for Llama-3.2-1B: 4096 positions x 8 KV heads x 64 x (K, V)."""
    hw, m = load_hardware("snapdragon-8-elite-hexagon"), load_workload("llama-3.2-1b")
    comp = Compression(weight_bits=4)

    def run(prompt, runtime="qnn", **kw):
        return evaluate(hw, m, Scenario(batch=1, prompt=prompt, generate=8, runtime=runtime, **kw), comp)

    def decode_attention(res):
        ops = res.ops
        return ops[(ops.phase == "decode") & (ops.kind == "attention")].iloc[0]

    cache = 4096 * m.num_kv_heads * m.hd * 2 * (1 + 2 / m.hd)
    short, long = decode_attention(run(16)), decode_attention(run(2000))
    assert short.bytes_LPDDR5X == pytest.approx(cache, rel=0.01)           # + the query and output vectors
    assert long.bytes_LPDDR5X == short.bytes_LPDDR5X and long.time_s == short.time_s
    assert decode_attention(run(16, compiled_context=2048)).bytes_LPDDR5X == pytest.approx(cache / 2, rel=0.01)
    assert run(16)["kv_bytes"] == pytest.approx(m.num_layers * cache)      # the whole cache is allocated
    assert "4096 KV positions" in run(16)["notes"]
    # a stack whose cache holds the sequence reads what the sequence holds, at the datatype's width
    generic = decode_attention(run(2000, runtime="generic"))
    assert generic.bytes_LPDDR5X == pytest.approx((2000 + 4) * m.num_kv_heads * m.hd * 2 * 2, rel=0.01)
    # the prompt processor: 512 tokens are 4 passes of 128, each the cost of a 128-token prompt
    assert load_runtime("qnn").prefill_ubatch == 128
    assert run(512)["ttft_s"] == pytest.approx(4 * run(128)["ttft_s"], rel=1e-9)


def test_measurement_rows_state_the_compiled_context_and_prompt_pass():
    """An AI Hub perf.yaml row names its context_length and prompt-processor length: the
    scenario takes them; a row that names neither keeps the runtime's (4096 and 128)."""
    notes = ("perf.yaml llm_metrics: context_length 1024, tokens_per_second 11.2. info.yaml: Input sequence "
             "length for Prompt Processor 1024")
    base = {"hardware": "Qualcomm Snapdragon X Elite CRD Hexagon NPU", "hw_class": "npu", "num_devices": "1",
            "software_framework": "Qualcomm AI Hub Models (QNN context binary, QAIRT)", "model": "Llama-2-7B-Chat",
            "params_B": "7", "weight_precision": "w4a16", "batch": "1", "input_tokens": "1024", "output_tokens": "",
            "metric": "ttft_ms", "value": "1919", "source": "https://example.org/perf.yaml", "runtime": "qnn"}
    rows = [dict(base, notes=notes, _id="1"), dict(base, notes="", _id="2")]
    stated, plain = resolve_all(load_map(None), rows, None)[0]
    assert (stated.scenario.compiled_context, stated.scenario.ubatch) == (1024, 1024)
    assert (plain.scenario.compiled_context, plain.scenario.ubatch) == (None, None)
    assert plain.scenario.kv_slots == 4096


def test_fp4_experts_run_weight_only_where_the_stack_has_no_native_kernel():
    """vLLM has no native NVFP4 MoE kernel on sm_121 (GB10): a W4A4 model's routed experts
    unpack their FP4 weights and multiply at the bf16 rate, its dense layers stay on the FP4
    units; on a B200 (no such architecture listed) every GEMM is FP4. The GB10 rows of the
    vLLM blog (Nemotron-3-Super, 1834-token prompt: TTFT 1.12 s) land within 10 %."""
    nvfp4 = Compression(weight_bits=4, weight_format="fp4", group_size=16, act_bits=4)
    sc = Scenario(batch=1, prompt=1834, generate=32, runtime="vllm")

    def prefill(hw):
        r = evaluate(hw, "nemotron-3-super-120b-a12b", sc, nvfp4)
        ops = r.ops[r.ops.phase == "prefill"].set_index("name")
        return r, ops.loc["expert_up"], ops.loc["in_proj"]

    spark, expert, dense = prefill("dgx-spark")
    spec = load_hardware("dgx-spark")
    assert spec.compute.arch == "sm_121" and "sm_121" in load_runtime("vllm").weight_only_fp4_experts
    # FP4 FLOP/s are 4x bf16 on the GB10: the expert product runs at a quarter of the dense one's peak
    flops_per_s = lambda row: row.flops / row.time_s  # noqa: E731
    assert flops_per_s(expert) < 0.5 * flops_per_s(dense)
    assert any("weight-only" in n for n in spark.notes)
    assert spark["ttft_s"] == pytest.approx(1.12, rel=0.10)
    b200, _, _ = prefill("b200")
    assert not any("weight-only" in n for n in b200.notes)
    # with the same compression and a native kernel the experts are not slowed that way
    w4a16 = evaluate("dgx-spark", "nemotron-3-super-120b-a12b", sc, nvfp4.model_copy(update={"act_bits": None}))
    assert w4a16["ttft_s"] > spark["ttft_s"]            # dense layers weight-only too: slower still
