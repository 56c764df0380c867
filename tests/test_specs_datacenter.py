"""Datacenter hardware specs (GPUs, TPUs, Gaudi): load, full source coverage, agreement
with the sourced datasheet table, and facts recomputed here from independent figures."""
from __future__ import annotations

import csv

import pytest

from codesign.errors import CodesignError
from codesign.hardware import load_hardware
from codesign.hardware.crosscheck import crosscheck
from codesign.io import data_dir

GiB = 2**30

# spec name -> folder it must live in (= its class)
SPECS = {
    "h200": "gpu", "a100-80gb": "gpu", "a100-40gb": "gpu", "l4": "gpu", "rtx-4090": "gpu",
    "mi300x": "gpu", "gaudi2": "npu", "gaudi3": "npu",
    "tpu-v4": "tpu", "tpu-v5e": "tpu", "tpu-v5p": "tpu", "tpu-v6e": "tpu",
}

# spec name -> device column of data/hardware-datasheets.csv (a100-40gb has no row)
CSV_ROWS = {
    "h200": "NVIDIA H200 SXM 141GB",
    "a100-80gb": "NVIDIA A100 80GB SXM4",
    "l4": "NVIDIA L4",
    "rtx-4090": "NVIDIA GeForce RTX 4090",
    "mi300x": "AMD Instinct MI300X",
    "gaudi2": "Intel Gaudi 2",
    "gaudi3": "Intel Gaudi 3",
    "tpu-v4": "Google TPU v4",
    "tpu-v5e": "Google TPU v5e",
    "tpu-v5p": "Google TPU v5p",
    "tpu-v6e": "Google TPU v6e (Trillium)",
}


@pytest.fixture(scope="module")
def specs():
    return {name: load_hardware(name) for name in SPECS}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_loads_in_its_class_folder_with_every_figure_sourced(name, specs):
    s = specs[name]
    path = data_dir("hardware_specs") / SPECS[name] / f"{name}.yaml"
    assert path.is_file(), f"{name}.yaml must live in hardware_specs/{SPECS[name]}/"
    assert s.name == name and s.device_class == SPECS[name]
    assert s.unsourced() == []
    # loading by path gives the same object as by library name
    assert load_hardware(path) == s


@pytest.mark.parametrize("name", sorted(CSV_ROWS))
def test_agrees_with_datasheet_table(name, specs):
    assert crosscheck(specs[name], CSV_ROWS[name]) == []


def test_headline_figures(specs):
    # NVIDIA A100 80GB datasheet: 2,039 GB/s HBM2e, 80 GB
    a100 = specs["a100-80gb"].main_memory()
    assert a100.bandwidth == pytest.approx(2.039e12)
    assert a100.capacity == 80 * GiB
    assert specs["a100-40gb"].main_memory().bandwidth == pytest.approx(1.555e12)
    # Google v5e page: 197 TFLOP/s bf16, 16 GB HBM2 at 819 GB/s
    assert specs["tpu-v5e"].matrix_peak("bf16") == pytest.approx(197e12)
    assert specs["tpu-v5e"].main_memory().bandwidth == pytest.approx(819e9)
    # AMD: 192 GB HBM3 = 8 stacks x 24 GiB, 5.3 TB/s
    assert specs["mi300x"].main_memory().capacity == 8 * 24 * GiB
    assert specs["mi300x"].main_memory().bandwidth == pytest.approx(5.3e12)
    # H200: nvidia-smi 143771 MiB, i.e. the marketed "141 GB" is ~141 decimal-ish GiB
    assert specs["h200"].main_memory().capacity / 1e9 == pytest.approx(150.75, abs=0.01)
    assert specs["h200"].main_memory().capacity / GiB == pytest.approx(140.4, abs=0.05)


def test_nvidia_dense_peaks_are_half_the_sparse_datasheet_figures(specs):
    # datasheet "with sparsity" figures, halved
    assert specs["h200"].matrix_peak("fp8") == pytest.approx(3958e12 / 2, rel=1e-3)
    assert specs["h200"].matrix_peak("bf16") == pytest.approx(1979e12 / 2, rel=1e-3)
    assert specs["l4"].matrix_peak("bf16") == pytest.approx(242e12 / 2, rel=1e-2)
    assert specs["l4"].matrix_peak("fp8") == pytest.approx(485e12 / 2, rel=1e-2)
    assert specs["a100-80gb"].matrix_peak("int8") == pytest.approx(1248e12 / 2)
    for name in ("h200", "a100-80gb", "l4", "rtx-4090"):
        assert specs[name].compute.matrix.sparsity.speedup == 2


def test_h200_is_an_h100_with_more_memory(specs):
    h100, h200 = load_hardware("h100-sxm"), specs["h200"]
    assert h200.compute.matrix.peak == h100.compute.matrix.peak
    assert h200.compute.cores == h100.compute.cores
    assert h200.main_memory().bandwidth / h100.main_memory().bandwidth == pytest.approx(4.8 / 3.35)
    assert h200.main_memory().capacity > 1.7 * h100.main_memory().capacity


@pytest.mark.parametrize("name, cuda_cores", [("l4", 7424), ("rtx-4090", 16384), ("a100-80gb", 6912)])
def test_gpu_fp32_vector_peak_is_cores_times_fma_times_clock(name, cuda_cores, specs):
    s = specs[name]
    # FP32 peak = CUDA cores x 2 FLOP (FMA) x boost clock
    assert s.compute.vector.peak["fp32"] == pytest.approx(cuda_cores * 2 * s.compute.clock, rel=0.01)
    assert cuda_cores % s.compute.cores == 0      # whole SMs (64 per SM on GA100, 128 on Ada)


