"""Loading a study file and compiling it into what the runner needs.

``load_study("studies/quickstart.yaml")`` (or a library name such as ``quickstart``)
validates the YAML (:mod:`.schema`), loads the base hardware, compiles the space
against it (:mod:`.space`), loads every workload and checks its scenario. Any
mistake is one ``file: field: message`` line.

The compiled study keeps the raw mapping with the base hardware spec inlined, so a
study stored in a database can be resumed by name alone, with exactly the spec it
started from, even if the library file changes later.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from pydantic import ValidationError

from ..errors import CodesignError, from_pydantic
from ..hardware import hardware_from_dict, load_hardware
from ..hardware.schema import HardwareSpec
from ..io import read_yaml, resolve, validate
from ..workload import Scenario, load_workload, workload_from_dict
from ..workload.schema import ModelSpec
from .schema import SERVE_METRICS, Bound, StudySpec, metric_value
from .space import Space, compile_space


@dataclass(frozen=True)
class Workload:
    model: ModelSpec
    scenario: Scenario
    weight: float           # normalised: the weights of a study sum to 1
    label: str
    serve: object = None    # schema.ServeSpec: traffic for the serving metrics, or None


@dataclass(frozen=True)
class Constraint:
    """``metric <= bound`` (kind "max") or ``metric >= bound`` (kind "min"), or fits."""
    name: str               # the Optuna constraint key, e.g. "power_w.max"
    metric: str
    kind: str               # "max" | "min" | "fits" | "valid"
    bound: float = 0.0


@dataclass(frozen=True)
class Study:
    spec: StudySpec
    file: str | None
    raw: dict = field(repr=False)         # the study mapping with the base hardware inlined
    base: HardwareSpec
    space: Space
    workloads: tuple[Workload, ...]
    constraints: tuple[Constraint, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def objectives(self) -> tuple[str, ...]:
        return tuple(o.metric for o in self.spec.objectives)

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(o.sense for o in self.spec.objectives)

    @property
    def uses_serving(self) -> bool:
        """Whether an objective or constraint is a serving metric (the simulator runs per design)."""
        used = {o.metric for o in self.spec.objectives} | set(self.spec.constraints)
        return bool(used & set(SERVE_METRICS))

    @property
    def varies_hardware(self) -> bool:
        return any(d.target in ("hardware", "preset") for d in self.space.dims)

    def fingerprint(self) -> str:
        """Hash of everything that defines the trials' meaning (not trials/timeout/sampler)."""
        keep = {k: v for k, v in self.raw.items() if k not in ("trials", "timeout", "batch", "sampler",
                                                               "description")}
        return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_study(ref) -> Study:
    """A study by library name (``quickstart``) or YAML path."""
    path = resolve("studies", ref, "study")
    return study_from_dict(read_yaml(path), file=path)


def study_from_dict(data: dict, file=None, base_dir=None) -> Study:
    spec = validate(StudySpec, data, file)
    base_dir = Path(base_dir) if base_dir else (Path(file).parent if file else Path.cwd())
    refs = spec.hardware if isinstance(spec.hardware, list) else [spec.hardware]
    devices = [_base_hardware(r, file, base_dir) for r in refs]
    base = devices[0]
    space = compile_space(spec, base, file, devices=devices if isinstance(spec.hardware, list) else ())
    workloads = _workloads(spec, file, base_dir)
    constraints = _constraints(spec)
    raw = dict(data)
    dump = [d.model_dump(mode="json", by_alias=True, exclude_unset=True) for d in devices]
    raw["hardware"] = dump if isinstance(spec.hardware, list) else dump[0]
    raw["workloads"] = [{**w, "workload": wl.model.model_dump(mode="json", exclude_unset=True)}
                        for w, wl in zip(data["workloads"], workloads)]
    return Study(spec=spec, file=str(file) if file else None, raw=raw, base=base, space=space,
                 workloads=workloads, constraints=constraints)


def _base_hardware(ref, file, base_dir: Path) -> HardwareSpec:
    if isinstance(ref, HardwareSpec):
        return ref
    if isinstance(ref, dict):
        try:
            return hardware_from_dict(ref)
        except CodesignError as e:
            raise CodesignError(e.message, file=file, field="hardware" + (f".{e.field}" if e.field else "")) from None
    cand = base_dir / ref
    try:
        return load_hardware(cand if cand.is_file() else ref)
    except CodesignError as e:
        if e.file:          # an error inside the hardware file: that file is the one to fix
            raise
        raise CodesignError(e.message, file=file, field="hardware") from None


def _workloads(spec: StudySpec, file, base_dir: Path) -> tuple[Workload, ...]:
    out = []
    total = sum(w.weight for w in spec.workloads)
    for i, w in enumerate(spec.workloads):
        where = f"workloads[{i}]"
        try:
            if isinstance(w.workload, dict):
                model = workload_from_dict(w.workload)
            else:
                cand = base_dir / w.workload
                model = load_workload(cand if cand.is_file() else w.workload)
        except CodesignError as e:
            if e.file:
                raise
            raise CodesignError(e.message, file=file, field=f"{where}.workload") from None
        scenario = _scenario(w, file, where)
        label = model.name if len(spec.workloads) == 1 else f"{model.name}#{i}"
        out.append(Workload(model=model, scenario=scenario, weight=w.weight / total, label=label, serve=w.serve))
    return tuple(out)


def _scenario(w, file, where) -> Scenario:
    try:
        return Scenario(**w.scenario_fields())
    except ValidationError as e:
        raise from_pydantic(e, file, prefix=(where,)) from None


def _constraints(spec: StudySpec) -> tuple[Constraint, ...]:
    out = [Constraint("valid", "valid", "valid")]
    for metric, bound in spec.constraints.items():
        if metric == "fits":
            out.append(Constraint("fits", "fits", "fits"))
            continue
        assert isinstance(bound, Bound)     # the schema allows a bare bool only for 'fits'
        if bound.max is not None:
            out.append(Constraint(f"{metric}.max", metric, "max", metric_value(metric, bound.max, metric)))
        if bound.min is not None:
            out.append(Constraint(f"{metric}.min", metric, "min", metric_value(metric, bound.min, metric)))
    if spec.power_limit is not None and "peak_power_w.max" not in {c.name for c in out}:
        # under the cap the clock drops, so the peak meets it, unless the static power alone is
        # above it: such a chip cannot run within the budget at any clock
        power_limit = cast(float, spec.power_limit)     # SI watts after validation
        out.append(Constraint("peak_power_w.max", "peak_power_w", "max", power_limit * 1.001))
    return tuple(out)
