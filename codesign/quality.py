"""Quality proxy for compression choices: published quality changes, looked up and combined.

:func:`estimate_quality` answers "how much worse does this model get under this
:class:`~codesign.compression.Compression`?" from a table of *published*
measurements (``data/quality.csv``; each row cites paper + table). It never
invents a number: where the table has nothing that applies it says ``no-data``
and returns ``None``, never a silent 0.

The number returned is the relative change of the metric in percent,
``100 * (compressed / baseline - 1)``, taken per row against that row's own
baseline (papers evaluate at different context lengths, so absolute
perplexities are not comparable across sources; relative changes are closer to
being so). For perplexity it is an increase (worse when > 0); for accuracy
metrics (``mmlu_acc``, ``zeroshot_avg_acc``) it is the relative change too, so a
drop is negative.

Rules, in order:

1. ``Compression()`` (nothing compressed): 0 %, status ``table``.
2. Which rows describe *this model*: a row's ``model`` equal to the model's
   ``name``; else a row whose ``family`` matches the model's family key and
   whose ``params_b`` is within 5 % of the model's parameter count. Family keys
   are tried in order: the name without its size suffix (``llama-2-7b`` ->
   ``llama-2``), then ``ModelSpec.family``. Table families are generation-level
   (``llama-1``, ``llama-2``, ``llama-3``, ``opt``, ``mistral``) so that two
   generations of the same size are never mixed.
3. Which rows describe *this compression*: every compression field must match
   (weight bits/format/group size, activation bits, KV bits, sparsity pattern,
   prune fractions; blanks mean "not compressed"). First the whole compression is
   looked up as one row (e.g. SmoothQuant W8A8+KV8, QoQ W4A8KV4).
4. Method choice: the table has several methods for the same setting (RTN,
   GPTQ, AWQ, ...). They are tried in :data:`METHOD_PREFERENCE` order (or the
   caller's ``prefer`` first): the first method with a usable value wins. Several
   rows for the same model, method and setting are averaged (all are cited).
5. Other sizes of the family: with no row for this size, the relative change is
   interpolated linearly in log(parameters) between the two nearest published
   sizes that bracket it (status ``interpolated``). Outside the published range
   there is **no extrapolation**: the method gives nothing for this model and the
   note names the nearest published size. (Quantization error is known to fall
   with model size, but not at a rate one table can pin down.)
6. Combinations with no single row (W4 + KV4 + 2:4, ...) are split into
   components -- weights/activations, KV cache, sparsity, pruning -- each looked
   up by rules 2-5, and composed multiplicatively:
   ``1 + r = prod(1 + r_i)`` (status ``composed``). This assumes the errors
   act independently; published joint results (QServe's W4A8KV4 vs its parts)
   suggest it is roughly right for mild settings and optimistic for aggressive
   ones. If any component has no data the whole answer is ``no-data``.
7. ``distill_to`` replaces the model: its quality is that model's own
   evaluation, which this table does not hold -> ``no-data``.

Extra rows: a CSV with the same columns, passed as ``extra_csv`` or listed in
the ``CODESIGN_QUALITY_PATH`` environment variable (``os.pathsep``-separated).
A user row shadows built-in rows with the same family, model, method, setting
and metric.

A measured proxy (GEMM error of a quantized kernel from the kernel runner,
``codesign.quantize``) may complement this table later; it is not used here.
"""
from __future__ import annotations

import csv
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from .compression import Compression, normalize_sparsity
from .errors import CodesignError
from .io import data_dir, read_text
from .quantize import measured_gemm_error
from .workload.schema import ModelSpec

Status = Literal["table", "interpolated", "composed", "no-data"]

COLUMNS = ("family", "model", "params_b", "method", "weight_bits", "weight_format", "group_size", "act_bits",
           "kv_bits", "sparsity", "prune_heads", "prune_ffn", "prune_layers", "prune_hidden", "metric", "seq_len",
           "baseline", "compressed", "source", "notes")
