"""Local/global attention patterns and beam search against hand calculations (issue 14)."""
import pytest

from codesign.errors import CodesignError
from codesign.perf import evaluate
from codesign.workload import Scenario, load_workload, workload_from_dict
from codesign.workload.graph import build_graph


def test_gemma3_kv_cache_keeps_the_window_on_local_layers():
    m = load_workload("gemma-3-27b")            # 62 layers: every 6th global (10), 52 local with a 1024 window
    assert (m.global_layers(), m.num_layers) == (10, 62)
    ctx = 8192
    r = evaluate("h200", m, Scenario(batch=1, prompt=ctx - 128, generate=128))
    per_token_layer = 2 * m.kv_heads * m.hd * 2                     # K and V, bf16
    assert r["kv_bytes"] == pytest.approx((10 * ctx + 52 * 1024) * per_token_layer)
    everything = m.model_copy(update={"global_every": 1})
    r_all = evaluate("h200", everything, Scenario(batch=1, prompt=ctx - 128, generate=128))
    assert r_all["kv_bytes"] == pytest.approx(62 * ctx * per_token_layer)


def test_windowed_layers_stop_growing_decode_work():
    m = load_workload("gemma-3-27b")
    short, long_ = (evaluate("h200", m, Scenario(batch=16, prompt=p, generate=64))["tpot_s"] for p in (2048, 32768))
    g = m.model_copy(update={"global_every": 1})
    short_g, long_g = (evaluate("h200", g, Scenario(batch=16, prompt=p, generate=64))["tpot_s"] for p in (2048, 32768))
    assert long_ / short < long_g / short_g          # 52 of 62 layers read at most 1024 cached tokens
    ops = build_graph(m, Scenario(batch=1, prompt=4096, generate=8)).decode
    attn = [o for o in ops if o.kind == "attention"]
    assert sorted((o.count, o.n) for o in attn) == [(10, 4096), (52, 1024)]


def test_a_global_pattern_needs_a_window():
    data = load_workload("llama-3.1-8b").model_dump(exclude_none=True)
    data.update(global_every=2, sources={})
    with pytest.raises(CodesignError, match="global_every"):
        workload_from_dict(data)


def test_beams_share_the_prompt_cache_and_decode_as_sequences():
    m = load_workload("gpt-j-6b")                # 28 layers, 16 heads x 256, MHA
    sc = Scenario(batch=8, prompt=1024, generate=128, beams=4)
    per_token = 2 * 28 * 16 * 256 * 2
    r = evaluate("h100-sxm", m, sc)
    assert r["kv_bytes"] == pytest.approx(8 * (1024 + 4 * 128) * per_token)
    one = evaluate("h100-sxm", m, sc.model_copy(update={"beams": 1}))
    assert r["tpot_s"] > one["tpot_s"] and r["ttft_s"] == pytest.approx(one["ttft_s"])
    g = build_graph(m, sc)
    head = next(o for o in g.decode if o.name == "lm_head")
    assert head.m == 32 and next(o for o in g.prefill if o.name == "lm_head").m == 8
    # generated tokens count once per request: the answer is one beam
    assert r["throughput_tokens_per_s"] == pytest.approx(8 * 128 / r["e2e_latency_s"])


def test_deepseek_v3_parameters_and_latent_cache_match_hand_counts():
    m = load_workload("deepseek-v3")
    assert m.param_count() == pytest.approx(671e9, rel=0.001)
    # DeepSeek counts active parameters without the input embedding table (a lookup)
    assert m.param_count(active=True) - m.vocab_size * m.hidden_size == pytest.approx(37e9, rel=0.02)
    lite = load_workload("deepseek-v2-lite")
    assert lite.param_count() == pytest.approx(15.7e9, rel=0.01)
    assert lite.param_count(active=True) - lite.vocab_size * lite.hidden_size == pytest.approx(2.4e9, rel=0.03)
    assert m.kv_per_token_layer == 512 + 64
    sc = Scenario(batch=4, prompt=4000, generate=96)
    r = evaluate("h200", m, sc.model_copy(update={"tp": 8}))
    assert r["kv_bytes"] == pytest.approx(4 * 4096 * 576 * 61 * 2)    # every rank keeps the whole latent


def test_mla_decode_attends_the_latent_once_per_token():
    m = load_workload("deepseek-v3")
    g = build_graph(m, Scenario(batch=2, prompt=1000, generate=4, tp=8))
    attn = next(o for o in g.decode if o.kind == "attention")
    assert attn.kv_read_elems == 2 * 1000 * 576                       # not K and V per head
    assert attn.flops == pytest.approx(2 * 16 * 1000 * (576 + 512) * 2)   # 16 heads per rank, scores + values
    pre = next(o for o in g.prefill if o.kind == "attention")
    assert pre.kv_write_elems == 2 * 1000 * 576
    names = {o.name for o in g.decode}
    assert {"q_down", "q_up", "kv_down", "q_absorb", "v_unabsorb", "o_proj"} <= names and "kv_up" not in names


def test_deepseek_v3_fp8_fits_eight_h200_with_a_hand_checked_footprint():
    from codesign.compression import Compression
    m = load_workload("deepseek-v3")
    sc = Scenario(batch=16, prompt=2048, generate=256, tp=8)
    r = evaluate("h200", m, sc, Compression(weight_bits=8, weight_format="fp8", act_bits=8))
    # ~1 byte per linear weight over 8 ranks (fp8 + scales), 16-bit embedding and head tables
    linear = m.param_count() - 2 * m.vocab_size * m.hidden_size
    hand = linear / 8 + 2 * m.vocab_size * m.hidden_size * 2 / 8
    assert r["fits"] and r["weight_bytes"] == pytest.approx(hand, rel=0.05)
    assert 70 * 2**30 < r["memory_bytes"] < 90 * 2**30


def test_every_library_workload_evaluates_on_every_library_device():
    """No error anywhere in the library grid; a model that does not fit says so (fits, min_devices)."""
    from codesign.hardware import list_hardware
    from codesign.workload import list_workloads
    workloads = list_workloads()
    assert len(workloads) >= 40
    for spec in list_hardware():
        for m in workloads:
            dec = m.architecture == "decoder"
            r = evaluate(spec, m, Scenario(batch=1, prompt=255 if dec else 128, generate=16 if dec else 0))
            # a model one device cannot hold says how many it needs (or that no count fits: NaN)
            need = r["min_devices"]
            assert r["fits"] or need > 1 or need != need, (spec.name, m.name)
            assert not (r["fits"] and need > 1), (spec.name, m.name)


def test_gpt_oss_120b_fits_one_h100_in_fp4_with_a_hand_checked_footprint():
    from codesign.compression import Compression
    m = load_workload("gpt-oss-120b")            # 36 layers alternating 128-token windows and full attention
    r = evaluate("h100-sxm", m, Scenario(batch=1, prompt=512, generate=128),
                 Compression(weight_bits=4, weight_format="fp4"))
    tables = 2 * m.vocab_size * m.hidden_size                          # embedding + LM head, 16-bit
    hand = (m.param_count() - tables) * 0.5 + tables * 2               # 4-bit linear weights (+ group scales)
    assert r["fits"] and r["weight_bytes"] == pytest.approx(hand, rel=0.05)
    # 18 full-attention layers cache 640 tokens, 18 windowed layers 128: x 8 KV heads x 64 x K,V x 2 bytes
    assert r["kv_bytes"] == pytest.approx((18 * 640 + 18 * 128) * 8 * 64 * 2 * 2)
