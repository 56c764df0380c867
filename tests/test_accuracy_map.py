"""The measurement-row mapping (codesign.accuracy, data/accuracy-map.yaml): every built-in
row is evaluated or skipped with a reason, names the map does not list resolve by rules,
and predictions are finite. No accuracy is asserted here; `codesign accuracy` reports it."""
import math
from pathlib import Path

import pytest

from codesign import load_hardware, load_workload
from codesign.accuracy import core, load_map, read_rows, resolve_all
from codesign.accuracy.mapping import (
    _UBATCH,
    DEFAULT_MAP,
    _file_format,
    _layout,
    _stated,
    auto_hardware,
    auto_model,
    auto_precision,
    source_id,
)
from codesign.compression import Compression, weight_bytes_per_element
from codesign.errors import CodesignError
from codesign.io import data_dir, library
from codesign.perf.params import at_operating_point, spec_params
from codesign.runtime import load_runtime
from codesign.workload import Scenario

CASES, SKIPPED = resolve_all()
ROOT = Path(__file__).resolve().parents[1]


def test_every_csv_row_is_mapped_or_skipped_with_a_reason():
    rows = read_rows()
    ids = sorted([c.row for c in CASES] + [s.row for s in SKIPPED])
    assert ids == [r["_id"] for r in rows]          # each row exactly once
    assert all(s.reason.strip() for s in SKIPPED)
    assert len(CASES) >= 150


@pytest.mark.parametrize("case", CASES[::7], ids=lambda c: f"row{c.row}")
def test_mapped_row_resolves_and_predicts(case):
    assert case.hardware in library("hardware_specs")
    value, detail, _ = core.predict(case)
    assert math.isfinite(value) and value > 0, (case.row, value, detail)


def test_populations_keep_calibration_and_proxies_out_of_the_headline():
    pops = {c.row: core.population(c) for c in CASES}
    assert pops[124] == "calibration"               # mamf-finder H100 bf16 set h100-sxm's matrix efficiency
    assert pops[17] == "proxy"                      # GH200 modelled as H200
    assert pops[2] == "held-out"
    results = [{"population": "held-out", "class": "gpu", "runtime": "x", "source": "s", "group": "decode",
                "error": e} for e in (0.1, -0.3)]
    s = core.summarize(results)["held-out"]["all/decode"]
    assert s["n"] == 2 and s["mape"] == pytest.approx(0.2) and s["bias"] == pytest.approx(-0.1)


def test_max_throughput_search_picks_a_fitting_batch_at_least_as_fast_as_batch_1():
    from codesign.workload import load_workload
    case = next(c for c in CASES if c.row == 2)     # H100, Llama-3.1-8B fp8, 128/128
    spec, model = core.spec_of(case), load_workload(case.workload)
    best, got = core.max_throughput(spec, model, case.scenario, case.compression)
    one = core._eval(spec, model, case.scenario, case.compression)
    assert best["fits"] and got["batch"] in [2 ** e for e in range(13)]
    assert best["throughput_tokens_per_s"] >= one["throughput_tokens_per_s"]


