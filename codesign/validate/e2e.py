"""End-to-end check: the analytical TTFT, TPOT and energy per token against a real decoder run.

The decoder (a random-weight transformer built from the workload's spec, run the way the
operator graph counts its kernels) is :mod:`codesign.validate.decoder`; this module runs it
on a grid of (batch, prompt) points, times it, reads the board's power and compares.

Measured quantities (the same ones :func:`codesign.perf.evaluate` predicts):

- TTFT: one prefill pass of all ``batch`` prompts at once, embedding to the LM head of the
  last position (evaluate: "TTFT is the prefill of all batch prompts at once; its LM head
  yields the first token"), median over repetitions. The predicted TTFT adds the runtime's
  per-request host overhead; nothing else of a serving stack (tokenizer, scheduler,
  sampling, detokenize, HTTP) is in either.
- TPOT: one decode step (all ``batch`` rows) at the mean context of the generation,
  prompt + generate/2 cached tokens (evaluate's tpot_s is the mean step over contexts
  prompt+1 .. prompt+generate-1). On CUDA the step is captured once as a CUDA graph and
  replayed; the per-replay time is TPOT. The step feeds a fixed token (no sampling, no
  feedback of the argmax: neither changes a step's kernels).
- Energy per generated token: (P_prefill x TTFT + P_decode x TPOT x (generate - 1)) /
  (batch x generate), with P the mean board power (NVML) while each loop ran, as evaluate
  divides the whole request batch's energy by its generated tokens. Idle power is
  reported, not subtracted (evaluate's energy includes static power too).

Neglected against a real serving stack: paged KV cache and its block tables, continuous
batching, sampling, tokenization, host/network latency, tensor parallelism, quantized
kernels. On CPU there is no graph and no power reading (energy is NaN).
"""
from __future__ import annotations

import contextlib
import math
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import pandas as pd

from ..errors import CodesignError
from ..hardware import load_hardware
from ..perf import evaluate
from ..runtime import load_runtime
from ..workload import load_workload
from ..workload.scenario import Scenario
from ..workload.schema import ModelSpec
from .decoder import (
    DTYPES,
    Decoder,
    _dtype_bytes,
    check_fits,
    check_supported,
    is_moe_layer,
    memory_estimate,
    weight_elements,
    weight_shapes,
)
from .kernels import require_torch

# the decoder's names stay importable from here
__all__ = ["DTYPES", "Decoder", "check_fits", "check_supported", "is_moe_layer", "memory_estimate", "weight_elements",
           "weight_shapes", "PowerSampler", "power_reader", "decode_context", "run_e2e", "validation_rows"]

NVML_FI_DEV_POWER_INSTANT = 186                    # nvml.h field id (instantaneous board power, mW)
AVERAGED_POWER_LAG_S = 1.0   # nvmlDeviceGetPowerUsage averages the last 1 s on Ampere (ex. GA100) and newer
RAMP_SHARE = 0.2             # first share of each timed loop discarded from the power mean (clocks ramp)
POWER_PERIOD_S = 0.01
IDLE_S = 0.5


def _host_free_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (free + reclaimable page cache); None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# ---------------------------------------------------------------- power
class PowerSampler:
    """Board power in watts from a background thread every ~10 ms; ``mean(t0, t1)`` averages the
    samples of a perf_counter window after its ramp (the first 20%, or the reader's averaging
    lag when that is longer)."""

    def __init__(self, read: Callable[[], float] | None, source: str, lag_s: float = 0.0, period_s: float = POWER_PERIOD_S):
        self.read, self.source, self.lag_s, self.period_s = read, source, lag_s, period_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self.read is not None

    def start(self) -> None:
        if self.read is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="e2e-power", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        read = self.read
        assert read is not None
        while not self._stop.is_set():
            try:
                w = float(read())
            except Exception:      # a failed reading is a gap, not an error
                w = math.nan
            self.samples.append((time.perf_counter(), w))
            self._stop.wait(self.period_s)

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10)
            self._thread = None

    def mean(self, t0: float, t1: float) -> float:
        if self.read is None or t1 <= t0:
            return math.nan
        lo = t0 + max(RAMP_SHARE * (t1 - t0), self.lag_s)
        vals = [w for t, w in list(self.samples) if lo <= t <= t1 and math.isfinite(w) and w > 0]
        return statistics.fmean(vals) if vals else math.nan


