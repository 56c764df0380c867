"""Kernel runner, host calibration, validation and quantization numerics (no timing assertions)."""
from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from codesign.errors import CodesignError
from codesign.validate import kernels as K
from codesign.validate.runner import check_block, check_op, layer_ops, plan_layer, run_block, run_op, runnable_op
from codesign.workload import Scenario, workload_from_dict
from codesign.workload.graph import build_graph
from codesign.workload.ops import Op

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed (pip install 'codesign[torch]')")

P, D = "prefill", "decode"


def _vec(kind, impl, elements, inputs=1, **kw):
    return Op(name=kind, kind=kind, phase=P, impl=impl, elements=elements, act_in_elems=inputs * elements,
              act_out_elems=elements, **kw)


# one op of every kind and variant, small shapes, in the graph's conventions
OPS = [
    Op(name="gemm", kind="gemm", phase=P, m=24, n=40, k=72, flops=2 * 24 * 40 * 72),
    Op(name="gemv", kind="gemm", phase=D, m=1, n=96, k=64),
    Op(name="experts", kind="gemm", phase=P, batch=3, m=5, n=16, k=32),
    # decode attention over a KV cache, GQA-packed rows (batch = KV heads, m = group)
    Op(name="attn_score", kind="attn_score", phase=D, batch=2, m=4, n=50, k=16, kv_read_elems=2 * 50 * 16),
    Op(name="attn_context", kind="attn_context", phase=D, batch=2, m=4, n=16, k=50, kv_read_elems=2 * 50 * 16),
    # runner-level grouping: batch = query heads, KV read once per KV head (g = 4)
    Op(name="attn_score_g", kind="attn_score", phase=D, batch=8, m=1, n=30, k=16, kv_read_elems=2 * 30 * 16),
    Op(name="attention_dec", kind="attention", phase=D, impl="fused", batch=2, m=4, n=33, k=16,
       flops=4.0 * 2 * 4 * 33 * 16, kv_read_elems=2 * 2 * 33 * 16),
    # causal prefill, GQA-packed: m = group (3) x positions (20), n = 20 (flops count half the keys)
    Op(name="attention_causal", kind="attention", phase=P, impl="fused", batch=2, m=60, n=20, k=16,
       flops=4.0 * 2 * 60 * 10.5 * 16),
    # bidirectional (encoder) prefill: full FLOPs
    Op(name="attention_enc", kind="attention", phase=P, impl="fused", batch=3, m=20, n=20, k=8,
       flops=4.0 * 3 * 20 * 20 * 8),
    Op(name="softmax", kind="softmax", phase=P, impl="softmax", m=12, n=37, elements=12 * 37),
    Op(name="rmsnorm", kind="norm", phase=P, impl="rmsnorm", m=7, n=64, elements=7 * 64),
    Op(name="layernorm", kind="norm", phase=P, impl="layernorm", m=7, n=64, elements=7 * 64),
    *[_vec("activation", a, 1000) for a in ("silu", "gelu", "gelu_tanh", "relu", "relu2")],
    _vec("elementwise", "add", 999, inputs=2),
    _vec("elementwise", "mul", 999, inputs=2),
    _vec("elementwise", "add", 500, inputs=3),      # parallel-block residual: x + attn + ffn
    Op(name="embedding", kind="embedding", phase=P, m=9, n=32, elements=9 * 32),
    Op(name="rope", kind="rope", phase=P, impl="rope", m=6, k=16, elements=5 * 6 * 16),
]
IDS = [f"{o.name}-{o.impl}" if o.impl else o.name for o in OPS]


@pytest.mark.parametrize("op", OPS, ids=IDS)
@pytest.mark.parametrize("dtype", ["fp64", "fp32", "fp16"])
def test_numpy_kernels_match_float64_reference(op, dtype):
    r = check_op(op, backend="numpy", dtype=dtype)
    assert r["ok"], r


@needs_torch
@pytest.mark.parametrize("op", OPS, ids=IDS)
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_torch_kernels_match_float64_reference(op, dtype):
    r = check_op(op, backend="torch", dtype=dtype)
    assert r["ok"], r


