"""Compression choices change bytes, fit and compute datatype the way real hardware does."""
import pytest
from conftest import cli

from codesign.compression import Compression, effective_model, weight_bytes_per_element
from codesign.errors import CodesignError
from codesign.hardware import load_hardware
from codesign.perf import evaluate
from codesign.workload import Scenario, load_workload

DEC = Scenario(batch=1, prompt=256, generate=64)
PRE = Scenario(batch=16, prompt=2048, generate=1)


def test_llama2_7b_int4_g128_weights():
    # 6.48B linear weights x (4 bits + fp16 scale and 4-bit zero per 128) + fp16 embedding and head
    r = evaluate("h100-sxm", "llama-2-7b", DEC, Compression(weight_bits=4, group_size=128))
    assert 3.5e9 <= r["weight_bytes"] <= 3.9e9
    assert weight_bytes_per_element(Compression(weight_bits=4, group_size=128), "bf16") == pytest.approx(
        (4 + 20 / 128) / 8)


def test_w4_decode_speedup_is_nearly_the_byte_ratio_when_bandwidth_bound():
    base = evaluate("a100-80gb", "llama-2-7b", DEC)
    w4 = evaluate("a100-80gb", "llama-2-7b", DEC, Compression(weight_bits=4, group_size=128))
    byte_ratio = base["weight_bytes"] / w4["weight_bytes"]
    speedup = base["tpot_s"] / w4["tpot_s"]
    assert 0.6 * byte_ratio <= speedup <= byte_ratio * 1.001   # per-kernel overheads do not shrink


def _without(spec_name, *dtypes, sparsity=False):
    spec = load_hardware(spec_name)
    data = spec.model_dump(by_alias=True, exclude_unset=True, mode="json")
    for dt in dtypes:
        data["compute"]["matrix"]["peak"].pop(dt, None)
    if sparsity:
        data["compute"]["matrix"].pop("sparsity", None)
    data["name"] = spec.name + "-reduced"
    from codesign.hardware import hardware_from_dict
    return hardware_from_dict(data)


def test_w8a8_without_int8_units_is_not_faster_than_fp16():
    spec = _without("a100-80gb", "int8", "int4")
    fp16 = evaluate(spec, "llama-2-7b", PRE)
    w8a8 = evaluate(spec, "llama-2-7b", PRE, Compression(weight_bits=8, act_bits=8))
    assert "int8 not supported by the matrix units" in w8a8["notes"]
    assert w8a8["ttft_s"] >= 0.9 * fp16["ttft_s"]      # only bytes shrink, compute stays 16-bit
    with_int8 = evaluate("a100-80gb", "llama-2-7b", PRE, Compression(weight_bits=8, act_bits=8))
    assert with_int8["ttft_s"] < 0.7 * fp16["ttft_s"]   # int8 tensor cores: twice the rate


def test_2to4_doubles_compute_only_with_sparse_support():
    dense = evaluate("a100-80gb", "llama-2-7b", PRE)
    sparse = evaluate("a100-80gb", "llama-2-7b", PRE, Compression(sparsity="2:4"))
    assert sparse["ttft_s"] < 0.65 * dense["ttft_s"]
    plain = _without("a100-80gb", sparsity=True)
    d2, s2 = evaluate(plain, "llama-2-7b", PRE), evaluate(plain, "llama-2-7b", PRE, Compression(sparsity="2:4"))
    assert s2["ttft_s"] > 0.85 * d2["ttft_s"]
    assert "only bytes shrink" in s2["notes"]
    assert s2["weight_bytes"] < 0.6 * d2["weight_bytes"]


def test_kv_quantization_shrinks_cache_and_speeds_long_context_decode():
    sc = Scenario(batch=32, prompt=4096, generate=64)
    base = evaluate("h100-sxm", "llama-3.1-8b", sc)
    kv8 = evaluate("h100-sxm", "llama-3.1-8b", sc, Compression(kv_bits=8))
    kv4 = evaluate("h100-sxm", "llama-3.1-8b", sc, Compression(kv_bits=4))
    assert kv8["kv_bytes"] == pytest.approx(base["kv_bytes"] * (1 + 2 / 128) / 2, rel=1e-6)
    assert kv4["tpot_s"] < kv8["tpot_s"] < base["tpot_s"]


