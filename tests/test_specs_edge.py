"""Edge, FPGA and CPU hardware specs: they load, every figure is sourced, they agree with the
sourced datasheet table, and key figures match independent calculations from vendor facts."""
from __future__ import annotations

from pathlib import Path

import pytest

from codesign.errors import CodesignError
from codesign.hardware import load_hardware
from codesign.hardware.crosscheck import crosscheck
from codesign.perf import evaluate
from codesign.workload import Scenario

SPECS = Path(__file__).resolve().parents[1] / "hardware_specs"
FILES = {
    "jetson-agx-orin": "gpu/jetson-agx-orin.yaml",
    "jetson-orin-nano": "gpu/jetson-orin-nano.yaml",
    "apple-m3-max": "gpu/apple-m3-max.yaml",
    "apple-m2-ultra": "gpu/apple-m2-ultra.yaml",
    "snapdragon-8-gen3-hexagon": "npu/snapdragon-8-gen3-hexagon.yaml",
    "rk3588-npu": "npu/rk3588-npu.yaml",
    "hailo-10h": "npu/hailo-10h.yaml",
    "coral-edge-tpu": "npu/coral-edge-tpu.yaml",
    "intel-core-ultra-npu": "npu/intel-core-ultra-npu.yaml",
    "alveo-u280": "fpga/alveo-u280.yaml",
    "vck190": "fpga/vck190.yaml",
    "intel-xeon-8480plus": "cpu/intel-xeon-8480plus.yaml",
    "host-cpu-template": "cpu/host-cpu-template.yaml",
}
# spec name -> device row in data/hardware-datasheets.csv
CSV_ROWS = {
    "jetson-agx-orin": "NVIDIA Jetson AGX Orin 64GB",
    "jetson-orin-nano": "NVIDIA Jetson Orin Nano 8GB (original / Super mode)",
    "apple-m3-max": "Apple M3 Max (40-core GPU)",
    "snapdragon-8-gen3-hexagon": "Qualcomm Snapdragon 8 Gen 3 (Hexagon NPU)",
    "rk3588-npu": "Rockchip RK3588 (NPU)",
    "hailo-10h": "Hailo-10H",
    "coral-edge-tpu": "Google Coral Edge TPU",
    "alveo-u280": "AMD/Xilinx Alveo U280",
    "vck190": "AMD Versal AI Core VC1902 (VCK190 board)",
}
GiB = 2**30


def spec(name):
    return load_hardware(SPECS / FILES[name])


def close(a, b, rel=0.01):
    return abs(a / b - 1) <= rel


@pytest.mark.parametrize("name", sorted(FILES))
def test_loads_with_file_named_after_spec_and_every_figure_sourced(name):
    s = spec(name)
    assert s.name == name == Path(FILES[name]).stem
    assert Path(FILES[name]).parts[0] == s.device_class
    assert s.unsourced() == []
    assert load_hardware(name).name == name          # reachable by library name too


@pytest.mark.parametrize("name", sorted(CSV_ROWS))
def test_agrees_with_datasheet_table(name):
    assert crosscheck(spec(name), CSV_ROWS[name]) == []


def test_orin_nano_memory_and_dense_int8():
    s = spec("jetson-orin-nano")
    mem = s.main_memory()
    assert mem.capacity == 8 * GiB and close(mem.bandwidth, 68e9)
    # 128-bit LPDDR5 at 4266 MT/s
    assert close(mem.bandwidth, 16 * 4266e6)
    # NVIDIA quotes 40 sparse INT8 TOPS; dense is half
    assert close(s.matrix_peak("int8"), 40e12 / 2, rel=0.03)


def test_orin_tensor_peaks_follow_ampere_ratios_and_sm_count():
    agx, nano = spec("jetson-agx-orin"), spec("jetson-orin-nano")
    for s in (agx, nano):
        per_sm_clk = s.matrix_peak("int8") / (s.compute.cores * s.compute.clock)
        assert close(per_sm_clk, 4096, rel=0.002)     # A100-class tensor core: 4096 INT8 ops/clk/SM
        assert close(s.matrix_peak("fp16"), s.matrix_peak("int8") / 2)
        assert close(s.matrix_peak("tf32"), s.matrix_peak("fp16") / 2)
        assert close(s.compute.vector.peak["fp32"], s.compute.cores * 128 * 2 * s.compute.clock)
    assert close(agx.matrix_peak("int8"), 170e12 / 2)    # technical brief: 170 sparse TOPS
    assert close(agx.main_memory().bandwidth, 32 * 6400e6)   # 256-bit LPDDR5-6400


