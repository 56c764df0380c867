"""A house that is easy to extend (issue 16): modules a reader can hold (at most 800 lines),
engine functions a reader can follow (at most 80 lines in codesign/perf), and the extension
tables (device classes, op kinds) as the one place their entries are listed."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "codesign"
MAX_MODULE_LINES = 800
MAX_PERF_FUNCTION_LINES = 80


def test_no_module_is_over_800_lines():
    long = [f"{f.relative_to(ROOT.parent)}: {n} lines" for f in sorted(ROOT.rglob("*.py"))
            if (n := len(f.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    assert not long, f"split these modules (at most {MAX_MODULE_LINES} lines):\n" + "\n".join(long)


def test_no_function_in_the_engine_is_over_80_lines():
    long = []
    for f in sorted((ROOT / "perf").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                n = node.end_lineno - start + 1
                if n > MAX_PERF_FUNCTION_LINES:
                    long.append(f"{f.relative_to(ROOT.parent)}:{node.lineno} {node.name}: {n} lines")
    assert not long, (f"split these functions along their stages (at most {MAX_PERF_FUNCTION_LINES} lines):\n"
                      + "\n".join(long))


def test_the_device_class_table_is_the_one_list_of_classes():
    from codesign.hardware import list_hardware
    from codesign.hardware.area import CLASS_CALIBRATION
    from codesign.hardware.classes import CLASSES
    from codesign.hardware.schema import DEVICE_CLASSES
    from codesign.runtime.schema import ClassTuning, Runtime
    assert DEVICE_CLASSES == tuple(CLASSES)
    assert {s.device_class for s in list_hardware()} <= set(CLASSES)
    assert set(CLASS_CALIBRATION) <= set(CLASSES)
    for name, c in CLASSES.items():
        assert c.name == name and 0 < c.matrix_efficiency <= 1 and c.kernel_overhead > 0
        assert 0 < c.static_fraction < 1 and 0 < c.busy_fraction < 1 and 0 <= c.gap_busy_share <= 1
        # a runtime can name the class and tune it
        Runtime(name="r", device_classes=(name,), tuning={name: ClassTuning()})


def test_the_op_kind_table_is_the_one_list_of_kinds():
    from codesign.runtime.schema import Runtime
    from codesign.workload import Scenario, load_workload
    from codesign.workload.graph import build_graph
    from codesign.workload.ops import (
        ALL_KINDS,
        ATTENTION_KINDS,
        CONTEXT_KINDS,
        LINK_KINDS,
        MATRIX_KINDS,
        OP_KINDS,
        VECTOR_KINDS,
    )
    assert set(ALL_KINDS) == set(OP_KINDS) and len(ALL_KINDS) == len(set(MATRIX_KINDS + VECTOR_KINDS + LINK_KINDS))
    assert set(ATTENTION_KINDS) <= set(MATRIX_KINDS) and set(ATTENTION_KINDS) <= set(CONTEXT_KINDS)
    assert not any(OP_KINDS[k].runner for k in LINK_KINDS) and all(OP_KINDS[k].link_rounds >= 0 for k in LINK_KINDS)
    fusable = tuple(k for k, v in OP_KINDS.items() if v.fusable)
    Runtime(name="r", fuse=fusable, kernels_per_op=dict.fromkeys(ALL_KINDS, 1.0),
            sources={f"kernels_per_op.{k}": "estimate: test" for k in ALL_KINDS})
    # every kind the graph emits has a row (an MoE model, tensor and expert parallel, unfused attention)
    g = build_graph(load_workload("mixtral-8x7b"), Scenario(batch=2, prompt=16, generate=4, tp=2, ep=4, dp=2,
                                                            attention="unfused"))
    assert {o.kind for o in g.prefill + g.decode} <= set(OP_KINDS)
