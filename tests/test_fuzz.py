"""Property-based fuzzing of what users hand us (issue 15): mutated hardware specs, workloads,
studies and CLI flags must give exit 0, or exit 2 with one line on stderr; never a
traceback, an internal error, or a file written outside the output asked for. Bounded in
examples and time so the suite stays fast."""
from __future__ import annotations

import contextlib
import io
import json
import resource
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from codesign.cli import run  # noqa: E402
from codesign.errors import CodesignError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=int(__import__("os").environ.get("CODESIGN_FUZZ_EXAMPLES", 30)), deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# values a careless or hostile file might hold where a figure is expected
ODD = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                st.text(max_size=12), st.sampled_from(["3.35 TB/s", "80 GiB", "1e400 W", "-5 GHz", "1 parsec", "", "nan"]),
                st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def _paths(node, prefix=()):
    """Every (path to a leaf or a subtree) of a YAML mapping."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


def _mutate(data, path, action, value):
    parent = data
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    if action == "delete":
        if isinstance(parent, list):
            parent.pop(key)
        else:
            parent.pop(key)
    elif action == "scale" and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
        parent[key] = parent[key] * (value if isinstance(value, (int, float)) and not isinstance(value, bool) else -1)
    else:
        parent[key] = value
    return data


def _cli(args) -> tuple[int, str]:
    """Run the CLI in this process: (exit code, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, err.getvalue()


def _clean(code: int, err: str):
    assert code in (0, 2), err
    assert "Traceback" not in err and "internal error" not in err, err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
    # bounded memory: a hostile file must not blow the process up (max RSS, kilobytes on Linux)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 2 * 2**20


def _mutated_file(tmp_path_factory, source: Path, data):
    folder = tmp_path_factory.mktemp("fuzz")
    f = folder / source.name
    try:
        f.write_text(yaml.safe_dump(data, allow_unicode=True))
    except yaml.YAMLError:
        f.write_text(json.dumps(data, default=str))
    return folder, f


@pytest.mark.parametrize("spec", ["gpu/h100-sxm.yaml", "npu/rk3588-npu.yaml", "fpga/alveo-u280.yaml"])
@FUZZ
@given(data=st.data())
def test_mutated_hardware_specs(spec, data, tmp_path_factory):
    source = REPO / "hardware_specs" / spec
    base = yaml.safe_load(source.read_text())
    path = data.draw(st.sampled_from(list(_paths(base))))
    action = data.draw(st.sampled_from(["delete", "replace", "scale"]))
    mutated = _mutate(base, path, action, data.draw(ODD))
    folder, f = _mutated_file(tmp_path_factory, source, mutated)
    code, err = _cli(["eval", "-H", f, "-w", "llama-3.2-1b", "--json", "--no-ops"])
    _clean(code, err)
    assert sorted(p.name for p in folder.iterdir()) == [f.name]      # nothing else written


@FUZZ
@given(data=st.data())
def test_mutated_workloads(data, tmp_path_factory):
    source = REPO / "workloads" / "llama-3.2-1b.yaml"
    base = yaml.safe_load(source.read_text())
    path = data.draw(st.sampled_from(list(_paths(base))))
    mutated = _mutate(base, path, data.draw(st.sampled_from(["delete", "replace", "scale"])), data.draw(ODD))
    folder, f = _mutated_file(tmp_path_factory, source, mutated)
    code, err = _cli(["eval", "-H", "h100-sxm", "-w", f, "--json", "--no-ops"])
    _clean(code, err)


FLAGS = {"--batch": st.integers(-5, 10**7), "--prompt": st.integers(-5, 10**7), "--generate": st.integers(-5, 10**7),
         "--tp": st.integers(-2, 64), "--pp": st.integers(-2, 200), "--ep": st.integers(-2, 64),
         "--weight-bits": st.sampled_from(["16", "8", "4", "3", "7", "x"]),
         "--kv-bits": st.sampled_from(["16", "8", "4", "0"]), "--group-size": st.integers(-4, 10**6),
         "--sparsity": st.sampled_from(["2:4", "3:7", "0.5", "1.5", "4:2", "x", ""]),
         "--prune-layers": st.floats(-1, 2), "--distill-to": st.sampled_from(["llama-3.2-1b", "llama-3.1-70b", "nope"]),
         "--dtype": st.sampled_from(["bf16", "fp8", "int8", "fp4"]), "--beams": st.integers(-1, 100)}


@FUZZ
@given(flags=st.dictionaries(st.sampled_from(sorted(FLAGS)), st.just(None), min_size=1, max_size=4), data=st.data())
def test_random_cli_flags(flags, data):
    args = ["eval", "-H", data.draw(st.sampled_from(["h100-sxm", "rk3588-npu", "tpu-v5e"])), "-w",
            data.draw(st.sampled_from(["llama-3.1-8b", "mixtral-8x7b", "gemma-2-9b"])), "--json", "--no-ops"]
    for flag in flags:
        args += [flag, str(data.draw(FLAGS[flag]))]
    code, err = _cli(args)
    _clean(code, err)


@FUZZ
@given(data=st.data())
def test_mutated_studies_load_or_say_why(data):
    from codesign.search import study_from_dict
    base = yaml.safe_load((REPO / "studies" / "quickstart.yaml").read_text())
    path = data.draw(st.sampled_from(list(_paths(base))))
    mutated = _mutate(base, path, data.draw(st.sampled_from(["delete", "replace", "scale"])), data.draw(ODD))
    try:
        study_from_dict(mutated, file="fuzz.yaml")
    except CodesignError as e:
        assert "\n" not in str(e) and str(e)