@pytest.mark.parametrize("name", ["tpu-v4", "tpu-v5e", "tpu-v5p", "tpu-v6e", "gaudi3"])
def test_systolic_geometry_reproduces_the_bf16_peak(name, specs):
    s = specs[name]
    m = s.compute.matrix
    rows, cols = m.array
    # peak = arrays x R x C MACs x 2 FLOP/MAC x clock
    assert m.units * rows * cols * 2 * s.compute.clock == pytest.approx(s.matrix_peak("bf16"), rel=0.01)


def test_tpu_generations(specs):
    # Google: Trillium has 4.7x the peak compute of v5e; int8 is 2x bf16 from v5e on, 1x on v4
    assert specs["tpu-v6e"].matrix_peak("bf16") / specs["tpu-v5e"].matrix_peak("bf16") == pytest.approx(4.7, rel=0.01)
    for name in ("tpu-v5e", "tpu-v5p", "tpu-v6e"):
        assert specs[name].matrix_peak("int8") == pytest.approx(2 * specs[name].matrix_peak("bf16"), rel=0.01)
    assert specs["tpu-v4"].matrix_peak("int8") == specs["tpu-v4"].matrix_peak("bf16")
    assert specs["tpu-v4"].matrix_peak("fp8") is None      # absent = unsupported
    assert specs["tpu-v6e"].compute.matrix.array == (256, 256)
    assert {specs[n].compute.matrix.array for n in ("tpu-v4", "tpu-v5e", "tpu-v5p")} == {(128, 128)}


@pytest.mark.parametrize("name, bidirectional", [
    ("tpu-v5e", 400e9),   # Google: 400 GBps bidirectional ICI per chip
    ("tpu-v6e", 800e9),   # Google: 800 GBps bidirectional ICI per chip
    ("tpu-v5p", 1200e9),  # Google: 4800 Gbps = 600 GB/s per direction
    ("h200", 900e9),      # NVLink 4: 900 GB/s bidirectional
    ("a100-80gb", 600e9), # NVLink 3: 600 GB/s bidirectional
    ("mi300x", 896e9),    # 7 Infinity Fabric links x 128 GB/s
])
def test_device_link_is_per_direction(name, bidirectional, specs):
    assert 2 * specs[name].interconnect.device_link.bandwidth == pytest.approx(bidirectional, rel=0.01)


def _measured_bf16_gemm():
    """hw_ref -> best measured bf16 GEMM FLOP/s (mamf-finder rows of published-measurements.csv)."""
    path = data_dir("data") / "published-measurements.csv"
    with open(path, newline="", encoding="utf-8") as f:
        return {r["hw_ref"]: float(r["value"]) * 1e12 for r in csv.DictReader(f)
                if r["metric"] == "gemm_tflops" and r["weight_precision"] == "bf16" and r["hw_ref"]}


@pytest.mark.parametrize("name", ["a100-80gb", "mi300x", "gaudi2", "gaudi3"])
def test_matrix_efficiency_is_the_measured_gemm_fraction(name, specs):
    measured = _measured_bf16_gemm()[CSV_ROWS[name]]
    s = specs[name]
    assert s.compute.matrix.efficiency == pytest.approx(measured / s.matrix_peak("bf16"), abs=0.01)


def test_h200_efficiency_is_ours_at_700w_below_the_900w_gh200(specs):
    """The published bf16 best is a GH200 (900 W); our H200 SXM ran 8192^3 at ~764 TFLOP/s
    at its 700 W limit (shared/evidence/gpu-h200-2026-11)."""
    s = specs["h200"]
    assert s.compute.matrix.efficiency == pytest.approx(764e12 / s.matrix_peak("bf16"), abs=0.01)
    assert s.compute.matrix.efficiency < _measured_bf16_gemm()[CSV_ROWS["h200"]] / s.matrix_peak("bf16")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_power_figures_are_consistent(name, specs):
    p = specs[name].power
    assert 0 < p.idle < p.tdp
    # matrix arithmetic alone at the bf16 peak cannot take the whole board power
    bf16 = specs[name].matrix_peak("bf16")
    assert p.energy_per_op["bf16"] * bf16 < 0.7 * p.tdp
    # narrower datatypes never cost more energy per op
    e = p.energy_per_op
    for wide, narrow in (("fp32", "bf16"), ("bf16", "fp8"), ("bf16", "int8"), ("int8", "int4")):
        if wide in e and narrow in e:
            assert e[narrow] <= e[wide]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_memory_levels_get_faster_inward(name, specs):
    levels = specs[name].memory
    assert levels[0].kind in ("hbm", "gddr")
    shared = [m for m in levels if not m.per_core]
    assert all(a.bandwidth < b.bandwidth for a, b in zip(shared, shared[1:]))


def test_a_unit_slip_in_an_override_is_one_clear_error():
    with pytest.raises(CodesignError) as e:
        load_hardware("tpu-v5e", {"memory.HBM2.bandwidth": "819 GB"})
    msg = str(e.value)
    assert "tpu-v5e.yaml" in msg and "memory[0].bandwidth" in msg and "bandwidth" in msg
    assert "\n" not in msg