def test_tuned_layout_search_tries_every_split_and_keeps_the_best():
    """An 8-device throughput row with no stated TP: the search over tp x replicas returns a
    split of all 8 devices at least as fast as every fixed split it tried."""
    from codesign.hardware import load_hardware
    from codesign.workload import Scenario, load_workload
    spec, model = load_hardware("h200"), load_workload("llama-3.1-8b")
    sc = Scenario(batch=1, prompt=222, generate=294, tp=8)
    best, got = core.max_throughput(spec, model, sc, None, layouts=True)
    assert got["tp"] * got["dp"] == 8 and got["batch"] % got["dp"] == 0
    for tp in (1, 2, 8):
        fixed, _ = core.max_throughput(spec, model, sc.model_copy(update={"tp": tp, "dp": 8 // tp}), None)
        assert best["throughput_tokens_per_s"] >= fixed["throughput_tokens_per_s"] * (1 - 1e-9)
    # an 8B model fits one H200: replicas beat splitting every layer 8 ways
    assert got["tp"] < 8


def test_tpot_limit_caps_the_batch():
    from codesign.hardware import load_hardware
    from codesign.workload import Scenario, load_workload
    spec, model = load_hardware("h100-sxm"), load_workload("llama-3.1-8b")
    sc = Scenario(batch=1, prompt=871, generate=128)
    free, got = core.max_throughput(spec, model, sc, None)
    capped, got_c = core.max_throughput(spec, model, sc, None, tpot_limit=0.5 * free["tpot_s"])
    assert capped["tpot_s"] <= 0.5 * free["tpot_s"] and got_c["batch"] < got["batch"]
    assert capped["throughput_tokens_per_s"] < free["throughput_tokens_per_s"]


def test_served_tpot_carries_the_batchs_prefill_over_its_output():
    """Continuous batching in steady state: batch/generate prompts join per iteration, so a
    request's time per output token is the decode step plus the batch's prefill / generate."""
    from codesign.hardware import load_hardware
    from codesign.workload import Scenario, load_workload
    sc = Scenario(batch=64, prompt=2048, generate=128)
    out = core._eval(load_hardware("h100-sxm"), load_workload("llama-3.1-8b"), sc, None)
    by_hand = (out["ttft_s"] + (sc.generate - 1) * out["tpot_s"]) / sc.generate
    assert core.served_tpot(out, sc) == pytest.approx(by_hand, rel=1e-6)
    assert core.served_tpot(out, sc) > out["tpot_s"] + 0.9 * out["ttft_s"] / sc.generate


def test_tail_tpot_is_a_quantile_of_each_requests_own_mean():
    """One-step requests with prompts of one length: TPOT = step + K x prefill, K ~ Poisson.
    Poisson(0.5) has P(K <= 2) = 0.986 < 0.99 < P(K <= 3) = 0.998, so the p99 is step + 3
    prefills; no joins leave the bare step; the tail grows with the joins and with the spread
    of output lengths (short requests see few prompts, each a large share of their TPOT)."""
    step, pre = 0.020, 0.030
    assert core.tail_tpot(step, pre, 0.5, 1, prompt_cv2=1e-9) == pytest.approx(step + 3 * pre, rel=1e-3)
    assert core.tail_tpot(step, pre, 0.0, 300) == step
    tails = [core.tail_tpot(step, pre, j, 300) for j in (0.1, 0.2, 0.4, 0.8)]
    assert tails == sorted(tails) and tails[0] > step
    # its mean is the served TPOT's step + joins x prefill; the p99 lies well above it
    assert core.tail_tpot(step, pre, 0.4, 300) > step + 0.4 * pre
    assert core.tail_tpot(step, pre, 0.4, 300, quantile=0.5) < step + 0.4 * pre * 1.05


def test_queued_ttft_follows_an_md1_prefill_queue():
    """The p99 TTFT of Poisson prompts on a prefill server of fixed service time S is S when
    idle, grows with load, is unbounded at rho >= 1, and stays within 20% above the p99 of an
    M/D/1 queue simulated by Lindley's recursion W' = max(0, W + S - A)."""
    import numpy as np
    assert core.queued_ttft(0.2, 1e-6) == pytest.approx(0.2)
    assert core.queued_ttft(0.2, 5.0) == math.inf
    rng = np.random.default_rng(1)
    last = 0.0
    for rho in (0.5, 0.7, 0.8):
        gaps = rng.exponential(1.0 / rho, 200_000)       # S = 1 s, arrivals at rho per second
        w, waits = 0.0, np.empty(gaps.size)
        for i, a in enumerate(gaps):
            w = max(0.0, w + 1.0 - a)
            waits[i] = w
        simulated = float(np.quantile(waits[1000:], 0.99)) + 1.0
        got = core.queued_ttft(1.0, rho)
        assert simulated <= got <= 1.2 * simulated, (rho, got, simulated)
        assert got > last
        last = got


def test_a_latency_bounded_row_without_stated_limits_takes_the_benchmarks_own():
    """MLPerf Server/Interactive rows whose notes omit the limits get loadgen's per benchmark."""
    from codesign.accuracy.mapping import resolve_row
    mp, rows = load_map(), {r["_id"]: r for r in read_rows()}
    row = dict(rows[450], notes="no limits stated")          # H200 x8 llama3.1-8b Server
    server = resolve_row(row, mp)
    assert (server.tpot_limit, server.ttft_limit) == (pytest.approx(0.100), pytest.approx(2.0))
    inter = resolve_row(dict(row, metric="interactive_throughput_tokens_per_s"), mp)
    assert (inter.tpot_limit, inter.ttft_limit) == (pytest.approx(0.030), pytest.approx(0.5))
    assert resolve_row(dict(row, metric="throughput_tokens_per_s"), mp).tpot_limit is None   # Offline


def test_mlperf_rows_take_the_dataset_means_and_the_rows_own_output():
    mp = load_map()
    ds = mp["software"]["MLPerf Inference"]["datasets"]
    case = next(c for c in CASES if c.row == 413)     # H200 x8 llama2-70b Offline, TP=1, 291.2 tokens/sample
    assert case.scenario.prompt == ds["Llama-2-70B"]["prompt"] and case.scenario.generate == 291
    assert (case.scenario.tp, case.scenario.dp) == (1, 8) and not case.tune_layout and not case.per_device
    server = next(c for c in CASES if c.row == 450)   # llama3.1-8b Server: TPOT <= 100 ms
    assert server.tpot_limit == pytest.approx(0.1) and server.tune_layout
    assert any(s.row == 412 and "mean input" in s.reason for s in SKIPPED)     # GPT-J: no sourced mean input


def test_beam_counts_and_per_device_rates_are_read_from_the_notes():
    from codesign.accuracy.mapping import PER_DEVICE, _beams
    assert _beams("Beam 1 (greedy)") == 1 and _beams("greedy") == 1
    assert _beams("beam search width 4") == 4 and _beams("num_beams=4") == 4 and _beams("4 beams") == 4
    assert _beams("beam search") is None

    def _ubatch(text):
        return _stated(_UBATCH, text)
    assert _ubatch("n_ubatch=4096. PR table") == 4096 and _ubatch("llama-bench, n_ubatch 2048, fa 1") == 2048
    assert _ubatch("llama-bench -ub 512 -p 2048") == 512 and _ubatch("pp2048 tg128") is None
    assert PER_DEVICE.search("-> 3014 out tok/s PER GPU")
    for text in ("179 GB HBM3e per GPU", "TP=1 per GPU", "power_limit = 500 (W per GPU)"):
        assert not PER_DEVICE.search(text), text


def test_gemm_row_is_two_mnk_over_the_op_time():
    from codesign.perf import op_times
    case = next(c for c in CASES if c.row == 124)   # H100 bf16 2048 x 2048 x 13312
    value, _, _ = core.predict(case)
    t = op_times("h100-sxm", [core._gemm_op(2048, 2048, 13312)], dtype="bf16")["time_s"].iloc[0]
    assert value == pytest.approx(2 * 2048 * 2048 * 13312 / t / 1e12)
    assert value < 989 * 0.80 + 1e-9                # never above the efficiency-scaled bf16 peak


def test_bad_mapping_gets_one_line_naming_file_and_field(tmp_path):
    text = (data_dir("data") / DEFAULT_MAP).read_text()
    bad = tmp_path / "map.yaml"
    bad.write_text(text.replace("compression: {weight_bits: 4, group_size: 128}",
                                "compression: {weight_bits: 5, group_size: 128}", 1))
    with pytest.raises(CodesignError) as e:
        resolve_all(load_map(bad), read_rows())
    msg = str(e.value)
    assert str(bad) in msg and "compression.weight_bits" in msg and "\n" not in msg
    bad.write_text(text.replace("  \"fp16\": {dtype: fp16}", "  \"fp16\": {dtype: fp16, bits: 16}", 1))
    with pytest.raises(CodesignError, match=r"precision\.fp16: unknown key 'bits'"):
        load_map(bad)


def test_unlisted_names_resolve_by_rules():
    assert auto_hardware("NVIDIA H100 PCIe") == ("h100-pcie", "auto")
    assert auto_hardware("NVIDIA A100-SXM4-80GB")[0] == "a100-80gb"
    assert auto_hardware("NVIDIA GeForce RTX 4090")[0] == "rtx-4090"
    assert auto_hardware("Some Unknown Board") is None
    assert auto_model("Llama-3.1-8B-Instruct") == ("llama-3.1-8b", "exact")
    assert auto_model("Llama-3-70B") == ("llama-3.1-70b", "arch")       # same family, generation, size
    assert auto_model("Llama-2-7B")[0] == "llama-2-7b" and auto_model("Llama-2-70B")[0] == "llama-2-70b"
    assert auto_precision("q4_0")["compression"] == {"weight_bits": 4, "group_size": 32, "scheme": "q4_0"}
    assert auto_precision("Q4_K_M")["compression"]["scheme"] == "q4_k_m"    # the mix (its kernel: q4_k)
    # file words, Unsloth mixes, the 2024 explicit repacks, and the first of several names
    for text, scheme in (("GGUF Q4_K_M", "q4_k_m"), ("q4_k_m.gguf", "q4_k_m"), ("UD-Q4_K_XL", "q4_k_l"),
                         ("Q4_0_4_8", "q4_0")):
        assert auto_precision(text)["compression"]["scheme"] == scheme, text
    assert auto_precision("FP16 / BF16") == {"dtype": "fp16"}
    assert auto_precision("F16") == {"dtype": "fp16"}
    assert auto_precision("w8a8")["compression"] == {"weight_bits": 8, "act_bits": 8}
    assert auto_precision("mystery") is None
    assert auto_precision("IQ4_XS")["compression"] == {"weight_bits": 4, "group_size": 32, "scheme": "iq4_xs"}
    assert auto_precision("iq2_xxs")["compression"]["weight_bits"] == 2
    assert auto_precision("IQ1_S") is None              # 1.56 bits per weight: no such width here
    assert auto_precision("A8W4 (symmetric, group-wise)") == {"dtype": "int8", "compression": {"weight_bits": 4, "act_bits": 8}}
    assert auto_precision("q4f16_1 (int4 g32, fp16)")["compression"] == {"weight_bits": 4, "group_size": 32}
    assert auto_precision("q4 (MLX affine 4-bit, g64)")["compression"] == {"weight_bits": 4, "group_size": 64}
    # MX FP8 is weight-only (16-bit activations), unlike an 'fp8' W8A8 deployment
    assert auto_precision("mxfp8 (MLX microscaling FP8)")["compression"] == {"weight_bits": 8, "weight_format": "fp8",
                                                                           "group_size": 32}
    assert auto_precision("fp8")["compression"]["act_bits"] == 8


def test_layout_follows_the_row_then_the_runtime():
    cpp, trt = load_runtime("llama.cpp-cuda"), load_runtime("tensorrt-llm")
    assert _layout({"software_framework": "x (TP=4)"}, 4, cpp) == {"tp": 4, "pp": 1, "dp": 1}
    assert _layout({"notes": "llama-bench pp512"}, 2, cpp) == {"tp": 1, "pp": 2, "dp": 1, "microbatches": 1}
    assert _layout({}, 8, trt) == {"tp": 8, "pp": 1, "dp": 1}
    # notes quoting a table's other columns: the degree that matches the row's own devices
    both = {"notes": "TP=4. 'B200 was tested with TP=4, H100 with TP=8'"}
    assert _layout({**both, "num_devices": "8"}, 8, trt)["tp"] == 8
    assert _layout({**both, "num_devices": "4"}, 4, trt)["tp"] == 4


def test_source_id_drops_commits_and_qualifiers():
    a = source_id("github.com/NVIDIA/TensorRT-LLM docs/source/perf.md @258c7540c0 (table 'x')")
    assert a == source_id("https://github.com/NVIDIA/TensorRT-LLM docs/source/perf.md @00f3768")
    assert source_id("https://github.com/ggml-org/llama.cpp/discussions/4167#discussioncomment-1") == \
        "github.com/ggml-org/llama.cpp/discussions/4167"


def test_a_tier_after_the_model_number_is_another_product():
    assert auto_hardware("Apple M4 Max (16-core)")[0] == "apple-m4-max"
    base = auto_hardware("Apple M4 (Mac mini, 10-core, 32 GB)")        # a base M4 is not an M4 Max
    assert base is None or base[0] == "apple-m4"
    assert auto_hardware("NVIDIA H100 80GB HBM3 (SXM, 700 W max)")[0] == "h100-sxm"   # 'max' of a power limit
    assert auto_hardware("NVIDIA GeForce RTX 4090")[0] == "rtx-4090"


def test_a_family_name_takes_the_member_the_software_text_names():
    """'llama.cpp' in a row's runtime column is a family: a 2023 build on an NVIDIA GPU is
    the legacy CUDA backend, a current one the CUDA backend. A full runtime name takes only a
    dated variant of itself (llama.cpp-cuda built in 2023 is llama.cpp-cuda-legacy), never
    another stack."""
    row = {"_id": 1, "hardware": "NVIDIA A100 80GB PCIe", "num_devices": "1", "model": "Llama-2-7B",
           "weight_precision": "Q4_0", "batch": "1", "input_tokens": "512", "output_tokens": "0",
           "metric": "prompt_tokens_per_s", "value": "3000", "source": "example.org/x", "notes": "", "hw_ref": ""}
    old = dict(row, software_framework="llama.cpp main (CUDA/cuBLAS, build 1680 (afefa31))", runtime="llama.cpp")
    new = dict(row, software_framework="llama.cpp b6413 (CUDA, llama-bench)", runtime="llama.cpp")
    given = dict(old, runtime="llama.cpp-cuda")
    given_new = dict(new, runtime="llama.cpp-cuda")
    other = dict(old, runtime="vllm")
    cases, skipped = resolve_all(load_map(), [old, new, given, given_new, other])
    assert not skipped
    assert [c.runtime for c in cases] == ["llama.cpp-cuda-legacy", "llama.cpp-cuda", "llama.cpp-cuda-legacy",
                                          "llama.cpp-cuda", "vllm"]


def test_llama_cpp_flash_attention_switch_picks_the_attention_path():
    """'-fa 0' runs the scores unfused (a full product, a masked softmax, a second product),
    '-fa 1' the fused kernel; a long prompt is slower unfused."""
    row = {"_id": 1, "hardware": "NVIDIA GeForce RTX 4090", "num_devices": "1", "model": "Llama-2-7B",
           "weight_precision": "Q4_0", "batch": "1", "input_tokens": "8192", "output_tokens": "0",
           "metric": "prompt_tokens_per_s", "value": "3000", "source": "example.org/x", "hw_ref": "",
           "software_framework": "llama.cpp llama-bench (CUDA, -fa 0)", "notes": ""}
    on = dict(row, software_framework="llama.cpp llama-bench (CUDA)", notes="sweep -fa 0,1; this row is -fa 1")
    cases, skipped = resolve_all(load_map(), [row, on])
    assert not skipped
    assert [c.scenario.attention for c in cases] == ["unfused", "fused"]
    assert core.predict(cases[0])[0] < core.predict(cases[1])[0]


def test_llama_cpp_rows_without_fa_take_their_tools_default_at_that_build():
    """llama-bench ran '-fa 0' unless told otherwise until PR #23714 (2026-06); llama-server and
    llama-cli switched to 'auto' at b6327 (2025-08-31); other stacks keep the fused default."""
    row = {"_id": 1, "hardware": "NVIDIA GeForce RTX 4090", "num_devices": "1", "model": "Llama-2-7B",
           "weight_precision": "Q4_0", "batch": "1", "input_tokens": "512", "output_tokens": "0",
           "metric": "prompt_tokens_per_s", "value": "3000", "source": "example.org/x", "hw_ref": "", "notes": ""}
    want = {"llama.cpp llama-bench (CUDA)": "unfused",                                # no build: before
            "llama.cpp b6413 (233d773d0) (CUDA, llama-bench)": "unfused",
            "llama.cpp mainline fork b9767 (CUDA, llama-bench)": "fused",
            "llama.cpp master before PR #22298 (~2026-04-23) (CUDA, llama-bench)": "unfused",
            "llama.cpp master before PR #24216 (~2026-06-05) (CUDA, llama-bench)": "fused",
            "llama.cpp llama-server b6000 (CUDA)": "unfused",
            "llama.cpp llama-server b6500 (CUDA)": "fused",
            "llama.cpp llama-bench (CUDA, build 557fe2d91 (8322))": "unfused"}
    rows = [dict(row, software_framework=sw) for sw in want]
    rows.append(dict(row, software_framework="vLLM 0.6.0", runtime="vllm"))
    cases, skipped = resolve_all(load_map(), rows)
    assert not skipped
    assert [c.scenario.attention for c in cases] == [*want.values(), "fused"]


def test_tensorrt_llm_releases_of_2024_run_as_their_own_runtime():
    """MLPerf v4.x submissions and TensorRT-LLM v0.5-v0.12 are the 2024 variant, whether the
    runtime column is empty or says tensorrt-llm; v5.x and 0.13+ are the current one."""
    from codesign.runtime import runtime_for_framework
    for text, want in [("MLPerf Inference v4.1 Offline, TensorRT-LLM (GitHub main 2d234357)", "tensorrt-llm-2024"),
                       ("TensorRT-LLM v0.12.0-jetson gptSessionBenchmark", "tensorrt-llm-2024"),
                       ("TensorRT-LLM v0.5.0, TensorRT 9.1", "tensorrt-llm-2024"),
                       ("MLPerf Inference v5.1 Offline, TensorRT-LLM on TensorRT 10.8", "tensorrt-llm"),
                       ("TensorRT-LLM 0.17 (TP=1)", "tensorrt-llm"), ("TensorRT-LLM v0.13.0", "tensorrt-llm")]:
        assert runtime_for_framework(text, "gpu", "NVIDIA") == want, text
    row = {"_id": 1, "hardware": "NVIDIA H200-SXM-141GB", "num_devices": "1", "model": "Llama-2-7B",
           "weight_precision": "fp8", "batch": "1", "input_tokens": "512", "output_tokens": "128",
           "metric": "decode_tokens_per_s", "value": "100", "source": "example.org/x", "notes": "", "hw_ref": "",
           "software_framework": "TensorRT-LLM v0.7a (pre-release)", "runtime": "tensorrt-llm"}
    cases, skipped = resolve_all(load_map(), [row, dict(row, software_framework="TensorRT-LLM 0.17")])
    assert not skipped and [c.runtime for c in cases] == ["tensorrt-llm-2024", "tensorrt-llm"]


def test_a_runtime_name_no_file_carries_is_read_as_software_text():
    """A runtime column naming a stack built on a library runtime ('llamafile' wraps llama.cpp,
    'NVIDIA NIM' runs TensorRT-LLM engines) takes that runtime, with a note; an unknown one is
    evaluated with generic, also with a note."""
    row = {"_id": 1, "hardware": "NVIDIA A100 80GB PCIe", "num_devices": "1", "model": "Llama-2-7B",
           "weight_precision": "Q4_0", "batch": "1", "input_tokens": "512", "output_tokens": "0",
           "metric": "prompt_tokens_per_s", "value": "3000", "source": "example.org/x", "notes": "", "hw_ref": "",
           "software_framework": "a wrapper"}
    rows = [dict(row, runtime=name) for name in ("llamafile", "NVIDIA NIM", "some-new-engine")]
    cases, skipped = resolve_all(load_map(), rows)
    assert not skipped
    assert [c.runtime for c in cases] == ["llama.cpp-cuda", "tensorrt-llm", "generic"]
    assert "read as llama.cpp-cuda" in " ".join(cases[0].why) and "generic" in " ".join(cases[2].why)


@pytest.mark.parametrize("name, cls, spec, match", [
    ("Raspberry Pi 5 (8GB)", None, "raspberry-pi-5", "auto"),             # no model number: file-name words
    ("Jetson AGX Orin 64GB", None, "jetson-agx-orin", "auto"),
    ("Jetson Orin Nano Super", None, "jetson-orin-nano", "auto"),
    ("Google Coral Edge TPU", None, "coral-edge-tpu", "auto"),
    ("Intel Gaudi 2", None, "gaudi2", "auto"),                             # 'Gaudi 2' = gaudi2
    ("Snapdragon X Elite NPU", None, "snapdragon-x-elite-hexagon", "auto"),  # NPU = Hexagon
    ("Qualcomm Snapdragon 8 Gen 3", "cpu", "snapdragon-8-gen3-cpu", "auto"),  # the row's class decides
    ("NVIDIA H100 80GB HBM3", None, "h100-sxm", "auto"),                   # HBM3: the SXM card
    ("Orange Pi 5 (RK3588S)", "cpu", "rk3588-cpu", "proxy"),               # RK3588S: a variant
    ("A10G", None, "a10", "proxy"),
    ("RTX 6000 Ada", None, None, None),                                    # not the Blackwell RTX PRO 6000
])
def test_device_names_resolve_by_number_words_class_and_variant(name, cls, spec, match):
    got = auto_hardware(name, cls)
    assert got == ((spec, match) if spec else None)


@pytest.mark.parametrize("name, expected", [
    ("Meta-Llama-3.1-8B-Instruct", ("llama-3.1-8b", "exact")),            # 'Meta-' and -Instruct dropped
    ("meta-llama/Llama-3.1-70B-Instruct", ("llama-3.1-70b", "exact")),    # an organisation prefix
    ("llama3.1:8b", ("llama-3.1-8b", "exact")),                          # an Ollama tag
    ("qwen2.5:7b", ("qwen2.5-7b", "exact")),                             # not the Qwen2 of the same key
    ("Qwen2.5-Coder-7B", ("qwen2.5-7b", "exact")),                       # a fine-tune, same architecture
    ("Phi-3-mini-4k-instruct", ("phi-3-mini", "exact")),                 # a context-length suffix
    ("Llama 4 Scout 17B-16E", ("llama-4-scout", "exact")),
    ("Mistral-Nemo-Instruct-2407", ("mistral-nemo-12b", "exact")),       # no size stated: the other words
    ("DeepSeek-R1-Distill-Llama-8B", ("llama-3.1-8b", "arch")),          # a distilled model is its base
    ("gptj-6b", ("gpt-j-6b", "exact")),
    ("DeepSeek-V3-slice-jp64", None),                                    # an expert-pruned artefact
    ("Qwen3.5-4B", ("qwen3.5-4b", "exact")),                             # its own (hybrid) workload, not Qwen3-4B
])
def test_model_names_resolve_through_organisations_tags_fine_tunes_and_distills(name, expected):
    assert auto_model(name) == expected


def test_a_run_with_clocks_pinned_at_their_top_takes_the_specs_max_clocks_point():
    """Rockchip's tables are 'collected based on the maximum CPU and NPU frequencies' (its
    fix_freq scripts pin the DDR controller too): the RK3588 spec's max-clocks point streams
    LPDDR5-4800 at 0.90 of 38.4 GB/s, where a board under default governors streams 0.67 of
    33.8; a memory-bound decode is faster by about that ratio. A spec without the point, or a
    row that does not say so, keeps the spec's own figures."""
    row = {"_id": 1, "hardware": "Rockchip RK3588 NPU", "num_devices": "1", "model": "Llama-3-8B",
           "weight_precision": "w8a8", "batch": "1", "input_tokens": "64", "output_tokens": "64",
           "metric": "decode_tokens_per_s", "value": "3.8", "source": "example.org/x", "hw_ref": "",
           "software_framework": "rknn-llm 1.1.0 (RKLLM runtime)",
           "notes": "'collected based on the maximum CPU and NPU frequencies'"}
    default = dict(row, notes="board under its default governors")
    on_cpu = dict(row, hardware="Rockchip RK3588 Cortex-A76 CPU (board not stated)", software_framework="llama.cpp")
    cases, skipped = resolve_all(load_map(), [row, default, on_cpu])
    assert not skipped
    assert [c.operating_point for c in cases] == ["max-clocks", None, None]
    pinned, governed = core.predict(cases[0])[0], core.predict(cases[1])[0]
    assert 1.2 < pinned / governed < (38.4 * 0.90) / (33.8 * 0.67) + 1e-9
    spec = load_hardware("rk3588-npu")
    p = at_operating_point(spec, spec_params(spec), "max-clocks")
    assert p["memory.LPDDR4X.bandwidth"][0] == pytest.approx(38.4e9)
    assert p["memory.LPDDR4X.efficiency"][0] == pytest.approx(0.90)
    assert p["memory.CBUF.bandwidth"][0] == pytest.approx(spec_params(spec)["memory.CBUF.bandwidth"][0])


def test_a_fastflowlm_row_runs_its_runtime_through_the_npus_own_dram_port_with_a_5_bit_head():
    """FastFlowLM rows run the fastflowlm profile, not the device-only one: its Q4NX files keep
    the LM head in Q4_1 (5 bits per weight), and the XDNA 2 NPU reads DRAM at 60 GB/s (its
    port; the SoC's CPU and iGPU see ~125). Decode of a 4-bit Llama-3.2-1B is then bounded by
    60 GB/s over its weight bytes, and faster than with a 16-bit head."""
    row = {"_id": 1, "hardware": "AMD Ryzen AI 7 350 (XDNA2 NPU)", "num_devices": "1", "model": "Llama-3.2-1B",
           "weight_precision": "int4 (FLM format)", "batch": "1", "input_tokens": "1024", "output_tokens": "",
           "metric": "decode_tokens_per_s", "value": "64.5", "source": "example.org/x", "hw_ref": "",
           "software_framework": "FastFlowLM v0.9.30", "notes": ""}
    generic = dict(row, software_framework="an unnamed NPU stack")
    cases, skipped = resolve_all(load_map(), [row, generic])
    assert not skipped
    assert [c.runtime for c in cases] == ["fastflowlm", "generic"]
    spec = spec_params(load_hardware("amd-ryzen-ai-350-npu"))
    assert spec["memory.LPDDR5X.bandwidth"][0] == pytest.approx(60e9)
    model = load_workload("llama-3.2-1b")
    head = model.vocab_size * model.hidden_size
    weight_bytes = (model.param_count() - head) * 0.5 + head * 5 / 8      # 4-bit layers, Q4_1 head
    flm, dev = core.predict(cases[0])[0], core.predict(cases[1])[0]
    assert flm < 60e9 / weight_bytes
    assert flm > 1.2 * dev         # the generic profile reads a 16-bit head (half the 4-bit bytes again)


def test_the_prefill_queue_serves_a_prompt_at_its_marginal_cost():
    """A served prompt joins engine steps that already stream the weights for the running
    batch: the queue's service time is T(2 prompts) - T(1), one prompt's prefill for a
    compute-bound dense model, less than a lone prompt's for an MoE whose lone prompt pays
    every expert's weight stream."""
    hw = load_hardware("h200")
    fp8 = Compression(weight_bits=8, weight_format="fp8", act_bits=8, kv_bits=8)
    for name, prompt, lone_share in [("llama-2-70b", 1024, (0.9, 1.1)), ("mixtral-8x7b", 427, (0.0, 0.5))]:
        model, sc = load_workload(name), Scenario(batch=1, prompt=prompt, generate=100, dtype="fp8", runtime="tensorrt-llm")
        lone = float(core._eval(hw, model, sc, fp8, None, None)["ttft_s"])
        marginal = core._marginal_prefill(hw, model, sc, fp8, None, None)
        assert lone_share[0] * lone < marginal < lone_share[1] * lone, (name, marginal, lone)


def test_a_ttft_row_reads_the_first_token_time_its_benchmark_measured():
    """Closed-loop clients with fixed lengths start together and stay in step: the i-th of a
    replica's n prompts waits i/n of the wave's prefill, mean (n + 1) / 2n of it; a
    static-batch sweep's TTFT is the whole batch's prefill; otherwise a request's own."""
    row = {"_id": 1, "hardware": "NVIDIA H100 SXM5 80GB", "num_devices": "1", "model": "Llama-3.1-8B",
           "weight_precision": "bf16", "batch": "32", "input_tokens": "1024", "output_tokens": "1024",
           "metric": "ttft_ms", "value": "500", "source": "example.org/x", "hw_ref": "",
           "software_framework": "vLLM 0.10", "notes": "vllm bench serve --max-concurrency 32 --ignore-eos"}
    totals = dict(row, notes="'Successful requests: 100', 'Total generated tokens: 102400'")
    varied = dict(row, notes="'Successful requests: 100', 'Total generated tokens: 93012'")
    paced = dict(row, notes="vllm bench serve --request-rate 4 --max-concurrency 32 --ignore-eos")
    cases, skipped = resolve_all(load_map(), [row, totals, varied, paced])
    assert not skipped and [c.ttft for c in cases] == ["wave", "wave", "request", "request"]
    out = core._eval(core.spec_of(cases[0]), core._model(cases[0].workload), cases[0].scenario, None)
    whole = 32 * 1024 / out["prefill_tokens_per_s"]
    assert core.predict(cases[0])[0] == pytest.approx(whole * 33 / 64 * 1e3)
    assert core.predict(cases[2])[0] == pytest.approx(out["ttft_s"] * 1e3)     # a request's own
    assert core.read_metric("ttft_ms", out, cases[0].scenario, ttft="batch") == pytest.approx(whole * 1e3)
    assert core.read_metric("tpot_ms", out, cases[0].scenario, ttft="wave") == pytest.approx(out["tpot_s"] * 1e3)


def test_a_map_entry_names_only_a_known_ttft_kind(tmp_path):
    text = (data_dir("data") / DEFAULT_MAP).read_text()
    bad = tmp_path / "map.yaml"
    bad.write_text(text.replace("    ttft: batch\n", "    ttft: median\n", 1))
    with pytest.raises(CodesignError, match=r"software\.TensorRT-LLM v0\.5\.0\.ttft: ttft must be one of request, wave, batch"):
        load_map(bad)


def test_a_stated_board_power_limit_is_read_from_the_notes():
    from codesign.accuracy.mapping import POWER_LIMIT
    for text, watts in [("nvidia-smi power cap 310W, driver 535", "310"), ("Power limit 300W (sweep)", "300"),
                        ("'NVIDIA H200-SXM-141GB (TGP 1000 W)'", "1000"), ("power-limited to 250 W", "250")]:
        m = POWER_LIMIT.search(text)
        assert m and m.group(1) == watts, text
    assert not POWER_LIMIT.search("a 700 W board") and not POWER_LIMIT.search("power 400W draw")


def test_mxfp4_moe_files_keep_their_other_layers_as_the_stack_stores_them():
    hf = _file_format(Compression(**auto_precision("mxfp4")["compression"]), "vllm", "mxfp4")
    assert hf.other_bits == 16 and hf.weight_bits == 4
    assert _file_format(hf, "llama.cpp-cuda", "MXFP4").other_bits == 8                 # GGUF: Q8_0
    assert _file_format(hf, "mlx", "MXFP4 (mlx-community/gpt-oss-20b-MXFP4-Q8)").other_bits == 8
    q4 = Compression(weight_bits=4, group_size=32, scheme="q4_0")
    assert _file_format(q4, "llama.cpp-cuda", "q4_0") is q4                            # a uniform file


def test_a_ggml_format_maps_the_same_whatever_its_case():
    """'q4_0' and 'Q4_0' name one llama.cpp format: every row in it gets the format's own
    layout (4.5 bits per weight, the Q4_0 kernel), not a generic 4-bit group of 32."""
    rows = read_rows()
    for fmt in ("q4_0", "q8_0"):
        spelled = {c.row: rows[c.row - 1]["weight_precision"] for c in CASES
                   if rows[c.row - 1]["weight_precision"].strip().lower() == fmt}
        assert set(spelled.values()) >= {fmt, fmt.upper()}, spelled
        for c in CASES:
            if c.row in spelled:
                assert c.compression.scheme == fmt, (c.row, spelled[c.row], c.compression)


@pytest.mark.parametrize("folder,spec,n", [("h200-llamacpp-2026-11-27", "h200", 70),
                                           ("h100-llamacpp-2026-11-27", "h100-sxm", 15)])
def test_the_lent_gpu_llama_cpp_runs_read_as_the_settings_they_ran(folder, spec, n):
    """docs/validation/<folder>/rows.csv (benchmarks/llamacpp_gpu/rows.py): every row resolves
    to llama.cpp on CUDA on the card's spec, with the -fa and -ub its software states and the
    format's own bytes (Q4_0 4.5 bits, Q8_0 8.5, F16 16)."""
    rows = read_rows(ROOT / "docs" / "validation" / folder / "rows.csv")
    cases, skipped = resolve_all(load_map(), rows)
    assert not skipped and len(cases) == len(rows) == n
    for c in cases:
        sw = rows[c.row - 1]["software_framework"]
        assert (c.hardware, c.runtime) == (spec, "llama.cpp-cuda")
        assert c.scenario.attention == ("fused" if "-fa 1" in sw else "unfused")
        assert f"-ub {c.scenario.ubatch}" in sw
    bits = {rows[c.row - 1]["weight_precision"]: weight_bytes_per_element(c.compression, c.scenario.dtype) * 8
            for c in cases}
    assert bits["Q4_0"] == pytest.approx(4.5) and bits["Q8_0"] == pytest.approx(8.5) and bits["F16"] == 16.0
