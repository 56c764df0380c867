"""The GPU measurement path without a GPU: CUDA-graph timing with a stand-in capture hook,
datasheet sanity limits on synthetic figures, and the device-name -> datasheet lookup."""
from __future__ import annotations

import pytest

from codesign.errors import CodesignError
from codesign.hardware import hardware_from_dict, load_hardware
from codesign.perf import evaluate
from codesign.validate import calibrate as cal
from codesign.validate.calibrate import SANITY_HIGH, SANITY_LOW, check_datasheet, datasheet_for, to_spec, with_datasheet
from codesign.validate.timing import GRAPH_CALLS_MAX, measure
from codesign.workload.scenario import Scenario


def test_graph_timing_cycles_the_whole_pool_and_divides_by_calls():
    pool = [(i,) for i in range(37)]
    seen: list[int] = []
    per_call = 25e-6
    captures: list[int] = []

    def capture(work):
        start = len(seen)
        work()
        k = len(seen) - start
        captures.append(k)
        return lambda: (work(), k * per_call)[1]

    t = measure(lambda i: seen.append(i), pool, capture=capture, sample_s=0.01, min_samples=5, max_time=1.0)
    assert t.graph and t.dispatch_s is not None and t.dispatch_s > 0
    assert t.median_s == pytest.approx(per_call, rel=1e-12)
    # the timed graph holds at least one call per input set, so every set is read once per
    # replay (no set stays in L2 between its uses) and no more calls than the cap
    assert captures[-1] >= len(pool) and captures[-1] <= GRAPH_CALLS_MAX
    assert t.inner == captures[-1]
    # 10 ms samples of 25 us calls: 400 calls per replay
    assert t.inner == 400
    assert set(seen) == set(range(len(pool)))


def test_graph_timing_falls_back_to_events_when_capture_fails():
    def capture(work):
        return None
    events: list = []

    def event_timer(run):
        run()
        events.append(1)
        return 1e-3
    t = measure(lambda: None, [()], capture=capture, event_timer=event_timer, min_samples=3, max_time=0.05)
    assert not t.graph and events


H200 = load_hardware("h200")


def _res(bf16=770e12, hbm=4.3e12, vec=60e12):
    return {"matrix": {"bf16": bf16, "fp32": 50e12}, "vector": {"fp32": vec}, "transcendental": 2e12,
            "levels": [{"name": "HBM", "bandwidth": hbm}]}


def test_datasheet_accepts_real_h200_figures():
    check_datasheet(_res(), H200)           # what an H200 measures (KINDS.md: 788 TFLOP/s, 4.3 TB/s copy)


@pytest.mark.parametrize("field, res, words", [
    # the evidence run of 2026-11: 1088^3 products, bf16 87 TFLOP/s
    ("compute.matrix.peak.bf16", _res(bf16=87e12), "11x below the datasheet"),
    ("compute.vector.peak.fp32", _res(vec=0.634e9), "below the datasheet"),
    ("compute.matrix.peak.bf16", _res(bf16=989e12 * SANITY_HIGH * 1.01), "the datasheet"),
    ("memory.HBM.bandwidth", _res(hbm=4.8e12 * SANITY_LOW * 0.9), "below the datasheet"),
])
def test_datasheet_refuses_broken_figures(field, res, words):
    with pytest.raises(CodesignError) as e:
        check_datasheet(res, H200)
    msg = str(e.value)
    assert e.value.field == field and words in msg and "h200" in msg and "\n" not in msg


@pytest.mark.parametrize("name, spec", [
    ("NVIDIA H200", "h200"), ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"),
    ("NVIDIA A100-SXM4-80GB", "a100-80gb"), ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
    ("NVIDIA A100 80GB PCIe", "a100-80gb-pcie"), ("NVIDIA L4", "l4"), ("NVIDIA L40S", "l40s"), ("NVIDIA L40", "l40"),
    ("NVIDIA GeForce RTX 4090", "rtx-4090"), ("NVIDIA GH200 480GB", "gh200"), ("Tesla V100-SXM2-32GB", "v100-sxm2"),
])
def test_datasheet_lookup(name, spec):
    assert datasheet_for(name) == spec
    assert load_hardware(spec).device_class == "gpu"


def test_unknown_gpu_has_no_datasheet():
    assert datasheet_for("Some Future Accelerator") is None


def _calibrated_h200() -> dict:
    """What a GPU calibration returns, with H200-like measured figures."""
    res = {"matrix": {"bf16": 780e12, "fp16": 790e12, "fp32": 51e12, "fp8": 1300e12}, "vector": {"fp32": 55e12, "bf16": 50e12},
           "transcendental": 1.5e12, "overhead": 2.5e-6, "dispatch": 9e-6, "seconds": 60.0, "cores": 132,
           "levels": [{"name": "HBM", "kind": "hbm", "capacity": 150e9, "bandwidth": 4.3e12, "efficiency": 1.0},
                      {"name": "L2", "kind": "cache", "capacity": 60e6, "bandwidth": 9e12, "efficiency": 1.0}],
           "kernels": {}, "what": {"compute.matrix.peak.bf16": "square products"}, "what_kernels": {}}
    return to_spec(res, backend="torch", device="cuda", threads=1, dtype="bf16")


