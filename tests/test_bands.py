"""Error bands from cross-validated residuals (issue 11)."""
import json

import pytest
from conftest import cli

from codesign.accuracy import bands


def _row(metric, measured, predicted, runtime="vllm", cls="gpu"):
    return {"metric": metric, "measured": measured, "predicted_cv": predicted, "population": "held-out",
            "class": cls, "runtime": runtime}


def test_quantiles_are_rate_oriented_and_need_enough_rows():
    # decode rates 10% .. 50% faster than predicted, and one latency row 2x slower than predicted
    rows = [_row("decode_tokens_per_s", 100 * (1 + k / 10), 100) for k in range(1, 6)]
    rows.append(_row("tpot_ms", 20.0, 10.0, runtime="llama.cpp-cuda"))
    table = bands.build(rows)
    cell = table["gpu/vllm/decode"]
    assert cell["n"] == 5 and cell["q10"] == pytest.approx(1.14) and cell["q90"] == pytest.approx(1.46)
    assert "gpu/llama.cpp-cuda/decode" not in table            # one row: no band of its own
    pooled = table["gpu/*/decode"]
    assert pooled["n"] == 6 and pooled["q10"] < 1.0            # the slow latency row counts as rate 0.5


def test_band_for_scales_rates_and_inverts_costs_and_falls_back():
    table = {"gpu/vllm/decode": {"q10": 0.8, "q90": 1.25, "n": 9}, "*/*/prefill": {"q10": 0.5, "q90": 2.0, "n": 30}}
    b = bands.band_for("gpu", "vllm", "decode_tokens_per_s", 100.0, table)
    assert (b["low"], b["high"], b["scope"]) == (pytest.approx(80.0), pytest.approx(125.0), "gpu/vllm/decode")
    t = bands.band_for("gpu", "vllm", "tpot_s", 0.01, table)     # a time: faster means shorter
    assert (t["low"], t["high"]) == (pytest.approx(0.008), pytest.approx(0.0125))
    assert bands.band_for("npu", "qnn", "ttft_s", 1.0, table)["scope"] == "*/*/prefill"
    assert bands.band_for("npu", "qnn", "avg_power_w", 5.0, table) == "unvalidated"
    assert bands.band_for("gpu", "vllm", "memory_bytes", 5.0, table) == "unvalidated"


def test_eval_json_carries_a_band_or_unvalidated_per_metric():
    from click.testing import CliRunner

    from codesign.cli import main
    res = CliRunner().invoke(main, ["eval", "-H", "h100-sxm", "-w", "llama-3.1-8b", "--runtime", "vllm", "--json"])
    assert res.exit_code == 0, res.output
    eb = json.loads(res.output)["error_band"]
    assert set(eb) >= {"tpot_s", "ttft_s", "throughput_tokens_per_s", "energy_per_token_j", "avg_power_w"}
    for m, b in eb.items():
        assert b == "unvalidated" or b["low"] <= b["high"], m
    res = CliRunner().invoke(main, ["compare", "-H", "h100-sxm,l4", "-w", "llama-3.1-8b", "--json"])
    assert res.exit_code == 0 and all("error_band" in r for r in json.loads(res.output))


def test_accuracy_writes_bands_and_refuses_without_cv(tmp_path):
    import csv

    import yaml

    from codesign.io import data_dir
    with open(data_dir("data") / "published-measurements.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if "(Metal)" in r["software_framework"]]
    mine = tmp_path / "metal.csv"
    with open(mine, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "b.yaml"
    cmd = ["accuracy", "--measurements", mine, "--bands", out]
    res = cli(*cmd, "--no-cv")
    assert res.returncode == 2 and "drop --no-cv" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()
    res = cli(*cmd, "--worst", "0")
    assert res.returncode == 0, res.stderr
    table = yaml.safe_load(out.read_text())["bands"]
    cell = table["gpu/llama.cpp-metal/decode"]
    assert cell["n"] >= 5 and cell["q10"] <= cell["q90"]
