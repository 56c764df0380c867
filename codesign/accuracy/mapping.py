"""Measurement rows -> codesign evaluations.

A row of a measurements CSV (the columns of ``data/published-measurements.csv``, plus an
optional ``runtime``) resolves through four look-ups, each keyed by the CSV's own text:

    hardware   ``hardware``          -> spec name (+ overrides / operating point)
    models     ``model``             -> workload name
    precision  ``weight_precision``  -> scenario dtype + Compression
    software   ``software_framework`` (prefix) -> scenario conventions (lengths, batch)

A mapping file (default ``data/accuracy-map.yaml``) states each decision with its reason;
text it does not list is resolved by rules (a device's model number, a model's family,
generation and size, a precision's bit widths), and such rows are marked ``auto``. The
runtime comes from the row's ``runtime`` column, else from the runtimes' ``frameworks``
patterns, else ``generic``. A row that cannot be expressed is a Skip with the reason.

match: exact (same device and model), arch (architecture-identical stand-in), auto
(resolved by rules), proxy (a close but different device/model; never in the headline).
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..compression import Compression
from ..errors import CodesignError, from_pydantic
from ..hardware import load_hardware
from ..hardware.classes import CLASSES
from ..io import data_dir, library, read_text, read_yaml
from ..runtime import load_runtime, runtime_for_framework
from ..units import parse_quantity
from ..workload import Scenario

DEFAULT_MAP = "accuracy-map.yaml"
DEFAULT_CSV = "published-measurements.csv"
REQUIRED_COLUMNS = ("hardware", "model", "metric", "value")

# CSV metric -> (group, what the prediction reads)
METRICS = {
    "decode_tokens_per_s": "decode", "tpot_ms": "decode",
    "prompt_tokens_per_s": "prefill", "prefill_latency_ms": "prefill", "ttft_ms": "prefill",
    "throughput_tokens_per_s": "throughput", "output_throughput_tokens_per_s": "throughput",
    "server_throughput_tokens_per_s": "throughput", "total_throughput_tokens_per_s": "throughput",
    "interactive_throughput_tokens_per_s": "throughput",     # MLPerf Interactive: Server with tighter limits
    "energy_per_token_j": "energy", "avg_power_w": "power",
    "gemm_tflops": "gemm",
    "decode_throughput_ratio_vs_A100_bf16": "ratio", "energy_efficiency_ratio_vs_A100_bf16": "ratio",
}
# notes that say a throughput is per device ("3014 out tok/s PER GPU"; not "80 GB per GPU",
# "TP=1 per GPU" or "500 W per GPU")
PER_DEVICE = re.compile(r"(tok(?:en)?s?/s|throughput)\s+per[- ](gpu|device|chip|accelerator|card)\b", re.I)
MATCH_ORDER = ("exact", "arch", "auto", "proxy")
_KEYS = {
    "hardware": {"spec", "match", "why", "overrides", "operating_point", "skip"},
    "models": {"workload", "match", "why"},
    "precision": {"dtype", "compression", "match", "why"},
    "software": {"batch", "lengths", "pp", "tg", "gemm", "match", "why", "ratio_baseline", "runtime", "skip",
                 "datasets", "layout", "ttft"},
    "rows": {"skip", "calibrated", "note", "operating_point"},
}


@dataclass(frozen=True)
class Case:
    row: int
    metric: str
    measured: float
    hardware: str                 # spec name
    hw_overrides: tuple           # ((dotted path, value), ...)
    operating_point: str | None
    workload: str | None          # None for a GEMM row
    scenario: Scenario | None     # names the runtime; None for a GEMM row
    compression: Compression | None
    search: bool                  # max-throughput search over the batch
    gemm: tuple | None            # (M, N, K, dtype)
    baseline: dict | None         # ratio rows: the A100 side
    match: str
    calibrated: str | None
    source: str = ""              # the publication (URL without commit/anchor), for cross-validation
    runtime: str = "generic"
    why: tuple = field(default_factory=tuple)
    per_device: bool = False      # a throughput the source divided by its device count
    tune_layout: bool = False     # max-throughput row on several devices with no stated TP: the
    #                               search also picks tp x dp (as the submitter tuned it)
    tpot_limit: float | None = None   # s: a max-throughput row measured under a TPOT limit (MLPerf Server)
    ttft_limit: float | None = None   # s: ... and under a p99 TTFT limit
    ttft: str = "request"         # which first-token time a TTFT row measured (core.read_metric)

    @property
    def group(self) -> str:
        return METRICS[self.metric]


@dataclass(frozen=True)
class Skip:
    row: int
    hardware: str
    model: str
    metric: str
    reason: str


def load_map(path=None) -> dict:
    """Read and check a mapping file (one-line CodesignError naming the field)."""
    path = Path(path) if path else data_dir("data") / DEFAULT_MAP
    data = read_yaml(path)
    for section, allowed in _KEYS.items():
        entries = data.setdefault(section, {}) or {}
        data[section] = entries
        if not isinstance(entries, dict):
            raise CodesignError(f"expected a mapping of {section} entries", file=path, field=section)
        for key, entry in entries.items():
            items = entry if isinstance(entry, list) else [entry]
            for i, item in enumerate(items):
                where = f"{section}.{key}" + (f"[{i}]" if isinstance(entry, list) else "")
                if not isinstance(item, dict):
                    raise CodesignError("expected a mapping", file=path, field=where)
                extra = set(item) - allowed
                if extra:
                    raise CodesignError(f"unknown key {sorted(extra)[0]!r} (allowed: {', '.join(sorted(allowed))})",
                                        file=path, field=where)
                if item.get("match", "exact") not in MATCH_ORDER:
                    raise CodesignError(f"match must be one of {', '.join(MATCH_ORDER)}", file=path,
                                        field=f"{where}.match")
                if item.get("ttft", "request") not in TTFT_KINDS:
                    raise CodesignError(f"ttft must be one of {', '.join(TTFT_KINDS)}", file=path, field=f"{where}.ttft")
    for key, entry in data["models"].items():
        if not isinstance(entry, list):
            raise CodesignError("expected a list of candidate workloads", file=path, field=f"models.{key}")
    data["_file"] = str(path)
    return data


def read_rows(path=None) -> list[dict]:
    """Rows of a measurements CSV as dicts with ``_id`` (1-based data-row number)."""
    path = Path(path) if path else data_dir("data") / DEFAULT_CSV
    text = read_text(path)
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise CodesignError("no data rows (expected a header line and one row per measurement)", file=path)
    missing = [c for c in REQUIRED_COLUMNS if c not in rows[0]]
    if missing:
        raise CodesignError(f"missing column {missing[0]!r} (expected the columns of "
                            f"data/published-measurements.csv)", file=path)
    return [dict(r, _id=i, _file=str(path)) for i, r in enumerate(rows, start=1)]


def source_id(text: str) -> str:
    """The publication a row comes from: its URL or repository path, without commit,
    anchor, comment or table qualifiers (rows of one page share it)."""
    s = str(text or "").strip()
    s = re.sub(r"^https?://", "", s)
    s = re.split(r"\s+@|\s+\(|#|@[0-9a-f]{7,}", s)[0]
    return s.strip().rstrip("/").lower() or "unknown"


def publisher(source: str) -> str:
    """Who stands behind a source: a GitHub owner/repository (a discussion or issue thread
    counts on its own: its posters differ), else the web domain. Cross-validation holds out
    a publisher at a time, since pages of one repository share authors, setup and method."""
    parts = source.split()[0].split("/") if source else ["unknown"]
    if parts[0] == "github.com" and len(parts) >= 3:
        if len(parts) >= 5 and parts[3] in ("discussions", "issues", "pull"):
            return "/".join(parts[:5])
        return "/".join(parts[:3])
    return parts[0]


def _int(text) -> int | None:
    """A count from a CSV cell: '128', '388.7' (a mean: rounded), '8 (concurrency)'."""
    m = re.match(r"\s*(\d+(?:\.\d+)?)", str(text or ""))
    return round(float(m.group(1))) if m else None


# notes that state the board's power limit: lowered ("Power limit 300W", "nvidia-smi power cap
# 310W") or raised above the spec's TDP (an MLPerf system description's "TGP 1000W")
POWER_LIMIT = re.compile(r"(?:power[- ](?:limit|cap)(?:ped|ed)?(?: set)?(?: to| of|:)?|\bTGP)\s*(\d{2,4})\s*W\b", re.I)
# llama.cpp's flash-attention switch ('-fa 0', 'fa 1', 'flash_attn=off'): off runs the scores as a
# full matrix product, a masked softmax and a second product (the unfused path)
FLASH_ATTN = re.compile(r"(?:-fa|\bfa|flash[-_ ]?attn(?:ention)?)\s*[=:]?\s*(0|1|on|off)\b", re.I)
# which first-token time a TTFT row measured (core.read_metric)
TTFT_KINDS = ("request", "wave", "batch")
# a closed-loop benchmark whose requests all have the same lengths: '--ignore-eos' on random prompts,
# or totals that are exactly requests x output length; its clients start together and stay in step
IGNORE_EOS = re.compile(r"ignore[-_ ]eos", re.I)
RUN_TOTALS = re.compile(r"successful requests:?\s*(\d+).*?total generated tokens:?\s*(\d+)", re.I | re.S)
# ... unless the clients send at a finite rate ('--request-rate 4'): then they do not start together
PACED = re.compile(r"request[-_ ]rate\s*[=:]?\s*\d", re.I)
# notes that say the lengths are a dataset's distribution, not one prompt
VARIABLE_LENGTHS = re.compile(r"sharegpt|variable lengths|lengths vary", re.I)
# lengths of a row that states none (a short chat turn; the row is marked auto)
DEFAULT_LENGTHS = {"prompt": 128, "generate": 128}


def _worst(*matches) -> str:
    return max(matches, key=MATCH_ORDER.index)


# ---------------------------------------------------------------- rules for unlisted text
def _word_list(text: str) -> list[str]:
    """Lower-case words in order, a memory size one word ('80 GB' -> 80gb)."""
    return re.findall(r"[a-z0-9]+", re.sub(r"(\d+)\s*gb\b", r"\1gb", str(text).lower()))


def _tokens(text: str) -> set[str]:
    return set(_word_list(text))


def _key_tokens(toks: set[str]) -> set[str]:
    """Model numbers: tokens with a digit, not a memory size or a small count."""
    return {t for t in toks if re.search(r"\d", t) and not re.fullmatch(r"\d+(gb|gib|w)|\d{1,2}", t)}


# words that, right after a model number, name a different product ('M4 Max' is not an M4,
# a '4070 Ti' not a 4070); elsewhere they mean nothing ('700 W max', 'Mac mini')
TIERS = {"max", "pro", "ultra", "ti", "super", "xtx", "nano", "nx", "plus"}


def _tiers(text: str) -> set[str]:
    """Tier words that directly follow a model number in ``text``."""
    words = re.findall(r"[a-z0-9]+", str(text).lower())
    keys = _key_tokens(set(words))
    return {b for a, b in zip(words, words[1:]) if a in keys and b in TIERS}


# GPU architecture names: a row naming one is not a spec of another ('RTX 6000 Ada' is not
# the Blackwell 'RTX PRO 6000')
ARCHITECTURES = {"volta", "turing", "ampere", "ada", "lovelace", "hopper", "blackwell"}
# a word of a spec's file name and the words a row may use for it instead
STEM_SYNONYMS = {"hexagon": {"hexagon", "npu", "htp"}, "igpu": {"igpu", "gpu", "arc"}}


def _hw_tokens(text: str) -> set[str]:
    """Words of a device name, plus each word joined to a short number after it ('Gaudi 2'
    -> gaudi2, 'Gen 3' -> gen3) as spec file names write them."""
    words = _word_list(text)
    return set(words) | {a + b for a, b in zip(words, words[1:]) if a.isalpha() and re.fullmatch(r"\d{1,2}", b)}


def auto_hardware(text: str, device_class: str | None = None) -> tuple[str, str] | None:
    """(spec name, reason) for a device name no mapping lists: the library spec sharing its
    model number (H100, 4090, RK3588, ...) and most other words, else the spec all of whose
    file-name words the name holds ('Raspberry Pi 5', 'Jetson AGX Orin 64GB'); variants (PCIe
    vs SXM, RK3588S vs RK3588, A10G vs A10) count as proxies. ``device_class`` (the row's
    stated class) keeps specs of other classes out."""
    cls = device_class if device_class in CLASSES else None
    toks = _hw_tokens(text) | ({cls} if cls else set())
    arch = toks & ARCHITECTURES
    specs = [(n, w) for n, w in _spec_words(tuple(sorted((k, str(v)) for k, v in library("hardware_specs").items())))
             if (cls is None or _spec_class(n) == cls) and not (arch and (w & ARCHITECTURES) and not (arch & w))]
    hit = _by_model_number(text, toks, specs) or _by_stem(toks, specs)
    if hit is None:
        return None
    name, stoks, variant = hit
    kinds = {"pcie", "sxm", "sxm4", "sxm5", "nvl"}
    clash = (toks & kinds) and (stoks & kinds) and not (toks & stoks & kinds)
    return name, "proxy" if clash or variant else "auto"


def _by_model_number(text: str, toks: set[str], specs) -> tuple[str, set[str], bool] | None:
    """The spec sharing a model number with the name (most shared words wins); a number with
    one letter more ('RK3588S', 'A10G') falls back to the spec without it, as a variant."""
    keys = _key_tokens(toks)
    for variant in (False, True):
        if variant:     # drop one trailing letter from each model number that has one
            keys = {k[:-1] for k in keys if k[-1].isalpha() and re.search(r"\d", k[:-1])}
        best = None
        for name, stoks in specs:
            if not (keys & _key_tokens(stoks)):
                continue
            if _tiers(text) != _spec_tiers(name):      # an M4 is not an M4 Max, a 4070 not a 4070 Ti
                continue
            score = (len(keys & stoks), len(toks & stoks), -len(stoks - toks))
            if best is None or score > best[0]:
                best = (score, name, stoks)
        if best is not None:
            return best[1], best[2], variant
    return None


def _by_stem(toks: set[str], specs) -> tuple[str, set[str], bool] | None:
    """The spec whose file-name words all appear in the name (synonyms allowed), the most
    specific one; None when two equally specific specs match (the class tells them apart)."""
    gens = {t for t in toks if re.fullmatch(r"gen\d+", t)}       # 'Snapdragon 8 Elite Gen 5' is a newer chip
    hits = sorted(((len(name.split("-")), name, stoks) for name, stoks in specs
                   if all(STEM_SYNONYMS.get(w, {w}) & toks for w in name.split("-")) and gens <= stoks | {*name.split("-")}),
                  reverse=True)
    if not hits or (len(hits) > 1 and hits[0][0] == hits[1][0]):
        return None
    return hits[0][1], hits[0][2], False


@cache
def _spec_tiers(name: str) -> frozenset:
    """Tier words of a library spec: after a model number in its file name or display name."""
    spec = load_hardware(name)
    return frozenset(_tiers(name.replace("-", " ")) | _tiers(spec.display_name or ""))


@lru_cache(maxsize=4)
def _spec_words(index: tuple) -> list[tuple[str, set[str]]]:
    """(spec name, words of its name, display name and memory level names: 'HBM3' tells an
    H100 SXM from the HBM2e PCIe card) for every library spec (read once)."""
    return [(name, _tokens(f"{s.name} {s.display_name or ''} {' '.join(m.name for m in s.memory)}"))
            for name, path in index if name == Path(path).stem for s in [load_hardware(path)]]


@cache
def _spec_class(name: str) -> str:
    return load_hardware(name).device_class


_SUFFIXES = r"(-(instruct|chat|it|hf|base|fp8|awq|gptq|gguf|v0\.\d|v\d|\d+k))+$"
# DeepSeek-R1's distilled models are their base models' architectures (DeepSeek-R1 model card:
# distilled from Qwen2.5-Math-1.5B/7B, Qwen2.5-14B/32B, Llama-3.1-8B and Llama-3.3-70B-Instruct)
DISTILL_BASES = {"llama-8b": "llama-3.1-8b", "llama-70b": "llama-3.3-70b", "qwen-1.5b": "qwen2.5-1.5b",
                 "qwen-7b": "qwen2.5-7b", "qwen-14b": "qwen2.5-14b", "qwen-32b": "qwen2.5-32b"}


# minor versions that changed the architecture: no same-generation stand-in for them (Qwen3.5
# and 3.6 interleave Gated DeltaNet layers with attention; Qwen3-Next likewise)
NEW_ARCHITECTURE_VERSIONS = ("qwen3.5", "qwen3.6", "qwen3-next")


def _model_key(text: str) -> tuple[str, str, str] | None:
    """(family, generation, size) of a model name: 'Llama-3.1-8B-Instruct' -> (llama, 3, 8b)."""
    t = str(text).lower().replace("_", "-").replace(" ", "-")
    t = re.sub(r"\(.*?\)", "", t).strip("-")
    t = re.sub(_SUFFIXES, "", t)
    m = re.search(r"([a-z]+)-?(\d+(?:\.\d+)?)?[-.]?.*?(\d+(?:\.\d+)?b)\b", t)
    if not m:
        return None
    fam, gen, size = m.groups()
    return fam, (gen or "").split(".")[0], size


def _plain_name(text: str) -> str:
    """A model name as library files spell it: no organisation ('meta-llama/'), no 'Meta-',
    Ollama tags as words ('llama3.1:8b' -> llama-3.1-8b), 'gptj' -> gpt-j, no (asides)."""
    t = re.sub(r"\(.*?\)", "", str(text).lower()).strip().replace("_", "-").replace(" ", "-")
    t = t.rsplit("/", 1)[-1].replace(":", "-")
    t = re.sub(r"\.gguf$", "", t)
    t = re.sub(r"^meta-(?=llama)", "", t)
    t = re.sub(r"^gptj\b", "gpt-j", t)
    return re.sub(r"^([a-z]+)(\d)", r"\1-\2", t) if not re.match(r"^(qwen|phi|gemma|yi|smollm|internlm|gpt)", t) else t


def _words(name: str) -> set[str]:
    return set(re.findall(r"[a-z0-9.]+", name.replace("-", " ")))


def auto_model(text: str) -> tuple[str, str] | None:
    """(workload, match) for a model name no mapping lists: the library name itself (suffixes
    such as -Instruct, organisations and Ollama tags dropped), a distilled model's base, the
    library name all of whose words the name holds ('Qwen2.5-Coder-7B' -> qwen2.5-7b), else one
    of the same family, major generation and size (the same minor version first)."""
    lib = library("workloads")
    raw = str(text).lower().strip().replace(" ", "-")
    for t in (raw, re.sub(_SUFFIXES, "", raw), _plain_name(text), re.sub(_SUFFIXES, "", _plain_name(text))):
        if t in lib:                  # 'DeepSeek-V3': a library name that looks like a suffix
            return t, "exact"
    plain = re.sub(_SUFFIXES, "", _plain_name(text))
    m = re.search(r"distill-(llama|qwen)-(\d+(?:\.\d+)?b)", plain)
    if m:
        base = DISTILL_BASES.get(f"{m.group(1)}-{m.group(2)}")
        return (base, "arch") if base in lib else None
    words = _words(plain)
    sizes = _size_words(plain)
    # a library name without a size ('llama-4-scout') fits any stated size; one with a size must
    # agree, and a name stating no size ('Mistral-Nemo-Instruct-2407') matches on the other words
    # extra words may qualify a fine-tune ('Coder', 'Nemotron', a date, '16E' experts) but not
    # name another artefact ('DeepSeek-V3-slice-jp64', an expert-pruned model)
    subset = sorted(((len(_words(n)), n) for n in lib
                     if (_words(n) if sizes else _words(n) - _size_words(n)) <= words
                     and (not sizes or not _size_words(n) or _size_words(n) & sizes)
                     and not any(_foreign(w) for w in words - _words(n))), reverse=True)
    if subset and (len(subset) == 1 or subset[0][0] > subset[1][0]):
        return subset[0][1], "exact"
    key = _model_key(plain)
    if key is None or any(re.match(rf"{v}\b", plain) for v in NEW_ARCHITECTURE_VERSIONS):
        return None
    same = sorted(n for n in lib if _model_key(n) == key)
    gen = re.search(r"[a-z]-?(\d+\.\d+)", plain)
    minor = [n for n in same if gen and gen.group(1) in _words(n) | {n.split("-")[0][len(key[0]):]}]
    return ((minor or same)[0], "arch") if same else None      # else the earliest minor version


def _foreign(word: str) -> bool:
    """A word mixing letters and digits that is no size, expert count, context, date or version."""
    return bool(re.fullmatch(r"[a-z]+\d+[a-z\d]*|\d+[a-z]+\d*", word)) and \
        not re.fullmatch(r"\d+(\.\d+)?[bek]|v\d+(\.\d+)?|a\d+(\.\d+)?b|q\d\w*", word)


def _size_words(name: str) -> set[str]:
    return {w for w in _words(name) if re.fullmatch(r"\d+(\.\d+)?b", w)}


def auto_precision(text: str) -> dict | None:
    """{dtype, compression} from a precision name: f16/bf16/fp8, q4_0/q8_0/q4_k_m and the
    iq2-iq4 i-quants (llama.cpp), q4f16_1 (MLC), q4/q8 (MLX), w8a8/w4a16/a8w4, int4/awq/gptq."""
    t = re.sub(r"\s*\([^)]*\)", "", str(text or "").lower()).strip()    # drop '(UNCERTAIN)'-style asides
    t = re.split(r"\s*[/,;]\s*", t)[0]                  # 'FP16 / BF16', 'fp16, batch 1': the first named
    # GGUF file words and quant-mix labels: 'GGUF Q4_K_M', 'q4_k_m.gguf', Unsloth's 'UD-Q4_K_XL'
    # (a K-quant mix led by q4_k), the 2024 explicit repacks 'Q4_0_4_4' / 'Q4_0_4_8' / 'Q4_0_8_8' (Q4_0 tiles)
    t = re.sub(r"\.gguf$|\bgguf\b", "", t).strip(" -_")
    t = re.sub(r"^ud-", "", t)
    t = re.sub(r"_xl$", "_l", t)
    t = re.sub(r"^q4_0_[48]_[48]$", "q4_0", t)
    if t in ("fp16", "f16", "float16", "half"):
        return {"dtype": "fp16"}
    if t in ("bf16", "bfloat16"):
        return {"dtype": "bf16"}
    if t in ("fp32", "f32"):
        return {"dtype": "fp32"}
    if t in ("fp4", "nvfp4"):     # Blackwell NVFP4: 4-bit weights and activations, a scale per 16
        return {"dtype": "bf16", "compression": {"weight_bits": 4, "weight_format": "fp4", "act_bits": 4,
                                                 "group_size": 16}}
    if t == "mxfp4":              # MXFP4 checkpoints (gpt-oss): 4-bit experts, a scale per 32; the
        # attention and other layers stay 16-bit in the release (8-bit in GGUF/MLX files: _file_format)
        return {"dtype": "bf16", "compression": {"weight_bits": 4, "weight_format": "fp4", "group_size": 32,
                                                 "other_bits": 16}}
    if t == "mxfp8":              # OCP MX FP8 (MLX's mxfp8 mode): 8-bit float weights, a scale per 32,
        # weight-only (the activations stay 16-bit)
        return {"dtype": "bf16", "compression": {"weight_bits": 8, "weight_format": "fp8", "group_size": 32}}
    if t.startswith("fp8"):
        return {"dtype": "bf16", "compression": {"weight_bits": 8, "weight_format": "fp8", "act_bits": 8}}
    m = re.fullmatch(r"q(\d)_(0|1|k(_[sml])?)", t)
    if m:    # llama.cpp blocks of 32 with fp16 scales; K-quants mix in wider blocks (~0.5 bit more)
        bits = int(m.group(1))
        bits = {5: 6, 6: 6, 3: 3, 2: 2}.get(bits, bits)
        # the scheme names the mix (Q4_K_M: mostly q4_k, whose kernel runs it; its bytes per
        # weight are the mix's, compression.SCHEME_BITS)
        return {"dtype": "fp16", "compression": {"weight_bits": bits, "group_size": 32, "scheme": t}}
    m = re.fullmatch(r"iq([234])_(xxs|xs|s|m|nl)", t)
    if m:    # llama.cpp i-quants: codebook blocks of 32/256 at ~2.1-4.5 bits per weight
        return {"dtype": "fp16", "compression": {"weight_bits": int(m.group(1)), "group_size": 32,
                                                 "scheme": f"iq{m.group(1)}_{m.group(2)}"}}
    m = re.fullmatch(r"q(\d)f(16|32)_\d", t)
    if m:    # MLC-LLM q4f16_1 / q3f16_1: groups of 32 with a 16-bit scale; q0f16 is unquantised
        bits = int(m.group(1))
        return {"dtype": "fp16"} if bits == 0 else {"dtype": "fp16", "compression": {"weight_bits": bits,
                                                                                     "group_size": 32}}
    m = re.fullmatch(r"q([48])", t)
    if m:    # MLX affine quantisation (mlx-lm's default group of 64)
        return {"dtype": "fp16", "compression": {"weight_bits": int(m.group(1)), "group_size": 64}}
    m = re.fullmatch(r"w(\d+)a(\d+)", t) or re.fullmatch(r"a(\d+)w(\d+)", t)
    if m:
        wbits, abits = (m.group(1), m.group(2)) if t.startswith("w") else (m.group(2), m.group(1))
        comp = {"weight_bits": int(wbits)}
        if int(abits) == 8:
            comp["act_bits"] = 8
        return {"dtype": "int8" if int(abits) == 8 else "fp16", "compression": comp}
    if re.search(r"int4|awq|gptq|4-?bit", t):
        return {"dtype": "fp16", "compression": {"weight_bits": 4, "group_size": 128}}
    if re.search(r"int8|8-?bit", t):
        return {"dtype": "fp16", "compression": {"weight_bits": 8}}
    return None


def _file_format(comp, runtime: str, precision: str):
    """The non-expert layers of an MXFP4 MoE as the stack's files store them: llama.cpp's GGUFs
    keep them in Q8_0 (ggml-org's gpt-oss-20b file is 11.27 GiB: 19.1 B expert weights at 4.25
    bits leave 1.08 bytes for each of the other 1.8 B) and mlx-community's '-MXFP4-Q8' files in
    8-bit; the Hugging Face release keeps them 16-bit."""
    if comp is None or comp.other_bits != 16:
        return comp
    if runtime.startswith("llama.cpp") or re.search(r"q8|8-bit", precision.lower()):
        return comp.model_copy(update={"other_bits": 8})
    return comp


def _compression(fields, file: str, where: str):
    if not fields:
        return None
    try:
        return Compression(**fields)
    except ValidationError as e:
        raise from_pydantic(e, file, prefix=tuple(where.split(".")) + ("compression",)) from None
    except TypeError as e:
        raise CodesignError(f"expected a mapping of Compression fields ({e})", file=file,
                            field=f"{where}.compression") from None


def _stated_layout(r: dict) -> dict:
    """TP/PP/DP degrees the row states: 'TP=4', 'tp: 2', 'TP4' (not llama-bench's 'pp512' nor
    a rate 'pp 51.4': a stated degree is at most 64 and written with '=', ':' or no space).
    Notes that quote a table's other columns ('B200 was tested with TP=4, H100 with TP=8')
    name several: the one matching the row's device count, else the first."""
    text = f"{r.get('software_framework', '')} {r.get('notes', '')}"
    stated: dict[str, list[int]] = {}
    for k, v in re.findall(r"\b(tp|pp|dp)(?:\s*[=:]\s*)?(\d+)(?![\d.])", text.lower()):
        if int(v) <= 64:
            stated.setdefault(k, []).append(int(v))
    devices = str(r.get("num_devices") or "").strip()
    n = int(devices) if devices.isdigit() else None
    return {k: n if n in vs else vs[0] for k, vs in stated.items()}


