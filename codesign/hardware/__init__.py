"""Hardware specs: loading, the built-in library, derived (parametric) chips."""
from __future__ import annotations

import copy
from pathlib import Path

from ..errors import CodesignError
from ..io import library, read_yaml, resolve, validate
from .classes import CLASSES
from .schema import DTYPES, HardwareSpec

__all__ = ["HardwareSpec", "load_hardware", "list_hardware", "hardware_from_dict", "apply_overrides", "DTYPES"]


def hardware_from_dict(data: dict, file=None) -> HardwareSpec:
    return validate(HardwareSpec, data, file)


def load_hardware(ref, overrides: dict | None = None) -> HardwareSpec:
    """Load a spec by library name (``"h100-sxm"``) or YAML path; optionally override fields.

    ``overrides`` maps dotted paths to values, e.g. ``{"memory.HBM3.bandwidth": "4 TB/s",
    "compute.matrix.units": 256}``; memory levels are addressed by name.
    """
    if isinstance(ref, HardwareSpec):
        spec = ref
        if not overrides:
            return spec
        data, path = spec.model_dump(by_alias=True, exclude_unset=True, mode="json"), None
    else:
        path = resolve("hardware_specs", ref, "hardware")
        data = read_yaml(path)
    if overrides:
        data = apply_overrides(data, overrides, file=path)
    return hardware_from_dict(data, path)


def list_hardware() -> list[HardwareSpec]:
    seen, out = set(), []
    for name, path in sorted(library("hardware_specs").items()):
        if path in seen:
            continue
        seen.add(path)
        out.append(load_hardware(path))
    order = list(CLASSES)
    return sorted(out, key=lambda s: (order.index(s.device_class), s.name))


def _step(node, key: str, path: str, file):
    """The child of ``node`` at ``key``, copied and put back in its place: ``node`` is already a
    copy, so the input mapping is never changed (copy-on-write along the override's path)."""
    i: int | str                # list index or mapping key
    if isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, dict) and item.get("name") == key:
                break
        else:
            if not (key.isdigit() and int(key) < len(node)):
                names = [i.get("name") for i in node if isinstance(i, dict)]
                raise CodesignError(f"no entry named {key!r} (have {names})", file=file, field=path)
            i = int(key)
    elif isinstance(node, dict):
        i = key
        if key not in node:
            node[key] = {}
    else:
        raise CodesignError("cannot descend into a plain value", file=file, field=path)
    child = node[i]
    node[i] = copy.copy(child) if isinstance(child, (dict, list)) else child
    return node[i]


def apply_overrides(data: dict, overrides: dict, file=None) -> dict:
    """Return a copy of a spec mapping with dotted-path overrides applied; ``data`` is not changed.

    Only the containers along each overridden path are copied (the rest is shared with
    ``data``): a deep copy of the whole spec cost more than validating it, per study trial.
    """
    data = dict(data)
    for path, value in overrides.items():
        parts = path.split(".")
        node = data
        for i, key in enumerate(parts[:-1]):
            node = _step(node, key, ".".join(parts[: i + 1]), file)
        last = parts[-1]
        if isinstance(node, list):
            raise CodesignError("path ends at a list; name a field of one entry", file=file, field=path)
        node[last] = value
    return data


def spec_path(spec: HardwareSpec) -> Path | None:
    lib = library("hardware_specs")
    return lib.get(spec.name)