def test_gpu_calibration_is_completed_from_the_datasheet():
    spec = with_datasheet(_calibrated_h200(), H200, cores=132)
    hw = hardware_from_dict(spec)
    # measured figures kept, exactly
    assert hw.compute.matrix.peak["bf16"] == 780e12 and hw.memory[0].bandwidth == 4.3e12
    assert hw.kernel_overhead == 2.5e-6 and hw.compute.cores == 132
    # unmeasured tf32 scaled by measured / datasheet bf16: 494.5 x 780 / 989
    assert hw.compute.matrix.peak["tf32"] == pytest.approx(494.5e12 * 780 / 989)
    # power, latencies, energy per byte and the shared-memory level come from the datasheet, cited
    assert hw.power.tdp == 700 and hw.memory[0].energy_per_byte == H200.memory[0].energy_per_byte
    assert hw.power.sustained_share == 1.0          # calibrated peaks are sustained rates
    assert [m.name for m in hw.memory] == ["HBM", "L2", "SMEM"]
    assert "via library spec h200" in hw.sources["power.tdp"].ref
    assert hw.sources["compute.matrix.peak.tf32"].kind == "derived"
    # a usable spec: the engine predicts a decoder on it close to the library spec
    sc = Scenario(batch=8, prompt=1024, generate=64, runtime="pytorch-graphs")
    a, b = (evaluate(h, "llama-3.1-8b", sc).summary for h in (hw, H200))
    for key in ("ttft_s", "tpot_s", "energy_per_token_j"):
        assert 0.5 < a[key] / b[key] < 2.0, key


def test_gpu_calibration_code_path_on_cpu_stand_ins(monkeypatch):
    """Every GPU branch of the calibrator (growing products, copy bandwidths, the run-time
    compiled ALU probes, device properties, datasheet completion) run with torch on the CPU
    standing in for the device: the spec it makes must load, with the measured figures kept."""
    torch = pytest.importorskip("torch")

    class Props:
        L2_cache_size = 256 * 1024
        total_memory = 8 * 2**30
        multi_processor_count = 132
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i=0: Props())
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H200")
    # a small "L2" keeps the rotating input pools (and the test) small
    monkeypatch.setattr("codesign.validate.kernels.TorchBackend.llc", lambda self: 256 * 1024)
    lines: list[str] = []
    c = cal.Calibrator("torch", "cpu", 1, "fp32", quick=True, log=lines.append, datasheet="none")
    c.gpu = True                         # take the GPU branches
    c.profiles = lambda bw, ovh, peak: {}    # the kernel-profile sweeps are the CPU ones (test_runner)
    c.what_kernels = {}
    assert c._datasheet("auto").name == "h200"     # the device's name picks its datasheet
    res = c.run()
    assert res["cores"] == 132 and [lv["name"] for lv in res["levels"]] == ["HBM", "L2"]
    assert res["levels"][0]["capacity"] == 8 * 2**30
    # no CUDA here: the ALU probes are logged as not run and left to the datasheet
    assert "transcendental" not in res["what"] or res["transcendental"]
    assert any("matrix fp32" in m for m in lines)
    spec = cal.with_datasheet(cal.to_spec(res, backend="torch", device="cuda", threads=1, dtype="fp32"), H200,
                              res["cores"])
    hw = hardware_from_dict(spec)
    assert hw.compute.matrix.peak["fp32"] == res["matrix"]["fp32"]
    assert hw.memory[0].bandwidth == res["levels"][0]["bandwidth"]
    assert hw.compute.vector.transcendental is not None and hw.compute.cores == 132


def test_a_slow_library_datatype_is_left_to_the_datasheet_but_the_profile_datatype_is_not():
    """torch._int_mm on an H200 ran at 128.7 of 1979 TFLOP/s (2026-11-26): that measures the
    library's int8 kernel, so the figure is dropped; the same shortfall in the profile's own
    datatype (bf16) is a broken probe and stops the calibration."""
    lines: list[str] = []
    c = cal.Calibrator.__new__(cal.Calibrator)
    c.sheet, c.dtype, c.log, c.what = H200, "bf16", lines.append, {"compute.matrix.peak.int8": "x"}
    kept = c._drop_slow_library_paths({"bf16": 657e12, "int8": 128.7e12, "fp8": 1324e12})
    assert kept == {"bf16": 657e12, "fp8": 1324e12} and "compute.matrix.peak.int8" not in c.what
    assert any("int8" in m and "15x below" in m for m in lines)
    with pytest.raises(CodesignError):
        check_datasheet(_res(bf16=80e12), H200)
