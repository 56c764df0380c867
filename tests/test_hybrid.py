"""Hybrid models: layers of softmax attention interleaved with recurrent mixers (Gated DeltaNet,
Mamba-2), checked against hand calculations (issue 14, today's model families)."""
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import cli

from codesign.cli import main
from codesign.errors import CodesignError
from codesign.perf import footprint, op_times
from codesign.perf.footprint import state_bytes
from codesign.workload import Scenario, load_workload, workload_from_dict
from codesign.workload.graph import build_graph
from codesign.workload.hf import import_hf_config

HF = Path(__file__).parent / "fixtures" / "hf"
NEW = ("qwen3.5-0.8b", "qwen3.5-2b", "qwen3.5-4b", "qwen3.6-27b", "qwen3.5-35b-a3b",
       "nvidia-nemotron-3-nano-30b-a3b", "nemotron-3-super-120b-a12b", "llama-3.3-nemotron-super-49b")
_META = {"name", "display_name", "params", "active_params", "notes", "sources"}


def _total(ops, field, name=None):
    return sum(getattr(o, field) * o.count for o in ops if name is None or o.name == name)


# ------------------------------------------------------------ state sizes -----
def test_state_bytes_per_layer_and_sequence_by_hand():
    q = load_workload("qwen3.5-0.8b")                   # Gated DeltaNet: 16 value heads of 128, keys 16 x 128
    n = load_workload("nvidia-nemotron-3-nano-30b-a3b")  # Mamba-2: 64 heads of 64, state 128, 8 groups
    assert q.recurrent.state_bytes == 16 * 128 * 128 * 4 == 1_048_576          # heads x d_k x d_v, fp32
    assert n.recurrent.state_bytes == 64 * 64 * 128 * 4 == 2_097_152           # heads x head_dim x d_state
    # the causal convolution keeps conv_kernel - 1 = 3 inputs of each q/k/v (x/B/C) channel
    assert q.recurrent.conv_state_elems == 3 * (16 * 128 + 2 * 16 * 128) == 18_432
    assert n.recurrent.conv_state_elems == 3 * (64 * 64 + 2 * 8 * 128) == 18_432
    # per sequence: every recurrent layer's state, and its window at 2-byte activations
    assert q.recurrent_layers() == 18 and n.recurrent_layers() == 23
    assert state_bytes(q, 2.0) == 18 * (1_048_576 + 18_432 * 2)
    assert state_bytes(n, 2.0) == 23 * (2_097_152 + 18_432 * 2)
    # tensor parallelism splits heads and groups
    assert state_bytes(n, 2.0, tp=2) == 23 * (32 * 64 * 128 * 4 + 3 * (32 * 64 + 2 * 4 * 128) * 2)


def test_decode_reads_and_writes_the_state_once_per_token_prefill_once_per_chunk():
    q = load_workload("qwen3.5-0.8b")
    g = build_graph(q, Scenario(batch=3, prompt=1000, generate=8))
    # decode: 3 sequences x 16 heads x 128 x 128 x 4 B, read and written, in each of 18 layers
    assert _total(g.decode, "state_bytes") == 18 * 2 * 3 * 16 * 128 * 128 * 4
    # chunked prefill: once per chunk of 64 (ceil(1000 / 64) = 16 chunks) per request
    assert _total(g.prefill, "state_bytes") == 18 * 2 * 3 * 16 * 16 * 128 * 128 * 4
    # no KV cache in the recurrent layers: only the 6 attention layers write K and V
    assert _total(g.decode, "kv_write_elems") == 6 * 3 * 2 * 2 * 256


