"""Hostile and impossible input: YAML aliases, duplicate keys, huge files, layouts a model cannot take (issue 15)."""
import time
from pathlib import Path

import pytest
from conftest import cli

from codesign.errors import CodesignError
from codesign.io import MAX_YAML_BYTES, read_yaml

BOMB = "".join(f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9) if i else ','.join(['x'] * 9)}]\n" for i in range(9))


def test_alias_bomb_is_refused_quickly(tmp_path):
    f = tmp_path / "bomb.yaml"
    f.write_text("name: bomb\n" + BOMB)
    t0 = time.monotonic()
    with pytest.raises(CodesignError, match="anchors and aliases"):
        read_yaml(f)
    assert time.monotonic() - t0 < 5


def test_duplicate_keys_are_named(tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text("name: a\nclass: gpu\nname: b\n")
    with pytest.raises(CodesignError, match="duplicate key 'name'"):
        read_yaml(f)


def test_oversized_file_is_refused_before_parsing(tmp_path):
    f = tmp_path / "big.yaml"
    f.write_text("name: x\nnotes: '" + "y" * (MAX_YAML_BYTES + 10) + "'\n")
    with pytest.raises(CodesignError, match="MB"):
        read_yaml(f)


@pytest.mark.parametrize("args", [["hardware", "show"], ["study", "run"]])
def test_cli_exits_2_with_one_line(tmp_path, args):
    f = tmp_path / "bomb.yaml"
    f.write_text("name: bomb\n" + BOMB)
    r = cli(*args, f)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_long_values_are_cut_in_messages():
    from codesign.units import UnitError, parse_quantity
    with pytest.raises(UnitError) as e:
        parse_quantity("9" * 100_000 + " parsecs", "bandwidth")
    assert len(str(e.value)) < 400


@pytest.mark.parametrize("flags, words", [
    (["--tp", "3"], "must divide the 32 attention heads"),
    (["--pp", "100"], "exceeds the 32 layers"),
    (["--distill-to", "llama-3.1-70b"], "is larger than"),
])
def test_impossible_layouts_are_refused(flags, words):
    r = cli("eval", "-H", "h100-sxm", "-w", "llama-3.1-8b", *flags)
    assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_tp_beyond_kv_heads_replicates_them_with_a_note():
    from codesign.perf import evaluate
    from codesign.workload import Scenario
    r = evaluate("h100-sxm", "llama-3.1-8b", Scenario(tp=16))
    assert "replicated on 2 devices" in r["notes"]
    with pytest.raises(CodesignError, match="ep=4"):
        evaluate("h100-sxm", "llama-3.1-8b", Scenario(tp=4, ep=4))


def _one_line(r) -> bool:
    return r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_ordinary_bad_paths_are_one_line_exit_2(tmp_path):
    missing = tmp_path / "no" / "out.csv"
    r = cli("eval", "-H", "h100-sxm", "-w", "llama-3.1-8b", "--csv", missing)
    assert _one_line(r) and "folder does not exist" in r.stderr
    r = cli("eval", "-H", "h100-sxm", "-w", "llama-3.1-8b", "--compression", tmp_path / "nope.yaml")
    assert _one_line(r) and "file not found" in r.stderr
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    r = cli("workload", "import", deep, "--out", tmp_path / "x.yaml")
    assert _one_line(r) and "nested too deeply" in r.stderr
    cfg = tmp_path / "config.json"
    cfg.write_text("{}")
    r = cli("workload", "import", cfg, "--out", tmp_path / "no" / "x.yaml")
    assert _one_line(r) and "folder does not exist" in r.stderr


def test_a_non_mapping_yaml_in_a_user_folder_does_not_break_the_library(tmp_path):
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    env = {"CODESIGN_HARDWARE_PATH": str(tmp_path)}
    assert cli("eval", "-H", "h100-sxm", "-w", "llama-3.1-8b", "--no-ops", env=env).returncode == 0
    r = cli("eval", "-H", "bad", "-w", "llama-3.1-8b", env=env)
    assert _one_line(r) and "expected a YAML mapping" in r.stderr


def test_a_grid_too_fine_is_refused(tmp_path):
    import yaml
    study = {"name": "g", "hardware": "rk3588-npu",
             "space": {"compute.clock": {"type": "float", "low": "0.6 GHz", "high": "1.4 GHz", "step": "1 Hz"}},
             "workloads": [{"workload": "llama-3.2-1b", "batch": 1, "prompt": 16, "generate": 4}],
             "objectives": ["tpot_s"], "sampler": {"name": "grid"}, "trials": 5}
    f = tmp_path / "g.yaml"
    f.write_text(yaml.safe_dump(study))
    r = cli("study", "run", f, "--storage", tmp_path / "g.journal", "--no-progress")
    assert _one_line(r) and "use a larger 'step'" in r.stderr


def test_compare_says_when_a_device_cannot_hold_the_model():
    r = cli("compare", "-H", "h100-sxm,h200", "-w", "llama-3.1-70b")
    assert r.returncode == 0
    tpot = next(line for line in r.stdout.splitlines() if line.startswith("time/token"))
    assert "does not fit (needs 2)" in tpot and " ms" in tpot


def test_validate_refuses_a_spec_not_measured_here(tmp_path):
    """The kernel runner times this machine: a GPU's predictions must not be 'validated' by it."""
    r = cli("validate", "--hardware", "h100-sxm")
    assert _one_line(r) and "codesign calibrate" in r.stderr and "--any-spec" in r.stderr
    r = cli("validate", "--hardware", "h100-sxm", "--csv", tmp_path / "no" / "v.csv")
    assert _one_line(r) and "folder does not exist" in r.stderr


@pytest.mark.parametrize("args", [("eval", "-H", "h100-sxm", "-w", "llama-3.1-8b", "--batch", "x"),
                                  ("eval", "--bogus"), ("nosuch",), ("serve", "-w", "llama-3.1-8b")])
def test_usage_errors_are_one_line(args):
    r = cli(*args)
    assert _one_line(r) and r.stderr.startswith("error: codesign") and "--help" in r.stderr


def test_edge_values_get_a_clear_line_or_note():
    r = cli("eval", "-H", "h100-sxm", "-w", "llama-3.1-8b", "--group-size", "64")
    assert _one_line(r) and "--group-size" in r.stderr and "--weight-bits" in r.stderr
    r = cli("eval", "-H", "h100-sxm", "-w", "llama-3.1-8b", "--prompt", "200000", "--no-ops")
    assert r.returncode == 0 and "exceed the 131072 positions" in r.stdout
    r = cli("compare", "-H", "alveo-u280,h100-sxm", "-w", "llama-3.2-1b")
    assert r.returncode == 0 and "n/a (no price)" in r.stdout and " nan " not in r.stdout
    r = cli("eval", "-H", "h100-sxm", "-w", "llama-3.1-8b", "--json")
    assert '"min_devices": 1,' in r.stdout


def test_an_absurd_kernel_overhead_is_a_unit_slip(tmp_path):
    spec = tmp_path / "h.yaml"
    text = (Path(__file__).resolve().parents[1] / "hardware_specs" / "gpu" / "h100-sxm.yaml").read_text()
    spec.write_text("\n".join(ln for ln in text.splitlines() if not ln.startswith("kernel_overhead:"))
                    + "\nkernel_overhead: 1e9 s\n")
    r = cli("eval", "-H", spec, "-w", "llama-3.1-8b")
    assert _one_line(r) and "kernel_overhead" in r.stderr


@pytest.mark.parametrize("args, words", [
    (("--grid", "1x512,abc"), "--grid: expected BATCHxPROMPT"),
    (("--grid", "1x512", "--device", "cuda"), "cuda"),
    ((), "--workload"),
])
def test_e2e_validation_bad_input_is_one_line(args, words):
    extra = () if words == "--workload" else ("--workload", "llama-3.2-1b")
    r = cli("validate", "--e2e", "--hardware", "h200", *extra, *args)
    assert _one_line(r) and words in r.stderr