REQUIRED = ("family", "model", "params_b", "method", "metric", "baseline", "compressed", "source")
# bit widths a table row may state (wider than Compression accepts, so published W4A4 / KV3 rows can be kept)
ROW_BITS = {"weight_bits": (16, 8, 6, 5, 4, 3, 2), "act_bits": (16, 8, 6, 4), "kv_bits": (16, 8, 6, 4, 3, 2)}
WEIGHT_FORMATS = ("int", "fp8", "fp4", "nf4")
# Tried in this order when several methods cover a setting: the methods a deployment would
# normally use first (AWQ/GPTQ for weights, SmoothQuant for W8A8, Wanda for sparsity, plain
# per-token INT for the KV cache as serving engines implement it), naive baselines last.
METHOD_PREFERENCE = ("awq", "gptq-r", "gptq", "smoothquant", "qoq", "wanda", "sparsegpt", "llm-pruner",
                     "slicegpt", "kv-int", "kvquant", "rtn", "magnitude")
SIZE_TOLERANCE = 0.05        # a row is "this size" when params agree within 5 %
DEFAULT_METRIC = "wikitext2_ppl"

# (weight_bits, weight_format, group_size, act_bits, kv_bits, sparsity, prune_heads, prune_ffn, prune_layers, prune_hidden)
Setting = tuple


@dataclass(frozen=True)
class QualityRow:
    """One published measurement (a row of quality.csv)."""
    family: str
    model: str
    params_b: float
    method: str
    setting: Setting
    metric: str
    seq_len: int | None
    baseline: float
    compressed: float
    source: str
    notes: str
    file: str
    line: int

    @property
    def change_pct(self) -> float:
        """Relative change of the metric, percent (perplexity increase > 0 is worse)."""
        return 100.0 * (self.compressed / self.baseline - 1.0)

    @property
    def citation(self) -> str:
        return f"{self.model} {self.method}: {self.baseline:g} -> {self.compressed:g} ({self.source})"


@dataclass(frozen=True)
class QualityEstimate:
    """Result of :func:`estimate_quality`. ``rows`` are the cited rows the value came from."""
    ppl_increase_pct: float | None
    status: Status
    rows: tuple[QualityRow, ...]
    note: str
    metric: str = DEFAULT_METRIC


# -- reading the table ---------------------------------------------------------

def _setting(weight_bits=None, weight_format="int", group_size=None, act_bits=None, kv_bits=None, sparsity=None,
             prune_heads=0.0, prune_ffn=0.0, prune_layers=0.0, prune_hidden=0.0) -> Setting:
    """Canonical form of a compression setting: 16-bit / none / 0 for everything not compressed."""
    wb = weight_bits or 16
    fmt = (weight_format or "int") if wb < 16 else "int"
    gs = group_size if wb < 16 else None
    return (wb, fmt, gs, act_bits or 16, kv_bits or 16, normalize_sparsity(sparsity),
            round(prune_heads or 0.0, 2), round(prune_ffn or 0.0, 2), round(prune_layers or 0.0, 2),
            round(prune_hidden or 0.0, 2))


