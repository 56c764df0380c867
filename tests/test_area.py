"""Area / yield / cost model: the per-class calibration on public dies (data/die-areas.csv), an
independent hand calculation, monotonicity in every knob, errors."""
import math

import numpy as np
import pytest

from codesign.errors import CodesignError
from codesign.hardware import apply_overrides, hardware_from_dict, load_hardware
from codesign.hardware import area as A
from codesign.hardware import area_fit as F
from codesign.hardware.classes import CLASSES

# What the calibration reaches on data/die-areas.csv (benchmarks/bench_area.py prints it): per class,
# the in-sample and the leave-one-chip-out (LOCO) MAPE, with a little slack for rounding of the
# stored multipliers, and the worst in-sample error of one die. The issue asks LOCO <= 15 % per class;
# the TPU (upper-bound areas, Google's own densities) and the NPU classes do not reach it and these
# numbers say so.
REACHED = {"gpu": (0.108, 0.118, 0.30), "tpu": (0.147, 0.184, 0.30), "npu": (0.306, 0.398, 0.62),
           "cpu": (0.053, 0.107, 0.15)}


@pytest.fixture(scope="module")
def dies():
    return F.load_dies()


@pytest.fixture(scope="module")
def report(dies):
    return F.report(dies)


def spec_dict(name):
    return load_hardware(name).model_dump(by_alias=True, exclude_unset=True, mode="json")


def tiny(**over):
    """A thin 7 nm accelerator: 1024 bf16 MACs at 1 GHz, 64 fp32 lanes, 4 MiB SRAM holding everything."""
    d = {"name": "tiny", "class": "npu", "process_node": "7 nm",
         "compute": {"clock": "1 GHz", "cores": 1, "matrix": {"peak": {"bf16": 2 * 1024 * 1e9}},
                     "vector": {"peak": {"fp32": 2 * 64 * 1e9}}},
         "memory": [{"name": "SRAM", "kind": "sram", "capacity": "4 MiB", "bandwidth": "1 TB/s",
                     "holds": ["weights", "kv", "activations"]}]}
    return hardware_from_dict(apply_overrides(d, over))


def total(d: dict, **kw) -> float:
    return A.estimate_area(hardware_from_dict(d), **kw).total


# -- the public-die dataset and the per-class calibration ------------------------------------

def test_dataset_covers_20_dies_in_4_classes_with_sources(dies):
    classes = {d.device_class for d in dies}
    assert len(dies) >= 20 and classes == {"gpu", "tpu", "npu", "cpu"}
    assert all(sum(d.device_class == c for d in dies) >= 4 for c in classes)
    for d in dies:
        assert d.row["source_url"] and d.row["source_date_or_commit"], d.chip
        assert 0 <= d.spare < 1 and d.area_mm2 > 0


def test_library_rows_agree_with_their_specs(dies):
    """A row estimated from a library spec carries the same spare fraction as the spec, and every
    row's class is its spec's class (the loader refuses a mismatch)."""
    for d in dies:
        if d.row["estimate_from"] == "library":
            assert d.spec.spare_fraction == pytest.approx(d.spare, abs=5e-4), d.chip
            assert d.spec.die_area == pytest.approx(d.area_mm2, rel=1e-3), d.chip


def test_stored_multipliers_are_the_fit_on_the_dataset(dies):
    """CLASS_CALIBRATION is what a fresh fit of data/die-areas.csv gives (to its rounding)."""
    for cls, cal in A.CLASS_CALIBRATION.items():
        fresh = F.fit([d for d in dies if d.device_class == cls], cal)
        for name in cal.free:
            assert getattr(fresh, name) == pytest.approx(getattr(cal, name), rel=0.01, abs=0.002), (cls, name)