def test_pruning_and_distillation_change_the_model():
    m = load_workload("llama-2-13b")
    pruned = effective_model(m, Compression(prune_layers=0.25, prune_ffn=0.5))
    assert pruned.num_layers == 30 and pruned.ffn_size == m.ffn_size // 2
    r = evaluate("h100-sxm", m, DEC, Compression(distill_to="llama-2-7b"))
    assert r["weight_bytes"] == pytest.approx(evaluate("h100-sxm", "llama-2-7b", DEC)["weight_bytes"])
    with pytest.raises(CodesignError, match="unknown workload"):
        evaluate("h100-sxm", m, DEC, Compression(distill_to="llama-9b"))


def test_quantization_makes_a_model_fit():
    sc = Scenario(batch=1, prompt=512, generate=64)
    assert not evaluate("jetson-orin-nano", "llama-3.1-8b", sc)["fits"]
    assert evaluate("jetson-orin-nano", "llama-3.1-8b", sc, Compression(weight_bits=4, group_size=128))["fits"]


@pytest.mark.parametrize("bad", [{"weight_bits": 5}, {"sparsity": "4:2"}, {"sparsity": "1.5"},
                                 {"weight_format": "fp8", "weight_bits": 4}, {"prune_layers": 1.0}])
def test_bad_compression_values(bad):
    from pydantic import ValidationError
    with pytest.raises(ValidationError):
        Compression(**bad)