def _parse_row(raw: dict, path: Path, line: int) -> QualityRow:
    def err(col: str, msg: str) -> CodesignError:
        return CodesignError(msg, file=path, field=f"row {line}.{col}")

    for col in REQUIRED:
        if not (raw.get(col) or "").strip():
            raise err(col, "required value is missing")

    def num(col: str, kind=float, positive=True):
        s = (raw.get(col) or "").strip()
        if not s:
            return None
        try:
            v = kind(float(s)) if kind is int else kind(s)
        except ValueError:
            raise err(col, f"expected a number, got {s!r}") from None
        if kind is int and float(s) != int(float(s)):
            raise err(col, f"expected a whole number, got {s!r}")
        if not math.isfinite(v) or (positive and v <= 0):
            raise err(col, f"expected a positive number, got {s!r}")
        return v

    values = {}
    for col, allowed in ROW_BITS.items():
        v = num(col, int)
        if v is not None and v not in allowed:
            raise err(col, f"expected one of {', '.join(map(str, allowed))} or blank, got {v}")
        values[col] = v
    fmt = (raw.get("weight_format") or "").strip() or "int"
    if fmt not in WEIGHT_FORMATS:
        raise err("weight_format", f"expected one of {', '.join(WEIGHT_FORMATS)} or blank, got {fmt!r}")
    fractions = {}
    for col in ("prune_heads", "prune_ffn", "prune_layers", "prune_hidden"):
        v = num(col, float, positive=False) or 0.0
        if not 0 <= v < 1:
            raise err(col, f"expected a fraction in [0, 1), got {v:g}")
        fractions[col] = v
    try:
        sparsity = normalize_sparsity(raw.get("sparsity"))
    except ValueError as e:
        raise err("sparsity", str(e)) from None
    setting = _setting(values["weight_bits"], fmt, num("group_size", int), values["act_bits"], values["kv_bits"],
                       sparsity, **fractions)
    if setting == _setting():
        raise err("method", "the row describes no compression (all bit widths 16, no sparsity or pruning)")
    return QualityRow(
        family=raw["family"].strip().lower(), model=raw["model"].strip().lower(), params_b=num("params_b"),
        method=raw["method"].strip().lower(), setting=setting, metric=raw["metric"].strip().lower(),
        seq_len=num("seq_len", int), baseline=num("baseline"), compressed=num("compressed"),
        source=raw["source"].strip(), notes=(raw.get("notes") or "").strip(), file=str(path), line=line)


@lru_cache(maxsize=16)
def _read_csv(path: str, mtime: float) -> tuple[QualityRow, ...]:
    p = Path(path)
    text = read_text(p)
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise CodesignError(f"missing column(s) {', '.join(missing)}; expected the columns of data/quality.csv",
                            file=p, field="header")
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise CodesignError(f"unknown column(s) {', '.join(unknown)}; expected some of {', '.join(COLUMNS)}",
                            file=p, field="header")
    return tuple(_parse_row(raw, p, i) for i, raw in enumerate(reader, start=2))


def _key(r: QualityRow):
    return (r.family, r.model, r.method, r.setting, r.metric)


def load_quality_table(extra: Iterable[str | os.PathLike] | str | os.PathLike | None = None) -> tuple[QualityRow, ...]:
    """Built-in rows plus rows from ``extra`` files and ``CODESIGN_QUALITY_PATH``; user rows shadow built-ins."""
    paths = [data_dir("data") / "quality.csv"]
    env = os.environ.get("CODESIGN_QUALITY_PATH")
    if env:
        paths += [Path(p) for p in env.split(os.pathsep) if p]
    if extra is not None:
        paths += [Path(extra)] if isinstance(extra, (str, os.PathLike)) else [Path(p) for p in extra]
    rows: list[QualityRow] = []
    for i, p in enumerate(paths):
        mtime = p.stat().st_mtime if p.is_file() else -1.0
        new = _read_csv(str(p), mtime)
        if i:
            shadowed = {_key(r) for r in new}
            rows = [r for r in rows if _key(r) not in shadowed]
        rows += new
    return tuple(rows)


# -- matching --------------------------------------------------------------------

_SIZE_SUFFIX = re.compile(r"-\d+(?:\.\d+)?[bm](?:-.*)?$")


def _model_params(model: ModelSpec) -> float:
    return float(model.params or model.param_count())


def family_keys(model: ModelSpec) -> tuple[str, ...]:
    """Family names tried for ``model``: its name without the size suffix, then ``model.family``."""
    keys = []
    stem = _SIZE_SUFFIX.sub("", model.name.lower())
    if stem != model.name.lower():
        keys.append(stem)
    if model.family:
        keys.append(model.family.lower())
    return tuple(dict.fromkeys(keys))