def test_agx_orin_power_modes_are_monotone():
    ops = spec("jetson-agx-orin").power.operating_points
    assert [op.power for op in ops] == [60, 50, 30, 15]
    clocks = [op.clock for op in ops]
    assert clocks == sorted(clocks, reverse=True)
    # 30 W mode: 4 of 8 TPCs at 612 MHz -> equivalent all-TPC clock
    assert close(ops[2].clock, 4 / 8 * 612e6)
    assert ops[0].clock == spec("jetson-agx-orin").compute.clock


def test_u280_int8_peak_is_dsp_times_clock_times_packing():
    s = spec("alveo-u280")
    f = s.compute.fpga
    assert f.dsp == 9024 and f.ops_per_dsp_cycle["int8"] == 4    # 2 INT8 MACs per DSP48E2
    assert s.matrix_peak("int8") == pytest.approx(9024 * s.compute.clock * 4)
    assert s.matrix_peak("int4") == pytest.approx(2 * s.matrix_peak("int8"))
    assert s.matrix_peak("fp16") < s.matrix_peak("int8") / 2       # FP16 needs several DSPs per MAC
    # vendor 24.5 TOPS is at a DSP clock a full design does not reach
    assert s.matrix_peak("int8") < 24.5e12
    assert s.main_memory().name == "HBM2" and close(s.main_memory().bandwidth, 460e9)
    assert s.memory[0].kind == "ddr" and s.memory[0].stores() == ()


def test_vck190_aie_peaks_from_per_tile_macs():
    s = spec("vck190")
    n, clk = s.compute.cores, s.compute.clock
    assert n == 400
    assert s.matrix_peak("int8") == pytest.approx(n * 128 * 2 * clk)
    assert s.matrix_peak("fp32") == pytest.approx(n * 8 * 2 * clk)
    assert s.matrix_peak("fp16") is None and s.matrix_peak("bf16") is None   # AIE1 has no FP16 path
    # 133 TOPS is Xilinx's figure at 1.3 GHz
    assert close(s.matrix_peak("int8") * 1.3e9 / clk, 133e12, rel=0.02)
    aie = s.memory[-1]
    assert aie.per_core and aie.capacity * n == 400 * 32 * 1024


def test_rk3588_peaks_from_trm_mac_counts():
    s = spec("rk3588-npu")
    clk = s.compute.clock
    macs = {"int4": 2048, "int8": 1024, "fp16": 512, "bf16": 512, "tf32": 256}
    for dtype, per_core in macs.items():
        assert close(s.matrix_peak(dtype), 3 * per_core * 2 * clk, rel=0.005), dtype
    assert s.memory[-1].per_core and s.memory[-1].capacity == 384 * 1024


def test_meteor_lake_npu_peak_from_mac_count():
    s = spec("intel-core-ultra-npu")
    assert close(s.matrix_peak("int8"), 4096 * 2 * s.compute.clock)     # Chips and Cheese: 4096 MACs/cycle
    assert s.matrix_peak("int8") < 11e12                                  # Intel's 11 TOPS is the top SKU clock


def test_coral_keeps_weights_in_8mb_sram_and_streams_the_rest_over_usb():
    s = spec("coral-edge-tpu")
    main = s.main_memory()
    assert main.kind == "sram" and main.capacity == 8 * 2**20 and "weights" in main.stores()
    host = s.memory[0]
    assert host.kind == "host" and "weights" in host.stores()
    assert host.bandwidth == s.interconnect.host_link.bandwidth == pytest.approx(5e9 / 8 * 0.8)
    assert s.matrix_dtypes() == ("int8",)


def test_apple_gpu_peak_is_alu_peak():
    for name in ("apple-m3-max", "apple-m2-ultra"):
        s = spec(name)
        alu = s.compute.cores * 128 * 2 * s.compute.clock     # 128 FP32 ALUs per core, FMA
        assert close(s.matrix_peak("fp16"), alu)
        assert s.matrix_peak("fp16") == s.matrix_peak("fp32")  # no faster FP16 path
        assert s.matrix_peak("int8") is None
    assert close(spec("apple-m2-ultra").main_memory().bandwidth, 128 * 6400e6)   # 1024-bit LPDDR5-6400