def test_reference_is_independent_of_the_kernels():
    """Spot-check the reference itself against hand-computed values."""
    x = np.array([[1.0, 2.0, 3.0]])
    sm = K.reference(Op(name="s", kind="softmax", phase=P, m=1, n=3, elements=3), x[None])
    assert np.allclose(sm, np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum())
    rms = K.reference(Op(name="n", kind="norm", phase=P, impl="rmsnorm", m=1, n=3), x, np.ones(3))
    assert np.allclose(rms, x / math.sqrt((1 + 4 + 9) / 3 + K.EPS))
    # causal: the first query row of each group attends only key 0 -> returns V[0]
    op = OPS[7]
    q = np.random.default_rng(0).standard_normal((2, 60, 16))
    kv = np.random.default_rng(1).standard_normal((2, 20, 16))
    out = K.reference(op, q, kv, kv)
    assert np.allclose(out[:, 0], kv[:, 0]) and np.allclose(out[:, 20], kv[:, 0])


def test_int8_gemm_numpy_is_exact():
    op = Op(name="q", kind="gemm", phase=P, m=16, n=24, k=64)
    r = check_op(op, backend="numpy", dtype="int8")
    assert r["rel_error"] == 0.0


@needs_torch
def test_int8_gemm_torch_cpu_dynamic_quantization():
    op = Op(name="q", kind="gemm", phase=P, m=16, n=32, k=64)
    r = check_op(op, backend="torch", dtype="int8")
    assert 0 < r["rel_error"] < 0.05     # per-tensor uint8 activations (fbgemm): ~1-3%, not exact


def test_bad_requests_give_one_clear_error():
    with pytest.raises(CodesignError, match="no bf16.*--backend torch"):
        check_op(OPS[0], backend="numpy", dtype="bf16")
    with pytest.raises(CodesignError, match="int8 is supported for gemm only"):
        check_op(OPS[9], backend="numpy", dtype="int8")
    with pytest.raises(CodesignError, match="collectives"):
        run_op(Op(name="ar", kind="allreduce", phase=P, elements=10))
    with pytest.raises(CodesignError, match="backend must be numpy or torch"):
        run_op(OPS[0], backend="jax")
    with pytest.raises(CodesignError, match="needs m, n, k"):
        check_op(Op(name="g", kind="gemm", phase=P, m=0, n=3, k=3))


def test_torch_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)       # import torch -> ImportError
    with pytest.raises(CodesignError, match=r"PyTorch is not installed: pip install 'codesign\[torch\]'"):
        run_op(OPS[0], backend="torch")


# -- the transformer block ------------------------------------------------------------

def _tiny(**over):
    base = dict(name="tiny-llama", hidden_size=128, num_layers=2, num_heads=8, num_kv_heads=2, ffn_size=256,
                vocab_size=500)
    return workload_from_dict({**base, **over})


TINY = {
    "gqa-rope-gated": _tiny(),
    "mha-bert-postnorm": _tiny(name="tiny-bert", architecture="encoder", num_kv_heads=8, norm="layernorm",
                               activation="gelu", ffn_type="plain", position="learned", max_position=64),
    "parallel-gptj": _tiny(name="tiny-gptj", num_kv_heads=8, parallel_block=True, activation="gelu_tanh",
                           ffn_type="plain", norm="layernorm"),
}


def _layer(model, phase, attention="fused", batch=2, prompt=12):
    g = build_graph(model, Scenario(batch=batch, prompt=prompt, generate=1, dtype="fp32", attention=attention))
    return layer_ops(g.phase(phase))


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("phase", [P, D])
@pytest.mark.parametrize("attention", ["fused", "unfused"])
def test_block_forward_equals_composition_of_references(name, phase, attention):
    model = TINY[name]
    if model.architecture == "encoder" and phase == D:
        pytest.skip("encoders have no decode phase")
    r = check_block(_layer(model, phase, attention), backend="numpy", dtype="fp32")
    assert r["ok"], r


@needs_torch
@pytest.mark.parametrize("phase", [P, D])
def test_block_forward_torch(phase):
    r = check_block(_layer(TINY["gqa-rope-gated"], phase), backend="torch", dtype="fp32")
    assert r["ok"], r