@dataclass(frozen=True)
class _Lookup:
    value: float | None
    status: Status
    rows: tuple[QualityRow, ...]
    note: str


def _ordered_methods(methods: Iterable[str], prefer: Sequence[str]) -> list[str]:
    order = list(dict.fromkeys([m.lower() for m in prefer] + list(METHOD_PREFERENCE)))
    return sorted(set(methods), key=lambda m: (order.index(m) if m in order else len(order), m))


def _mean_change(rows: Sequence[QualityRow]) -> float:
    return sum(r.change_pct for r in rows) / len(rows)


def _lookup(model: ModelSpec, setting: Setting, metric: str, table: Sequence[QualityRow],
            prefer: Sequence[str], what: str) -> _Lookup:
    """Value for one setting on one model (rules 2-5 of the module docstring)."""
    params = _model_params(model)
    name = model.name.lower()
    candidates = [r for r in table if r.setting == setting and r.metric == metric]
    if not candidates:
        return _Lookup(None, "no-data", (), f"{what}: no published {metric} rows for this setting")
    exact_name = [r for r in candidates if r.model == name]
    for fam in family_keys(model) or ("",):
        fam_rows = exact_name + [r for r in candidates if r.family == fam and r not in exact_name]
        if not fam_rows:
            continue
        nearest_note = ""
        for method in _ordered_methods((r.method for r in fam_rows), prefer):
            rows = [r for r in fam_rows if r.method == method]
            same = [r for r in rows if r.model == name or abs(r.params_b * 1e9 / params - 1) <= SIZE_TOLERANCE]
            if same:
                return _Lookup(_mean_change(same), "table", tuple(same),
                               f"{what}: {method}, published for {same[0].model}")
            by_size: dict[float, list[QualityRow]] = defaultdict(list)
            for r in rows:
                by_size[r.params_b * 1e9].append(r)
            sizes = sorted(by_size)
            lo = max((s for s in sizes if s < params), default=None)
            hi = min((s for s in sizes if s > params), default=None)
            if lo is not None and hi is not None:
                t = (math.log(params) - math.log(lo)) / (math.log(hi) - math.log(lo))
                v_lo, v_hi = _mean_change(by_size[lo]), _mean_change(by_size[hi])
                used = tuple(by_size[lo] + by_size[hi])
                return _Lookup(v_lo + t * (v_hi - v_lo), "interpolated", used,
                               f"{what}: {method}, interpolated in log(params) between {by_size[lo][0].model} "
                               f"and {by_size[hi][0].model}")
            if not nearest_note:
                near = min(sizes, key=lambda s: abs(math.log(s / params)))
                nearest_note = (f"{what}: {fam} rows exist only for other sizes (nearest: {by_size[near][0].model}, "
                                f"{method}); no extrapolation beyond the published range")
        return _Lookup(None, "no-data", (), nearest_note or f"{what}: no usable rows for family {fam!r}")
    keys = ", ".join(family_keys(model)) or "(none)"
    return _Lookup(None, "no-data", (), f"{what}: no published {metric} rows for {model.name} (family keys: {keys})")


def _components(c: Compression) -> list[tuple[str, Setting]]:
    out = []
    wq = c.weight_bits is not None and c.weight_bits < 16
    aq = c.act_bits is not None and c.act_bits < 16
    if wq or aq:
        label = f"W{c.weight_bits or 16}A{c.act_bits or 16}" + (f" g{c.group_size}" if wq and c.group_size else "")
        out.append((label, _setting(c.weight_bits, c.weight_format, c.group_size, c.act_bits)))
    if c.kv_bits is not None and c.kv_bits < 16:
        out.append((f"KV{c.kv_bits}", _setting(kv_bits=c.kv_bits)))
    if c.sparsity:
        out.append((f"sparsity {c.sparsity}", _setting(sparsity=c.sparsity)))
    if c.prune_heads or c.prune_ffn or c.prune_layers:
        out.append(("pruning", _setting(prune_heads=c.prune_heads, prune_ffn=c.prune_ffn,
                                        prune_layers=c.prune_layers)))
    return out