@pytest.mark.parametrize("cls", sorted(REACHED))
def test_calibration_reproduces_the_published_dies(report, cls):
    r = report[cls]
    in_sample, loco, worst = REACHED[cls]
    assert r.mape <= in_sample and r.loco_mape <= loco
    # the calibrated model (what a study sees) reproduces each die as the fit says
    for d in (d for d in F.load_dies() if d.device_class == cls):
        est = A.estimate_area(d.spec, spare_fraction=d.spare).total
        assert est == pytest.approx(F.predict(d, A.CLASS_CALIBRATION[cls]), rel=1e-9)
    assert max(abs(e / p - 1) for _, p, e, _ in r.rows) < worst


def test_gpu_class_meets_the_issue_target(report):
    assert report["gpu"].n >= 10 and report["gpu"].loco_mape <= 0.15
    assert report["cpu"].loco_mape <= 0.15


def test_library_specs_fall_in_their_class_loco_band(report):
    """Every library spec with a published die area is estimated within its class's LOCO band
    (the largest held-out error of that class), including SKUs that are not dataset rows."""
    import glob
    import os
    band = {cls: max(abs(lo / p - 1) for _, p, _, lo in r.rows) for cls, r in report.items()}
    checked = 0
    for path in sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "hardware_specs", "*", "*.yaml"))):
        spec = load_hardware(os.path.splitext(os.path.basename(path))[0])
        if spec.die_area is None or spec.device_class not in band:
            continue
        est = A.estimate_area(spec).total
        assert abs(est / spec.die_area - 1) <= band[spec.device_class], (spec.name, est, spec.die_area)
        checked += 1
    assert checked >= 15


def test_tpu_v4_below_published_bound():
    # Jouppi et al., ISCA 2023: TPU v4 die < 600 mm^2. The library spec omits the 128 MiB CMEM.
    est = A.estimate_area(load_hardware("tpu-v4"))
    assert 100 < est.total < 600
    assert est.spare_fraction == 0


def test_thin_spec_matches_hand_calculation():
    est = A.estimate_area(tiny(), calibration=A.UNCALIBRATED)
    d7 = 96.3e6                                                  # CSET N7 logic density, transistors/mm^2
    fp16_mac = 685_300 * (10 / 52) ** 2                           # LLMCompass FPU scaling
    fp32_mac = 685_300 * (23 / 52) ** 2
    logic = (1024 * fp16_mac + 64 * fp32_mac + A.CORE_CONTROL_TRANSISTORS + A.NOC_TRANSISTORS_PER_CORE) / d7
    sram = 4 * 2**20 * 8 * 0.027e-6 / (64 * 2**20 * 8 * 0.027e-6 / 41.0)   # V-Cache array efficiency
    assert est.sram["SRAM"] == pytest.approx(41.0 / 16, rel=1e-12)
    assert est.total == pytest.approx((logic + sram) * (1 + A.OTHER_FRACTION), rel=1e-9)
    assert est.memory_phy == 0 and est.io == 0
    # the npu class's multipliers scale exactly their terms
    cal, cal_est = A.CLASS_CALIBRATION["npu"], A.estimate_area(tiny())
    assert cal_est.matrix == pytest.approx(cal.datapath * est.matrix)
    assert cal_est.core_control == pytest.approx(cal.core * est.core_control)
    assert cal_est.sram["SRAM"] == pytest.approx(cal.sram * est.sram["SRAM"])


def test_hbm_stack_count_from_bandwidth_and_capacity():
    counts = {n: A.memory_interfaces(load_hardware(n)) for n in ("a100-80gb", "a100-40gb", "h100-sxm", "h200", "tpu-v4")}
    assert [c for _, c in counts["a100-80gb"].values()] == [5.0]     # 5 HBM2e stacks
    assert [c for _, c in counts["a100-40gb"].values()] == [5.0]
    assert [c for _, c in counts["h100-sxm"].values()] == [5.0]      # 5 HBM3 stacks
    assert [c for _, c in counts["h200"].values()] == [6.0]          # 6 HBM3e stacks
    assert [c for _, c in counts["tpu-v4"].values()] == [4.0]        # 4 HBM2 stacks


