"""Optimisation studies (codesign.search): validation, derived figures, running, storage safety, export."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import cli
from conftest import optuna_study_in as optuna_study
from conftest import run_study_in as run

from codesign.errors import CodesignError
from codesign.search import load_study, parse_ref

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "studies" / "quickstart.yaml"

# A small study on the RK3588 NPU: an int, a float, a categorical quantity, a conditional
# compression knob, infeasible regions (a tight TPOT bound, a DRAM too small for the model) and an
# invalid one (fp8 weights with 4 bits is not a format).
BASE = {
    "name": "tiny",
    "hardware": "rk3588-npu",
    "space": {
        "compute.cores": {"type": "int", "low": 1, "high": 6},
        "compute.clock": {"type": "float", "low": "0.6 GHz", "high": "1.4 GHz"},
        "memory.LPDDR4X.capacity": {"type": "categorical", "choices": ["32 GiB", "1 GiB"]},
    },
    "compression": {
        "weight_bits": {"type": "categorical", "choices": [8, 4]},
        "weight_format": {"type": "categorical", "choices": ["int", "fp8"]},
        "group_size": {"type": "categorical", "choices": [32, 128], "when": {"weight_bits": 4}},
    },
    "workloads": [{"workload": "llama-3.2-1b", "batch": 1, "prompt": 128, "generate": 32}],
    "objectives": ["tpot_s", {"metric": "energy_per_token_j", "direction": "minimize"}],
    "constraints": {"fits": True, "tpot_s": {"max": "75 ms"}},
    "sampler": {"name": "nsga2", "seed": 3, "options": {"population_size": 10}},
    "trials": 30,
}


def make(tmp_path, name="study.yaml", **changes) -> Path:
    data = json.loads(json.dumps(BASE))
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---------------------------------------------------------------- validation: one line each

@pytest.mark.parametrize("change,field,message", [
    ({"space": {"compute.corez": {"type": "int", "low": 1, "high": 4}}}, "space.compute.corez",
     "unknown path: Compute has no field 'corez'; did you mean compute.cores?"),
    ({"space": {"memory.HBM9.bandwidth": {"type": "float", "low": "1 TB/s", "high": "2 TB/s"}}},
     "space.memory.HBM9.bandwidth", "no entry named 'HBM9'"),
    ({"space": {"compute.cores": {"type": "int", "low": 8, "high": 2}}}, "space.compute.cores",
     "empty range: high (2) must be greater than low (8)"),
    ({"space": {"compute.clock": {"type": "float", "low": "1.2 GB", "high": "2 GHz"}}}, "space.compute.clock.low",
     "expected a frequency"),
    ({"space": {"compute.clock": {"type": "log", "low": "0 GHz", "high": "2 GHz"}}}, "space.compute.clock.low",
     "greater than 0"),
    ({"space": {"compute.cores": {"type": "categorical", "choices": []}}}, "space.compute.cores",
     "at least one choice"),
    ({"objectives": ["tpot"]}, "objectives[0].metric", "unknown metric 'tpot'; did you mean tpot_s"),
    ({"constraints": {"power": {"max": "5 W"}}}, "constraints", "unknown metric 'power'"),
    ({"constraints": {"power_w": {"max": "5 GHz"}}}, "constraints", "expected a power"),
    ({"compression": {"weight_bitz": {"type": "categorical", "choices": [4]}}}, "compression.weight_bitz",
     "unknown compression field; did you mean weight_bits?"),
    ({"compression": {"weight_bits": {"type": "categorical", "choices": [5]}}}, "compression.weight_bits.choices[0]",
     "Input should be"),
    ({"compression": {"kv_bits": {"type": "categorical", "choices": [8], "when": {"weigth_bits": 4}}}},
     "compression.kv_bits.when.weigth_bits", "unknown dimension"),
    ({"trails": 10}, "trails", "unknown field"),
    ({"sampler": {"name": "cmaes"}}, "sampler.name", "Input should be"),
    ({"hardware": "h100-sxn"}, "hardware", "did you mean h100-sxm"),
    ({"workloads": [{"workload": "llama-3.2-1b", "batch": 0}]}, "workloads[0].batch", "greater than 0"),
    ({"workloads": [{"workload": "llama-3.2-1b", "ubatch": 0}]}, "workloads[0].ubatch", "greater than 0"),
])
def test_bad_study_is_one_line(tmp_path, change, field, message):
    path = make(tmp_path, **change)
    with pytest.raises(CodesignError) as e:
        load_study(path)
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: {field}: "), text
    assert message in text


def test_cli_prints_one_error_line(tmp_path):
    path = make(tmp_path, space={"compute.corez": {"type": "int", "low": 1, "high": 4}})
    r = cli("study", "run", path, cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "compute.corez" in lines[0]


def test_sampler_option_errors_name_the_option(tmp_path):
    from codesign.search.samplers import build_sampler
    st = load_study(make(tmp_path, sampler={"name": "nsga2", "options": {"populaton_size": 8}}))
    with pytest.raises(CodesignError, match="sampler.options: nsga2: .*populaton_size"):
        build_sampler(st)
    st = load_study(make(tmp_path, sampler={"name": "grid"}))
    with pytest.raises(CodesignError, match="grid sampler needs a 'step'"):
        build_sampler(st)


# ---------------------------------------------------------------- space: units, conditions, derived figures

def test_units_are_read_by_the_spec_schema(tmp_path):
    st = load_study(make(tmp_path))
    dims = {d.name: d for d in st.space.dims}
    assert dims["compute.clock"].low == 0.6e9 and dims["compute.clock"].high == 1.4e9
    assert dims["memory.LPDDR4X.capacity"].choices == (32 * 2**30, 2**30)
    assert dims["group_size"].when == (("weight_bits", (4,)),)
    # the controller of a condition is sampled before the dimension that depends on it
    names = [d.name for d in st.space.dims]
    assert names.index("weight_bits") < names.index("group_size")


def test_scaling_follows_cores_and_clock(tmp_path):
    st = load_study(make(tmp_path))
    base = st.base
    p = {"compute.cores": 6, "compute.clock": 1.5e9, "memory.LPDDR4X.capacity": 32 * 2**30, "weight_bits": 8}
    hw = st.space.hardware(p)
    f = (6 / 3) * (1.5e9 / 1e9)
    for dt, v in base.compute.matrix.peak.items():
        assert hw.compute.matrix.peak[dt] == pytest.approx(v * f)
    for dt, v in base.compute.vector.peak.items():
        assert hw.compute.vector.peak[dt] == pytest.approx(v * f)
    assert hw.compute.matrix.units == 6                           # units per core kept (1 per core)
    cbuf = {m.name: m for m in hw.memory}["CBUF"]
    assert cbuf.bandwidth == pytest.approx(128e9 * 1.5)          # on-chip bytes/clock fixed
    assert {m.name: m for m in hw.memory}["LPDDR4X"].bandwidth == base.main_memory().bandwidth
    # explicit scale_with replaces the defaults; {} turns scaling off
    off = load_study(make(tmp_path, scale_with={}))
    assert off.space.hardware(p).compute.matrix.peak == base.compute.matrix.peak
    # a searched path wins over a scaled one
    space = dict(BASE["space"], **{"compute.matrix.peak.int8": {"type": "categorical", "choices": ["1 TOP/s"]}})
    st2 = load_study(make(tmp_path, space=space))
    hw2 = st2.space.hardware({**p, "compute.matrix.peak.int8": 1e12})
    assert hw2.compute.matrix.peak["int8"] == 1e12
    assert hw2.compute.matrix.peak["int4"] == pytest.approx(base.compute.matrix.peak["int4"] * f)


def test_scaling_needs_a_base_figure(tmp_path):
    # the Alveo U280 spec states no core count: nothing to take the ratio to
    space = {"compute.cores": {"type": "int", "low": 1, "high": 4}}
    with pytest.raises(CodesignError, match="scales with compute.cores, but the base spec states no compute.cores"):
        load_study(make(tmp_path, hardware="alveo-u280", space=space, compression={}))


def test_presets_switch_several_fields(tmp_path):
    space = {"dram": {"type": "categorical", "choices": {
        "slow": {"memory.LPDDR4X.bandwidth": "20 GB/s", "memory.LPDDR4X.energy_per_byte": "60 pJ/B"},
        "fast": {"memory.LPDDR4X.bandwidth": "68.3 GB/s", "memory.LPDDR4X.energy_per_byte": "34 pJ/B"}}}}
    st = load_study(make(tmp_path, space=space))
    lp = st.space.hardware({"dram": "fast", "weight_bits": 8}).main_memory()
    assert lp.bandwidth == 68.3e9 and lp.energy_per_byte == pytest.approx(34e-12)
    bad = {"dram": {"type": "categorical", "choices": {"x": {"memory.LPDDR4X.bandwith": "1 GB/s"}}}}
    with pytest.raises(CodesignError, match=r"space.dram.choices.x.memory.LPDDR4X.bandwith: unknown path"):
        load_study(make(tmp_path, space=bad))


# ---------------------------------------------------------------- evaluation glue

def test_batch_path_matches_evaluate(tmp_path):
    """The vectorised batch gives what evaluate() gives for each derived spec."""
    from codesign.perf import evaluate
    from codesign.search.metrics import Evaluator
    st = load_study(make(tmp_path))
    pts = [{"compute.cores": c, "compute.clock": f, "memory.LPDDR4X.capacity": 32 * 2**30, "weight_bits": 4,
            "group_size": 128} for c, f in ((1, 0.6e9), (3, 1e9), (6, 1.4e9))]
    outs = Evaluator(st)(pts)
    wl = st.workloads[0]
    for p, o in zip(pts, outs):
        assert o.error is None
        r = evaluate(st.space.hardware(p), wl.model, wl.scenario, st.space.compression(p))
        for k in ("ttft_s", "tpot_s", "energy_per_token_j", "avg_power_w", "memory_bytes"):
            assert o.metrics[k] == pytest.approx(r.summary[k], rel=1e-12), k
    assert outs[0].metrics["tpot_s"] > outs[2].metrics["tpot_s"]          # more, faster cores decode faster


def test_invalid_design_is_a_violation_not_a_crash(tmp_path):
    from codesign.search.metrics import Evaluator
    st = load_study(make(tmp_path))
    bad = {"compute.cores": 3, "compute.clock": 1e9, "memory.LPDDR4X.capacity": 2**30, "weight_bits": 4,
           "weight_format": "fp8", "group_size": 32}
    (o,) = Evaluator(st)([bad])
    assert o.constraints["valid"] == 1.0 and not o.feasible
    assert "weight_format fp8 needs weight_bits 8" in o.error
    assert o.values == [math.inf, math.inf]


# ---------------------------------------------------------------- running, constraints, export

@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The README's quick-start study, sampled (NSGA-II, 20 trials) instead of enumerated, exported."""
    from codesign.search.export import export_study
    tmp = tmp_path_factory.mktemp("quick")
    data = yaml.safe_load(QUICKSTART.read_text())
    # seed 2: with the per-class calibrated area model (issue 17) a small derived NPU keeps more of
    # its area (its LPDDR PHY does not shrink with the cores), so only ~5 % of this space meets the
    # 5 W cap; seed 42's 20 random first-generation trials all miss it, seed 2's include a feasible one
    data["sampler"] = {"name": "nsga2", "seed": 2, "options": {"population_size": 40}}
    (tmp / "quickstart.yaml").write_text(yaml.safe_dump(data))
    st = load_study(tmp / "quickstart.yaml")
    rep = run(st, tmp, trials=20)
    ost = optuna_study(st, tmp)
    info = export_study(st, ost, tmp / "export")
    return st, ost, rep, info, tmp


