"""Hugging Face config import for today's families (issue 14): hand-written configs after
the public config.json files; the import must rebuild the library workload exactly."""
import pytest

from codesign.errors import CodesignError
from codesign.workload import load_workload, workload_from_dict
from codesign.workload.hf import SUPPORTED_MODEL_TYPES, hf_config_to_dict

CONFIGS = {
    "gpt-oss-120b": {"model_type": "gpt_oss", "hidden_size": 2880, "num_hidden_layers": 36,
                     "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 64,
                     "intermediate_size": 2880, "num_local_experts": 128, "num_experts_per_tok": 4,
                     "vocab_size": 201088, "sliding_window": 128,
                     "layer_types": ["sliding_attention", "full_attention"] * 18, "attention_bias": True,
                     "tie_word_embeddings": False, "max_position_embeddings": 131072},
    "qwen3-8b": {"model_type": "qwen3", "hidden_size": 4096, "num_hidden_layers": 36, "num_attention_heads": 32,
                 "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 12288, "vocab_size": 151936,
                 "tie_word_embeddings": False, "max_position_embeddings": 40960, "hidden_act": "silu",
                 "attention_bias": False},
    "qwen3-30b-a3b": {"model_type": "qwen3_moe", "hidden_size": 2048, "num_hidden_layers": 48,
                      "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
                      "intermediate_size": 6144, "moe_intermediate_size": 768, "num_experts": 128,
                      "num_experts_per_tok": 8, "decoder_sparse_step": 1, "mlp_only_layers": [],
                      "vocab_size": 151936, "tie_word_embeddings": False, "max_position_embeddings": 40960},
    "gemma-2-2b": {"model_type": "gemma2", "hidden_size": 2304, "num_hidden_layers": 26, "num_attention_heads": 8,
                   "num_key_value_heads": 4, "head_dim": 256, "intermediate_size": 9216, "vocab_size": 256000,
                   "max_position_embeddings": 8192, "sliding_window": 4096,
                   "hidden_activation": "gelu_pytorch_tanh"},
    "gemma-3-1b": {"model_type": "gemma3_text", "hidden_size": 1152, "num_hidden_layers": 26,
                   "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256, "intermediate_size": 6912,
                   "vocab_size": 262144, "max_position_embeddings": 32768, "sliding_window": 512,
                   "sliding_window_pattern": 6, "hidden_activation": "gelu_pytorch_tanh"},
    "deepseek-v3": {"model_type": "deepseek_v3", "hidden_size": 7168, "intermediate_size": 18432,
                    "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128,
                    "vocab_size": 129280, "max_position_embeddings": 163840, "n_routed_experts": 256,
                    "num_experts_per_tok": 8, "n_shared_experts": 1, "first_k_dense_replace": 3,
                    "moe_layer_freq": 1, "moe_intermediate_size": 2048, "q_lora_rank": 1536, "kv_lora_rank": 512,
                    "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
                    "tie_word_embeddings": False},
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_import_rebuilds_the_library_workload(name):
    got = workload_from_dict(hf_config_to_dict(CONFIGS[name], name=name))
    lib = load_workload(name)
    assert got.param_count() == lib.param_count()
    assert got.param_count(active=True) == lib.param_count(active=True)
    assert got.kv_tokens(20000) == lib.kv_tokens(20000) and got.kv_per_token_layer == lib.kv_per_token_layer


def test_new_families_are_listed_and_missing_fields_name_the_key():
    assert {"qwen3", "qwen3_moe", "qwen2_moe", "gemma2", "gemma3_text", "deepseek_v2", "deepseek_v3",
            "olmo2", "gpt_oss", "falcon", "chatglm", "internlm2"} <= set(SUPPORTED_MODEL_TYPES)
    cfg = dict(CONFIGS["deepseek-v3"])
    del cfg["kv_lora_rank"]
    with pytest.raises(CodesignError, match="kv_lora_rank: required field is missing"):
        hf_config_to_dict(cfg)
    moe = dict(CONFIGS["qwen3-30b-a3b"], model_type="qwen2_moe", shared_expert_intermediate_size=1000)
    with pytest.raises(CodesignError, match="shared_expert_intermediate_size"):
        hf_config_to_dict(moe)


@pytest.mark.parametrize("folder, total, active", [
    ("qwen2_moe", 14.3e9, 2.7e9),      # Qwen1.5-MoE-A2.7B model card: 14.3B total, 2.7B activated
    ("olmo2", 7.30e9, 7.30e9),         # OLMo-2-1124-7B: 7.30B
    ("deepseek_v2", 15.7e9, 2.4e9),    # DeepSeek-V2-Lite (active without the input embedding)
    ("falcon", 6.92e9, 6.92e9),        # Falcon-7B: multi-query, parallel attention and MLP
    ("chatglm", 6.24e9, 6.24e9),       # ChatGLM3-6B: 2 KV groups, RoPE on half of each head
    ("internlm2", 7.74e9, 7.74e9),     # InternLM2-7B
])
def test_fixture_configs_match_published_totals(folder, total, active):
    from pathlib import Path

    from codesign.workload.hf import import_hf_config
    m = import_hf_config(Path(__file__).parent / "fixtures" / "hf" / folder / "config.json")
    assert m.param_count() == pytest.approx(total, rel=0.01)
    lookup = m.vocab_size * m.hidden_size if folder == "deepseek_v2" else 0
    assert m.param_count(active=True) - lookup == pytest.approx(active, rel=0.03)


def test_layer_types_must_be_a_regular_pattern():
    cfg = dict(CONFIGS["gpt-oss-120b"], layer_types=["full_attention"] + ["sliding_attention"] * 35)
    with pytest.raises(CodesignError, match="layer_types"):
        hf_config_to_dict(cfg)


def test_imported_sources_name_no_local_absolute_path(tmp_path):
    """A written spec travels: its source is the hub name, else the config's folder/file."""
    import json
    from pathlib import Path
    path = (Path(__file__).parent / "fixtures" / "hf" / "qwen3" / "config.json").resolve()
    cfg = json.loads(path.read_text())
    src = hf_config_to_dict(cfg, path)["sources"]["architecture"]
    assert str(path) not in src
    cfg.pop("_name_or_path", None)
    src = hf_config_to_dict(cfg, path)["sources"]["architecture"]
    assert src.endswith("qwen3/config.json") and str(path.parent.parent) not in src