def test_recurrence_flops_by_hand():
    q = load_workload("qwen3.5-0.8b")
    g = build_graph(q, Scenario(batch=2, prompt=256, generate=8))
    d = 128
    # decode, gated delta rule: decay, S k, rank-1 update, S q = 7 d_k d_v per head and token
    assert _total(g.decode, "flops", "recurrence") == 18 * 2 * 16 * 7 * d * d
    # prefill, chunks of 64: 6 d_k d_v (W S, Q S, K^T U) + 2 x 64 x (3 d_k + 2 d_v) per head and token
    assert _total(g.prefill, "flops", "recurrence") == 18 * 2 * 256 * 16 * (6 * d * d + 2 * 64 * 5 * d)
    n = load_workload("nvidia-nemotron-3-nano-30b-a3b")
    g = build_graph(n, Scenario(batch=1, prompt=512, generate=8))
    assert _total(g.decode, "flops", "recurrence") == 23 * 64 * 5 * 128 * 64          # decay, dt x B^T, h C
    # SSD chunks of 128: states and outputs 4 N P, (L o C B^T) X 2 c P, C B^T 2 c N per group of 8 heads
    per = 4 * 128 * 64 + 2 * 128 * 64 + 2 * 128 * 128 * 8 / 64
    assert _total(g.prefill, "flops", "recurrence") == pytest.approx(23 * 512 * 64 * per)


def test_a_sequential_stack_scans_the_prompt_token_by_token():
    q = load_workload("qwen3.5-0.8b")                   # 18 Gated DeltaNet layers, 16 value heads of 128
    chunked = build_graph(q, Scenario(batch=2, prompt=1000, generate=8, runtime="vllm"))
    seq = build_graph(q, Scenario(batch=2, prompt=1000, generate=8, runtime="llama.cpp-cuda"))
    rec = next(o for o in seq.prefill if o.name == "recurrence")
    d = 128
    # the recurrent form once per token: 7 d_k d_v per head (as in decode), no intra-chunk products
    assert _total(seq.prefill, "flops", "recurrence") == 18 * 2 * 1000 * 16 * 7 * d * d
    # one chain of 1000 dependent steps per value column of each sequence
    assert (rec.serial_steps, rec.chains) == (1000, 2 * 16 * d)
    # the state is read and written once per 512-token pass (llama.cpp's n_ubatch), not per chunk
    assert _total(seq.prefill, "state_bytes") == 18 * 2 * 2 * 2 * 16 * d * d * 4
    assert all(o.serial_steps == 0 for o in chunked.prefill + seq.decode)
    # MLX scans Gated DeltaNet but chunks Mamba-2 (mlx-lm ssm_attn)
    n = load_workload("nvidia-nemotron-3-nano-30b-a3b")
    mlx = build_graph(n, Scenario(batch=1, prompt=512, generate=8, runtime="mlx"))
    assert all(o.serial_steps == 0 for o in mlx.prefill)


def test_a_sequential_scan_costs_a_memory_round_trip_per_token_and_wave():
    q = load_workload("qwen3.5-35b-a3b")                # 32 value heads of 128: 4096 column chains
    g = build_graph(q, Scenario(batch=1, prompt=1024, generate=1, runtime="llama.cpp-cuda", ubatch=1024))
    one = replace(next(o for o in g.prefill if o.name == "recurrence"), count=1)
    # RTX 5090: 170 SMs x 1536 threads hold 8160 warps, one wave: 1024 x 500 ns (GDDR7 default)
    # = 512 us, against 525.1 us measured for this shape (ggml-org/llama.cpp#22587, master)
    t5090 = float(op_times("rtx-5090", [one], runtime="llama.cpp-cuda")["time_s"].iloc[0])
    assert t5090 == pytest.approx(1024 * 500e-9, rel=0.02)
    assert abs(t5090 / 525.1e-6 - 1) < 0.05
    # Apple M4: 10 cores x 3072 threads hold 960 SIMD groups: 4096 chains need 5 waves at 400 ns
    tm4 = float(op_times("apple-m4", [one], runtime="mlx")["time_s"].iloc[0])
    assert tm4 == pytest.approx(5 * 1024 * 400e-9, rel=0.02)


