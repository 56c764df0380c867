"""Workloads: model architectures, scenarios, Hugging Face import and the operator graph."""
from __future__ import annotations

from ..io import library, read_yaml, resolve
from .hf import import_hf_config
from .scenario import Scenario
from .schema import ModelSpec, MoE, workload_from_dict

__all__ = ["ModelSpec", "MoE", "Scenario", "load_workload", "list_workloads", "workload_from_dict"]


def load_workload(ref) -> ModelSpec:
    """Load a model by library name (``"llama-2-7b"``), YAML path, or Hugging Face config.json path."""
    if isinstance(ref, ModelSpec):
        return ref
    path = resolve("workloads", ref, "workload")
    if path.suffix == ".json":
        return import_hf_config(path)
    return workload_from_dict(read_yaml(path), path)


def list_workloads() -> list[ModelSpec]:
    seen, out = set(), []
    for _, path in sorted(library("workloads").items()):
        if path not in seen:
            seen.add(path)
            out.append(load_workload(path))
    return sorted(out, key=lambda m: (m.family or "", m.param_count()))
