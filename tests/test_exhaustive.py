"""Exhaustive search, sampler auto, no re-evaluated designs, the front's hypervolume (codesign.search)."""
from __future__ import annotations

import itertools
import json
import math
import time

import numpy as np
import pytest
import yaml
from conftest import cli
from conftest import optuna_study_in as stored
from conftest import run_study_in as run
from test_study import BASE as TINY

from codesign.errors import CodesignError
from codesign.search import parse_ref, study_from_dict
from codesign.units import parse_quantity

# test_study's tiny study (fp8 with 4-bit weights is invalid, 1 GiB of DRAM does not hold every
# model, a TPOT bound cuts the slow ones) made discrete: 4 x 3 x 2 chips and 6 compressions
# (group_size only for 4-bit weights) = 144 designs. Throughput against die area is a real
# trade-off (more cores: faster and larger), and the DRAM capacity is inert in both objectives,
# so the front has exact ties. No sampler named: auto.
BASE = {k: v for k, v in TINY.items() if k != "sampler"} | {
    "name": "enum",
    "space": {
        "compute.cores": {"type": "int", "low": 1, "high": 4},
        "compute.clock": {"type": "float", "low": "0.6 GHz", "high": "1.4 GHz", "step": "0.4 GHz"},
        "memory.LPDDR4X.capacity": {"type": "categorical", "choices": ["32 GiB", "1 GiB"]},
    },
    "objectives": ["throughput_tokens_per_s", "area_mm2"],
}
TPOT_LIMIT = parse_quantity(TINY["constraints"]["tpot_s"]["max"], "time")
CORES, CLOCKS, DRAM = (1, 2, 3, 4), (0.6e9, 1.0e9, 1.4e9), (32.0 * 2**30, 2.0**30)     # SI, as the space holds them


def study(**changes):
    data = json.loads(json.dumps(BASE))
    data.update(changes)
    return study_from_dict(data)


def write(tmp_path, **changes):
    data = json.loads(json.dumps(BASE))
    data.update(changes)
    path = tmp_path / "enum.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def keys(params_list) -> set:
    from codesign.search.space import params_key
    return {params_key(p) for p in params_list}


# ---------------------------------------------------------------- the exact front

def brute_force(st):
    """Every design of BASE's space scored on its own (evaluate_batch on the derived spec), and the
    feasible front by the O(n^2) definition; objective values equal to 1e-9 count as ties."""
    from codesign.compression import Compression
    from codesign.hardware.area import estimate_area
    from codesign.perf import evaluate_batch
    wl = st.workloads[0]
    designs, valid = [], 0
    comps = [{"weight_bits": 8, "weight_format": f} for f in ("int", "fp8")]
    comps += [{"weight_bits": 4, "weight_format": f, "group_size": g} for f in ("int", "fp8") for g in (32, 128)]
    for cores, clock, dram, c in itertools.product(CORES, CLOCKS, DRAM, comps):
        p = {"compute.cores": cores, "compute.clock": clock, "memory.LPDDR4X.capacity": dram, **c}
        try:
            comp = Compression(**c)
        except ValueError:
            designs.append((p, None))           # fp8 weights need 8 bits: not a format
            continue
        hw = st.space.hardware(p)
        r = evaluate_batch(hw, wl.model, wl.scenario, [comp])
        valid += 1
        ok = bool(r["fits"][0]) and float(r["tpot_s"][0]) <= TPOT_LIMIT
        designs.append((p, (float(r["throughput_tokens_per_s"][0]), estimate_area(hw).total) if ok else None))
    feas = [(p, v) for p, v in designs if v is not None]

    def dominates(a, b):        # throughput maximised, area minimised
        ge = a[0] >= b[0] * (1 - 1e-9) and a[1] <= b[1] * (1 + 1e-9)
        gt = a[0] > b[0] * (1 + 1e-9) or a[1] < b[1] * (1 - 1e-9)
        return ge and gt
    front = [(p, v) for p, v in feas if not any(dominates(w, v) for _, w in feas)]
    return len(designs), valid, len(feas), front


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """BASE solved exhaustively (sampler auto) through the command line, then exported."""
    tmp = tmp_path_factory.mktemp("enum")
    path = write(tmp)
    r = cli("study", "run", path, "--results-dir", tmp / "results", "--no-progress")
    assert r.returncode == 0, r.stderr
    return tmp, path, r.stdout