def test_quickstart_runs_and_exports(quick):
    import pandas as pd
    st, ost, rep, info, tmp = quick
    assert rep.completed == 20 and rep.new == 20
    out = tmp / "export"
    df = pd.read_csv(out / "trials.csv")
    assert len(df) == 20 and set(df["state"]) == {"COMPLETE"}
    assert {"params.compute.cores", "tpot_s", "energy_per_token_j", "constraints.peak_power_w.max"} <= set(df.columns)
    pq = pd.read_parquet(out / "trials.parquet")
    assert len(pq) == 20 and list(pq["number"]) == list(df["number"])
    pareto = pd.read_csv(out / "pareto.csv")
    assert sorted(pareto["number"]) == sorted(t.number for t in ost.best_trials)
    assert set(info["pareto"]) <= set(pareto["number"])
    assert len(info["pareto"]) >= 1
    for n in info["pareto"]:
        assert (out / "designs" / str(n) / "hardware.yaml").is_file()
        assert (out / "designs" / str(n) / "compression.yaml").is_file()
    # an exported design is a spec that passes the strictest check (every figure sourced)
    r = cli("hardware", "check", "--strict", *(out / "designs" / str(n) / "hardware.yaml" for n in info["pareto"]))
    assert r.returncode == 0, r.stderr