# -- monotone in every knob, clock-independent ------------------------------------------------

# one library spec per calibrated class, with the paths of its knobs
KNOBS = {
    "h100-sxm": {"cores": 144, "sram": ("memory.L2.capacity", "70 MiB"), "mem": ("memory.HBM3.bandwidth", "4.8 TB/s"),
                 "peaks": ("compute.matrix.peak", "compute.vector.peak")},
    "tpu-v4": {"cores": 4, "sram": ("memory.VMEM.capacity", "32 MiB"), "mem": ("memory.HBM2.bandwidth", "2.4 TB/s"),
               "peaks": ("compute.matrix.peak", "compute.vector.peak")},
    "rk3588-npu": {"cores": 6, "sram": ("memory.CBUF.capacity", "768 KiB"), "mem": ("memory.LPDDR4X.bandwidth", "68 GB/s"),
                   "peaks": ("compute.matrix.peak", "compute.vector.peak")},
    "intel-xeon-8480plus": {"cores": 60, "sram": ("memory.L2.capacity", "4 MiB"), "mem": ("memory.DDR5.bandwidth", "614 GB/s"),
                            "peaks": ("compute.matrix.peak", "compute.vector.peak")},
}


@pytest.mark.parametrize("name", sorted(KNOBS))
def test_area_is_monotone_in_every_knob(name):
    base, k = spec_dict(name), KNOBS[name]
    a0 = total(base)
    cores = base["compute"]["cores"]
    assert total(apply_overrides(base, {"compute.cores": k["cores"]})) > a0                 # more units, same peaks
    assert total(apply_overrides(base, {k["sram"][0]: k["sram"][1]})) > a0                   # more SRAM
    assert total(apply_overrides(base, {k["mem"][0]: k["mem"][1]})) > a0                     # more interfaces
    assert total(apply_overrides(base, {"interconnect.device_link.bandwidth": "1 TB/s"}
                                 if "device_link" in base.get("interconnect", {}) else {})) >= a0
    # twice the units with twice the peaks (what a study's scale rules do) is larger still
    scaled = {"compute.cores": 2 * cores}
    for sec in k["peaks"]:
        d = base["compute"][sec.split(".")[1]]["peak"]
        scaled[sec] = {dt: f"{2 * float(v.split()[0]) if isinstance(v, str) else 2 * v} {v.split()[1] if isinstance(v, str) else ''}"
                       .strip() for dt, v in d.items()}
    assert total(apply_overrides(base, scaled)) > total(apply_overrides(base, {"compute.cores": 2 * cores}))


@pytest.mark.parametrize("name", sorted(KNOBS))
def test_area_is_clock_independent(name):
    """The same hardware at another clock (peaks follow the clock) has the same area: the model
    counts MACs = peak / (2 x clock), not FLOP/s."""
    base = spec_dict(name)
    clock = load_hardware(name).compute.clock
    spec = load_hardware(name)
    over = {"compute.clock": clock * 1.3,
            "compute.matrix.peak": {dt: v * 1.3 for dt, v in spec.compute.matrix.peak.items()},
            "compute.vector.peak": {dt: v * 1.3 for dt, v in spec.compute.vector.peak.items()}}
    assert total(apply_overrides(base, over)) == pytest.approx(total(base), rel=1e-12)


def test_area_grows_with_sram_cores_and_bandwidth():
    base = spec_dict("h100-sxm")
    a0 = A.estimate_area(hardware_from_dict(base)).total
    more_l2 = A.estimate_area(hardware_from_dict(apply_overrides(base, {"memory.L2.capacity": "70 MiB"}))).total
    more_sm = A.estimate_area(hardware_from_dict(apply_overrides(base, {"compute.cores": 144}))).total
    more_bw = A.estimate_area(hardware_from_dict(apply_overrides(base, {"memory.HBM3.bandwidth": "4.8 TB/s"}))).total
    more_peak = A.estimate_area(hardware_from_dict(apply_overrides(base, {"compute.matrix.peak.bf16": "1979 TFLOP/s",
                                                                         "compute.matrix.peak.fp16": "1979 TFLOP/s"})))
    assert more_l2 > a0 and more_sm > a0 and more_bw > a0 and more_peak.total > a0
    assert more_peak.matrix > A.estimate_area(hardware_from_dict(base)).matrix


