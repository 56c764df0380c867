"""Units, spec validation and the one-line error contract of the CLI."""
import textwrap

import pytest
from conftest import cli

from codesign.errors import CodesignError
from codesign.hardware import hardware_from_dict, load_hardware
from codesign.units import UnitError, parse_quantity


@pytest.mark.parametrize("text,dim,value", [
    ("3.35 TB/s", "bandwidth", 3.35e12), ("80 GiB", "bytes", 80 * 2**30), ("80 GB", "bytes", 80e9),
    ("100 Gb/s", "bandwidth", 12.5e9), ("1.98 GHz", "frequency", 1.98e9), ("700 W", "power", 700.0),
    ("989 TFLOP/s", "rate", 989e12), ("5 pJ/B", "energy_per_byte", 5e-12), ("3.9 pJ/bit", "energy_per_byte", 31.2e-12),
    ("2 us", "time", 2e-6), ("814 mm^2", "area", 814.0), ("4 nm", "node", 4.0), (50, "bytes", 50.0),
    ("50 MiB", "bytes", 50 * 2**20), ("0.5 pJ/op", "energy_per_op", 0.5e-12)])
def test_units(text, dim, value):
    assert parse_quantity(text, dim) == pytest.approx(value)


@pytest.mark.parametrize("text,dim,msg", [("3.35 TB", "bandwidth", "bandwidth"), ("fast", "bandwidth", "fast"),
                                          ("3 XB/s", "bandwidth", "XB/s")])
def test_unit_errors(text, dim, msg):
    with pytest.raises(UnitError, match=msg):
        parse_quantity(text, dim)


MIN_SPEC = {"name": "toy", "class": "npu", "compute": {"matrix": {"peak": {"int8": "10 TOP/s"}},
                                                       "vector": {"peak": {"fp16": "1 TFLOP/s"}}},
            "memory": [{"name": "DRAM", "kind": "lpddr", "capacity": "8 GiB", "bandwidth": "50 GB/s"}]}


def test_thin_spec_is_valid_and_evaluates():
    from codesign.perf import evaluate
    from codesign.workload import Scenario
    spec = hardware_from_dict(MIN_SPEC)
    r = evaluate(spec, "llama-3.2-1b", Scenario(batch=1, prompt=64, generate=8))
    assert r["tpot_s"] > 0
    assert "bf16 not supported by the matrix units: ran int8 (the model must be quantized" in r["notes"]


def _err(data):
    with pytest.raises(CodesignError) as e:
        hardware_from_dict(data, "spec.yaml")
    return str(e.value)


def test_spec_errors_name_the_field():
    import copy
    bad = copy.deepcopy(MIN_SPEC)
    bad["memory"][0]["bandwidth"] = "-5 GB/s"
    assert "spec.yaml: memory[0].bandwidth" in _err(bad)
    bad = copy.deepcopy(MIN_SPEC)
    bad["memory"][0]["bandwidth"] = "50 GB"
    msg = _err(bad)
    assert "memory[0].bandwidth" in msg and "bandwidth" in msg
    bad = copy.deepcopy(MIN_SPEC)
    bad["compute"]["matrix"]["speed"] = 3
    assert "compute.matrix.speed" in _err(bad)
    bad = copy.deepcopy(MIN_SPEC)
    del bad["memory"]
    assert "memory" in _err(bad)
    bad = copy.deepcopy(MIN_SPEC)
    bad["memory"] = [{"name": "DRAM", "kind": "lpddr", "capacity": "8 GiB", "bandwidth": "50 GB/s"},
                     {"name": "L2", "kind": "cache", "capacity": "16 GiB", "bandwidth": "500 GB/s"}]
    assert "larger than the level above" in _err(bad)


