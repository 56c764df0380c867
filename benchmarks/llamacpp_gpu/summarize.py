#!/usr/bin/env python3
"""Summarize llama-bench jsonl (one JSON object per line) as a markdown table."""
import json
import os
import sys

rows = []
path = sys.argv[1] if len(sys.argv) > 1 else "bench.jsonl"
bad = 0
with open(path) as fh:
    for line in fh:
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            bad += 1

if not rows:
    print(f"no bench rows in {path} ({bad} unparsable lines)")
    sys.exit(0)

r0 = rows[0]
print(f"build {r0.get('build_commit')} b{r0.get('build_number')} | backends {r0.get('backends')} | "
      f"gpu {r0.get('gpu_info')} | cpu {r0.get('cpu_info')}")
hdr = ["model", "type", "size GiB", "params B", "test", "ub", "fa", "t/s", "+-"]
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
for r in rows:
    np_, ng, nd = r.get("n_prompt", 0), r.get("n_gen", 0), r.get("n_depth", 0)
    test = f"pp{np_}" if np_ else ""
    test += ("+" if test and ng else "") + (f"tg{ng}" if ng else "")
    if nd:
        test += f" @d{nd}"
    print("| " + " | ".join([
        os.path.basename(str(r.get("model_filename", "?"))),
        str(r.get("model_type", "?")),
        f"{r.get('model_size', 0) / 2**30:.2f}",
        f"{r.get('model_n_params', 0) / 1e9:.2f}",
        test,
        str(r.get("n_ubatch")),
        str(r.get("flash_attn")),
        f"{r.get('avg_ts', 0):.2f}",
        f"{r.get('stddev_ts', 0):.2f}",
    ]) + " |")
if bad:
    print(f"({bad} unparsable lines skipped)")