def test_exported_design_reevaluates_to_the_same_metrics(quick):
    from codesign.compression import Compression
    from codesign.hardware import load_hardware
    from codesign.perf import evaluate
    st, ost, rep, info, tmp = quick
    trials = {t.number: t for t in ost.best_trials}
    for n in info["pareto"]:
        d = tmp / "export" / "designs" / str(n)
        hw = load_hardware(d / "hardware.yaml")          # loads unchanged
        assert hw.sources["derived"].ref.startswith(f"study {st.name} trial {n}")
        comp = Compression(**(yaml.safe_load((d / "compression.yaml").read_text()) or {}))
        wl = st.workloads[0]
        r = evaluate(hw, wl.model, wl.scenario, comp)
        m = trials[n].user_attrs["metrics"]
        for k in ("ttft_s", "tpot_s", "energy_per_token_j", "avg_power_w", "memory_bytes", "cost_per_mtok_usd"):
            assert r.summary[k] == pytest.approx(m[k], rel=1e-9), k
        assert list(trials[n].values) == pytest.approx([r.summary[k] for k in st.objectives], rel=1e-9)
        if "area_mm2" in m:
            from codesign.hardware.area import estimate_area
            assert estimate_area(hw).total == pytest.approx(m["area_mm2"], rel=1e-9)
    # and the real CLI takes the exported file as it is
    n = info["pareto"][0]
    cmd = yaml.safe_load((tmp / "export" / "designs" / str(n) / "design.yaml").read_text())["evaluate"][0]
    r = cli(*cmd.split()[1:], "--json", "--no-ops")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["tpot_s"] == pytest.approx(trials[n].user_attrs["metrics"]["tpot_s"])