# 'num_beams 4', 'beam search width 4', '4 beams', 'beams=4'; 'Beam 1' is greedy decoding
_BEAMS = re.compile(r"(?:num_beams|beams?(?:\s+search)?(?:\s+(?:width|size))?)\s*[=:]?\s*\(?(\d+)|(\d+)\s*beams\b", re.I)


# llama.cpp's physical batch: 'n_ubatch=2048', 'n_ubatch 512', '-ub 4096', 'ubatch 2048'
_UBATCH = re.compile(r"(?:n_ubatch|-ub|\bubatch|prompt processor input length|sequence length for prompt "
                     r"processor)\s*[=:]?\s*(\d+)", re.I)
_COMPILED = re.compile(r"\bcontext_length\s*[=:]?\s*(\d+)")     # an AI Hub model's compiled KV length


def _stated(pattern: re.Pattern, text: str) -> int | None:
    """The number a row's text states for ``pattern`` (_UBATCH: prompt tokens per physical pass;
    _COMPILED: a compiled KV length); None: the runtime's default."""
    got = pattern.search(text)
    return int(got.group(1)) if got else None


def _beams(text: str) -> int | None:
    """Beams per request a row states (1 without beam search); None: beam search, count unstated."""
    got = [int(a or b) for a, b in _BEAMS.findall(text)]
    if got:
        return max(got)
    return None if re.search(r"beam", text, re.I) else 1


