"""Hostile and impossible input: YAML aliases, duplicate keys, huge files, layouts a model cannot take (issue 15)."""
import subprocess
import sys
import time

import pytest

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
    r = subprocess.run([sys.executable, "-m", "codesign.cli", *args, str(f)], capture_output=True, text=True,
                       timeout=60)
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
    r = subprocess.run([sys.executable, "-m", "codesign.cli", "eval", "-H", "h100-sxm", "-w", "llama-3.1-8b", *flags],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_tp_beyond_kv_heads_replicates_them_with_a_note():
    from codesign.perf import evaluate
    from codesign.workload import Scenario
    r = evaluate("h100-sxm", "llama-3.1-8b", Scenario(tp=16))
    assert "replicated on 2 devices" in r["notes"]
    with pytest.raises(CodesignError, match="ep=4"):
        evaluate("h100-sxm", "llama-3.1-8b", Scenario(tp=4, ep=4))