def test_smaller_node_is_smaller():
    areas = [A.estimate_area(tiny(process_node=f"{n} nm")).total for n in (28, 16, 7, 5, 3)]
    assert all(a > b for a, b in zip(areas, areas[1:]))
    # an interpolated node lies between its neighbours
    assert areas[2] > A.estimate_area(tiny(process_node="6.5 nm")).total > A.estimate_area(tiny(process_node="6 nm")).total


def test_spares_add_area_only_where_replicated():
    h = load_hardware("h100-sxm")
    with_spares, without = A.estimate_area(h), A.estimate_area(h, spare_fraction=0)
    assert with_spares.spare_fraction == pytest.approx(144 / 132 - 1, abs=1e-4)      # the spec's: 144 SMs on GH100
    assert with_spares.total > without.total and with_spares.io == without.io
    assert with_spares.core_control == pytest.approx((144 / 132) * without.core_control, rel=1e-4)
    # a spec without a spare fraction gets the class default
    d = spec_dict("h100-sxm")
    del d["spare_fraction"]
    assert A.estimate_area(hardware_from_dict(d)).spare_fraction == CLASSES["gpu"].spare_fraction


def test_dies_per_wafer_and_yield():
    a = 610.0
    assert A.dies_per_wafer(a) == pytest.approx(math.pi * 150**2 / a - math.pi * 300 / math.sqrt(2 * a))
    for model in ("negative-binomial", "murphy"):
        ys = [A.die_yield(x, 0.1, model) for x in (50, 200, 400, 800)]
        assert all(0 < y <= 1 for y in ys) and all(y1 > y2 for y1, y2 in zip(ys, ys[1:]))
        assert A.die_yield(800, 0.0, model) == 1.0
    # small A*D0: both models tend to Poisson-like 1 - A*D0
    assert A.die_yield(10, 0.01, "murphy") == pytest.approx(A.die_yield(10, 0.01), rel=1e-3)
    # NB, alpha = 3: (1 + A D0 / 3)^-3
    assert A.die_yield(814, 0.1) == pytest.approx((1 + 8.14 * 0.1 / 3) ** -3)


def test_die_cost_positive_and_increasing():
    costs = [A.die_cost(x, 5) for x in (50, 100, 300, 600, 800)]
    assert all(c > 0 for c in costs) and all(c1 < c2 for c1, c2 in zip(costs, costs[1:]))
    # cost per mm^2 grows too (fewer dies, lower yield)
    assert costs[-1] / 800 > costs[0] / 50
    # CSET wafer price at N5 over an exact count
    assert A.die_cost(600, 5) == pytest.approx(16988 / (A.dies_per_wafer(600) * A.die_yield(600, 0.10)))
    h = load_hardware("h100-sxm")
    assert A.die_cost(h) == pytest.approx(A.die_cost(A.estimate_area(h).total, 4))


def test_chip_and_memory_cost():
    h = load_hardware("h100-sxm")
    assert A.memory_cost(h) == pytest.approx(80 * A.PRICE_PER_GB["hbm"])
    c = A.chip_cost(h)
    assert c.total == pytest.approx(c.die_usd + c.memory_usd + c.packaging_usd) and c.total > c.die_usd > 0
    assert 0 < c.die_yield < 1