def test_exhaustive_front_equals_brute_force(solved):
    from codesign.search.exhaustive import ATTR
    tmp, path, out = solved
    st = study()
    n, valid, feasible, truth = brute_force(st)
    ost = stored(st, tmp)
    tally = ost.user_attrs[ATTR]
    assert (tally["designs"], tally["done"], tally["valid"], tally["feasible"]) == (n, n, valid, feasible) == (
        144, 144, 96, feasible)
    assert tally["complete"] and tally["front"] == len(ost.best_trials)
    front = ost.best_trials
    assert len(truth) >= 3 and 0 < feasible < valid
    # the same designs, up to designs whose values differ only by rounding (ties in one, not the other)
    assert keys(t.params for t in front) <= keys(p for p, _ in truth)
    for _, v in truth:
        assert any(np.allclose(t.values, v, rtol=1e-9) for t in front), v
    # only the front is stored, as complete trials with a sampled trial's attributes
    assert {t.state.name for t in ost.get_trials()} == {"COMPLETE"}
    assert len(ost.get_trials()) == len(front)
    for t in front:
        assert t.user_attrs["exhaustive"] is True and t.user_attrs["worker"]
        assert t.user_attrs["metrics"]["throughput_tokens_per_s"] == t.values[0]
        assert all(v <= 0 for v in t.constraints.values()) and set(t.constraints) == {"valid", "fits", "tpot_s.max"}
    # and the run said what it chose and what it found
    assert "auto -> exhaustive: the space is discrete with 144 designs" in out
    assert f"144 designs enumerated; 96 valid; {feasible} feasible; {len(front)} on the exact Pareto front" in out
    assert "most violated constraint: " in out and "hypervolume of the front: " in out


def test_best_and_export_read_an_exhaustive_study(solved):
    import pandas as pd
    tmp, path, _ = solved
    r = cli("study", "best", path, "--results-dir", tmp / "results")
    assert r.returncode == 0, r.stderr
    st = study()
    front = stored(st, tmp).best_trials
    assert len(r.stdout.strip().splitlines()) == 2 + len(keys(t.params for t in front))
    r = cli("study", "export", path, "--results-dir", tmp / "results", "--out", tmp / "export")
    assert r.returncode == 0, r.stderr
    pareto = pd.read_csv(tmp / "export" / "pareto.csv")
    assert sorted(pareto["number"]) == sorted(t.number for t in front)
    for t in front:
        assert (tmp / "export" / "designs" / str(t.number) / "hardware.yaml").is_file()
    r = cli("study", "status", "enum", "--results-dir", tmp / "results")
    assert r.returncode == 0 and "144 designs enumerated" in r.stdout


def test_a_stopped_enumeration_continues_to_the_same_front(tmp_path):
    from codesign.search.exhaustive import ATTR, run_exhaustive
    from codesign.search.metrics import Evaluator
    from codesign.search.runner import open_optuna_study
    st = study(sampler={"name": "exhaustive", "options": {"chunk_size": 25}})
    ost = open_optuna_study(st, parse_ref(None, st.name, tmp_path / "results"))
    tally, _ = run_exhaustive(st, ost, Evaluator(st), attrs={"worker": "w"}, deadline=time.monotonic())
    assert tally.done == 25 and not tally.complete and ost.user_attrs[ATTR]["done"] == 25
    rep = run(st, tmp_path)                   # continues where it stopped
    assert rep.sampler == "exhaustive" and rep.exhaustive["done"] == 144 and rep.exhaustive["complete"]
    once = tmp_path / "once"
    run(st, once)
    assert keys(t.params for t in stored(st, tmp_path).best_trials) == keys(t.params for t in stored(st, once).best_trials)
    again = run(st, tmp_path)                 # solved: nothing more to do
    assert again.new == 0 and again.exhaustive["done"] == 144


def test_enumeration_follows_conditions_and_steps():
    from codesign.search.exhaustive import count_designs, iter_designs
    st = study()
    designs = list(iter_designs(st.space))
    assert len(designs) == count_designs(st.space) == 144 == len(keys(designs))
    assert all(("group_size" in d) == (d["weight_bits"] == 4) for d in designs)
    assert sorted({d["compute.clock"] for d in designs}) == list(CLOCKS)
    # compression varies fastest: consecutive designs share their chip
    assert [d["compute.cores"] for d in designs[:6]] == [1] * 6
    assert count_designs(st.space, cap=10) > 10          # stops counting early, but says "more"


# ---------------------------------------------------------------- sampler auto