def test_block_plan_reads_dimensions_back_from_ops():
    p = plan_layer(_layer(TINY["gqa-rope-gated"], D, batch=3, prompt=20))
    assert (p.requests, p.q_len, p.context, p.q_heads, p.kv_heads, p.head_dim, p.ffn) == (3, 1, 20, 8, 2, 16, 256)
    assert p.group == 4 and p.pre_norm and p.gated and not p.parallel


def test_block_rejects_moe_layer():
    moe = _tiny(moe={"num_experts": 4, "top_k": 2})
    g = build_graph(moe, Scenario(batch=1, prompt=8, generate=1, dtype="fp32"))
    ops = [o for o in g.prefill if o.kind != "allreduce"]
    with pytest.raises(CodesignError, match="MoE"):
        plan_layer(ops)


def test_run_block_and_run_op_measure_something():
    lay = _layer(TINY["gqa-rope-gated"], D)
    m = run_block(lay, max_time=0.01, min_samples=2, sample_s=0.001)
    assert m.seconds > 0 and m.timing.samples >= 2 and m.timing.p10_s <= m.timing.p90_s
    mo = run_op(runnable_op(lay[0]), max_time=0.01, min_samples=2, sample_s=0.001)
    assert mo.timing.min_s <= mo.seconds <= mo.timing.max_s and mo.timing.pool >= 2


# -- timing helpers ----------------------------------------------------------------

def test_pool_is_larger_than_the_llc_by_the_cold_factor():
    from codesign.validate.runner import cold_sets
    from codesign.validate.timing import COLD_FACTOR, pool_size
    llc = 32 * 2**20
    assert pool_size(1 * 2**20, llc) == math.ceil(COLD_FACTOR * 32) + 1
    assert pool_size(10, llc) == 32768                      # capped
    assert cold_sets(int(COLD_FACTOR * llc), llc) == 1       # one set already streams past the LLC
    assert cold_sets(2**20, llc) * 2**20 >= COLD_FACTOR * llc


def test_fit_affine_recovers_a_line_and_clamps():
    from codesign.validate.calibrate import fit_affine
    x = np.array([1e3, 1e4, 1e5, 1e6])
    a, b = fit_affine(x, 2e-6 + 3e-10 * x)
    assert a == pytest.approx(2e-6, rel=1e-6) and b == pytest.approx(3e-10, rel=1e-6)
    a, b = fit_affine(x, 5e-10 * x)                          # no intercept
    assert a == pytest.approx(0, abs=1e-12) and b == pytest.approx(5e-10, rel=1e-6)
    a, b = fit_affine(x, np.full(4, 1e-6))                   # no slope
    assert b == pytest.approx(0, abs=1e-15) and a == pytest.approx(1e-6)