def test_constraints_hold_on_the_front(tmp_path):
    st = load_study(make(tmp_path))
    rep = run(st, tmp_path, trials=40)
    ost = optuna_study(st, tmp_path)
    done = ost.get_trials()
    infeasible = [t for t in done if any(v > 0 for v in t.constraints.values())]
    invalid = [t for t in done if t.user_attrs.get("error")]
    assert infeasible and invalid, "the test study must produce infeasible and invalid designs"
    assert 1 <= rep.pareto <= len(ost.best_trials)
    for t in ost.best_trials:
        assert all(v <= 0 for v in t.constraints.values())
        m = t.user_attrs["metrics"]
        assert m["fits"] and m["tpot_s"] <= 0.075
    for t in invalid:
        assert t.state.name == "COMPLETE" and t.constraints["valid"] == 1.0


def test_same_seed_same_trials(tmp_path):
    st = load_study(make(tmp_path))
    run(st, tmp_path / "a", trials=12)
    run(st, tmp_path / "b", trials=12)
    pa = [t.params for t in optuna_study(st, tmp_path / "a").get_trials()]
    pb = [t.params for t in optuna_study(st, tmp_path / "b").get_trials()]
    assert pa == pb and len(pa) == 12


def test_changed_definition_is_refused(tmp_path):
    st = load_study(make(tmp_path))
    run(st, tmp_path, trials=5)
    changed = load_study(make(tmp_path, constraints={"fits": True}))
    with pytest.raises(CodesignError, match="created from a different definition"):
        run(changed, tmp_path, trials=10)
    # resume by name continues the stored definition
    from codesign.search.runner import resolve_study
    stored, ref = resolve_study("tiny", None, tmp_path / "results")
    assert stored.fingerprint() == st.fingerprint()


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_two_worker_processes_share_one_study(tmp_path, kind):
    st = load_study(make(tmp_path, sampler={"name": "random", "seed": 1}))
    storage = None if kind == "journal" else f"sqlite:///{tmp_path / 'w.db'}"
    # 10 batches to share: under a loaded machine one worker must not be able to take them all
    rep = run(st, tmp_path, trials=40, workers=2, batch=4, storage=storage)
    ost = optuna_study(st, tmp_path, storage)
    done = [t for t in ost.get_trials() if t.state.name == "COMPLETE"]
    assert rep.completed == len(done) == 40                       # the target exactly (issue 15, item 7)
    surplus = [t for t in ost.get_trials() if t.user_attrs.get("surplus")]
    assert all(t.state.name == "PRUNED" for t in surplus)         # asked after the target was taken
    assert rep.new == rep.completed                               # every trial is this run's (its workers')
    owners = {t.user_attrs["worker"] for t in done}
    assert len(owners) == 2 and os.getpid() not in {int(o.rsplit(":", 1)[1]) for o in owners}
    assert len({json.dumps(t.params, sort_keys=True) for t in done}) > 8      # separate seeds, not copies


