"""A house that is easy to extend (issue 16): modules a reader can hold (at most 800 lines),
engine functions a reader can follow (at most 80 lines in codesign/perf), imports at the top
of each module (a function imports only the few lazy third-party modules listed here, each
with its reason), and the extension tables (device classes, op kinds, CLI commands) as the
one place their entries are listed."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "codesign"
MAX_MODULE_LINES = 800
MAX_PERF_FUNCTION_LINES = 80

# The only modules a function may import, and why; everything else is imported at the top of
# its module, so that a module's dependencies (and any cycle between them) are in plain sight.
# A heavy library kept lazy for start-up time has one lazy import point (the file named): the
# rest of the code asks it for the module (codesign.io.pandas(), codesign.plots.style.mpl()).
LAZY_IMPORTS = {
    "torch": ("optional dependency (codesign[torch]): the torch kernel backend, GPU calibration and the "
              "end-to-end harness; codesign.validate.kernels.require_torch says how to install it", None),
    "psycopg": ("optional dependency (codesign[postgres]): PostgreSQL study storage", None),
    "pynvml": ("optional dependency (nvidia-ml-py): board power in end-to-end validation", None),
    "pandas": ("~0.25 s to import, as long as all of `codesign eval` may take (<= 0.5 s): the engine builds a "
               "table only when one is asked for (Result.ops, --csv)", "codesign/io.py"),
    "scipy": ("~0.2 s to import: `codesign eval` loads codesign.accuracy for its error bands, and only "
              "fitting needs scipy's least squares", "codesign/accuracy/fit.py"),
    "matplotlib": ("~0.3 s to import: `import codesign.plots` (the report, the CLI) loads none of it before "
                   "a figure is drawn (tests/test_plots.py)", "codesign/plots/style.py"),
}


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


def _function_imports(tree: ast.Module):
    """(line, module) of every import statement inside a function ('.x' for a relative one)."""
    seen = set()
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = ["." * node.level + (node.module or "")]
            else:
                continue
            for name in names:
                if (node.lineno, name) not in seen:      # a nested function is walked twice
                    seen.add((node.lineno, name))
                    yield node.lineno, name


def _says_why(lines: list[str], line: int) -> bool:
    """A comment on the import, on another import of its block, or on the line above the block."""
    i = line - 1
    while i > 0 and lines[i - 1].strip().startswith(("import ", "from ")):
        i -= 1
    block = lines[i - 1:line] if i > 0 else lines[:line]
    return any("#" in s for s in block)


def test_imports_are_at_the_top_of_modules():
    bad = []
    for f in sorted(ROOT.rglob("*.py")):
        rel = f.relative_to(ROOT.parent)
        text = f.read_text(encoding="utf-8")
        for line, name in _function_imports(ast.parse(text)):
            top = name.split(".")[0]
            where = f"{rel}:{line} imports {name} inside a function"
            if top not in LAZY_IMPORTS:
                bad.append(f"{where}: import it at the top of the module (where that makes a cycle, move "
                           "the shared piece down a floor: DESIGN.md)")
            elif LAZY_IMPORTS[top][1] and rel.as_posix() != LAZY_IMPORTS[top][1]:
                bad.append(f"{where}: ask its one lazy import point, {LAZY_IMPORTS[top][1]}")
            elif not _says_why(text.splitlines(), line):
                bad.append(f"{where}: say why it is lazy in a comment")
    assert not bad, "\n".join(bad)


def test_eval_loads_no_heavy_library():
    """`codesign eval` (whole process <= 0.5 s): the engine, not the libraries kept lazy for it."""
    code = ("import sys\nfrom codesign.cli import run\ntry:\n    run(['eval', '-H', 'h100-sxm', '-w', 'llama-3.1-8b'])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = set(out.stderr.split())
    assert not loaded & {"pandas", "matplotlib", "optuna", "scipy", "torch", "tqdm"}, loaded


def test_the_command_table_is_the_one_list_of_commands():
    """codesign.cli.SUBCOMMANDS names every command once, with the module that defines it and
    the first line of its help (what `codesign --help` lists without importing the module)."""
    import importlib

    from codesign.cli import SUBCOMMANDS
    defined = {}
    for module in sorted({m for m, _ in SUBCOMMANDS.values()}):
        for cmd in importlib.import_module(f"codesign.cli.{module}").COMMANDS:
            defined[cmd.name] = (module, cmd.get_short_help_str(limit=1000))
    assert defined == SUBCOMMANDS
    modules = {f.stem for f in (ROOT / "cli").glob("*.py")} - {"__init__", "__main__", "common"}
    assert modules == {m for m, _ in SUBCOMMANDS.values()}