def test_decode_gemm_weights_are_the_linear_parameters():
    q = load_workload("qwen3.5-0.8b")
    g = build_graph(q, Scenario(batch=1, prompt=64, generate=8))
    h = 1024
    attn = 6 * (h * 8 * 256 * 2 + 2 * h * 2 * 256 + 8 * 256 * h)        # gated q, k, v, o
    rec = 18 * (h * (2 * 2048 + 2 * 2048 + 2 * 16) + 2048 * h)          # in_proj (q k v z a b), out_proj
    ffn = 24 * 3 * h * 3584
    head = 248320 * h                                                   # tied: the embedding table
    gemm = sum(o.weight_elems * o.count for o in g.decode if o.kind == "gemm")
    assert gemm == attn + rec + ffn + head


def test_recurrent_decode_time_does_not_grow_with_context():
    m = load_workload("qwen3.5-4b")
    g = build_graph(m, Scenario(batch=8, prompt=1024, generate=8))
    rec = next(o for o in g.decode if o.name == "recurrence")
    conv = next(o for o in g.decode if o.name == "conv")
    att = next(o for o in g.decode if o.name == "attention")
    t = op_times("h100-sxm", [rec, rec.at_context(32768), conv, conv.at_context(32768),
                              att, att.at_context(32768)])["time_s"].tolist()
    assert t[0] == t[1] and t[2] == t[3]
    assert t[5] > 5 * t[4]


# ------------------------------------------------------------ footprint -------
def test_kv_footprint_counts_only_the_attention_layers():
    m = load_workload("qwen3.5-4b")         # 8 attention layers of 32, 4 KV heads x 256
    sc = Scenario(batch=4, prompt=4000, generate=96)
    _, kv, _ = footprint(m, sc, 2.0, 2.0, 2.0)
    attn = 4 * 8 * 4096 * 2 * 4 * 256 * 2
    state = 4 * 24 * (32 * 128 * 128 * 4 + 3 * (32 * 128 + 2 * 16 * 128) * 2)
    assert kv == attn + state
    # twice the context doubles only the attention layers' share
    _, kv2, _ = footprint(m, sc.model_copy(update={"prompt": 8096}), 2.0, 2.0, 2.0)
    assert kv2 - kv == attn
    # every beam is a sequence with its own state; the prompt's KV is shared
    _, kvb, _ = footprint(m, Scenario(batch=1, prompt=4000, generate=96, beams=3), 2.0, 2.0, 2.0)
    assert kvb == 8 * (4000 + 3 * 96) * 2 * 4 * 256 * 2 + 3 * state / 4


def test_serving_reserves_the_state_once_per_sequence():
    from codesign.perf.steps import step_cost
    from codesign.serve import make_requests, serve
    cost = step_cost("h100-sxm", "qwen3.5-0.8b", max_context=32768)
    per_token = 6 * 2 * 2 * 256 * 2                      # K and V of 2 heads x 256 in 6 attention layers
    assert cost.kv_bytes_per_token == per_token
    assert cost.state_tokens == math.ceil(18 * (1_048_576 + 18_432 * 2) / per_token) == 1590
    r = serve("h100-sxm", "qwen3.5-0.8b", make_requests(4.0, 20, seed=0, max_context=8192))
    assert r.summary["throughput_req_per_s"] > 0