def test_cache_sizes_are_read_from_sysfs(tmp_path):
    from codesign.validate.host import caches
    for i, (lvl, typ, size, shared) in enumerate([(1, "Data", "32K", "0"), (1, "Instruction", "32K", "0"),
                                                  (2, "Unified", "512K", "0"), (3, "Unified", "32768K", "0-1")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        for f, v in (("level", lvl), ("type", typ), ("size", size), ("shared_cpu_list", shared)):
            (d / f).write_text(f"{v}\n")
    c = caches(tmp_path)
    assert [(x.level, x.capacity, x.shared_cpus) for x in c] == [(1, 32768, 1), (2, 524288, 1), (3, 2**25, 2)]


# -- calibration and validation ------------------------------------------------------

@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "host.yaml"
    from codesign.cli import main
    res = CliRunner().invoke(main, ["calibrate", "--quick", "--quiet", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_calibrate_writes_a_spec_that_loads_and_cites_every_figure(calibrated):
    from codesign.cli import main
    from codesign.hardware import load_hardware
    spec = load_hardware(calibrated)
    assert spec.device_class == "cpu" and spec.unsourced() == []
    assert all(s.kind == "measured" for s in spec.sources.values())
    assert spec.compute.matrix.peak["fp32"] > spec.compute.vector.peak["fp32"] > 0
    assert spec.kernel_overhead > 0 and spec.compute.vector.transcendental > 0
    assert [m.name for m in spec.memory][0] == "DRAM" and spec.memory[-1].name == "L1"
    for key in ("gemm", "gemm.skinny", "softmax", "norm.rmsnorm", "activation.silu", "elementwise.add",
                "attention", "attn_score", "attn_context", "embedding", "rope"):
        assert key in spec.kernels and spec.kernels[key].calls >= 1
    res = CliRunner().invoke(main, ["hardware", "check", "--strict", str(calibrated)])
    assert res.exit_code == 0, res.output


HAS_ENGINE = importlib.util.find_spec("codesign.perf") is not None


@pytest.mark.skipif(not HAS_ENGINE, reason="codesign.perf (the engine) is not importable yet")
def test_validate_runs_end_to_end_on_three_kernels(calibrated, tmp_path, monkeypatch):
    import yaml

    from codesign.cli import main
    from codesign.validate import compare
    model = tmp_path / "tiny.yaml"
    model.write_text(yaml.safe_dump(TINY["gqa-rope-gated"].model_dump(exclude_none=True)))
    shapes = (compare.ShapeSet(str(model), D, 64, names=("qkv_proj", "attention", "ffn_norm"), block=True),)
    df, rep = compare.validate(calibrated, shapes=shapes, max_time=0.01)
    assert len(df) == 3 and set(df["kind"]) == {"gemm", "attention", "norm"}
    assert set(compare.VALIDATION_COLUMNS) <= set(df.columns)
    err = 100 * (df["predicted_s"] - df["measured_s"]) / df["measured_s"]
    assert np.allclose(err, df["error_pct"])
    assert rep["overall_mape_pct"] == pytest.approx(np.mean(np.abs(err)))
    assert len(rep["blocks"]) == 1 and rep["blocks"][0]["measured_s"] > 0
    # the CLI: table, CSV, plot, last line
    monkeypatch.setitem(compare.SHAPE_SETS, "quick", shapes)
    csv, png = tmp_path / "v.csv", tmp_path / "v.png"
    res = CliRunner().invoke(main, ["validate", "--hardware", str(calibrated), "--max-time", "0.01", "--quiet",
                                    "--csv", str(csv), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("overall MAPE: ") and last.endswith("%")
    assert csv.stat().st_size > 0 and png.stat().st_size > 0


# -- quantization numerics -----------------------------------------------------------

def test_quantized_gemm_error_falls_with_bits_and_smaller_groups():
    from codesign.quantize import measured_gemm_error
    kw = dict(k=1024, n=128, m=32)
    e = {(b, g): measured_gemm_error(b, g, **kw)["rel_error"] for b in (8, 4) for g in (None, 128, 32)}
    assert e[(8, None)] < e[(4, None)] and e[(8, 128)] < e[(4, 128)]
    assert e[(4, 32)] < e[(4, 128)] < e[(4, None)]
    assert e[(8, 32)] < e[(8, 128)] < e[(8, None)]
    again = measured_gemm_error(4, 128, **kw)
    assert again["rel_error"] == e[(4, 128)]                     # deterministic seed


def test_quantized_gemm_matches_uniform_noise_closed_form_on_gaussian_weights():
    from codesign.quantize import measured_gemm_error
    for bits in (8, 4):
        r = measured_gemm_error(bits, 64, k=1024, n=128, m=64, dist="gaussian", outlier_frac=0.0)
        assert r["sqnr_db"] == pytest.approx(r["predicted_sqnr_db"], abs=0.5)
        assert r["sqnr_db"] == pytest.approx(-20 * math.log10(r["rel_error"]))
    # 6 dB per bit: int8 vs int4 differ by ~24 dB
    d = (measured_gemm_error(8, 64, k=1024, n=128, dist="gaussian", outlier_frac=0)["sqnr_db"]
         - measured_gemm_error(4, 64, k=1024, n=128, dist="gaussian", outlier_frac=0)["sqnr_db"])
    assert 22 < d < 26


def test_quantization_bad_input():
    from codesign.quantize import measured_gemm_error
    with pytest.raises(CodesignError, match="group_size 48 must divide"):
        measured_gemm_error(4, 48, k=1024)
    with pytest.raises(CodesignError, match="bits must be between"):
        measured_gemm_error(1)
