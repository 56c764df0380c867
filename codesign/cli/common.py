"""Shared CLI helpers: table printing, JSON output, lists and paths from options, the
scenario and compression options."""
from __future__ import annotations

import json
import math
from pathlib import Path

import click
import numpy as np

from ..compression import Compression
from ..errors import CodesignError
from ..io import read_text, read_yaml, validate
from ..units import format_number, format_quantity
from ..workload import load_workload
from ..workload.scenario import Scenario


def echo_table(rows: list[dict], columns: list[str] | None = None) -> None:
    """Print a list of dicts as an aligned text table."""
    if not rows:
        click.echo("(nothing)")
        return
    columns = columns or list(rows[0])
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    click.echo("  ".join("-" * w for w in widths))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)))


# column name suffix -> units dimension, for readable tables of metrics and spec paths
_SUFFIX_DIMENSION = (("_s", "time"), ("_j", "energy"), ("_w", "power"), ("_bytes", "bytes"),
                     (".clock", "frequency"), (".capacity", "bytes"), (".bandwidth", "bandwidth"),
                     (".energy_per_byte", "energy_per_byte"), (".tdp", "power"), (".idle", "power"),
                     (".latency", "time"), ("kernel_overhead", "time"))


def with_units(rows: list[dict]) -> list[dict]:
    """Format numbers whose column names say their dimension ("tpot_s", "compute.clock")."""
    out = []
    for r in rows:
        new = {}
        for k, v in r.items():
            dim = None if str(k).endswith("_per_s") else next(
                (d for suf, d in _SUFFIX_DIMENSION if str(k).endswith(suf)), None)
            if dim and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                v = format_quantity(v, dim)
            elif ".peak." in str(k) and isinstance(v, (int, float)) and math.isfinite(v):
                v = format_quantity(v, "rate")
            new[k] = v
        out.append(new)
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return format_number(v)
    return str(v)


def echo_json(obj) -> None:
    """Strict JSON: NaN/inf (a figure the spec lacks, a model that never fits) become null."""
    click.echo(json.dumps(_finite(obj), indent=2, default=_default, allow_nan=False))


def _finite(o):
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def _default(o):
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


# -- shared options: scenario and compression (eval, compare, sweep, plot, report) ------
def _apply(options):
    def deco(f):
        for opt in reversed(options):
            f = opt(f)
        return f
    return deco


def scenario_options(f):
    """--batch --prompt --generate --dtype --tp --pp --dp --ep --attention --microbatches --ubatch
    --compiled-context --beams --runtime."""
    return _apply([
        click.option("--batch", type=int, default=1, show_default=True, help="Concurrent requests."),
        click.option("--prompt", type=int, default=512, show_default=True, help="Prompt tokens per request."),
        click.option("--generate", type=int, default=128, show_default=True, help="Generated tokens per request."),
        click.option("--dtype", type=click.Choice(["fp32", "tf32", "bf16", "fp16", "fp8", "int8"]), default="bf16",
                     show_default=True, help="Datatype before compression."),
        click.option("--tp", type=int, default=1, show_default=True, help="Tensor-parallel devices."),
        click.option("--pp", type=int, default=1, show_default=True, help="Pipeline stages."),
        click.option("--dp", type=int, default=1, show_default=True, help="Data-parallel replicas."),
        click.option("--ep", type=int, default=1, show_default=True, help="Expert-parallel degree (MoE)."),
        click.option("--attention", type=click.Choice(["fused", "unfused"]), default="fused", show_default=True),
        click.option("--microbatches", type=int, default=None, help="Pipeline micro-batches."),
        click.option("--ubatch", type=int, default=None,
                     help="Prompt tokens per physical pass (llama.cpp -ub; default: the runtime's)."),
        click.option("--compiled-context", type=int, default=None,
                     help="KV positions a fixed-shape compiled graph holds (AI Hub context_length; default: the runtime's)."),
        click.option("--beams", type=int, default=1, show_default=True,
                     help="Beam search / parallel samples per request (they share the prompt's KV cache)."),
        click.option("--runtime", default=None,
                     help="Software stack (codesign runtime list), e.g. tensorrt-llm, vllm, llama.cpp-cuda."),
    ])(f)