def test_auto_is_the_default_and_chooses_by_size_and_budget():
    from codesign.search.samplers import MAX_DESIGNS, TPE_MAX_TRIALS, choose_sampler
    st = study()
    assert st.spec.sampler.name == "auto"
    c = choose_sampler(st)
    assert (c.name, c.designs) == ("exhaustive", 144) and f"{MAX_DESIGNS:,}" in c.why
    small = study(sampler={"name": "auto", "options": {"max_designs": 100}})
    assert choose_sampler(small).name == "tpe" and "more than 100 designs" in choose_sampler(small).why
    assert choose_sampler(small, trials=TPE_MAX_TRIALS + 1).name == "nsga2"
    space = dict(BASE["space"], **{"compute.clock": {"type": "float", "low": "0.6 GHz", "high": "1.4 GHz"}})
    c = choose_sampler(study(space=space))
    assert c.name == "tpe" and "dimension 'compute.clock' is continuous" in c.why
    named = study(sampler={"name": "nsga2", "seed": 1, "options": {"population_size": 10}})
    assert choose_sampler(named).name == "nsga2"


def test_auto_falling_back_runs_its_sampler_with_its_defaults(tmp_path):
    st = study(sampler={"name": "auto", "options": {"max_designs": 100}})
    rep = run(st, tmp_path, trials=12)
    assert rep.sampler == "tpe" and rep.completed == 12 and rep.exhaustive is None


def test_exhaustive_with_a_continuous_dimension_is_one_error_line(tmp_path):
    space = dict(BASE["space"], **{"compute.clock": {"type": "float", "low": "0.6 GHz", "high": "1.4 GHz"}})
    path = write(tmp_path, space=space, sampler={"name": "exhaustive"})
    r = cli("study", "run", path, "--results-dir", tmp_path / "results")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: sampler.name: ")
    assert "dimension 'compute.clock' is continuous" in lines[0]
    with pytest.raises(CodesignError, match="more than 100 designs"):
        from codesign.search.samplers import choose_sampler
        choose_sampler(study(sampler={"name": "exhaustive", "options": {"max_designs": 100}}))
    with pytest.raises(CodesignError, match="sampler.options: auto takes max_designs, chunk_size, not 'population_size'"):
        study(sampler={"name": "auto", "options": {"population_size": 10}})


# ---------------------------------------------------------------- no design twice

def test_designs_already_in_the_study_are_not_evaluated_again(tmp_path, monkeypatch):
    from codesign.search.metrics import Evaluator
    scored = []
    original = Evaluator._evaluate

    def counting(self, params_list):
        scored.extend(params_list)
        return original(self, params_list)
    monkeypatch.setattr(Evaluator, "_evaluate", counting)
    # 12 designs, 20 random trials, then 40: many trials repeat a design
    st = study(space={"compute.cores": {"type": "int", "low": 1, "high": 3},
                      "compute.clock": {"type": "categorical", "choices": ["0.6 GHz", "1.4 GHz"]}},
               compression={"weight_bits": {"type": "categorical", "choices": [8, 4]}},
               sampler={"name": "random", "seed": 2})
    rep = run(st, tmp_path, trials=20, batch=1)
    trials = stored(st, tmp_path).get_trials()
    assert rep.completed == 20 and rep.distinct == len(keys(t.params for t in trials)) < 12
    assert len(scored) == len(keys(scored)) == rep.distinct          # each design scored once
    by_number = {t.number: t for t in trials}
    repeats = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert len(repeats) == 20 - rep.distinct > 0
    for t in repeats:
        first = by_number[t.user_attrs["duplicate_of"]]
        assert t.params == first.params and t.values == first.values and t.constraints == first.constraints
        assert t.user_attrs["metrics"] == first.user_attrs["metrics"]
    # a later run (a new process's Evaluator) looks the study up too
    scored.clear()
    rep = run(st, tmp_path, trials=40, batch=4)
    assert rep.completed == 40
    assert 0 < len(scored) == rep.distinct - len(keys(t.params for t in trials))


# ---------------------------------------------------------------- a study with nothing valid

@pytest.mark.parametrize("sampler", ["random", "exhaustive"])
def test_a_study_whose_designs_are_all_invalid_exits_nonzero(tmp_path, sampler):
    path = write(tmp_path, compression={"weight_bits": {"type": "categorical", "choices": [4]},
                                        "weight_format": {"type": "categorical", "choices": ["fp8"]}},
                 sampler={"name": sampler, "seed": 0}, trials=5)
    r = cli("study", "run", path, "--results-dir", tmp_path / "results", "--no-progress")
    assert r.returncode == 2, r.stdout + r.stderr
    what = "trials" if sampler == "random" else "designs"
    n = 5 if sampler == "random" else 24
    assert f"are invalid; the most common reason ({n} of them): " in r.stderr
    assert f"all {n} {what} of study 'enum'" in r.stderr and "weight_format fp8 needs weight_bits 8" in r.stderr