# llama.cpp's attention where a row does not say: FlashAttention came as an opt-in '-fa' (PR
# #5021, 2024-04); llama-cli and llama-server default to 'auto' (on wherever the backend has the
# kernel) from b6327 (2025-08-31, the flash_attn_type switch), while llama-bench, which prints
# most published pp/tg figures, kept '-fa 0' until PR #23714 (opened 2026-05-26: "the default is
# still kept as -fa off"; upstream's llama-bench.cpp now defaults to AUTO). The merge build is not
# known here: b9307 was current on 2026-06-06, so b9300 and PR #23714 (and 2026-06) stand for it.
# (first build, first PR number, first date) with FlashAttention on by default, per tool
LLAMA_FA_AUTO = {"bench": (9300, 23714, "2026-06"), "other": (6327, None, "2025-09")}
LLAMA_BUILD = re.compile(r"\bb(\d{4,5})\b|\bbuild:?\s*(?:[0-9a-f]{7,10}\s*)?\(?(\d{4,5})\b|[0-9a-f]{7,10}\s*\((\d{4,5})\)")
CITED_PR = re.compile(r"(?:PR\s*#?|pull/)(\d{4,6})\b")
ISO_DATE = re.compile(r"\b(20\d\d-[01]\d)(?:-[0-3]\d)?\b")