def test_bf16_is_emulated_before_apple9_and_slows_a_compute_bound_prefill():
    """M1/M2 GPUs (Apple 7/8 families) have no bfloat16 ALU: their BF16 matrix rate is 0.79 of
    FP16 (measured fp16-vs-bf16 prefill of one checkpoint on an M2 Max), so a compute-bound
    4096-token prefill in bf16 takes ~1/0.79 as long as in fp16; an M3 or later runs both alike."""
    for name in ("apple-m1", "apple-m1-pro", "apple-m1-max", "apple-m1-ultra", "apple-m2-pro", "apple-m2-max",
                 "apple-m2-ultra"):
        s = load_hardware(name)
        assert s.matrix_peak("bf16") == pytest.approx(0.79 * s.matrix_peak("fp16"), rel=0.01), name
    for name in ("apple-m3-max", "apple-m4-max", "apple-m5-max"):
        s = load_hardware(name)
        assert s.matrix_peak("bf16") == s.matrix_peak("fp16"), name

    def ttft(hw, dtype):
        return evaluate(hw, "llama-3.1-8b", Scenario(batch=1, prompt=4096, generate=1, dtype=dtype))["ttft_s"]

    # both prompts run into the spec's 60 W TDP estimate, whose throttle (clock and voltage
    # falling together, power.power_limit) compresses the ratio below 1 / 0.79
    slower = ttft("apple-m2-max", "bf16") / ttft("apple-m2-max", "fp16")
    assert 1.12 < slower <= 1 / 0.79 + 1e-6
    assert ttft("apple-m4-max", "bf16") == pytest.approx(ttft("apple-m4-max", "fp16"), rel=1e-6)


def test_xeon_amx_and_avx512_peaks():
    s = spec("intel-xeon-8480plus")
    n, clk = s.compute.cores, s.compute.clock
    assert close(s.matrix_peak("bf16"), n * 1024 * clk)
    assert close(s.matrix_peak("int8"), 2 * s.matrix_peak("bf16"))
    assert close(s.compute.vector.peak["fp32"], n * 64 * clk)
    assert close(s.main_memory().bandwidth, 8 * 8 * 4800e6)


def test_host_template_reflects_numpy_kernel_structure():
    s = spec("host-cpu-template")
    assert s.device_class == "cpu" and s.compute.matrix is None and s.compute.cores == 1
    names = [m.name for m in s.memory]
    assert names == ["DRAM", "L3", "L2", "L1d"]
    assert [m.per_core for m in s.memory] == [False, False, True, True]
    bws = [m.bandwidth for m in s.memory]
    assert bws == sorted(bws)                       # inner levels are faster
    k = s.kernels
    for key in ("gemm", "gemm.skinny", "softmax", "norm.rmsnorm", "activation.silu", "elementwise"):
        assert key in k, key
    # call counts of the NumPy code paths (shared/notes/host-kernels.md)
    assert (k["softmax"].calls, k["activation.silu"].calls, k["norm.rmsnorm"].calls) == (5, 4, 7)
    assert k["elementwise"].calls == 1 and k["elementwise"].passes == 1
    # every multi-call op moves more than the minimal traffic
    assert all(p.passes > 1 for key, p in k.items() if p.calls > 3)
    # skinny GEMM costs 2-4x a GEMV of the same weights
    assert 2 <= k["gemm.skinny"].passes / k["gemm.gemv"].passes <= 4
    # exp is ~10x slower than streaming the same elements from DRAM (fp32)
    assert s.compute.vector.transcendental < s.main_memory().bandwidth / 4 / 5


def test_bad_override_names_the_file_field_and_expectation():
    with pytest.raises(CodesignError) as e:
        load_hardware(SPECS / FILES["alveo-u280"], overrides={"compute.fpga.dsp": 0})
    msg = str(e.value)
    assert "alveo-u280.yaml" in msg and "compute.fpga.dsp" in msg and "greater than 0" in msg
    assert "\n" not in msg


def test_sources_cite_files_in_this_repository():
    """Specs cite data/... (in the repo), never a path outside it."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    for folder in ("hardware_specs", "runtimes", "workloads"):
        for f in (root / folder).rglob("*.yaml"):
            assert "shared/data" not in f.read_text(), f