# ---------------------------------------------------------------- fronts and hypervolume

def test_pareto_mask_matches_the_definition_and_keeps_ties():
    from codesign.search.front import pareto_mask
    rng = np.random.default_rng(0)
    for k in (1, 2, 3):
        costs = rng.integers(0, 6, size=(200, k)).astype(float)       # many ties
        naive = [not any(np.all(o <= c) and np.any(o < c) for o in costs) for c in costs]
        assert list(pareto_mask(costs)) == naive


def test_hypervolume_of_known_fronts():
    from codesign.search.front import MARGIN, hypervolume, to_costs
    ideal, nadir = np.zeros(2), np.full(2, 1 / (1 + MARGIN))      # the reference point is then (1, 1)
    assert hypervolume(np.array([[0.0, 0.0]]), ideal, nadir) == pytest.approx(1.0)
    assert hypervolume(np.array([[0.5, 0.0], [0.0, 0.5]]), ideal, nadir) == pytest.approx(0.75)
    assert hypervolume(np.array([[0.5, 0.0], [0.0, 0.5], [0.6, 0.6]]), ideal, nadir) == pytest.approx(0.75)
    assert hypervolume(np.array([[2.0, 0.0]]), ideal, nadir) == 0.0                   # beyond the reference
    assert hypervolume(np.array([[0.5]]), [0.0], [1 / (1 + MARGIN)]) == pytest.approx(0.5)
    # a maximised objective is negated first
    assert to_costs([[3.0, 2.0]], ["maximize", "minimize"]).tolist() == [[-3.0, 2.0]]
    assert math.isclose(hypervolume(np.array([[0.25, 0.25, 0.25]]), np.zeros(3), np.full(3, 1 / (1 + MARGIN))),
                        0.75 ** 3)


def test_designs_leave_the_base_spec_untouched():
    """Overrides copy only the containers on their paths (the evaluation's speed-up): the base
    mapping every design starts from must come out of a whole enumeration unchanged."""
    import copy

    from codesign.search.exhaustive import iter_designs
    from codesign.search.metrics import Evaluator
    st = study()
    before = copy.deepcopy(st.space.base_data)
    outs = Evaluator(st)(list(iter_designs(st.space)), cache=False)
    assert st.space.base_data == before
    hw = st.space.hardware({"compute.cores": 4, "compute.clock": 1.4e9, "memory.LPDDR4X.capacity": 2.0**30})
    assert hw.main_memory().capacity == 2**30 and st.base.main_memory().capacity != 2**30
    assert sum(o.error is None for o in outs) == 96


def test_a_study_searching_compression_without_quality_says_so(tmp_path):
    from codesign.search.runner import run_study
    st = study()
    assert any(d.target == "compression" for d in st.space.dims)
    lines: list = []
    run_study(st, parse_ref(None, st.name, tmp_path / "results"), progress=False, say=lines.append)
    assert any("compressed designs look free" in line for line in lines)


def test_a_power_limit_caps_every_design(tmp_path):
    """power_limit: every design's board is capped (its clock drops above the budget), so the
    feasible ones peak at or under it, and a design whose static power alone exceeds it is
    infeasible; the exported design carries the cap, so it re-evaluates the same."""
    from codesign.search.metrics import Evaluator
    base = study()
    peaks = [o.metrics.get("peak_power_w") for o in Evaluator(base)([{"compute.cores": 4, "compute.clock": 1.4e9,
                                                                     "memory.LPDDR4X.capacity": 32 * 2**30}])]
    cap = 0.6 * peaks[0]
    st = study(power_limit=f"{cap} W")
    assert any(c.name == "peak_power_w.max" for c in st.constraints)
    hw, ov = st.space.design({"compute.cores": 4, "compute.clock": 1.4e9, "memory.LPDDR4X.capacity": 32 * 2**30})
    assert hw.power.limit == pytest.approx(cap) and ov["power.limit"] == pytest.approx(cap)
    (o,) = Evaluator(st)([{"compute.cores": 4, "compute.clock": 1.4e9, "memory.LPDDR4X.capacity": 32 * 2**30}])
    if o.feasible:
        assert o.metrics["peak_power_w"] <= cap * 1.001
    assert o.metrics["peak_power_w"] < peaks[0]