def test_bad_input_errors():
    with pytest.raises(CodesignError, match="process_node.*outside"):
        A.estimate_area(tiny(process_node="1 nm"))
    with pytest.raises(CodesignError, match="FPGA"):
        A.estimate_area(load_hardware("alveo-u280"))
    d = spec_dict("h100-sxm")
    del d["compute"]["clock"]
    with pytest.raises(CodesignError, match="compute.clock"):
        A.estimate_area(hardware_from_dict(d))
    no_node = spec_dict("l4")
    del no_node["process_node"]
    with pytest.raises(CodesignError, match="^l4: process_node: required"):
        A.chip_cost(hardware_from_dict(no_node))
    with pytest.raises(CodesignError, match="does not fit"):
        A.dies_per_wafer(80_000)
    with pytest.raises(CodesignError, match="yield model"):
        A.die_yield(100, 0.1, "poisson")


# -- memory technologies, SerDes lanes, SRAM by node (the structure added for issue 17) -------

def level_spec(name: str, kind: str, bandwidth: str, capacity: str = "16 GiB", link: dict | None = None):
    """A tiny NPU with one off-chip level named ``name`` (and a device link if given)."""
    over = {"memory": [{"name": name, "kind": kind, "capacity": capacity, "bandwidth": bandwidth},
                       {"name": "SRAM", "kind": "sram", "capacity": "4 MiB", "bandwidth": "1 TB/s"}]}
    if link:
        over["interconnect"] = {"device_link": link}
    base = {"name": "tiny", "class": "npu", "process_node": "7 nm",
            "compute": {"clock": "1 GHz", "cores": 1, "matrix": {"peak": {"bf16": 2 * 1024 * 1e9}},
                        "vector": {"peak": {"fp32": 2 * 64 * 1e9}}}, **over}
    return hardware_from_dict(base)