@pytest.mark.parametrize("content,needle", [
    ("name: x\nclass: gpu\n  bad: [", "line"),                                  # YAML syntax
    ("name: x\nclass: gpu\ncompute: {vector: {peak: {fp32: 1 TFLOP/s}}}\nmemory: []\n", "memory"),
    ("name: x\nclass: qpu\n", "class"),
    ("!!python/object/apply:os.system ['echo hi']\n", ""),                     # never constructs objects
])
def test_cli_check_bad_files_one_line(tmp_path, content, needle):
    f = tmp_path / "bad.yaml"
    f.write_text(textwrap.dedent(content))
    r = cli("hardware", "check", str(f))
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr and str(f) in lines[0]
    assert needle in lines[0]


def test_cli_unknown_names():
    r = cli("eval", "--hardware", "h100-sxmm", "--workload", "llama-2-7b")
    assert r.returncode == 2 and "did you mean h100-sxm" in r.stderr and "Traceback" not in r.stderr
    r = cli("eval", "--hardware", "h100-sxm", "--workload", "llama-9")
    assert r.returncode == 2 and "unknown workload" in r.stderr


def test_cli_eval_json_has_the_contract_keys():
    import json
    r = cli("eval", "--hardware", "h100-sxm", "--workload", "llama-2-7b", "--batch", "2", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for k in ("ttft_s", "tpot_s", "prefill_tokens_per_s", "decode_tokens_per_s", "e2e_latency_s",
              "throughput_tokens_per_s", "energy_per_token_j", "memory_bytes", "fits", "bound"):
        assert k in out
    assert out["decode_tokens_per_s"] == pytest.approx(2 / out["tpot_s"])


def test_library_specs_all_load_and_cite_sources():
    from codesign.hardware import list_hardware
    specs = list_hardware()
    assert len(specs) >= 12
    for s in specs:
        assert not s.unsourced(), (s.name, s.unsourced()[:3])


def test_every_library_device_evaluates():
    from codesign.hardware import list_hardware
    from codesign.perf import evaluate
    from codesign.workload import Scenario
    for s in list_hardware():
        r = evaluate(s, "llama-3.2-1b", Scenario(batch=1, prompt=128, generate=8))
        assert r["ttft_s"] > 0 and r["tpot_s"] > 0, s.name


def test_help_on_every_level():
    for args in ([], ["hardware"], ["workload"], ["eval"], ["compare"], ["sweep"]):
        r = cli(*args, "--help")
        assert r.returncode == 0 and "Usage" in r.stdout, args


def test_load_by_path_and_name_agree():
    from codesign.hardware import spec_path
    a = load_hardware("h100-sxm")
    b = load_hardware(str(spec_path(a)))
    assert a == b


@pytest.mark.parametrize("value,dim,text", [(3.35e12, "bandwidth", "3.35 TB/s"), (80 * 2**30, "bytes", "80 GiB"),
                                            (1010 * 2**20, "bytes", "1010 MiB"), (999.9e6, "frequency", "1 GHz"),
                                            (0.0297, "time", "29.7 ms")])
def test_format_quantity(value, dim, text):
    from codesign.units import format_quantity
    assert format_quantity(value, dim) == text


def test_plain_numbers_read_the_same_everywhere():
    from codesign.units import format_number
    assert [format_number(v) for v in (38940.2, 144.9, 146.0, 0.0123, 100.0, 12345678, -1234.5)] == \
        ["38,940", "144.9", "146", "0.0123", "100", "12,350,000", "-1,234"]
    assert "e" not in format_number(0.00012) and format_number(2.5e13) == "2.500e+13"


def test_the_metric_registry_feeds_studies_plots_and_tables():
    from codesign.cli.evaluate import _SHOWN
    from codesign.metrics import METRICS, in_group
    from codesign.plots import METRIC_DISPLAY
    from codesign.search.schema import METRICS as STUDY_METRICS
    assert set(STUDY_METRICS) == set(METRICS)
    for name, m in METRICS.items():
        assert STUDY_METRICS[name] == (m.direction, m.dimension)
        assert METRIC_DISPLAY[name][0] == m.label
    assert {k for k, _, _ in _SHOWN} - set(METRICS) == {"fits", "bound", "quality_status", "quant_gemm_sqnr_db"}
    assert set(in_group("serve")) >= {"max_rate_under_slo", "p99_ttft_s", "goodput_per_usd"}
