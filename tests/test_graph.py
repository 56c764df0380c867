"""Operator-graph totals against independent formulas."""
import pytest

from codesign.workload import Scenario, load_workload
from codesign.workload.graph import build_graph


def _total(ops, field):
    return sum(getattr(o, field) * o.count for o in ops)


def _embedding_params(m):
    return m.vocab_size * m.hidden_size


@pytest.mark.parametrize("name", ["llama-2-7b", "llama-3.1-8b", "mistral-7b", "llama-2-70b"])
def test_decode_flops_are_two_per_weight_plus_attention(name):
    m = load_workload(name)
    c, b = 1000, 2
    g = build_graph(m, Scenario(batch=b, prompt=c, generate=8))
    # 2 FLOPs per weight of every matrix except the embedding table (a gather), plus
    # 4·d·c per head per token for scores and context (Kaplan et al. 2020)
    weights = m.param_count() - _embedding_params(m)
    attn = 4 * m.num_layers * m.num_heads * m.hd * c
    expect = b * (2 * weights + attn)
    gemm_flops = sum(o.flops * o.count for o in g.decode if o.is_matrix)
    assert gemm_flops == pytest.approx(expect, rel=0.002)


def test_kv_cache_bytes_formula():
    m = load_workload("llama-2-70b")      # GQA: 8 KV heads
    c, b = 3000, 4
    g = build_graph(m, Scenario(batch=b, prompt=c, generate=8))
    kv_read = _total(g.decode, "kv_read_elems")
    assert kv_read == 2 * m.num_layers * m.kv_heads * m.hd * c * b
    # each step writes one token's K and V per layer
    assert _total(g.decode, "kv_write_elems") == 2 * m.num_layers * m.kv_heads * m.hd * b
    # the slope is one token of KV per step
    assert _total(g.decode, "d_kv_read_elems") == 2 * m.num_layers * m.kv_heads * m.hd * b
    at = [o.at_context(c + 100) for o in g.decode]
    assert _total(at, "kv_read_elems") == 2 * m.num_layers * m.kv_heads * m.hd * (c + 100) * b


def test_prefill_flops_causal_fused_vs_unfused():
    m = load_workload("llama-2-7b")
    p, b = 256, 1
    fused = build_graph(m, Scenario(batch=b, prompt=p, generate=1))
    unfused = build_graph(m, Scenario(batch=b, prompt=p, generate=1, attention="unfused"))
    norms = (2 * m.num_layers + 1) * m.hidden_size        # RMSNorm weights: no GEMM
    lin = m.param_count() - 2 * _embedding_params(m) - norms
    full_attn = 4 * m.num_layers * m.num_heads * m.hd * p * p
    head = 2 * b * m.hidden_size * m.vocab_size          # logits for the last token only
    f_fused = sum(o.flops * o.count for o in fused.prefill if o.is_matrix)
    f_unf = sum(o.flops * o.count for o in unfused.prefill if o.is_matrix)
    assert f_unf == pytest.approx(2 * b * p * lin + b * full_attn + head, rel=1e-6)
    # a fused causal kernel skips the masked half: (p+1)/(2p) of the square
    assert f_fused == pytest.approx(2 * b * p * lin + b * full_attn * (p + 1) / (2 * p) + head, rel=1e-6)
    names = [o.name for o in unfused.prefill]
    assert {"attn_score", "softmax", "attn_context"} <= set(names)


def test_tensor_parallel_shards_and_allreduces():
    m = load_workload("llama-2-7b")
    one = build_graph(m, Scenario(batch=1, prompt=64, generate=4))
    four = build_graph(m, Scenario(batch=1, prompt=64, generate=4, tp=4))
    w1 = sum(o.weight_elems * o.count for o in one.decode if o.kind == "gemm")
    w4 = sum(o.weight_elems * o.count for o in four.decode if o.kind == "gemm")
    assert w4 == pytest.approx(w1 / 4, rel=1e-3)
    ar = [o for o in four.decode if o.kind == "allreduce"]
    assert sum(o.count for o in ar) == 2 * m.num_layers
    assert all(o.elements == m.hidden_size and o.link_devices == 4 for o in ar)
    assert not [o for o in one.decode if o.kind == "allreduce"]


def test_moe_active_flops_match_active_params():
    m = load_workload("mixtral-8x7b")
    g = build_graph(m, Scenario(batch=1, prompt=16, generate=2))
    gemm = sum(o.flops * o.count for o in g.decode if o.kind == "gemm")
    active_linear = m.param_count(active=True) - _embedding_params(m)
    assert gemm == pytest.approx(2 * active_linear, rel=0.01)