# ---------------------------------------------------------------- storage safety

def _completed(path: Path, name: str) -> dict:
    import optuna

    from codesign.search.storage import StorageRef, open_storage
    storage = open_storage(StorageRef("journal", str(path), str(path)), create=False)
    st = optuna.load_study(study_name=name, storage=storage)
    return {t.number: tuple(t.values) for t in st.get_trials(deepcopy=False) if t.state.name == "COMPLETE"}


def _endless_run(tmp_path, seed: int, *flags, stderr=subprocess.DEVNULL):
    """A study run in a subprocess that would go on for 100000 trials: (process, journal)."""
    path = make(tmp_path, sampler={"name": "random", "seed": seed})
    journal = tmp_path / "kill.journal"
    proc = subprocess.Popen([sys.executable, "-m", "codesign.cli", "study", "run", str(path), "--trials", "100000",
                             *flags, "--storage", str(journal), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=stderr)
    return proc, journal


def test_sigkill_loses_no_finished_trial_and_resume_continues(tmp_path):
    proc, journal = _endless_run(tmp_path, 5, "--batch", "3", stderr=subprocess.PIPE)
    try:
        t0 = time.monotonic()
        before = {}
        while time.monotonic() - t0 < 60:
            time.sleep(0.2)
            if _any_completed(journal):
                before = _completed(journal, "tiny")
                if len(before) >= 15:
                    break
        assert len(before) >= 15, proc.stderr.read() if proc.poll() is not None else "too slow"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    after_kill = _completed(journal, "tiny")
    assert before.items() <= after_kill.items()
    target = len(after_kill) + 9
    r = cli("study", "resume", "tiny", "--storage", journal, "--trials", target, "--no-progress")
    assert r.returncode == 0, r.stderr
    final = _completed(journal, "tiny")
    assert after_kill.items() <= final.items() and len(final) == target
    import optuna

    from codesign.search.storage import StorageRef, open_storage
    ost = optuna.load_study(study_name="tiny", storage=open_storage(StorageRef("journal", str(journal), "j")))
    assert not [t for t in ost.get_trials() if t.state.name == "RUNNING"]   # the killed batch was marked


def test_corrupt_storage_is_one_line_and_left_untouched(tmp_path):
    path = make(tmp_path)
    journal = tmp_path / "c.journal"
    assert cli("study", "run", path, "--trials", 4, "--storage", journal).returncode == 0
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[2] = b"this is not json\n"
    journal.write_bytes(b"".join(lines))
    before = journal.read_bytes()
    r = cli("study", "status", "tiny", "--storage", journal)
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "cannot read the study journal" in err[0] and "left untouched" in err[0]
    assert journal.read_bytes() == before
    db = tmp_path / "bad.db"
    db.write_bytes(b"definitely not sqlite" * 100)
    r = cli("study", "status", "tiny", "--storage", f"sqlite:///{db}")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "cannot read the study database" in r.stderr
    assert db.read_bytes() == b"definitely not sqlite" * 100


def test_cut_off_journal_line_is_set_aside(tmp_path):
    st = load_study(make(tmp_path))
    journal = tmp_path / "t.journal"
    run(st, tmp_path, trials=4, storage=str(journal))
    before = _completed(journal, "tiny")
    with open(journal, "ab") as f:
        f.write(b'{"op_code": 4, "worker_id": "x", "study_id": 0, "dat')       # a write cut off by a kill
    with pytest.warns(UserWarning, match="unfinished"):
        run(st, tmp_path, trials=8, storage=str(journal))
    after = _completed(journal, "tiny")
    assert before.items() <= after.items() and len(after) == 8
    assert (tmp_path / "t.journal.partial-0").read_bytes().startswith(b'{"op_code": 4')


def test_status_and_best_commands(quick):
    st, ost, rep, info, tmp = quick
    r = cli("study", "status", "quickstart", "--results-dir", tmp / "results", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["complete"] == 20 and s["pareto"] == len(info["pareto"])
    r = cli("study", "best", QUICKSTART, "--results-dir", tmp / "results")
    assert r.returncode == 0 and "tpot_s" in r.stdout
    assert len(r.stdout.strip().splitlines()) == 2 + len(info["pareto"])


# ---------------------------------------------------------------- the ready studies

@pytest.mark.parametrize("path", sorted((REPO / "studies").glob("*.yaml")), ids=lambda p: p.stem)
def test_ready_studies_load_and_their_base_design_evaluates(path):
    from codesign.search.metrics import Evaluator
    st = load_study(path)
    assert st.name == path.stem
    (o,) = Evaluator(st)([st.space.baseline_params()])
    assert o.error is None and all(math.isfinite(v) for v in o.values)


def test_baseline_is_the_first_trial_and_is_the_base_device(tmp_path):
    from codesign.perf import evaluate
    st = load_study(REPO / "studies" / "datacenter-vs-h100.yaml")
    run(st, tmp_path, trials=3, batch=3)
    t0 = optuna_study(st, tmp_path).get_trials()[0]
    assert t0.user_attrs["baseline"] is True
    assert t0.params == {"compute.cores": 132, "compute.clock": 1.83e9, "hbm": "hbm3-5-stacks", "weight_bits": 16}
    wl = st.workloads[0]
    r = evaluate("h100-sxm", wl.model, wl.scenario)
    m = t0.user_attrs["metrics"]
    assert m[f"tpot_s@{wl.label}"] == pytest.approx(r.summary["tpot_s"], rel=1e-12)
    from codesign.hardware import load_hardware
    from codesign.hardware.area import estimate_area
    assert m["area_mm2"] == pytest.approx(estimate_area(load_hardware("h100-sxm")).total, rel=1e-12)


def _children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(x) for x in text.split()}


def _any_completed(journal: Path) -> bool:
    try:
        return journal.exists() and bool(_completed(journal, "tiny"))
    except KeyError:            # the journal exists before the study record is written
        return False


def _alive(pid: int) -> bool:
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return st.rsplit(")", 1)[1].split()[0] != "Z"      # a zombie has exited


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_the_parent_stops_the_workers(tmp_path, sig):
    proc, journal = _endless_run(tmp_path, 3, "--workers", "2")
    try:
        t0 = time.monotonic()
        kids: set[int] = set()
        while time.monotonic() - t0 < 120 and not _any_completed(journal):
            kids |= _children(proc.pid)
            time.sleep(0.2)
        kids |= _children(proc.pid)
        assert len(kids) >= 2, "workers did not start"
        os.kill(proc.pid, sig)
    finally:
        if proc.poll() is None and not kids:
            proc.kill()
        proc.wait(timeout=30)
    t1 = time.monotonic()
    while time.monotonic() - t1 < 5 and any(_alive(k) for k in kids):
        time.sleep(0.1)
    assert not [k for k in kids if _alive(k)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_with_workers_is_one_line_and_leaves_no_worker(tmp_path):
    """Ctrl-C at a terminal reaches the whole process group: the parent says 'aborted' once,
    the workers leave without a traceback each (issue 15)."""
    path = make(tmp_path, sampler={"name": "random", "seed": 9})
    journal = tmp_path / "int.journal"
    proc = subprocess.Popen([sys.executable, "-m", "codesign.cli", "study", "run", str(path), "--trials", "100000",
                             "--workers", "2", "--storage", str(journal), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    kids: set[int] = set()
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120 and not _any_completed(journal):
            kids |= _children(proc.pid)
            time.sleep(0.2)
        kids |= _children(proc.pid)
        assert len(kids) >= 2, "workers did not start"
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    text = err.decode()
    assert "Traceback" not in text, text
    assert [ln for ln in text.splitlines() if ln.strip()] == ["aborted"], text
    t1 = time.monotonic()
    while time.monotonic() - t1 < 5 and any(_alive(k) for k in kids):
        time.sleep(0.1)
    assert not [k for k in kids if _alive(k)]


def test_a_storage_failure_under_workers_is_one_line_per_process(tmp_path):
    """The journal turns unreadable while two workers run (a database outage does the same):
    every process says so in one line, no traceback, exit status 2 (issue 15)."""
    proc, journal = _endless_run(tmp_path, 11, "--workers", "2", stderr=subprocess.PIPE)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120 and not _any_completed(journal):
            time.sleep(0.2)
        with open(journal, "a", encoding="utf-8") as f:
            f.write("not a journal line\n")
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    text = err.decode()
    assert proc.returncode == 2 and "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("error: ") and "cannot read the study journal" in ln for ln in lines), text


def test_reading_commands_never_write_the_journal(tmp_path):
    """status, best, export and report read a snapshot: the journal stays byte for byte, even
    with an unfinished last line (a killed writer's), which only a run repairs (issue 15, item 8)."""
    path = make(tmp_path)
    st = load_study(path)
    run(st, tmp_path, trials=6)
    journal = tmp_path / "results" / st.name / "study.journal"
    with open(journal, "ab") as f:
        f.write(b'{"op_code": 4, "worker_id": "x"')
    before = journal.read_bytes()
    for args in (("study", "status", path), ("study", "best", path), ("study", "export", path, "--out", tmp_path / "x"),
                 ("report", "--study", path, "--out", tmp_path / "r.html")):
        r = cli(*args, "--results-dir", tmp_path / "results")
        assert r.returncode == 0, r.stderr
        assert journal.read_bytes() == before, args
    assert not list(journal.parent.glob("*.partial-*"))


def test_trials_left_running_elsewhere_are_named_and_can_be_failed(tmp_path):
    """A RUNNING trial of a worker on another host holds a study short of its target: the run
    says so, and resume --fail-stale marks it FAIL and reaches the target (issue 15, item 3)."""
    from codesign.search.runner import open_optuna_study
    path = make(tmp_path)
    st = load_study(path)
    run(st, tmp_path, trials=4)
    ost = open_optuna_study(st, parse_ref(None, st.name, tmp_path / "results"))
    t = ost.ask()
    ost.set_user_attr("x", 1)
    t.set_user_attr("worker", "elsewhere:1")
    r = cli("study", "resume", st.name, "--trials", "6", "--results-dir", tmp_path / "results")
    assert r.returncode == 0, r.stderr
    assert "still RUNNING under other workers" in r.stdout and "elsewhere:1" in r.stdout and "--fail-stale" in r.stdout
    r = cli("study", "resume", st.name, "--trials", "6", "--fail-stale", "0", "--results-dir", tmp_path / "results")
    assert r.returncode == 0, r.stderr
    assert "marked 1 interrupted" in r.stdout and "still RUNNING" not in r.stdout
    s = json.loads(cli("study", "status", st.name, "--json", "--results-dir", tmp_path / "results").stdout)
    assert s["complete"] == 6 and s["running"] == 0 and s["stale"] == []


def test_a_workload_carries_its_physical_batch_and_beams_into_the_scenario(tmp_path):
    """A study's workload sets ubatch (llama.cpp -ub) and beams like the CLI does."""
    path = make(tmp_path, workloads=[{"workload": "llama-3.2-1b", "prompt": 2048, "generate": 8, "ubatch": 512,
                                      "beams": 2, "runtime": "llama.cpp-cuda"}], hardware="rtx-4090", space={})
    sc = load_study(path).workloads[0].scenario
    assert (sc.ubatch, sc.beams, sc.prompt, sc.runtime) == (512, 2, 2048, "llama.cpp-cuda")