def _llama_fa_default(r: dict) -> str:
    """'fused' or 'unfused': what a llama.cpp tool of the row's build ran with no -fa given."""
    sw, src = r.get("software_framework") or "", r.get("source") or ""
    text = f"{sw} {src}"
    tool = "other" if re.search(r"llama-server|llama-cli|\bserver\b|\bmain\b", sw, re.I) \
        and not re.search(r"llama-bench", text, re.I) else "bench"
    first_build, first_pr, first_month = LLAMA_FA_AUTO[tool]
    builds = [int(x) for got in LLAMA_BUILD.findall(text) for x in got if x]
    prs = [int(x) for x in CITED_PR.findall(text)]
    months = ISO_DATE.findall(text)
    if builds:
        after = max(builds) >= first_build
    elif prs and first_pr:
        after = max(prs) >= first_pr
    else:
        after = bool(months) and max(months) >= first_month
    return "fused" if after else "unfused"


def _attention(r: dict, runtime: str) -> dict:
    """The attention path a row states (llama.cpp's -fa switch in its software, or 'this row is
    -fa 0' in notes that describe a sweep of both), as a Scenario field; for a llama.cpp row that
    states none, its tool's default at that build; else {} (the scenario's fused default)."""
    m = FLASH_ATTN.search(r.get("software_framework") or "") or re.search(
        r"row is\s+(?:-fa|fa)\s*(0|1)\b", r.get("notes") or "", re.I)
    if m:
        return {"attention": "fused" if m.group(1).lower() in ("1", "on") else "unfused"}
    return {"attention": _llama_fa_default(r)} if runtime.startswith("llama.cpp") else {}


