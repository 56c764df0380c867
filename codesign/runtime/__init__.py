"""Software stacks as data: how a serving runtime turns the op graph into kernels.

The same device gives different answers under TensorRT-LLM, vLLM or llama.cpp: they
fuse different operators, pay different per-kernel launch costs (eager, CUDA graphs, a
compiled engine), dequantise weights differently and reach different fractions of the
peaks. A runtime YAML (``runtimes/<name>.yaml``) states those choices with a source for
every figure; :func:`load_runtime` finds one by name, alias or file path, and the engine
applies it (``Scenario.runtime``). ``generic`` reproduces the device-only model.
"""
from __future__ import annotations

import re

from ..io import library, read_yaml, resolve, validate
from .schema import ClassTuning, Runtime

__all__ = ["Runtime", "ClassTuning", "load_runtime", "list_runtimes", "runtime_from_dict", "runtime_for_framework",
           "DEFAULT_RUNTIME"]

DEFAULT_RUNTIME = "generic"
_CACHE: dict = {}


def runtime_from_dict(data: dict, file=None) -> Runtime:
    return validate(Runtime, data, file)


def _norm(name: str) -> str:
    """Spelling-insensitive key: 'TensorRT_LLM' == 'tensorrt-llm', 'llama.cpp cuda' == 'llama.cpp-cuda'."""
    return re.sub(r"[\s_]+", "-", str(name).strip().lower())


def _aliases() -> dict[str, object]:
    """Normalised name or alias -> YAML path, for every library runtime."""
    key = tuple(sorted((k, str(v)) for k, v in library("runtimes").items()))
    hit = _CACHE.get(("aliases", key))
    if hit is None:
        hit = {}
        for name, path in library("runtimes").items():
            hit.setdefault(_norm(name), path)
            for a in read_yaml(path).get("aliases") or ():
                hit.setdefault(_norm(a), path)
        _CACHE[("aliases", key)] = hit
    return hit


def load_runtime(ref=None) -> Runtime:
    """A runtime by library name or alias (``"trt-llm"``), YAML path, or object (None: generic)."""
    if isinstance(ref, Runtime):
        return ref
    ref = DEFAULT_RUNTIME if ref is None or ref == "" else ref
    hit = _CACHE.get(("rt", ref))
    if hit is not None:
        return hit
    path = library("runtimes").get(str(ref)) or _aliases().get(_norm(ref))   # a library name needs no alias scan
    if path is None:
        path = resolve("runtimes", ref, "runtime")      # a file path, or an error with suggestions
    rt = runtime_from_dict(read_yaml(path), path)
    _CACHE[("rt", ref)] = rt
    return rt


def list_runtimes() -> list[Runtime]:
    seen, out = set(), []
    for _, path in sorted(library("runtimes").items()):
        if path not in seen:
            seen.add(path)
            out.append(runtime_from_dict(read_yaml(path), path))
    return sorted(out, key=lambda r: r.name)


def runtime_for_framework(text: str, device_class: str | None = None, vendor: str | None = None) -> str | None:
    """The library runtime whose ``frameworks`` patterns match a free-text software name
    (e.g. a measurements CSV's ``software_framework``). Among matches, one made for the
    device class and vendor wins (llama.cpp on CUDA, Metal or CPU), then the longest
    pattern. None when nothing matches."""
    low = str(text or "").lower()
    vendor = (vendor or "").lower()
    best = None
    for rt in list_runtimes():
        for pat in rt.frameworks:
            if re.search(pat, low):
                score = (not rt.device_classes or device_class in rt.device_classes,
                         not rt.vendors or any(v in vendor for v in rt.vendors), len(pat))
                best = max(best or (score, rt.name), (score, rt.name))
    return best[1] if best else None
