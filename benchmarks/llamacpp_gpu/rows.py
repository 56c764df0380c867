"""llama-bench's JSON lines -> rows in the schema of data/published-measurements.csv, so a run
of run.sh is scored by the accuracy loop like any published table:

    python benchmarks/llamacpp_gpu/rows.py docs/validation/h200-llamacpp-2026-11-27/bench*.jsonl \
        --hardware "NVIDIA H200 SXM 141GB" > rows.csv
    codesign accuracy --measurements rows.csv --no-cv

One row per prompt test and per decode test at depth 0 (decode once per -fa setting: n_ubatch
does not touch it); the value is the median of llama-bench's samples, as its first timed
sample often runs cold (its mean is kept in the notes).
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys

# llama-bench's model_type architecture and size words -> the model name the accuracy map knows
MODELS = {("llama", "8B"): ("Llama-3.1-8B", "8.03"), ("llama", "1B"): ("Llama-3.2-1B", "1.24"),
          ("qwen3moe", "30B.A3B"): ("Qwen3-30B-A3B", "30.53")}
# its file-type label -> the precision column ('Q4_K - Small': every matrix Q4_K)
PRECISIONS = {"Q4_0": "Q4_0", "Q8_0": "Q8_0", "F16": "F16", "Q4_K - Small": "Q4_K_S"}


def to_rows(lines, hardware: str, source: str, conditions: str) -> list[dict]:
    out = []
    for line in lines:
        r = json.loads(line)
        # (a record run with GGML_CUDA_DISABLE_GRAPHS=1 is marked cuda_graphs: false by hand)
        if r["n_depth"] or (r["n_gen"] and r["n_ubatch"] != 512) or r.get("cuda_graphs") is False:
            continue
        arch, size, label = r["model_type"].split(" ", 2)
        precision = PRECISIONS[label]
        model, params = MODELS[(arch, size)]
        prompt = r["n_gen"] == 0
        test = f"pp{r['n_prompt']}" if prompt else f"tg{r['n_gen']}"
        samples = ", ".join(f"{x:.1f}" for x in r["samples_ts"])
        out.append({
            "hw_ref": "", "hardware": hardware, "hw_class": "gpu", "num_devices": "1",
            "software_framework": (f"llama.cpp b{r['build_number']} ({r['build_commit']}) (CUDA, llama-bench, "
                                   f"-fa {r['flash_attn']}, -ub {r['n_ubatch']})"),
            "model": model, "params_B": params, "weight_precision": precision, "kv_precision": r["type_k"],
            "batch": "1", "input_tokens": str(r["n_prompt"]) if prompt else "0",
            "output_tokens": "0" if prompt else str(r["n_gen"]),
            "metric": "prompt_tokens_per_s" if prompt else "decode_tokens_per_s",
            "value": f"{statistics.median(r['samples_ts']):.2f}", "source": source,
            "notes": (f"{test}, n_ubatch {r['n_ubatch']}, fa {r['flash_attn']}, ngl {r['n_gpu_layers']}; median of the "
                      f"llama-bench samples {samples} t/s (its mean {r['avg_ts']:.1f}). Random-weight GGUF from "
                      f"make_gguf.py, every matrix {precision} (the output matrix too, which llama-quantize writes as "
                      f"Q6_K), {r['model_size']} bytes; llama-bench feeds random tokens. {conditions}"),
            "runtime": "llama.cpp-cuda"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jsonl", nargs="+")
    ap.add_argument("--hardware", required=True, help="the board, as the measurements CSV names it")
    ap.add_argument("--source", help="where the run is kept (default: the JSONL path)")
    ap.add_argument("--conditions", default="", help="a sentence on the machine (power limit, driver, CUDA)")
    a = ap.parse_args()
    rows = []
    for path in a.jsonl:
        with open(path) as f:
            rows += to_rows(f, a.hardware, a.source or path, a.conditions)
    w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)


if __name__ == "__main__":
    main()