def test_memory_technology_table_is_sourced_and_every_row_is_reachable():
    techs = A.memory_technologies()
    assert {"hbm2", "hbm2e", "hbm3", "hbm3e", "hbm4", "gddr6", "gddr6x", "gddr7", "lpddr4x", "lpddr5", "lpddr5x",
            "ddr3", "ddr4", "ddr5"} <= set(techs)
    import csv
    with open(F.default_path().parent / "memory-technologies.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            assert row["phy_source"] and row["price_source"] and row["price_date"], row["technology"]
    for name, t in techs.items():
        # a level named after the technology is read as it (the name wins over the kind's default)
        spec = level_spec(name.upper(), t.kind, "100 GB/s")
        assert A.memory_technology(spec.memory[0]) is t
        assert t.phy_mm2 > 0 and t.ctrl_transistors > 0 and t.usd_per_gb > 0 and t.bandwidth > 0
    # a later generation is faster per pin, and HBM dearer per GB than the DRAM it stacks
    for kind, gens in {"hbm": ("hbm2", "hbm2e", "hbm3", "hbm3e"), "gddr": ("gddr6", "gddr6x", "gddr7"),
                       "lpddr": ("lpddr4x", "lpddr5", "lpddr5x"), "ddr": ("ddr3", "ddr4", "ddr5")}.items():
        rates = [techs[g].pin_rate for g in gens]
        assert rates == sorted(rates) and len(set(rates)) == len(rates), kind
    assert techs["hbm4"].usd_per_gb > techs["hbm3e"].usd_per_gb > techs["hbm3"].usd_per_gb > techs["hbm2e"].usd_per_gb
    assert min(t.usd_per_gb for t in techs.values() if t.kind == "hbm") > 2 * techs["ddr5"].usd_per_gb
    # a level named by kind only is its kind's default technology
    assert A.memory_technology(level_spec("DRAM", "lpddr", "50 GB/s").memory[0]).name == "lpddr5"
    assert A.PRICE_PER_GB == {k: techs[t].usd_per_gb for k, t in A.KIND_DEFAULT_TECHNOLOGY.items()}


def test_memory_is_priced_by_the_technology_a_level_names():
    gib = 2**30
    techs = A.memory_technologies()
    for name, tech in (("LPDDR4X", "lpddr4x"), ("LPDDR5X", "lpddr5x"), ("HBM3e", "hbm3e"), ("GDDR7", "gddr7")):
        spec = level_spec(name, techs[tech].kind, "100 GB/s", capacity="24 GiB")
        assert A.memory_cost(spec) == pytest.approx(24 * techs[tech].usd_per_gb)
        # an override by technology wins over one by kind
        assert A.memory_cost(spec, {tech: 1.0, techs[tech].kind: 2.0}) == pytest.approx(24.0)
        assert A.memory_cost(spec, {techs[tech].kind: 2.0}) == pytest.approx(48.0)
    h200 = load_hardware("h200")          # its level is named HBM3e: priced as HBM3e, not as HBM3
    assert A.memory_cost(h200) == pytest.approx(h200.memory[0].capacity / gib * techs["hbm3e"].usd_per_gb)
    assert A.memory_cost(load_hardware("h100-sxm")) == pytest.approx(80 * techs["hbm3"].usd_per_gb)


def test_dram_channels_and_phys_follow_the_generation():
    """The same 68.3 GB/s takes two 32-bit LPDDR5X-8533 channels or four LPDDR4X-4266 ones, and
    the PHY area is the table's per-channel PHY plus its controller at the node (hand calculation)."""
    techs = A.memory_technologies()
    x5, x4 = (A.estimate_area(level_spec(n, "lpddr", "68.3 GB/s"), calibration=A.UNCALIBRATED)
              for n in ("LPDDR5X", "LPDDR4X"))
    assert x5.memory_stacks == {"LPDDR5X": 2.0} and x4.memory_stacks == {"LPDDR4X": 4.0}
    n7 = A.node_params(7)
    per = techs["lpddr5x"].phy_mm2 + techs["lpddr5x"].ctrl_transistors / (n7.logic_mtr_mm2 * 1e6)
    assert x5.memory_phy == pytest.approx(2 * per, rel=1e-12) and x4.memory_phy > x5.memory_phy
    # HBM: the A100's five HBM2e stacks, each a GA100 PHY + controller, with the GPU's spare site
    a100 = load_hardware("a100-80gb")
    est = A.estimate_area(a100)
    hbm = techs["hbm2e"]
    assert est.memory_phy == pytest.approx(5 * (1 + est.spare_fraction) * (hbm.phy_mm2 + hbm.ctrl_transistors / 96.3e6))
    # 4.8 TB/s and 141 GB: 6 HBM3e stacks (24 GiB each), 9 of HBM3 (16 GiB: capacity-bound), 10 of HBM2e
    # (461 GB/s: bandwidth-bound)
    stacks = {g: A.memory_interfaces(level_spec(g, "hbm", "4.8 TB/s", "141 GB"))[g][1] for g in ("HBM3e", "HBM3", "HBM2e")}
    assert stacks == {"HBM3e": 6.0, "HBM3": 9.0, "HBM2e": 10.0}


def test_serdes_area_is_per_lane():
    """A100: 12 NVLink3 links x 4 lanes at 50 Gb/s + PCIe 4.0 x16 = 64 lanes = GA100's 20.95 mm^2 of IO;
    a link stating faster lanes has fewer of them for the same bandwidth."""
    assert A.estimate_area(load_hardware("a100-80gb")).io == pytest.approx(20.95, rel=1e-12)
    assert A.serdes_lanes(load_hardware("a100-80gb")) == pytest.approx(64)
    assert A.DEVICE_LANE_RATE == 50e9 / 8 and A.HOST_LANE_RATE == 16e9 / 8
    areas = {r: A.estimate_area(level_spec("HBM3", "hbm", "819 GB/s", link={"bandwidth": "400 GB/s"} | (
                 {"lane_rate": f"{r} Gb/s"} if r else {}))).io
             for r in (None, 25, 50, 112)}
    assert areas[None] == pytest.approx(areas[50]) == pytest.approx(400 * 8 / 50 * A.SERDES_MM2_PER_LANE)
    assert areas[25] == pytest.approx(2 * areas[50]) and areas[112] == pytest.approx(areas[50] * 50 / 112)


def test_sram_and_logic_scale_apart_with_the_node():
    """TSMC N3E keeps N5's 0.021 um^2 bitcell while its logic is 1.6x denser; N2 shrinks both."""
    n5, n3, n2 = (A.node_params(n) for n in (5, 3, 2))
    mib = 2**20
    assert A.sram_mm2(64 * mib, n3) == pytest.approx(A.sram_mm2(64 * mib, n5))
    assert A.logic_mm2(1e9, n3) == pytest.approx(A.logic_mm2(1e9, n5) / 1.6, rel=1e-3)
    assert A.sram_mm2(64 * mib, n2) < A.sram_mm2(64 * mib, n3) and A.logic_mm2(1e9, n2) < A.logic_mm2(1e9, n3)
    assert n2.sram_bitcell_um2 == 0.0175 and n2.logic_mtr_mm2 == pytest.approx(221.1 * 1.15, rel=1e-3)


@pytest.mark.parametrize("name", sorted(KNOBS))
def test_area_is_monotone_in_capacity_and_lane_rate(name):
    """Off-chip capacity never shrinks a die (HBM capacity past its stacks adds stacks); a slower
    lane rate for the same link bandwidth never shrinks it either."""
    base = spec_dict(name)
    level = KNOBS[name]["mem"][0].rsplit(".", 1)[0]
    cap = next(m.capacity for m in load_hardware(name).memory if m.name == level.split(".", 1)[1])
    a0 = total(base)
    more = total(apply_overrides(base, {f"{level}.capacity": 4 * cap}))
    assert more >= a0 and (more > a0 if "HBM" in level else True)
    with_link = apply_overrides(base, {"interconnect.device_link.bandwidth": "100 GB/s"})
    rates = [total(apply_overrides(with_link, {"interconnect.device_link.lane_rate": f"{r} Gb/s"})) for r in (16, 32, 64, 128)]
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_bench_loco_matches_a_hand_calculation(tmp_path, capsys):
    """benchmarks/bench_area.py on three synthetic TPU dies (one free multiplier, the per-core term):
    the fit and each leave-one-out refit by hand, min sum (p x_i + c_i - 1)^2 -> p = sum x (1 - c) / sum x^2."""
    import csv
    import importlib.util
    cols = open(F.default_path(), encoding="utf-8").readline().strip().split(",")
    dies = [("syn-a", 300, 1, 100, 16), ("syn-b", 520, 2, 200, 32), ("syn-c", 700, 2, 300, 96)]
    path = tmp_path / "dies.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for chip, area, cores, tflops, sram in dies:
            w.writerow({c: "" for c in cols} | {
                "chip": chip, "class": "tpu", "vendor": "x", "process_node_nm": "7", "die_area_mm2": str(area),
                "area_scope": "whole die", "estimate_from": "columns", "use": "fit", "units_enabled": str(cores),
                "units_on_die": str(cores), "clock_ghz": "1.0", "matrix_bf16_tflops": str(tflops),
                "vector_fp32_tflops": "2", "shared_sram_mib": str(sram), "shared_sram_kind": "sram",
                "source_url": "synthetic", "source_date_or_commit": "synthetic"})
    loaded = F.load_dies(path)
    cal = A.CLASS_CALIBRATION["tpu"]
    assert cal.free == ("core",)
    t = [d.terms for d in loaded]
    y = [d.area_mm2 for d in loaded]
    x = [ti["core"] / yi for ti, yi in zip(t, y)]
    c = [(cal.datapath * ti["datapath"] + cal.sram * ti["sram"] + ti["rest"]) / yi for ti, yi in zip(t, y)]

    def p_of(idx):
        return sum(x[i] * (1 - c[i]) for i in idx) / sum(x[i] ** 2 for i in idx)
    p_all = p_of(range(3))
    loco = [abs(p_of([j for j in range(3) if j != i]) * x[i] + c[i] - 1) for i in range(3)]
    ins = [abs(p_all * x[i] + c[i] - 1) for i in range(3)]
    r = F.report(loaded)["tpu"]
    assert r.fitted.core == pytest.approx(p_all, rel=1e-9)
    assert r.loco_mape == pytest.approx(sum(loco) / 3, rel=1e-9) and r.mape == pytest.approx(sum(ins) / 3, rel=1e-9)
    spec = importlib.util.spec_from_file_location("bench_area", F.default_path().parents[1] / "benchmarks" / "bench_area.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--dies", str(path)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("tpu "))
    assert f"{sum(loco) / 3:.1%}" in line.split() and f"{sum(ins) / 3:.1%}" in line.split()


def test_a_level_states_its_technology():
    """A study preset that swaps the DRAM of a level named LPDDR4X sets ``technology``: the level is
    then sized (channels at 8.533 Gb/s) and priced as LPDDR5X; a technology of another kind is refused."""
    base = spec_dict("rk3588-npu")
    x5 = hardware_from_dict(apply_overrides(base, {"memory.LPDDR4X.bandwidth": "68.3 GB/s",
                                                   "memory.LPDDR4X.technology": "lpddr5x"}))
    x4 = hardware_from_dict(apply_overrides(base, {"memory.LPDDR4X.bandwidth": "68.3 GB/s"}))
    assert A.memory_interfaces(x5) == {"LPDDR4X": ("x32-channel", 2.0)}
    assert A.memory_interfaces(x4) == {"LPDDR4X": ("x32-channel", 4.0)}
    assert A.estimate_area(x5).total < A.estimate_area(x4).total
    assert A.memory_cost(x5) == pytest.approx(32 * A.memory_technologies()["lpddr5x"].usd_per_gb)
    bad = hardware_from_dict(apply_overrides(base, {"memory.LPDDR4X.technology": "hbm3e"}))
    with pytest.raises(CodesignError, match="not a lpddr technology"):
        A.estimate_area(bad)


def test_alternative_structures_are_measured_with_the_same_fit(dies, report):
    """area_fit.alternative with a class's own free/fixed multipliers gives the class report's errors
    (the bounded solver agrees with fit); no justified alternative structure beats the stored TPU table,
    and none brings the NPU class near the target (classes.py notes each one's error)."""
    for cls in ("tpu", "npu", "cpu"):
        cal = A.CLASS_CALIBRATION[cls]
        mine = [d for d in dies if d.device_class == cls]
        fixed = {n: getattr(cal, n) for n in F.TERMS if n not in cal.free}
        p, ins, loco = F.alternative(mine, cal.free, fixed)
        assert ins == pytest.approx(report[cls].mape, abs=1e-3) and loco == pytest.approx(report[cls].loco_mape, abs=1e-3)
        for n in cal.free:
            assert p[n] == pytest.approx(getattr(cal, n), rel=0.01, abs=0.002)
    tpu, npu = ([d for d in dies if d.device_class == c] for c in ("tpu", "npu"))
    for name, free, fixed in F.ALTERNATIVES:
        if free != ("core", "sram"):     # TPU: within 5 % only with CMEM at 2.9x its published share (classes.py)
            assert F.alternative(tpu, free, fixed)[2] > report["tpu"].loco_mape - 0.005, name
        # NPU: no structure gets near the 15 % target (the best, control ~ core datapath, 38 % held out)
        assert F.alternative(npu, free, fixed)[2] > 0.3, name
    # the bounded solver: an unconstrained optimum with a negative entry is moved to the bound
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert F._bounded_lstsq(x, np.array([2.0, -1.0, 1.0])) == pytest.approx([1.5, F.MIN_SCALE], abs=0.01)
    # the alternative columns: a GA100 SM's datapath scales its control by 1
    ga100 = next(d for d in dies if "GA100" in d.chip)
    c = F.columns(ga100)
    assert c["core_lin"] == pytest.approx(c["core"], rel=0.02) and c["core_dram"] == c["core"] and c["core_sram_only"] == 0
