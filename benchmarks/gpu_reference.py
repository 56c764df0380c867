"""Independent GPU reference figures for the calibration check (plain torch, no codesign timing):
an 8192^3 bf16 product (mean of 10 after 3 warm-ups, CUDA events: a burst of ~15 ms), the same
product sustained for 3 s (the rate once the board sits at its power limit, with the power and
SM clock read at the end), and a 2 GiB device-to-device copy (bytes read + written). Writes
JSON to stdout or --out.

    python benchmarks/gpu_reference.py --out ref.json
"""
from __future__ import annotations

import argparse
import json
import time


def _power(torch) -> float | None:
    try:
        return torch.cuda.power_draw() / 1000.0
    except Exception:      # noqa: BLE001 - no NVML: no reading
        return None


def main() -> None:
    import torch
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    a = ap.parse_args()
    dev = "cuda"
    n = 8192
    x = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    y = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(3):
        x @ y
    torch.cuda.synchronize()
    start.record()
    for _ in range(10):
        x @ y
    end.record()
    end.synchronize()
    gemm = 10 * 2 * n**3 / (start.elapsed_time(end) * 1e-3)
    reps, t_end = 0, time.perf_counter() + 3.0
    start.record()
    while time.perf_counter() < t_end:
        for _ in range(20):
            x @ y
        reps += 20
        torch.cuda.synchronize()
        if time.perf_counter() > t_end - 0.5 and "power_w" not in locals():
            power_w = _power(torch)
    end.record()
    end.synchronize()
    sustained = reps * 2 * n**3 / (start.elapsed_time(end) * 1e-3)
    del x, y
    size = 2**30                       # 1 GiB source + 1 GiB destination
    src = torch.empty(size // 2, device=dev, dtype=torch.float16).normal_()
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    start.record()
    for _ in range(10):
        dst.copy_(src)
    end.record()
    end.synchronize()
    copy = 10 * 2 * src.numel() * 2 / (start.elapsed_time(end) * 1e-3)
    out = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "bf16_8192_flops": gemm, "bf16_8192_sustained_3s_flops": sustained,
           "power_w_end_of_sustained": locals().get("power_w"), "copy_2gib_bytes_per_s": copy}
    text = json.dumps(out, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