def compression_options(f):
    """--weight-bits --weight-format --group-size --act-bits --kv-bits --sparsity --prune-* --distill-to."""
    return _apply([
        click.option("--compression", "compression_file", type=click.Path(dir_okay=False), default=None,
                     help="A compression YAML (e.g. a study export's compression.yaml); flags override it."),
        click.option("--weight-bits", type=click.Choice(["16", "8", "6", "4", "3", "2"]), default=None,
                     help="Weight quantization bits."),
        click.option("--weight-format", type=click.Choice(["int", "fp8", "fp4", "nf4"]), default="int",
                     show_default=True),
        click.option("--group-size", type=int, default=None, help="Quantization group size (default per-channel)."),
        click.option("--act-bits", type=click.Choice(["16", "8", "4"]), default=None,
                     help="Activation bits (4: FP4 with --weight-format fp4, Blackwell NVFP4)."),
        click.option("--kv-bits", type=click.Choice(["16", "8", "4"]), default=None, help="KV-cache bits."),
        click.option("--sparsity", default=None, help="'2:4' (N:M structured) or a density like 0.5."),
        click.option("--prune-heads", type=float, default=0.0, help="Fraction of attention heads pruned."),
        click.option("--prune-ffn", type=float, default=0.0, help="Fraction of FFN channels pruned."),
        click.option("--prune-layers", type=float, default=0.0, help="Fraction of layers pruned."),
        click.option("--distill-to", default=None, help="Serve this smaller library model instead."),
        click.option("--quantize-embeddings", is_flag=True, default=None,
                     help="Quantize the embedding table and LM head too (MLC, llama.cpp)."),
        click.option("--symmetric", "zero_point", flag_value=False, default=None,
                     help="Symmetric int quantization: no zero point per group (llama.cpp Q4_0, MLC q4f16)."),
        click.option("--scheme", default=None,
                     help="The format's name in its stack (llama.cpp q4_0, q4_k, iq4_xs): picks the stack's kernel."),
        click.option("--other-bits", type=click.Choice(["16", "8"]), default=None,
                     help="MoE: only the routed experts take --weight-bits; the other linear layers keep 16 "
                          "(gpt-oss MXFP4 on Hugging Face) or 8 bits (its GGUF/MLX files)."),
    ])(f)


SCENARIO_KEYS = ("batch", "prompt", "generate", "dtype", "tp", "pp", "dp", "ep", "attention", "microbatches",
                 "ubatch", "compiled_context", "beams", "runtime")
COMPRESSION_KEYS = ("weight_bits", "weight_format", "group_size", "act_bits", "kv_bits", "sparsity", "prune_heads",
                    "prune_ffn", "prune_layers", "distill_to", "quantize_embeddings", "zero_point", "scheme", "other_bits")


def build_scenario(kwargs: dict, **update):
    """A Scenario from CLI options (pops them from ``kwargs``); bad values -> one-line error."""
    data = {k: kwargs.pop(k) for k in SCENARIO_KEYS if k in kwargs}
    data = {k: v for k, v in data.items() if v is not None}
    data.update(update)
    return validate(Scenario, data, "command line")


def build_compression(kwargs: dict):
    """A Compression from CLI options (pops them), or None when nothing is compressed."""
    path = kwargs.pop("compression_file", None)
    data = {k: kwargs.pop(k) for k in COMPRESSION_KEYS if k in kwargs}
    for k in ("weight_bits", "act_bits", "kv_bits", "other_bits"):
        if data.get(k) is not None:
            data[k] = int(data[k])
    data = {k: v for k, v in data.items() if v is not None}
    defaults = {"weight_format": "int", "prune_heads": 0.0, "prune_ffn": 0.0, "prune_layers": 0.0}
    if path:   # the file first; flags the user actually set override it
        base = read_yaml(path) if read_text(path).strip() else {}
        data = {**validate(Compression, base, path).model_dump(exclude_defaults=True),
                **{k: v for k, v in data.items() if defaults.get(k, object()) != v}}
    comp = validate(Compression, data, path or "command line")
    if comp.group_size and (comp.weight_bits or 16) >= 16 and comp.weight_format == "int":
        raise CodesignError("sets the scales of quantized weights: give --weight-bits below 16 too",
                            field="--group-size")
    if comp.distill_to:
        load_workload(comp.distill_to)   # unknown model -> clear error now
    return None if comp.is_none else comp


def check_writable(*paths) -> None:
    """Fail before any work when an output file's folder does not exist (nothing computed is lost)."""
    for p in paths:
        if p and not Path(p).resolve().parent.is_dir():
            raise CodesignError("folder does not exist", file=p)


def check_out(out: str, formats=("png", "svg", "pdf")) -> Path:
    """The path of a figure (or report) to write, its extension checked before any work."""
    p = Path(out)
    if p.suffix.lower().lstrip(".") not in formats:
        raise CodesignError(f"expected a file name ending in {', '.join('.' + f for f in formats)}, got {p.name!r}",
                            field="--out")
    return p


# -- lists in one option ('h100-sxm,l4', '2,4,8') ----------------------------------------
def split_names(text: str, what: str = "--hardware") -> list[str]:
    """'a, b,c' -> ['a', 'b', 'c']; empty -> one-line error naming the option ``what``."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise CodesignError("expected one or more names separated by commas", field=what)
    return items


def split_rates(text: str, what: str) -> list[float]:
    """'2, 8,4' -> [2.0, 4.0, 8.0]: request rates > 0, sorted; anything else -> one-line error."""
    try:
        vals = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise CodesignError(f"expected comma-separated numbers, got {text!r}", field=what) from None
    if not vals or any(not v > 0 for v in vals):
        raise CodesignError(f"expected rates > 0, got {text!r}", field=what)
    return sorted(vals)