# ------------------------------------------------------------ library ---------
# Published parameter counts, with what each includes (the text decoder: vision encoders and
# MTP modules are left out, as the figures do)
PUBLISHED = {  # total, active
    # llama.cpp's load report: model buffer at bits per weight -> parameters (SergiioB/portfolio
    # rk3588-qwen35 post @57224af4): 497.39 MiB / 5.55 BPW, 1211.05 MiB / 5.40, 2603.50 MiB / 5.19
    "qwen3.5-0.8b": (497.39 * 2**20 * 8 / 5.55, None),
    "qwen3.5-2b": (1211.05 * 2**20 * 8 / 5.40, None),
    "qwen3.5-4b": (2603.50 * 2**20 * 8 / 5.19, None),
    "qwen3.6-27b": (26.90e9, None),                # llama-bench: 'qwen35 27B Q4_K - Medium ... 26.90 B'
    "qwen3.5-35b-a3b": (34.66e9, None),            # llama-bench: 'qwen35moe 35B.A3B ... 34.66 B'
    "nvidia-nemotron-3-nano-30b-a3b": (31.6e9, 3.6e9),    # model card: 31.6B, 3.6B active incl. embeddings
    "nemotron-3-super-120b-a12b": (120.6e9, 12.7e9),      # tech report: 120.6B total, 12.7B active
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_hybrid_workloads_match_published_counts(name):
    m = load_workload(name)
    assert m.sources.get("params") and m.sources.get("architecture")
    total, active = PUBLISHED[name]
    assert m.param_count() == pytest.approx(total, rel=0.01)
    assert m.param_count() == pytest.approx(m.params, rel=0.01)
    if active:
        assert m.param_count(active=True) == pytest.approx(active, rel=0.01)
        assert m.param_count(active=True) == pytest.approx(m.active_params, rel=0.01)


def test_active_counts_without_the_embedding_lookup():
    # Nemotron 3 Nano model card: 3.2B active without embeddings (the LM head computes)
    nano = load_workload("nvidia-nemotron-3-nano-30b-a3b")
    assert nano.param_count(active=True) - 131072 * 2688 == pytest.approx(3.2e9, rel=0.01)
    # Qwen3.5-35B-A3B publishes only the name '3B activated' (one significant digit): 2.95B
    q = load_workload("qwen3.5-35b-a3b")
    assert q.param_count(active=True) - 248320 * 2048 == pytest.approx(3e9, rel=0.02)


def test_nemotron_super_49b_counts_its_released_tensors():
    """The NAS model's layers differ: the count must equal the sum over its block_configs."""
    cfg = json.loads((HF / "nemotron-nas" / "config.json").read_text())
    h, heads = 8192, 64
    total = 2 * 128256 * h + h
    for b in cfg["block_configs"]:
        if not b["attention"]["no_op"]:
            kv = heads // b["attention"]["n_heads_in_group"]
            total += 2 * h * heads * 128 + 2 * h * kv * 128 + h
        width = int(2 * b["ffn"]["ffn_mult"] * h / 3)
        width += (256 - width % 256) % 256
        total += 3 * h * width + h
    assert total == 49_867_145_216
    assert load_workload("llama-3.3-nemotron-super-49b").param_count() == pytest.approx(total, rel=1e-4)


# ------------------------------------------------------------ HF import -------
IMPORTS = {"qwen3_5": "qwen3.5-0.8b", "qwen3_5_text": "qwen3.5-4b", "qwen3_5_moe": "qwen3.5-35b-a3b",
           "qwen3_5_moe_text": "qwen3.5-35b-a3b", "nemotron_h": "nvidia-nemotron-3-nano-30b-a3b",
           "nemotron_h_super": "nemotron-3-super-120b-a12b", "nemotron-nas": "llama-3.3-nemotron-super-49b"}


@pytest.mark.parametrize("folder", sorted(IMPORTS))
def test_import_rebuilds_the_library_workload(folder):
    got, lib = import_hf_config(HF / folder / "config.json"), load_workload(IMPORTS[folder])
    assert got.model_dump(exclude=_META) == lib.model_dump(exclude=_META)
    assert got.param_count(active=True) == lib.param_count(active=True)


def test_qwen3_next_imports_with_its_published_total():
    m = import_hf_config(HF / "qwen3_next" / "config.json")
    # Qwen3-Next-80B-A3B model card: 80B in total; 48 layers, 3 Gated DeltaNet : 1 gated attention
    assert m.param_count() == pytest.approx(80e9, rel=0.01)
    assert m.block_counts() == {"M": 36, "*": 12, "E": 48}
    assert (m.recurrent.num_heads, m.recurrent.groups, m.moe.num_experts, m.moe.top_k) == (32, 16, 512, 10)


def test_import_reads_layer_types_and_mlp_only_layers():
    cfg = json.loads((HF / "qwen3_next" / "config.json").read_text())
    cfg.update(num_hidden_layers=4, layer_types=["linear_attention", "full_attention"] * 2, mlp_only_layers=[2])
    from codesign.workload.hf import hf_config_to_dict
    d = hf_config_to_dict(cfg)
    assert d["layer_pattern"] == "ME *E M- *E"


@pytest.mark.parametrize("folder, edit, words", [
    ("nemotron_h", {"hybrid_override_pattern": "MEX*"}, "hybrid_override_pattern"),
    ("qwen3_5", {"text_config.linear_num_key_heads": 5}, "groups (5) must divide num_heads (16)"),
    ("qwen3_5_text", {"linear_num_value_heads": "16"}, "linear_num_value_heads"),
    ("nemotron-nas", {"block_configs.3.ffn.replace_with_linear": True}, "block_configs[3]"),
])
def test_a_bad_field_is_one_line_and_exit_2(tmp_path, folder, edit, words):
    cfg = json.loads((HF / folder / "config.json").read_text())
    for key, value in edit.items():
        *path, last = key.split(".")
        node = cfg
        for k in path:
            node = node[int(k)] if k.isdigit() else node[k]
        node[last] = value
    f = tmp_path / "config.json"
    f.write_text(json.dumps(cfg))
    r = cli("workload", "import", f)
    assert r.returncode == 2, r.stderr
    assert words in r.stderr and str(f) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


# ------------------------------------------------------------ schema ----------
BASE = dict(name="h", hidden_size=256, num_layers=4, num_heads=4, ffn_size=512, vocab_size=1000,
            layer_pattern="M- *-", recurrent=dict(kind="gated_deltanet", num_heads=4, head_dim=32, state_size=32,
                                                  groups=2))


@pytest.mark.parametrize("change, words", [
    ({"recurrent": None}, "recurrent: required by the 'M' blocks"),
    ({"layer_pattern": None}, "recurrent: needs a layer_pattern"),
    ({"layer_pattern": "M- *- M-"}, "layer_pattern: 3 layers do not repeat evenly into num_layers (4)"),
    ({"layer_pattern": "M- M-"}, "layer_pattern: needs at least one attention block"),
    ({"layer_pattern": "ME *E", "moe": {"num_experts": 4, "top_k": 2, "every": 2}}, "moe: with a layer_pattern"),
    ({"layer_pattern": "M- *X"}, "layer_pattern"),
    ({"sliding_window": 128}, "sliding_window: not supported together with a layer_pattern"),
    ({"recurrent": dict(kind="mamba2", num_heads=8, head_dim=32, state_size=16, groups=3)},
     "groups (3) must divide num_heads (8)"),
    ({"recurrent": dict(kind="mamba2", num_heads=8, head_dim=32, state_size=16, groups=1, expand=2)},
     "num_heads x head_dim (256) must be expand x hidden_size (512)"),
])
def test_bad_hybrid_specs_name_the_field(change, words):
    with pytest.raises(CodesignError, match=words.replace("(", r"\(").replace(")", r"\)")) as e:
        workload_from_dict({**BASE, **change}, "h.yaml")
    assert "\n" not in str(e.value)


def test_a_pattern_without_spaces_is_one_block_per_layer():
    m = workload_from_dict({**BASE, "num_layers": 6, "layer_pattern": "M*-"}, "h.yaml")
    assert m.layers() == ("M", "*", "-", "M", "*", "-") and m.kv_tokens(100) == 2 * 100
    # per block one pre-norm: two recurrent blocks, two attention blocks, two FFNs
    assert m.param_count() == (2 * m.block_params("M") + 2 * m.block_params("*") + 2 * m.block_params("-")
                               + 2 * 1000 * 256 + 256)


# ------------------------------------------------------------ CLI -------------
@pytest.mark.parametrize("name", NEW)
def test_eval_runs_on_h100_and_rk3588(name):
    for hw in ("h100-sxm", "rk3588-npu"):
        r = CliRunner().invoke(main, ["eval", "-H", hw, "-w", name])
        assert r.exit_code == 0, r.output
        m = load_workload(name)
        from codesign.perf import evaluate
        fits = bool(evaluate(hw, m, Scenario())["fits"])
        assert fits or "does not fit" in r.output, (hw, name)