def estimate_quality(model: ModelSpec, compression: Compression | None = None, *, metric: str = DEFAULT_METRIC,
                     prefer: Sequence[str] = (), extra_csv=None) -> QualityEstimate:
    """Published quality change of ``model`` under ``compression`` (see the module docstring for the rules).

    ``prefer`` lists methods to try before :data:`METHOD_PREFERENCE` (e.g. ``("kvquant",)``);
    ``extra_csv`` adds user rows (also ``CODESIGN_QUALITY_PATH``).
    """
    compression = compression or Compression()
    metric = metric.lower()
    if compression.is_none:
        return QualityEstimate(0.0, "table", (), "no compression: quality unchanged by definition", metric)
    if compression.distill_to:
        return QualityEstimate(None, "no-data", (), f"distill_to={compression.distill_to!r} replaces the model; its "
                               "quality is that model's own evaluation, which the quality table does not hold", metric)
    comps = _components(compression)
    if not comps:     # e.g. weight_bits=16 stated explicitly
        return QualityEstimate(0.0, "table", (), "no effective compression (all 16-bit): quality unchanged", metric)
    table = load_quality_table(extra_csv)
    whole = _setting(compression.weight_bits, compression.weight_format, compression.group_size,
                     compression.act_bits, compression.kv_bits, compression.sparsity, compression.prune_heads,
                     compression.prune_ffn, compression.prune_layers)
    label = " + ".join(name for name, _ in comps)
    full = _lookup(model, whole, metric, table, prefer, label)
    if full.value is not None or len(comps) <= 1:
        return QualityEstimate(full.value, full.status, full.rows, full.note, metric)
    parts = [_lookup(model, setting, metric, table, prefer, name) for name, setting in comps]
    rows = tuple(r for p in parts for r in p.rows)
    notes = "; ".join(p.note for p in parts)
    values = [p.value for p in parts if p.value is not None]
    if len(values) < len(parts):
        missing = ", ".join(name for (name, _), p in zip(comps, parts) if p.value is None)
        return QualityEstimate(None, "no-data", rows, f"no data for {missing} ({notes})", metric)
    factor = math.prod(1.0 + v / 100.0 for v in values)
    return QualityEstimate(100.0 * (factor - 1.0), "composed", rows,
                           f"composed multiplicatively (independent errors assumed): {notes}", metric)


# -- measured numeric proxy ----------------------------------------------------------
@lru_cache(maxsize=64)
def _measured(bits: int, group_size: int | None, act_bits: int | None) -> tuple[float, float]:
    r = measured_gemm_error(bits, group_size, act_bits=act_bits)
    return r["rel_error"], r["sqnr_db"]


def measured_gemm_proxy(compression: Compression | None) -> dict:
    """Relative output error and SQNR of one GEMM quantized as ``compression`` says (symmetric
    round-to-nearest on Student-t weights with outlier channels, k=4096; see
    codesign.quantize), measured with the kernel runner's numerics. A method-free
    lower bound on what quantization does to a layer's output: GPTQ/AWQ reduce it, the
    table above says by how much in perplexity. Integer weight formats only; 16-bit -> 0."""
    c = compression
    if c is None or ((c.weight_bits in (None, 16)) and c.act_bits in (None, 16)):
        return {"quant_gemm_rel_error": 0.0, "quant_gemm_sqnr_db": math.inf}
    if c.weight_format != "int" and c.weight_bits not in (None, 16):
        return {"quant_gemm_rel_error": None, "quant_gemm_sqnr_db": None}
    bits = c.weight_bits if c.weight_bits not in (None, 16) else 16
    rel, sqnr = _measured(bits, c.group_size, c.act_bits if c.act_bits == 8 else None)
    return {"quant_gemm_rel_error": rel, "quant_gemm_sqnr_db": sqnr}