def _field_value(fv) -> float:
    kind = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}.get(int(fv.valueType), "uiVal")
    return float(getattr(fv.value, kind))


def _nvml_handle(pynvml, uuid: str | None, index: int):
    if uuid:
        for arg in (uuid, uuid.encode()):
            try:
                return pynvml.nvmlDeviceGetHandleByUUID(arg)
            except Exception:
                pass
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def _gpu_uuid(torch, index: int) -> str | None:
    try:
        u = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    except Exception:
        return None
    if u is None:
        return None
    s = str(u)
    return s if s.startswith(("GPU-", "MIG-")) else "GPU-" + s


def power_reader(torch, index: int) -> tuple[Callable[[], float] | None, str, float]:
    """(read() -> watts, source, averaging lag in s) for CUDA device ``index``; read None when no
    reading works. Preference: NVML's instantaneous field, torch.cuda.power_draw (a 1 s average
    on recent boards), NVML's averaged power, nvidia-smi."""
    uuid = _gpu_uuid(torch, index)
    handle: Any = None
    pynvml: Any = None
    try:
        import pynvml as _pynvml  # optional dependency (nvidia-ml-py): board power where the driver has it
        _pynvml.nvmlInit()
        pynvml, handle = _pynvml, _nvml_handle(_pynvml, uuid, index)
    except Exception:
        pass
    if handle is not None:
        fid = getattr(pynvml, "NVML_FI_DEV_POWER_INSTANT", NVML_FI_DEV_POWER_INSTANT)

        def instant() -> float:
            fv = pynvml.nvmlDeviceGetFieldValues(handle, [fid])[0]
            if fv.nvmlReturn != 0:
                raise RuntimeError(f"NVML field {fid}: error {fv.nvmlReturn}")
            return _field_value(fv) / 1000.0
        if _works(instant):
            return instant, "nvml instantaneous power", 0.0
    draw = getattr(torch.cuda, "power_draw", None)
    if draw is not None:
        def torch_draw() -> float:
            return float(draw(index)) / 1000.0
        if _works(torch_draw):
            return torch_draw, "torch.cuda.power_draw (1 s average)", AVERAGED_POWER_LAG_S
    if handle is not None:
        def average() -> float:
            return float(pynvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0
        if _works(average):
            return average, "nvml power usage (1 s average)", AVERAGED_POWER_LAG_S
    smi = shutil.which("nvidia-smi")
    if smi:
        for query, lag in (("power.draw.instant", 0.0), ("power.draw", AVERAGED_POWER_LAG_S)):
            def nvsmi(query=query) -> float:
                out = subprocess.run([smi, f"--query-gpu={query}", "--format=csv,noheader,nounits", "-i", uuid or str(index)],
                                     capture_output=True, text=True, timeout=5)
                return float(out.stdout.strip().splitlines()[0])
            if _works(nvsmi):
                return nvsmi, f"nvidia-smi {query}", lag
    return None, "none (no pynvml / nvidia-ml-py, torch.cuda.power_draw or nvidia-smi reading worked)", 0.0


def _works(read: Callable[[], float]) -> bool:
    try:
        w = read()
    except Exception:
        return False
    return math.isfinite(w) and w > 0


# ---------------------------------------------------------------- timing
@dataclass
class _Timed:
    seconds: float             # median (prefill) or mean per replay (decode)
    reps: int
    window: tuple[float, float]  # perf_counter span of the timed loop (for the power mean)


def _time_cpu(fn: Callable[[], Any], target_s: float, min_reps: int, max_reps: int = 10_000) -> _Timed:
    fn()                                       # warm-up
    times: list[float] = []
    t0 = time.perf_counter()
    while len(times) < min_reps or (sum(times) < target_s and len(times) < max_reps):
        a = time.perf_counter()
        fn()
        times.append(time.perf_counter() - a)
    return _Timed(statistics.median(times), len(times), (t0, time.perf_counter()))


def _time_prefill_cuda(torch, fn: Callable[[], Any], target_s: float, min_reps: int = 3, max_reps: int = 10_000) -> _Timed:
    """Eager prefill passes back to back, each between two CUDA events; median."""
    fn()                                       # warm-up (cuBLAS handles, kernel selection)
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    fn()
    b.record()
    b.synchronize()
    one = max(a.elapsed_time(b) / 1e3, 1e-6)
    n = int(min(max_reps, max(min_reps, math.ceil(target_s / one))))
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for e0, e1 in events:
        e0.record()
        fn()
        e1.record()
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    return _Timed(statistics.median(e0.elapsed_time(e1) / 1e3 for e0, e1 in events), n, (t0, t1))


def _time_decode_graph(torch, fn: Callable[[], Any], target_s: float, min_replays: int = 20,
                       max_replays: int = 1_000_000) -> _Timed:
    """Capture ``fn`` (one decode step, static shapes) as a CUDA graph and time its replays."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):              # warm-up on a side stream before capture (torch docs)
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(10):
        graph.replay()
    b.record()
    b.synchronize()
    one = max(a.elapsed_time(b) / 1e3 / 10, 1e-7)
    n = int(min(max_replays, max(min_replays, math.ceil(target_s / one))))
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    a.record()
    for _ in range(n):
        graph.replay()
    b.record()
    b.synchronize()
    t1 = time.perf_counter()
    per = a.elapsed_time(b) / 1e3 / n
    del graph
    return _Timed(per, n, (t0, t1))


# ---------------------------------------------------------------- the harness
def _device(torch, device: str):
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise CodesignError(f"device must be cpu or cuda, got {device!r}", field="device") from None
    if dev.type not in ("cpu", "cuda"):
        raise CodesignError(f"device must be cpu or cuda, got {device!r}", field="device")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CodesignError("device cuda: torch.cuda.is_available() is False on this machine "
                                f"(torch {torch.__version__})", field="device")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        if dev.index >= torch.cuda.device_count():
            raise CodesignError(f"device {device}: only {torch.cuda.device_count()} CUDA device(s)", field="device")
    return dev


def _grid(grid: Sequence[tuple[int, int]], generate: int) -> list[tuple[int, int]]:
    if generate < 1:
        raise CodesignError(f"generate must be at least 1, got {generate}", field="generate")
    out = []
    for pt in grid:
        try:
            b, p = (int(v) for v in pt)
        except (TypeError, ValueError):
            raise CodesignError(f"grid points are (batch, prompt) pairs, got {pt!r}", field="grid") from None
        if b < 1 or p < 1:
            raise CodesignError(f"grid point (batch={b}, prompt={p}): both must be at least 1", field="grid")
        out.append((b, p))
    if not out:
        raise CodesignError("the grid is empty: give at least one (batch, prompt) pair", field="grid")
    return out


def _predict(spec, model: ModelSpec, batch: int, prompt: int, generate: int, dtype: str, runtime: str) -> dict:
    sc = Scenario(batch=batch, prompt=prompt, generate=generate, dtype=cast(Any, dtype), runtime=runtime)
    s = evaluate(spec, model, sc).summary
    return {k: s[k] for k in ("ttft_s", "tpot_s", "energy_per_token_j", "avg_power_w", "notes")}


def decode_context(prompt: int, generate: int) -> int:
    """Keys the timed decode step attends: prompt + generate/2, the mean over the generation
    (the step for token i = 2..G attends prompt + i - 1 tokens)."""
    return prompt + max(generate // 2, 1)


def _err(pred: float, meas: float) -> float:
    if not (math.isfinite(pred) and math.isfinite(meas)) or meas == 0:
        return math.nan
    return 100.0 * (pred - meas) / meas


def _mape(values) -> float:
    v = [abs(x) for x in values if math.isfinite(x)]
    return statistics.fmean(v) if v else math.nan


def run_e2e(workload, hardware, *, runtime: str = "pytorch-graphs", device: str = "cpu", dtype: str = "bf16",
            grid: Sequence[tuple[int, int]] = ((1, 512),), generate: int = 128, layers: int | None = None,
            power: bool = True, min_seconds: float = 1.0, log=None) -> tuple[pd.DataFrame, dict]:
    """Run a random-weight decoder of ``workload`` on ``device`` for every (batch, prompt) of
    ``grid`` and compare TTFT, TPOT and energy per token with ``evaluate`` on ``hardware``
    under ``runtime``. ``layers``: only the first N layers, in the run and in the prediction.

    TTFT measured = one prefill pass (all prompts, LM head of the last position), as
    evaluate's ttft_s (which adds the runtime's request overhead). TPOT measured = one decode
    step at the mean context prompt + generate/2 (a CUDA graph replay on CUDA, an eager step
    on CPU). Energy per token = (P_prefill x TTFT + P_decode x TPOT x (generate-1)) /
    (batch x generate), NaN without a power reading (CPU, power=False, no NVML).
    Returns (one row per grid point, report with per-metric MAPE)."""
    torch = require_torch()

    say = log or (lambda msg: None)
    model = load_workload(workload)
    check_supported(model)
    spec = load_hardware(hardware)
    load_runtime(runtime)                        # unknown runtime: its own one-line error
    _dtype_bytes(dtype)
    if layers is not None:
        if not 1 <= int(layers) <= model.num_layers:
            raise CodesignError(f"layers must be between 1 and {model.num_layers} for {model.name}, got {layers}",
                                field="layers")
        model = model.model_copy(update={"num_layers": int(layers)})
    points = _grid(grid, generate)
    if min_seconds < 0:
        raise CodesignError(f"min_seconds must be >= 0, got {min_seconds}", field="min_seconds")
    dev = _device(torch, device)
    cuda = dev.type == "cuda"
    if cuda and dtype == "bf16" and not torch.cuda.is_bf16_supported():
        raise CodesignError(f"dtype bf16 is not supported on {torch.cuda.get_device_name(dev)}; use fp16 or fp32",
                            field="dtype")

    # predictions first: cheap, and a bad runtime/hardware pair fails before any allocation
    preds = [_predict(spec, model, b, p, generate, dtype, runtime) for b, p in points]

    # memory: weights once + the largest grid point's KV cache and activations
    expand = not (cuda and dtype in ("bf16", "fp16"))
    needs = [memory_estimate(model, b, p, generate, dtype, expand_kv=expand) for b, p in points]
    worst = max(range(len(points)), key=lambda j: needs[j]["total"])
    where = "host"
    free = _host_free_bytes()
    gpu_name = None
    if cuda:
        gpu_name = torch.cuda.get_device_name(dev)
        free, _total = torch.cuda.mem_get_info(dev)
        where = gpu_name
    if free is not None:
        b, p = points[worst]
        check_fits(model, needs[worst], int(free), where, f"batch {b}, prompt {p}")

    report: dict = {"model": model.name, "layers": model.num_layers, "hardware": spec.name,
                    "runtime": load_runtime(runtime).name, "device": str(dev), "dtype": dtype, "generate": generate,
                    "torch": torch.__version__}
    if gpu_name:
        report["gpu_name"] = gpu_name
    sampler = PowerSampler(None, "off (power=False)" if not power else "none on cpu")
    if cuda and power:
        read, source, lag = power_reader(torch, dev.index)
        sampler = PowerSampler(read, source, lag)
    report["power_source"] = sampler.source
    if cuda and power and not sampler.active:
        say(f"no power reading: {sampler.source}; energy columns are NaN")
    # loops long enough that a power mean covers steady state after the reader's lag
    target = max(min_seconds, sampler.lag_s + 0.5) if sampler.active else min_seconds

    rows: list[dict] = []
    dec: Decoder | None = None
    sampler.start()
    try:
        if sampler.active:
            t0 = time.perf_counter()
            time.sleep(IDLE_S + sampler.lag_s)
            report["idle_power_w"] = sampler.mean(t0, time.perf_counter())
        t_init = time.perf_counter()
        max_len = max(p for _, p in points) + generate
        with (torch.cuda.device(dev) if cuda else contextlib.nullcontext()):
            dec = Decoder(model, device=str(dev), dtype=dtype, seed=0, max_len=max_len)
            if cuda:
                torch.cuda.synchronize(dev)
            say(f"e2e: {model.name} ({model.num_layers} layers, {dtype}) built on {gpu_name or 'cpu'} "
                f"in {time.perf_counter() - t_init:.1f} s; power: {sampler.source}")
            for (b, p), pred in zip(points, preds):
                rows.append(_measure_point(torch, dec, b, p, generate, pred, target, sampler, cuda))
                r = rows[-1]
                say(f"e2e batch {b} prompt {p}: TTFT {r['ttft_measured_s'] * 1e3:.2f} ms measured vs "
                    f"{r['ttft_predicted_s'] * 1e3:.2f} predicted ({r['ttft_error_pct']:+.1f}%), TPOT "
                    f"{r['tpot_measured_s'] * 1e3:.3f} ms vs {r['tpot_predicted_s'] * 1e3:.3f} ({r['tpot_error_pct']:+.1f}%), "
                    f"energy/token {r['energy_per_token_measured_j']:.4g} J vs {r['energy_per_token_predicted_j']:.4g} "
                    f"({r['energy_error_pct']:+.1f}%)")
    finally:
        sampler.stop()
        if dec is not None:
            dec.free_cache()
        del dec
        if cuda:
            torch.cuda.empty_cache()

    df = pd.DataFrame(rows)
    report["ttft_mape_pct"] = _mape(df["ttft_error_pct"])
    report["tpot_mape_pct"] = _mape(df["tpot_error_pct"])
    report["energy_mape_pct"] = _mape(df["energy_error_pct"])
    report["points"] = len(df)
    report["grid"] = points
    report["decode_mode"] = sorted(set(df["decode_mode"]))
    return df, report


def _measure_point(torch, dec: Decoder, batch: int, prompt: int, generate: int, pred: dict, target_s: float,
                   sampler: PowerSampler, cuda: bool) -> dict:
    """Prefill and decode timings (and power) of one grid point; frees its cache afterwards."""
    model = dec.model
    ctx = decode_context(prompt, generate)
    gen = torch.Generator(device=dec.device)
    gen.manual_seed(batch * 1_000_003 + prompt)
    try:
        dec.alloc_cache(batch, prompt + generate)
        ids = torch.randint(0, model.vocab_size, (batch, prompt), generator=gen, device=dec.device)
        step_ids = torch.randint(0, model.vocab_size, (batch, 1), generator=gen, device=dec.device)
        mode = "cuda-graph" if cuda else "eager"
        if cuda:
            pre = _time_prefill_cuda(torch, lambda: dec.prefill(ids), target_s)
            # one decode step at a fixed context as a CUDA graph (static positions and cache slice)
            try:
                step = _time_decode_graph(torch, lambda: dec.decode(step_ids, ctx - 1), target_s)
            except RuntimeError as e:      # capture refused: eager steps rather than no number at all
                torch.cuda.synchronize()
                mode = f"eager (graph capture failed: {str(e).splitlines()[0][:120]})"
                step = _time_prefill_cuda(torch, lambda: dec.decode(step_ids, ctx - 1), target_s, min_reps=20)
        else:
            pre = _time_cpu(lambda: dec.prefill(ids), target_s, min_reps=3)
            step = _time_cpu(lambda: dec.decode(step_ids, ctx - 1), target_s, min_reps=5)
        p_pre, p_dec = sampler.mean(*pre.window), sampler.mean(*step.window)
    finally:
        dec.free_cache()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
    ttft, tpot = pre.seconds, step.seconds
    wall = ttft + tpot * (generate - 1)
    decode_j = p_dec * tpot * (generate - 1) if generate > 1 else 0.0
    energy = (p_pre * ttft + decode_j) / (batch * generate)
    avg_power = energy * batch * generate / wall if wall > 0 else math.nan
    e_pred = float(pred["energy_per_token_j"])
    return {
        "batch": batch, "prompt": prompt, "generate": generate, "decode_context": ctx,
        "ttft_measured_s": ttft, "ttft_predicted_s": float(pred["ttft_s"]),
        "ttft_error_pct": _err(float(pred["ttft_s"]), ttft),
        "tpot_measured_s": tpot, "tpot_predicted_s": float(pred["tpot_s"]),
        "tpot_error_pct": _err(float(pred["tpot_s"]), tpot),
        "energy_per_token_measured_j": energy, "energy_per_token_predicted_j": e_pred,
        "energy_error_pct": _err(e_pred, energy),
        "power_prefill_w": p_pre, "power_decode_w": p_dec, "power_avg_measured_w": avg_power,
        "power_predicted_w": float(pred["avg_power_w"]),
        "prefill_reps": pre.reps, "decode_reps": step.reps, "decode_mode": mode, "notes": pred["notes"],
    }


def validation_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The e2e table as kernel-validation rows (codesign.plots.validation's axes): one point
    per metric and grid point, TTFT as the prefill phase and TPOT as decode."""
    rows = [{"kernel": f"b{r['batch']}-p{r['prompt']}/{m}", "kind": m, "phase": ph,
             "predicted_s": r[f"{m}_predicted_s"], "measured_s": r[f"{m}_measured_s"], "error_pct": r[f"{m}_error_pct"]}
            for r in df.to_dict("records") for m, ph in (("ttft", "prefill"), ("tpot", "decode"))]
    return pd.DataFrame(rows)