def test_moe_combines_each_tokens_k_expert_outputs():
    """out[t] = sum_j w_tj * y_tj: one pass that reads the k expert outputs of every token and
    writes one vector (2k FLOPs per output element: a multiply and an add per expert)."""
    m = load_workload("mixtral-8x7b")
    g = build_graph(m, Scenario(batch=3, prompt=16, generate=2))
    k, h = m.moe.top_k, m.hidden_size
    comb = [o for o in g.prefill if o.name == "expert_combine"][0]
    assert comb.kind == "elementwise" and comb.count == m.num_layers
    assert comb.act_out_elems == 3 * 16 * h and comb.act_in_elems == k * 3 * 16 * h
    assert comb.flops == 2 * k * 3 * 16 * h
    assert not [o for o in build_graph(load_workload("llama-2-7b"), Scenario(batch=1, prompt=8, generate=2)).prefill
                if o.name == "expert_combine"]


def test_encoder_has_no_decode_and_uses_layernorm():
    m = load_workload("bert-base")
    g = build_graph(m, Scenario(batch=8, prompt=128, generate=0))
    assert g.decode == ()
    assert {o.impl for o in g.prefill if o.kind == "norm"} == {"layernorm"}
    assert not [o for o in g.prefill if o.name == "lm_head"]


def test_sliding_window_caps_attention():
    m = load_workload("mistral-7b")
    assert m.sliding_window
    long = build_graph(m, Scenario(batch=1, prompt=m.sliding_window * 2, generate=4))
    att = [o for o in long.decode if o.kind == "attention"][0]
    assert att.n == m.sliding_window and att.d_kv_read_elems == 0


def _score_flops(g):
    """Score-product FLOPs of the prompt pass (the unfused attn_score, or half the fused kernel's)."""
    return sum(o.flops * o.count / (2 if o.kind == "attention" else 1)
               for o in g.prefill if o.kind in ("attention", "attn_score"))


def test_unfused_prompt_passes_score_each_pass_rectangle():
    """llama.cpp without FlashAttention: pass k of q tokens multiplies its q queries by all k*q
    cached keys (the future ones masked, none skipped); the passes sum to q^2 n(n+1)/2 per head,
    not the whole prompt's square."""
    m = load_workload("llama-2-7b")
    p, q = 2048, 512
    sc = Scenario(batch=1, prompt=p, generate=1, attention="unfused", runtime="llama.cpp-cuda", ubatch=q)
    per_head = 2 * m.hd * sum(q * k * q for k in range(1, p // q + 1))
    assert _score_flops(build_graph(m, sc)) == pytest.approx(m.num_layers * m.num_heads * per_head, rel=1e-9)
    one_pass = sc.model_copy(update={"ubatch": p})
    assert _score_flops(build_graph(m, one_pass)) == pytest.approx(m.num_layers * m.num_heads * 2 * m.hd * p * p)
    # a fused kernel skips the masked tiles: the passes telescope to the whole causal prompt
    fused = sc.model_copy(update={"attention": "fused"})
    assert _score_flops(build_graph(m, fused)) == pytest.approx(
        m.num_layers * m.num_heads * 2 * m.hd * p * (p + 1) / 2, rel=1e-9)


def test_windowed_layers_score_their_cache_where_the_stack_skips_no_tile():
    """mistral-7b (window W = 4096), an 8192-token prompt in passes of q = 2048: a stack that
    skips the tiles outside the window scores W keys per query, at most, causal half
    of them on average ((W+1)/2); llama.cpp's windowed cache holds W + q cells and each pass
    scores its queries against min(k q, W + q) of them, less the masked half of its own block."""
    m = load_workload("mistral-7b")
    w, p, q = m.sliding_window, 8192, 2048
    assert w == 4096
    keys = sum(min(k * q, w + q) - q / 2 for k in range(1, p // q + 1)) / (p // q)
    assert keys == 3584
    heads = m.num_layers * m.num_heads * 2 * m.hd * p
    cache = Scenario(batch=1, prompt=p, generate=1, runtime="llama.cpp-cuda", ubatch=q)
    assert cache.window_scope == "cache"
    assert _score_flops(build_graph(m, cache)) == pytest.approx(heads * keys, rel=1e-9)
    window = cache.model_copy(update={"runtime": "generic"})
    assert _score_flops(build_graph(m, window)) == pytest.approx(heads * (w + 1) / 2, rel=1e-9)