# a run with every clock pinned at its top (Rockchip's benchmark tables are 'collected based on
# the maximum CPU and NPU frequencies'; its fix_freq scripts also pin the DDR controller)
PINNED_CLOCKS = re.compile(r"maximum (?:cpu|npu|ddr|gpu|memory)\b[\w /,-]*frequenc|fix_freq|"
                           r"clocks? (?:locked|pinned|fixed) at (?:their |its )?max", re.I)


def _pinned_clocks(r: dict, spec) -> str | None:
    """The spec's 'max-clocks' operating point for a row run with its clocks pinned at their
    top, where the spec declares one (its memory streams faster than under default governors)."""
    text = f"{r.get('software_framework') or ''} {r.get('notes') or ''}"
    declared = any(o.name == "max-clocks" for o in spec.power.operating_points)
    return "max-clocks" if declared and PINNED_CLOCKS.search(text) else None


def _latency_limit(r: dict, sw: dict, which: str) -> float | None:
    """A latency-bounded throughput run's ``which`` ('TPOT' or 'TTFT') limit in seconds:
    'TPOT<=200 ms' in the notes, else the benchmark's own limit for the row's scenario (a
    ``server_`` or ``interactive_`` metric) from its dataset entry in the map (MLPerf:
    loadgen's mlperf.conf, ``tpot_ms`` / ``ttft_ms``)."""
    m = re.search(which + r"\s*<=\s*(\d+(?:\.\d+)?)\s*ms", r.get("notes") or "")
    if m:
        return parse_quantity(f"{m.group(1)} ms", "time")
    scenario = r["metric"].split("_", 1)[0]
    limits = ((sw.get("datasets") or {}).get(r["model"]) or {}).get(which.lower() + "_ms") or {}
    return parse_quantity(f"{limits[scenario]} ms", "time") if scenario in limits else None