def test_cli_compression_flags():
    import json
    r = cli("eval", "-H", "h100-sxm", "-w", "llama-2-7b", "--weight-bits", "4", "--group-size", "128", "--act-bits", "8",
            "--kv-bits", "8", "--sparsity", "2:4", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["compression"]["weight_bits"] == 4 and out["weight_bytes"] < 3.1e9


def test_measured_quantization_proxy_is_reported_and_ordered():
    from codesign.quality import measured_gemm_proxy
    none = measured_gemm_proxy(None)
    assert none["quant_gemm_rel_error"] == 0.0
    w8 = measured_gemm_proxy(Compression(weight_bits=8))["quant_gemm_rel_error"]
    w4 = measured_gemm_proxy(Compression(weight_bits=4))["quant_gemm_rel_error"]
    w4g = measured_gemm_proxy(Compression(weight_bits=4, group_size=128))["quant_gemm_rel_error"]
    assert 0 < w8 < w4g < w4 < 1          # more bits and smaller groups: smaller output error
    assert measured_gemm_proxy(Compression(weight_bits=4, weight_format="nf4"))["quant_gemm_rel_error"] is None
    from codesign.assess import evaluate as assess
    r = assess("h100-sxm", "llama-2-7b", DEC, Compression(weight_bits=4, group_size=128), measure=True)
    assert r["quant_gemm_rel_error"] == pytest.approx(w4g)


def test_symmetric_groups_and_quantized_embeddings():
    # symmetric: only the fp16 scale per group (16/g bits); zero point: + bits/g more
    sym = Compression(weight_bits=4, group_size=32, zero_point=False)
    assert weight_bytes_per_element(sym, "fp16") == pytest.approx((4 + 16 / 32) / 8)
    m = load_workload("llama-3.2-3b")
    base = evaluate("jetson-orin-nano", m, DEC, sym)
    both = evaluate("jetson-orin-nano", m, DEC, Compression(weight_bits=4, group_size=32, zero_point=False,
                                                             quantize_embeddings=True))
    tables = m.vocab_size * m.hidden_size * (1 if m.tied_embeddings else 2)
    saved = tables * (2 - (4 + 16 / 32) / 8)
    assert base["weight_bytes"] - both["weight_bytes"] == pytest.approx(saved, rel=1e-4)   # + the final norm
    assert both["tpot_s"] < base["tpot_s"]


def test_cli_compression_file_and_flag_override(tmp_path):
    import json
    f = tmp_path / "c.yaml"
    f.write_text("weight_bits: 4\ngroup_size: 128\nkv_bits: 8\n")
    run = lambda *a: cli("eval", "-H", "h100-sxm", "-w", "llama-2-7b", "--compression", f, "--json", *a)  # noqa: E731
    r = run()
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["compression"] == {"weight_bits": 4, "group_size": 128, "kv_bits": 8}
    r = run("--kv-bits", "4")
    assert json.loads(r.stdout)["compression"]["kv_bits"] == 4
    f.write_text("weight_bits: 5\n")
    r = run()
    assert r.returncode == 2 and str(f) in r.stderr and "weight_bits" in r.stderr


def test_fp4_weights_and_activations_run_on_fp4_units_where_there_are_some():
    """W4A4 FP4 (NVFP4): both operands 4-bit on Blackwell's FP4 units, 4-bit activations with
    an 8-bit scale per 16 between kernels; Hopper has no FP4 units and falls back to FP8."""
    from codesign.compression import Compression, act_bytes_per_element, wanted_gemm_dtype
    from codesign.perf import evaluate
    from codesign.workload import Scenario
    c = Compression(weight_bits=4, weight_format="fp4", act_bits=4, group_size=16)
    assert wanted_gemm_dtype(c, "bf16") == ("fp4", False)
    assert act_bytes_per_element(c, "bf16") == pytest.approx(0.5 + 1 / 16)
    with pytest.raises(ValueError, match="act_bits 4"):
        Compression(weight_bits=4, act_bits=4)                 # int4 weights: no W4A4 path
    sc = Scenario(batch=64, prompt=2048, generate=1)
    fp4 = evaluate("b200", "llama-3.1-8b", sc, c)
    fp8 = evaluate("b200", "llama-3.1-8b", sc, Compression(weight_bits=8, weight_format="fp8", act_bits=8))
    assert fp4["ttft_s"] < fp8["ttft_s"]                       # compute-bound prefill at twice the rate
    hopper = evaluate("h100-sxm", "llama-3.1-8b", sc, c)
    assert any("fp4 not supported" in n for n in hopper.notes)


def test_matrix_units_that_take_packed_weights_do_no_unpacking():
    """RKNPU multiplies float16 activations with int4 weights in its matrix unit (RKLLM's
    w4a16, quantized_matmul: native): no dequantisation term, so a w4a16 decode reads half
    the bytes of w8a8 and is the faster one, as Rockchip's RK3576 table has it."""
    from codesign.compression import Compression, wanted_gemm_dtype
    from codesign.perf import evaluate
    from codesign.workload import Scenario
    w4 = Compression(weight_bits=4)
    assert wanted_gemm_dtype(w4, "fp16", "native") == ("fp16", False)
    assert wanted_gemm_dtype(w4, "fp16", "activation") == ("fp16", True)
    sc = Scenario(batch=1, prompt=128, generate=64, dtype="fp16", runtime="rknn-llm")
    w4a16 = evaluate("rk3576-npu", "qwen2.5-1.5b", sc, w4)
    w8a8 = evaluate("rk3576-npu", "qwen2.5-1.5b", sc.model_copy(update={"dtype": "int8"}),
                    Compression(weight_bits=8, act_bits=8))
    assert "dequant" not in w4a16["bound"] and w4a16["tpot_s"] < w8a8["tpot_s"]


def test_a_fallback_datatype_is_the_fastest_the_units_support():
    """After `calibrate`, a host whose NumPy emulates fp16 (0.45 GFLOP/s against 97 for fp32)
    runs a bf16 scenario in fp32, not in its slowest datatype."""
    from codesign.compression import resolve_dtype
    from codesign.perf import evaluate
    from codesign.workload import Scenario
    assert resolve_dtype("bf16", ("fp32", "fp16"))[0] == "fp16"                  # no rates: the first fallback
    assert resolve_dtype("bf16", ("fp32", "fp16"), {"fp16": 4.5e8, "fp32": 9.7e10})[0] == "fp32"
    r = evaluate("docs/validation/host-epyc-2vcpu-numpy.yaml", "qwen2.5-0.5b", Scenario(prompt=64, generate=8))
    assert any("ran fp32" in n for n in r.notes)


def test_named_formats_store_their_layout_not_the_generic_formula():
    # ggml blocks: Q4_0 = 18 bytes per 32 weights, Q8_0 34/32, Q6_K 210/256, MXFP4 17/32
    for scheme, bits in (("q4_0", 4.5), ("q8_0", 8.5), ("q6_k", 6.5625), ("mxfp4", 4.25)):
        comp = Compression(weight_bits=8 if scheme == "q8_0" else 6 if scheme == "q6_k" else 4, group_size=32,
                           scheme=scheme)
        assert weight_bytes_per_element(comp, "fp16") == pytest.approx(bits / 8)
    # Q4_K_M: llama.cpp's 4.58 GiB Llama-3.1-8B file less its Q4_K embedding and Q6_K output,
    # over the other 6.98 B weights
    emb = 128256 * 4096
    linear = 8030261248 - 2 * emb
    q4km = (4.58 * 2**30 * 8 - emb * (4.5 + 6.5625)) / linear
    comp = Compression(weight_bits=4, group_size=32, scheme="q4_k_m")
    assert weight_bytes_per_element(comp, "fp16") * 8 == pytest.approx(q4km, abs=0.01)
    # a bare K-quant name is its _M mix (llama-quantize's alias); an unlisted mix takes its tensor type's
    assert weight_bytes_per_element(comp, "fp16") == weight_bytes_per_element(comp.model_copy(update={"scheme": "q4_k"}), "fp16")
    assert weight_bytes_per_element(comp.model_copy(update={"scheme": "q4_k_l"}), "fp16") == \
        weight_bytes_per_element(comp, "fp16")
    # an unnamed or unknown format keeps the formula: 4 bits + fp16 scale and 4-bit zero per 32
    assert weight_bytes_per_element(Compression(weight_bits=4, group_size=32), "fp16") * 8 == pytest.approx(4 + 20 / 32)
    assert weight_bytes_per_element(Compression(weight_bits=4, group_size=32, scheme="awq"), "fp16") * 8 == \
        pytest.approx(4 + 20 / 32)


def test_fp4_formats_carry_an_8_bit_scale():
    nvfp4 = Compression(weight_bits=4, weight_format="fp4", group_size=16, act_bits=4)      # E4M3 per 16
    mxfp4 = Compression(weight_bits=4, weight_format="fp4", group_size=32)                  # E8M0 per 32
    assert weight_bytes_per_element(nvfp4, "bf16") * 8 == pytest.approx(4.5)
    assert weight_bytes_per_element(mxfp4, "bf16") * 8 == pytest.approx(4.25)


def test_moe_experts_quantised_apart_from_the_other_layers():
    """gpt-oss ships MXFP4 experts with 16-bit attention (8-bit in its GGUF): the footprint is
    the routed experts at 4.25 bits plus every other layer weight at its own width, and decode
    slows as those bytes grow."""
    m = load_workload("gpt-oss-20b")
    sc = Scenario(batch=1, prompt=16, generate=8)
    mx = Compression(weight_bits=4, weight_format="fp4", group_size=32)
    experts = m.moe_layers() * m.moe.num_experts * m.routed_expert_params()
    embed_head = m.param_count() - m.layer_weights()
    others = m.param_count() - experts - embed_head
    runs = {ob: evaluate("h200", m, sc, mx.model_copy(update={"other_bits": ob})) for ob in (None, 8, 16)}
    w = {ob: r["weight_bytes"] for ob, r in runs.items()}
    assert w[16] - w[None] == pytest.approx(others * (2 - 4.25 / 8), rel=0.02)
    assert w[8] - w[None] == pytest.approx(others * (8.5 - 4.25) / 8, rel=0.02)
    assert runs[None]["tpot_s"] < runs[8]["tpot_s"] < runs[16]["tpot_s"]
    # a dense model has no experts to set apart: other_bits is ignored, and the note says so
    q4 = Compression(weight_bits=4, group_size=32)
    dense, dense_ob = (evaluate("h200", "llama-3.1-8b", sc, c) for c in (q4, q4.model_copy(update={"other_bits": 16})))
    assert dense_ob["tpot_s"] == dense["tpot_s"] and any("other_bits" in n for n in dense_ob.notes)
    with pytest.raises(ValueError, match="other_bits"):
        Compression(other_bits=8)
    r = cli("eval", "-H", "h200", "-w", "gpt-oss-20b", "--other-bits", "8")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "other_bits" in r.stderr
