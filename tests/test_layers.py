"""The floors of DESIGN.md: a lower layer never imports an upper one, at import time or
while it works (issue 16)."""
import subprocess
import sys

UPPER_THAN_PERF = ("codesign.quality", "codesign.serve", "codesign.validate", "codesign.search", "codesign.accuracy",
                   "codesign.plots", "codesign.report", "codesign.cli", "codesign.assess")


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return {m for m in out.stdout.split() if m.startswith("codesign")}


def test_the_engine_loads_no_upper_floor_even_while_evaluating():
    mods = _loaded_after("from codesign.perf import evaluate, op_times\n"
                         "from codesign.workload import Scenario\n"
                         "from codesign.compression import Compression\n"
                         "evaluate('h100-sxm', 'llama-3.1-8b', Scenario(batch=4), Compression(weight_bits=4))")
    assert not {m for m in mods if m.startswith(UPPER_THAN_PERF)}, mods


def test_specs_and_workloads_load_without_the_engine():
    mods = _loaded_after("from codesign.hardware import load_hardware\nfrom codesign.workload import load_workload\n"
                         "load_hardware('h200'); load_workload('deepseek-v3')")
    assert not {m for m in mods if m.startswith(("codesign.perf",) + UPPER_THAN_PERF)}, mods


def test_the_public_evaluate_adds_quality_one_floor_up():
    from codesign import Compression, evaluate
    r = evaluate("h100-sxm", "llama-2-7b", compression=Compression(weight_bits=4, group_size=128))
    assert "quality_status" in r.summary and "quant_gemm_sqnr_db" not in r.summary    # no experiment unasked


def test_the_serving_simulator_sits_on_the_engine_only():
    mods = _loaded_after("from codesign.serve import serve, make_requests\n"
                         "serve('h100-sxm', 'llama-3.2-1b', make_requests(5.0, 50))")
    assert not {m for m in mods if m.startswith(("codesign.search", "codesign.validate", "codesign.accuracy",
                                                 "codesign.plots", "codesign.report", "codesign.cli"))}, mods


# DESIGN.md's floors, bottom up: a module imports only its own floor or lower ones (anywhere
# in the file, inside functions too), so the import graph between floors has no cycle
FLOORS = {"units": 0, "errors": 0, "metrics": 0, "io": 1, "hardware": 2, "workload": 2, "runtime": 2,
          "compression": 3, "quantize": 3, "perf": 4, "quality": 5, "assess": 6, "serve": 6, "search": 7,
          "validate": 7, "accuracy": 7, "plots": 8, "report": 9, "cli": 10, "": 11}


def _imports(path, package: str):
    """(target top-level name, line) of every relative import of a codesign module."""
    import ast
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            names = [target + [a.name] for a in node.names] if not node.module else [target]
            for t in names:
                yield (t[1] if len(t) > 1 else ""), node.lineno


def test_every_import_goes_down_a_floor():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "codesign"
    bad = []
    for f in root.rglob("*.py"):
        parts = f.relative_to(root.parent).with_suffix("").parts
        package = ".".join(parts if f.name == "__init__.py" else parts[:-1]).removesuffix(".__init__")
        here = parts[1] if len(parts) > 1 and parts[1] != "__init__" else ""
        for target, line in _imports(f, package):
            if target in FLOORS and target != here and FLOORS[target] > FLOORS.get(here, 11):
                bad.append(f"{f.relative_to(root.parent)}:{line} imports codesign.{target}")
    assert not bad, "\n".join(bad)