def _in_step(r: dict, batch: int, generate: int) -> bool:
    """Whether a concurrency row's clients run in step (see IGNORE_EOS)."""
    notes = r.get("notes") or ""
    totals = RUN_TOTALS.search(notes)
    fixed = bool(IGNORE_EOS.search(notes)) or bool(totals and int(totals.group(2)) == int(totals.group(1)) * generate)
    return batch > 1 and generate > 0 and fixed and not PACED.search(notes)


def _layout(r: dict, devices: int, runtime) -> dict:
    """Parallel layout of a multi-device row: TP/PP/DP stated in the row, else the runtime's
    layout (llama.cpp splits layers over devices = a pipeline without micro-batches)."""
    got = _stated_layout(r)
    if got:
        tp, pp = got.get("tp", 1), got.get("pp", 1)
        # 'TP=1' on 8 devices: the rest are replicas (MLPerf's TP1 x 8 instances)
        dp = got.get("dp", max(devices // (tp * pp), 1))
        return {"tp": tp, "pp": pp, "dp": dp}
    if devices <= 1:
        return {"tp": 1, "pp": 1, "dp": 1}
    if runtime.layout == "pipeline":
        return {"tp": 1, "pp": devices, "dp": 1, "microbatches": 1}
    return {"tp": devices, "pp": 1, "dp": 1}


def resolve_row(r: dict, mp: dict, runtime: str | None = None):
    """One CSV row -> a Case, or a Skip with the reason. ``runtime`` forces one for every row."""
    file = mp["_file"]
    rid, metric = r["_id"], r.get("metric", "")
    skip = lambda why: Skip(rid, r.get("hardware", ""), r.get("model", ""), metric, why)  # noqa: E731
    extra = mp["rows"].get(rid, {}) if r.get("_file", "").endswith(DEFAULT_CSV) else {}
    if "skip" in extra:
        return skip(extra["skip"])
    if "anomalous" in r.get("notes", "").lower():
        return skip("flagged ANOMALOUS in the row's notes")
    if metric not in METRICS:
        return skip(f"metric {metric!r} has no codesign counterpart")
    try:
        measured = float(r["value"])
    except (TypeError, ValueError):
        return skip(f"value {r.get('value')!r} is not a number")
    hw = mp["hardware"].get(r["hardware"])
    if hw is None:
        stated_cls = str(r.get("hw_class") or "").strip().lower() or None
        auto_hw = auto_hardware(r["hardware"], stated_cls) or auto_hardware(r.get("hw_ref", ""), stated_cls)
        if auto_hw is None:
            return skip(f"hardware {r['hardware']!r}: no library spec matches its model number")
        hw = {"spec": auto_hw[0], "match": auto_hw[1], "why": f"resolved by model number to {auto_hw[0]}"}
    if "skip" in hw:
        return skip(hw["skip"])
    if hw["spec"] not in library("hardware_specs"):
        return skip(f"no spec {hw['spec']!r} in hardware_specs/")
    spec = load_hardware(hw["spec"])
    stated = str(r.get("hw_class") or "").strip().lower()
    if stated in CLASSES and stated != spec.device_class and "why" in hw \
            and str(hw["why"]).startswith("resolved by model number"):
        return skip(f"hardware {r['hardware']!r} ran on its {stated}, but the nearest spec {hw['spec']} is "
                    f"the {spec.device_class}")
    sw_key = next((k for k in mp["software"] if r.get("software_framework", "").startswith(k)), None)
    sw: dict[str, Any] = mp["software"][sw_key] if sw_key else {"match": "auto"}
    if "skip" in sw:
        return skip(sw["skip"])
    rt_name = (runtime or (r.get("runtime") or "").strip() or sw.get("runtime")
               or runtime_for_framework(r.get("software_framework", ""), spec.device_class, spec.vendor)
               or "generic")
    why_rt = None
    try:
        rt = load_runtime(rt_name)
        if not rt.runs_on(spec.device_class, spec.vendor):     # 'llama.cpp' on an Apple GPU -> its Metal backend
            alt = runtime_for_framework(rt_name, spec.device_class, spec.vendor)
            rt = load_runtime(alt) if alt else rt
        # a family name ('llama.cpp') takes the member the row's software names more precisely
        # (a build of 2023 -> llama.cpp-cuda-legacy); a full runtime name takes only a dated
        # variant of itself ('tensorrt-llm' run as v0.5 -> tensorrt-llm-2024)
        exact = runtime_for_framework(r.get("software_framework", ""), spec.device_class, spec.vendor)
        family = rt.name != rt_name and exact and exact.split("-")[0] == rt.name.split("-")[0]
        if exact and exact != rt.name and (family or exact.startswith(rt.name + "-")):
            rt = load_runtime(exact)
    except CodesignError:
        # a name no runtime file carries may still be a stack one wraps ('llamafile', 'ollama',
        # 'NVIDIA NIM'): read it as software text, as the row's framework column is read
        alt = runtime_for_framework(rt_name, spec.device_class, spec.vendor)
        if alt and not load_runtime(alt).runs_on(spec.device_class, spec.vendor):
            alt = None            # a CPU stack's name on an NPU board: not that stack's kernels
        rt = load_runtime(alt or "generic")
        why_rt = (f"runtime {rt_name!r} is not in runtimes/: read as {alt}" if alt
                  else f"runtime {rt_name!r} is not in runtimes/: evaluated with generic")
    prec = mp["precision"].get(r.get("weight_precision", ""))
    if prec is None:
        prec = auto_precision(r.get("weight_precision", ""))
        if prec is None:
            return skip(f"weight precision {r.get('weight_precision')!r} not understood")
        prec = dict(prec, match="auto")
    comp = _file_format(_compression(prec.get("compression"), file, f"precision.{r.get('weight_precision')}"),
                        rt.name, r.get("weight_precision", ""))
    match = _worst(hw.get("match", "exact"), prec.get("match", "exact"), sw.get("match", "exact"))
    overrides = dict(hw.get("overrides") or {})
    cap = POWER_LIMIT.search(r.get("notes") or "")
    if cap and "power.limit" not in overrides:      # a board run under a lowered power limit
        overrides["power.limit"] = f"{cap.group(1)} W"
    common = dict(row=rid, metric=metric, measured=measured, hardware=hw["spec"],
                  hw_overrides=tuple(overrides.items()),
                  operating_point=hw.get("operating_point") or extra.get("operating_point") or _pinned_clocks(r, spec),
                  calibrated=extra.get("calibrated"),
                  source=source_id(r.get("source", "")), runtime=rt.name,
                  per_device=bool(METRICS[metric] == "throughput" and PER_DEVICE.search(r.get("notes") or "")))
    if sw.get("gemm"):
        shape = re.search(r"(\d+)x(\d+)x(\d+)", r["model"])
        if not shape:
            return skip("GEMM shape MxNxK not found in the model column")
        M, N, K = (int(x) for x in shape.groups())
        gemm_why = (hw.get("why"), prec.get("why"), sw.get("why"), extra.get("note"))
        return Case(**common, workload=None, scenario=None, compression=None, search=False,
                    gemm=(M, N, K, prec["dtype"]), baseline=None, match=match, why=tuple(w for w in gemm_why if w))
    cands = mp["models"].get(r["model"])
    wl_lib = library("workloads")
    got = next((c for c in cands or () if c["workload"] in wl_lib), None)
    if got is None:
        auto = auto_model(r["model"])
        if auto is None:
            return skip(f"model {r['model']!r}: no library workload of that family, generation and size")
        got = {"workload": auto[0], "match": "auto" if auto[1] == "exact" else "arch",
               "why": f"resolved by family/size to {auto[0]}"}
    match = _worst(match, got.get("match", "exact"))
    why = [hw.get("why"), got.get("why"), prec.get("why"), sw.get("why"), extra.get("note"), why_rt]
    group = METRICS[metric]
    # a benchmark convention (llama-bench pp512 / tg128) stands in only where the row
    # itself gives no length: a pp2048 row keeps its 2048
    stated_in, stated_out = _int(r.get("input_tokens")), _int(r.get("output_tokens"))
    if "pp" in sw and group == "prefill":
        lengths = dict(sw["pp"], prompt=stated_in or sw["pp"]["prompt"])
    elif "tg" in sw and group == "decode":
        lengths = dict(sw["tg"], generate=stated_out or sw["tg"]["generate"])
    elif "lengths" in sw:
        lengths = sw["lengths"]
    elif r["model"] in (sw.get("datasets") or {}):
        # a benchmark's dataset means (MLPerf); the row's own mean output wins
        ds = sw["datasets"][r["model"]]
        if "skip" in ds:
            return skip(ds["skip"])
        lengths = {"prompt": stated_in or ds["prompt"], "generate": stated_out or ds["generate"]}
        why.append(ds.get("why"))
    else:
        lengths = {"prompt": _int(r.get("input_tokens")), "generate": _int(r.get("output_tokens"))}
        if lengths["generate"] is None and group == "prefill":
            lengths["generate"] = 0
        if None in lengths.values() and VARIABLE_LENGTHS.search(r.get("notes") or ""):
            return skip("prompt and output lengths vary over the dataset (ShareGPT-style) and the row states no "
                        "mean: a fixed-length scenario would not be the same workload")
        if lengths["prompt"] is None and group == "prefill":
            return skip("a prompt rate or TTFT without the prompt length cannot be modelled")
        if None in lengths.values():
            lengths = {k: DEFAULT_LENGTHS[k] if v is None else v for k, v in lengths.items()}
            match = _worst(match, "auto")
            why.append(f"lengths not given: {lengths['prompt']} in / {lengths['generate']} out assumed")
        # llama-bench tgN runs from an (almost) empty context: one token stands for it
        lengths["prompt"] = max(lengths["prompt"], 1) if lengths["generate"] else lengths["prompt"]
    batch_text = str(r.get("batch", "")).strip().lower()
    search = sw.get("batch") == "search" or (sw.get("batch") is None and batch_text.startswith("max"))
    batch = 1 if search else _int(r.get("batch"))
    if batch is None:
        return skip(f"batch {r.get('batch')!r} is not a number")
    text = f"{r.get('software_framework', '')} {r.get('notes', '')}"
    beams = _beams(text)
    if beams is None:
        return skip("beam search with an unstated beam count")
    devices = _int(r.get("num_devices")) or 1
    layout = _layout(r, devices, rt)
    tune_layout = search and devices > 1 and sw.get("layout") == "tuned" and not _stated_layout(r)
    try:
        sc = Scenario(batch=batch, prompt=lengths["prompt"], generate=lengths["generate"], dtype=prec["dtype"],
                      runtime=rt.name, beams=beams, **layout, **_attention(r, rt.name),
                      # a stated physical batch, for stacks whose profile runs prompts in passes
                      ubatch=_stated(_UBATCH, text) if rt.prefill_ubatch else None,
                      compiled_context=_stated(_COMPILED, text) if rt.compiled_context else None)
    except ValueError as e:
        return skip(f"not a valid scenario ({str(e).splitlines()[-1].strip()})")
    baseline: dict | None = None
    if group == "ratio":
        baseline = sw.get("ratio_baseline")
        if not baseline:
            return skip("ratio metric without a ratio_baseline in the software entry")
        if baseline["spec"] not in library("hardware_specs"):
            return skip(f"no baseline spec {baseline['spec']!r} in hardware_specs/")
        why.append(baseline.get("why"))
    return Case(**common, workload=got["workload"], scenario=sc, compression=comp, search=search, gemm=None,
                baseline=baseline, match=match, why=tuple(w for w in why if w), tune_layout=tune_layout,
                tpot_limit=_latency_limit(r, sw, "TPOT") if search else None,
                ttft_limit=_latency_limit(r, sw, "TTFT") if search else None,
                ttft=sw.get("ttft") or ("wave" if not search and _in_step(r, batch, sc.generate) else "request"))


def resolve_all(mp: dict | None = None, rows: list[dict] | None = None, runtime: str | None = None):
    mp = mp or load_map()
    rows = rows if rows is not None else read_rows()
    cases: list[Case] = []
    skipped: list[Skip] = []
    for r in rows:
        got = resolve_row(r, mp, runtime)
        (cases if isinstance(got, Case) else skipped).append(got)
    return cases, skipped
