"""The search space of a study, compiled against its base hardware spec.

Every ``space`` path is checked against the hardware schema (walking the pydantic
models field by field) and every bound or choice is read with that field's own
validator, so "1.2 GHz" or "32 MiB" become SI numbers exactly as they would in a
hardware YAML (units are parsed only by :mod:`codesign.units`, through the schema).
A sample override (each dimension's low value or first choice) is then applied to
the base spec and validated as a whole, which also catches unknown memory-level
names. Cross-field checks of the whole spec (e.g. an inner memory level larger
than an outer one) are *not* errors here: another dimension may compensate, and a
design point that breaks them is recorded as an invalid (infeasible) trial.

Derived figures (``scale_with``)
--------------------------------
Changing how many units a chip has, or its clock, must change its peaks. A target
path scales with its drivers by ratio to the base spec::

    target = base_target x prod(driver / base_driver)          (array: rows x cols)

so doubling compute.cores doubles compute.matrix.peak (every dtype). When the
study file has no ``scale_with`` key these default rules apply, each only when one
of its drivers is searched and its target exists in the base spec:

- compute.matrix.units  <- compute.cores              (units per core fixed)
- compute.matrix.peak   <- compute.cores (or compute.matrix.units when that is
  searched itself), compute.clock, compute.matrix.array
- compute.vector.peak, compute.vector.transcendental <- compute.cores, compute.clock
- memory.<L>.bandwidth  <- compute.clock  for on-chip levels (sram/cache/register):
  bytes per clock are fixed by the datapath width.
- power.idle, power.tdp <- area (the die area of the area model, codesign.hardware.area,
  when the study varies the chip): static (leakage) power is proportional to the
  transistor count, P_static = V x I_leak per device x N (Weste & Harris, CMOS VLSI
  Design, 4th ed., sec. 5.3), i.e. to die area at a fixed node; TDP likewise at a fixed
  power density. Without this a bigger chip would idle at the base chip's power and
  every study would simply max out cores and clock.

- voltage <- compute.clock: a design at another clock than the base carries the base clock
  as compute.nominal_clock, so its energy per operation, busy and static power follow the
  V-f curve (perf.params.at_clock): a faster clock costs energy, a slower one saves it.

Neglected: peaks scale linearly (no change in achieved efficiency, NoC or power
limits with size), off-chip bandwidth never follows the clock, static power of the
board/DRAM (part of ``power.idle``) is scaled with the die as well (an overestimate
for small dies on big boards). A ``scale_with``
mapping in the study replaces the defaults (``scale_with: {}`` turns them off).
An explicitly searched path always wins over a scaled one.
"""
from __future__ import annotations

import difflib
import json
import math
import typing
from dataclasses import dataclass, field

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from pydantic import BaseModel, TypeAdapter, ValidationError

from ..compression import Compression
from ..errors import CodesignError, field_path
from ..hardware import apply_overrides, hardware_from_dict
from ..hardware.area import estimate_area
from ..hardware.schema import HardwareSpec
from ..io import resolve
from .schema import DimensionSpec, StudySpec

PRIMITIVE = (type(None), bool, int, float, str)
AREA = "area"          # scale_with driver: die area from codesign.hardware.area
DEVICE = "hardware"          # the dimension that picks a device from a study's hardware list
ONCHIP_KINDS = ("sram", "cache", "register")


@dataclass(frozen=True)
class Dim:
    """One compiled dimension: SI bounds/choices and where its value goes."""
    name: str                          # Optuna parameter name: a spec path, a preset label or a compression field
    target: str                        # "hardware" | "preset" | "compression"
    kind: str                          # "int" | "float" | "categorical"
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple = ()                # Optuna-side choices (primitives)
    values: tuple = ()                 # the value each choice stands for (lists, preset override maps)
    when: tuple = ()                   # ((param, (allowed values...)), ...)

    def suggest(self, trial):
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def value(self, p):
        """Optuna value -> the value applied to the spec (decodes encoded choices)."""
        if self.kind == "categorical":
            return self.values[self.choices.index(p)]
        return p

    def active(self, params: dict) -> bool:
        return all(k in params and params[k] in allowed for k, allowed in self.when)

    @property
    def discrete_step(self):
        """The spacing of an enumerable numeric dimension: its step, 1 for an int (log ints
        included: Optuna draws every integer of the range), None for a continuous float."""
        if self.step is not None:
            return self.step
        return 1 if self.kind == "int" else None

    def level_count(self) -> int | None:
        """How many values the dimension can take; None when it is continuous (a float without a step)."""
        if self.kind == "categorical":
            return len(self.choices)
        step = self.discrete_step
        if step is None:
            return None
        assert self.low is not None and self.high is not None   # a numeric dimension always has its bounds
        # Optuna's rule (FloatDistribution/IntDistribution with a step): low + k*step <= high
        return int(math.floor((self.high - self.low) / step + 1e-9)) + 1

    def levels(self) -> list:
        """Every value, as Optuna stores it (low + k*step, the expression Optuna's samplers round to)."""
        if self.kind == "categorical":
            return list(self.choices)
        step, n = self.discrete_step, self.level_count()
        if n is None:
            raise CodesignError(f"dimension {self.name!r} is continuous (no 'step')")
        assert self.low is not None and step is not None   # numeric and discrete (level_count is not None)
        if self.kind == "int":
            return [int(self.low) + k * int(step) for k in range(n)]
        top = self.distribution().high          # Optuna trims a range that the step does not divide
        return [min(float(k) * step + self.low, top) for k in range(n)]

    def distribution(self):
        """The Optuna distribution ``suggest`` registers for this dimension."""
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        if self.kind == "float":
            return FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        return CategoricalDistribution(list(self.choices))

    def grid_values(self) -> list:
        n = self.level_count()
        if n is None or (self.kind == "int" and self.log and self.step is None):
            raise CodesignError(f"the grid sampler needs a 'step' (or choices) for dimension {self.name!r}")
        if n > MAX_GRID_VALUES:
            raise CodesignError(f"the grid for dimension {self.name!r} would have {n:,} values (limit "
                                f"{MAX_GRID_VALUES:,}): use a larger 'step'")
        return self.levels()


def params_key(params: dict) -> str:
    """One string per design: trial parameters in a canonical order (the cache and duplicate key)."""
    return json.dumps(params, sort_keys=True, default=str)


MAX_GRID_VALUES = 10_000      # per dimension; the product is checked by the grid sampler
MAX_GRID_POINTS = 10_000_000


@dataclass(frozen=True)
class Rule:
    target: str
    drivers: tuple[str, ...]


@dataclass(frozen=True)
class Space:
    base: HardwareSpec
    base_data: dict = field(repr=False)       # SI mapping of the base spec (what overrides apply to)
    dims: tuple[Dim, ...]
    rules: tuple[Rule, ...]
    hardware_paths: tuple[str, ...]           # every spec path some dimension may set
    area_fn: typing.Callable | None = field(default=None, repr=False, compare=False)
    base_area: float | None = None
    devices: dict = field(default_factory=dict, repr=False, compare=False)   # name -> spec (a hardware list)
    power_limit: float | None = None          # W: every design's power.limit (the study's budget)

    def suggest(self, trial) -> dict:
        """Sample every active dimension on an Optuna trial (in dependency order)."""
        params: dict = {}
        for d in self.dims:
            if d.active(params):
                params[d.name] = d.suggest(trial)
        return params

    def baseline_params(self) -> dict:
        """Parameters that reproduce the base spec uncompressed, where the space contains it.

        Hardware dimensions take the base value (presets: the label whose overrides all
        equal it); compression dimensions take "none" (None, 16 bits, int, 0). A dimension
        whose space excludes the base value is left to the sampler.
        """
        none = {"weight_bits": 16, "act_bits": 16, "kv_bits": 16, "weight_format": "int", "prune_heads": 0.0,
                "prune_ffn": 0.0, "prune_layers": 0.0}
        out: dict = {}
        for d in self.dims:
            if not d.active(out):
                continue
            if d.target == "preset":
                for label, group in zip(d.choices, d.values):
                    if all(_same(read_path(self.base_data, k), v) for k, v in group.items()):
                        out[d.name] = label
                        break
                continue
            if d.target == "serving":       # the workload's own scenario is the base: left to the sampler
                continue
            if d.target == "device":
                out[d.name] = self.base.name
                continue
            if d.target == "compression":
                cands = [None, none.get(d.name)]
            else:
                v = read_path(self.base_data, d.name)
                cands = [_encode(v) if d.kind == "categorical" else v]
            for v in cands:
                if d.kind == "categorical":
                    hit = [c for c in d.choices if _same(c, v)]
                    if hit:
                        out[d.name] = hit[0]
                        break
                elif (isinstance(v, (int, float)) and not isinstance(v, bool)
                      and d.low is not None and d.high is not None      # always set on a numeric dimension
                      and d.low <= v <= d.high
                      and (d.step is None or abs((v - d.low) / d.step - round((v - d.low) / d.step)) < 1e-9)):
                    out[d.name] = v
                    break
        return out

    def overrides(self, params: dict) -> dict:
        """Trial parameters -> dotted-path overrides of the base spec (scaled figures first)."""
        explicit: dict = {}
        for d in self.dims:
            if d.name not in params or d.target in ("compression", "serving", "device"):
                continue
            v = d.value(params[d.name])
            if d.target == "preset":
                explicit.update(v)
            else:
                explicit[d.name] = v
        scaled = {}
        for rule in self.rules:
            if rule.target in explicit or AREA in rule.drivers:
                continue
            f = 1.0
            for drv in rule.drivers:
                if drv in explicit:
                    f *= _magnitude(explicit[drv]) / _magnitude(read_path(self.base_data, drv))
            if f != 1.0:
                scaled[rule.target] = _scale(read_path(self.base_data, rule.target), f)
        return {**scaled, **explicit}

    def serving(self, params: dict) -> dict:
        """The serving choices of a design (tp, replicas, ...): only those its space sets."""
        return {d.name: int(d.value(params[d.name])) for d in self.dims if d.target == "serving" and d.name in params}

    def compression(self, params: dict) -> Compression:
        fields = {d.name: d.value(params[d.name]) for d in self.dims
                  if d.target == "compression" and d.name in params}
        return Compression(**fields)

    def design(self, params: dict) -> tuple[HardwareSpec, dict]:
        """(derived spec, every override applied incl. area-driven ones) for trial parameters."""
        if DEVICE in params and self.devices:         # a device chosen from the study's list, as it is
            return self.devices[params[DEVICE]], {}
        ov = self.overrides(params)
        if self.power_limit is not None:              # the study's budget caps every design's board
            ov = {**ov, "power.limit": self.power_limit}
        base_clock = read_path(self.base_data, "compute.clock")
        if "compute.clock" in ov and base_clock and not read_path(self.base_data, "compute.nominal_clock"):
            # the base's power figures are stated at its clock: another clock costs voltage
            ov = {**ov, "compute.nominal_clock": base_clock}
        if not ov:
            return self.base, ov
        hw = hardware_from_dict(apply_overrides(self.base_data, ov))
        area_rules = [r for r in self.rules if AREA in r.drivers and r.target not in ov]
        if area_rules and self.area_fn is not None and self.base_area:
            ratio = self.area_fn(hw) / self.base_area
            f_other = {}
            for r in area_rules:
                f = ratio
                for drv in r.drivers:
                    if drv != AREA and drv in ov:
                        f *= _magnitude(ov[drv]) / _magnitude(read_path(self.base_data, drv))
                f_other[r.target] = _scale(read_path(self.base_data, r.target), f)
            if f_other:
                ov = {**f_other, **ov}
                hw = hardware_from_dict(apply_overrides(self.base_data, ov))
        return hw, ov

    def hardware(self, params: dict) -> HardwareSpec:
        return self.design(params)[0]


# -- helpers -----------------------------------------------------------------

def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _magnitude(v) -> float:
    if isinstance(v, (list, tuple)):
        return float(math.prod(v))
    return float(v)


def _scale(v, f):
    if isinstance(v, dict):
        return {k: x * f for k, x in v.items()}
    if isinstance(v, int) and not isinstance(v, bool):
        return max(1, round(v * f))
    return v * f


def read_path(data: dict, path: str):
    """Value at a dotted path of a spec mapping (memory levels by name); None if absent."""
    node: typing.Any = data
    for key in path.split("."):
        if isinstance(node, list):
            node = next((i for i in node if isinstance(i, dict) and i.get("name") == key), None)
        elif isinstance(node, dict):
            node = node.get(key)
        else:
            return None
        if node is None:
            return None
    return node


def _unwrap(ann):
    """Optional[X] / Annotated[...] -> the annotation pydantic validates X with."""
    origin = typing.get_origin(ann)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return ann


def _bare(ann):
    """Annotated[X, ...] -> X."""
    return typing.get_args(ann)[0] if typing.get_origin(ann) is typing.Annotated else ann


def _model_of(ann):
    ann = _unwrap(_bare(ann))
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    return None


def field_annotation(path: str):
    """Walk the hardware schema along a dotted path; return the leaf annotation.

    Raises ValueError naming the first unknown part. Memory levels are addressed by
    name (any name is accepted here; the sample override checks it exists).
    """
    model: type[BaseModel] = HardwareSpec
    parts = path.split(".")
    ann = None
    i = 0
    while i < len(parts):
        key = parts[i]
        if model is None:
            raise ValueError(f"{'.'.join(parts[:i])} is a plain value; it has no field {key!r}")
        fields = {(f.alias or n): f for n, f in model.model_fields.items()}
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {'.'.join(parts[:i] + close)}?" if close else ""
            raise ValueError(f"unknown path: {model.__name__} has no field {key!r}{hint}")
        f = fields[key]
        ann = _unwrap(f.annotation)
        if f.metadata:      # pydantic keeps Annotated[...] metadata (unit validators, bounds) here
            ann = typing.Annotated[(ann, *f.metadata)]
        i += 1
        origin = typing.get_origin(_bare(ann))
        if origin is tuple and _model_of(typing.get_args(_bare(ann))[0]) is not None:   # memory levels by name
            if i == len(parts):
                return ann
            model = _model_of(typing.get_args(_bare(ann))[0])
            i += 1            # the level name
            continue
        if origin is dict:
            if i == len(parts):
                return ann
            key_ann, val_ann = typing.get_args(_bare(ann))
            try:
                TypeAdapter(key_ann).validate_python(parts[i])
            except ValidationError:
                raise ValueError(f"{'.'.join(parts[:i + 1])}: {parts[i]!r} is not a valid key here "
                                 f"(expected one of {typing.get_args(key_ann) or key_ann})") from None
            ann = val_ann
            model = _model_of(val_ann)
            i += 1
            continue
        model = _model_of(ann)
    return ann


def _si(adapter: TypeAdapter, value, what: str):
    try:
        out = adapter.validate_python(value)
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        raise ValueError(f"{what}: {msg}") from None
    if isinstance(out, BaseModel):
        return out.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if isinstance(out, tuple):
        return list(out)
    return out


def _encode(v):
    """A choice value -> something Optuna can store (None/bool/int/float/str)."""
    return v if isinstance(v, PRIMITIVE) else json.dumps(v)


# -- compiling ----------------------------------------------------------------

def compile_space(study: StudySpec, base: HardwareSpec, file=None, devices=()) -> Space:
    """Check the study's space against ``base`` and return the compiled :class:`Space`;
    ``devices``: the specs a ``hardware`` list offers (a dimension choosing the device)."""
    base_data = base.model_dump(mode="json", by_alias=True, exclude_unset=True)
    dims: list[Dim] = []
    hw_paths: list[str] = []
    converters: dict[str, typing.Callable] = {}

    def bad(where: str, msg: str) -> typing.NoReturn:
        raise CodesignError(msg, file=file, field=where)

    def adapter_for(path: str, where: str) -> TypeAdapter:
        try:
            return TypeAdapter(field_annotation(path))
        except ValueError as e:
            bad(where, str(e))

    def check_sample(path_values: dict, where: str):
        try:
            data = apply_overrides(base_data, path_values)
        except CodesignError as e:
            bad(where, e.message)
        try:
            HardwareSpec.model_validate(data)
        except ValidationError as e:
            for err in e.errors():
                if err["loc"]:            # a field-located error: the value or path is wrong
                    bad(where, f"{field_path(err['loc'])}: {err['msg'].removeprefix('Value error, ')}")
            # whole-spec checks (hierarchy order, ...) are left to trial time

    for key, ds in study.space.items():
        where = f"space.{key}"
        if ds.type == "categorical" and isinstance(ds.choices, dict):
            # a preset: labels -> groups of overrides applied together
            values = []
            for label, group in ds.choices.items():
                if not isinstance(group, dict) or not group:
                    bad(f"{where}.choices.{label}", "expected a mapping of spec paths to values")
                group_si = {}
                for path, v in group.items():
                    w = f"{where}.choices.{label}.{path}"
                    group_si[path] = _convert(adapter_for(path, w), v, w, bad)
                    hw_paths.append(path)
                check_sample(group_si, f"{where}.choices.{label}")
                values.append(group_si)
            dims.append(Dim(name=key, target="preset", kind="categorical", choices=tuple(ds.choices),
                            values=tuple(values), when=()))
            converters[key] = lambda v: v
            continue
        ad = adapter_for(key, where)
        conv = lambda v, w, ad=ad: _convert(ad, v, w, bad)   # noqa: E731
        converters[key] = lambda v, conv=conv, where=where: conv(v, f"{where}.when")
        dims.append(_numeric_or_choice(key, "hardware", ds, conv, where, bad))
        sample = dims[-1].values[0] if dims[-1].kind == "categorical" else dims[-1].low
        check_sample({key: sample}, where)
        hw_paths.append(key)

    for key, ds in study.compression.items():
        where = f"compression.{key}"
        if key not in Compression.model_fields:
            close = difflib.get_close_matches(key, list(Compression.model_fields), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            bad(where, f"unknown compression field{hint} (known: {', '.join(Compression.model_fields)})")
        if ds.type == "categorical" and isinstance(ds.choices, dict):
            bad(where, "compression choices are a list of values")

        def cconv(v, w, key=key):
            try:
                c = Compression.model_validate({key: v})
            except ValidationError as e:
                bad(w, e.errors()[0]["msg"].removeprefix("Value error, "))
            out = getattr(c, key)
            if key == "distill_to" and out is not None:
                try:
                    resolve("workloads", out, "workload")
                except CodesignError as e:
                    bad(w, e.message)
            return out
        converters[key] = lambda v, cconv=cconv, where=where: cconv(v, f"{where}.when")
        dims.append(_numeric_or_choice(key, "compression", ds, cconv, where, bad))

    for key, ds in study.serving.items():
        where = f"serving.{key}"
        if ds.type == "categorical" and isinstance(ds.choices, dict):
            bad(where, "serving choices are a list of values")

        def sconv(v, w):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(w, f"expected an integer >= 1, got {v!r}")
            return v
        converters[key] = lambda v, where=where: sconv(v, f"{where}.when")
        dims.append(_numeric_or_choice(key, "serving", ds, sconv, where, bad))

    # conditions: names, values in the controller's units, dependency order
    specs = {**study.space, **study.compression, **study.serving}
    section = {"compression": "compression", "serving": "serving"}
    by_name = {d.name: d for d in dims}
    resolved = []
    for d in dims:
        ds = specs[d.name]
        when = []
        for other, allowed in (ds.when or {}).items():
            prefix = section.get(d.target, "space")
            w = f"{prefix}.{d.name}.when.{other}"
            if other not in by_name:
                bad(w, f"unknown dimension {other!r} (conditions name another dimension of this study)")
            if other == d.name:
                bad(w, "a dimension cannot depend on itself")
            allowed = allowed if isinstance(allowed, list) else [allowed]
            vals = tuple(_encode(converters[other](a)) for a in allowed)
            od = by_name[other]
            if od.kind == "categorical":
                missing = [a for a, v in zip(allowed, vals) if v not in od.choices]
                if missing:
                    bad(w, f"{missing[0]!r} is not one of the choices of {other!r} ({list(od.choices)})")
            when.append((other, vals))
        resolved.append(Dim(**{**d.__dict__, "when": tuple(when)}))
    dims = _order(resolved, file)

    if devices:
        names = tuple(d.name for d in devices)
        if len(set(names)) != len(names):
            bad("hardware", f"two devices share the name {next(n for n in names if names.count(n) > 1)!r}")
        dims.insert(0, Dim(name=DEVICE, target="device", kind="categorical", choices=names, values=names, when=()))
    area_fn, base_area = _area_fn(base)
    rules = _rules(study, base_data, hw_paths, file, area_fn is not None)
    return Space(base=base, base_data=base_data, dims=tuple(dims), rules=rules, hardware_paths=tuple(hw_paths),
                 area_fn=area_fn, base_area=base_area, devices={d.name: d for d in devices},
                 power_limit=typing.cast("float | None", study.power_limit))   # SI watts after validation


def _area_fn(base: HardwareSpec):
    """The area model's total die area, if it can price the base spec."""
    fn = lambda spec: float(estimate_area(spec).total)   # noqa: E731
    try:
        a = fn(base)
    except (CodesignError, ValueError, ValidationError):
        return None, None
    return (fn, a) if a and a > 0 else (None, None)


def _convert(adapter, v, where, bad):
    try:
        return _si(adapter, v, where)
    except ValueError as e:
        msg = str(e)
        bad(where, msg.split(": ", 1)[1] if msg.startswith(where) else msg)


def _numeric_or_choice(name, target, ds: DimensionSpec, conv, where, bad) -> Dim:
    if ds.type == "categorical":
        assert ds.choices is not None   # the schema gives every categorical dimension its choices
        values = [conv(c, f"{where}.choices[{i}]") for i, c in enumerate(ds.choices)]
        choices = [_encode(v) for v in values]
        if len(set(map(repr, choices))) != len(choices):
            bad(f"{where}.choices", "choices repeat a value")
        return Dim(name=name, target=target, kind="categorical", choices=tuple(choices), values=tuple(values))
    lo = conv(ds.low, f"{where}.low")
    hi = conv(ds.high, f"{where}.high")
    step = conv(ds.step, f"{where}.step") if ds.step is not None else None
    for key, v in (("low", lo), ("high", hi), ("step", step)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            bad(f"{where}.{key}", f"a {ds.type} dimension needs a number, got {v!r}")
    if hi <= lo:
        bad(where, f"empty range: high ({ds.high}) must be greater than low ({ds.low})")
    log = ds.log or ds.type == "log"
    if log and lo <= 0:
        bad(f"{where}.low", f"a log-scale dimension needs low > 0, got {ds.low}")
    if step is not None:
        if step <= 0:
            bad(f"{where}.step", f"step must be positive, got {ds.step}")
        if step > hi - lo:
            bad(f"{where}.step", f"step ({ds.step}) is wider than the range {ds.low}..{ds.high}")
    kind = "int" if ds.type == "int" else "float"
    if kind == "int" and isinstance(lo, float):
        if lo != int(lo) or hi != int(hi):
            bad(where, f"an int dimension needs integer bounds, got {lo}..{hi}")
        lo, hi = int(lo), int(hi)
    return Dim(name=name, target=target, kind=kind, low=lo, high=hi, step=step, log=log)


def _order(dims: list[Dim], file) -> list[Dim]:
    """Topological order so that every condition's controller is sampled first."""
    out, done, visiting = [], set(), set()
    by_name = {d.name: d for d in dims}

    def visit(d: Dim):
        if d.name in done:
            return
        if d.name in visiting:
            raise CodesignError(f"conditions form a cycle through {d.name!r}", file=file, field="space")
        visiting.add(d.name)
        for other, _ in d.when:
            visit(by_name[other])
        visiting.discard(d.name)
        done.add(d.name)
        out.append(d)

    for d in dims:
        visit(d)
    return out


def _default_rules(base_data: dict, searched: set[str], has_area: bool) -> list[Rule]:
    count = "compute.matrix.units" if "compute.matrix.units" in searched else "compute.cores"
    rules = [
        Rule("compute.matrix.units", ("compute.cores",)) if count == "compute.cores" else None,
        Rule("compute.matrix.peak", (count, "compute.clock", "compute.matrix.array")),
        Rule("compute.vector.peak", ("compute.cores", "compute.clock")),
        Rule("compute.vector.transcendental", ("compute.cores", "compute.clock")),
    ]
    for level in base_data.get("memory", []):
        if level.get("kind") in ONCHIP_KINDS:
            rules.append(Rule(f"memory.{level['name']}.bandwidth", ("compute.clock",)))
    if has_area and searched:
        rules += [Rule("power.idle", (AREA,)), Rule("power.tdp", (AREA,))]
    out = []
    for r in rules:
        if r is None or read_path(base_data, r.target) is None:
            continue
        drivers = tuple(d for d in r.drivers if d in searched or d == AREA)
        if drivers:
            out.append(Rule(r.target, drivers))
    return out


def _rules(study: StudySpec, base_data: dict, hw_paths: list[str], file, has_area: bool) -> tuple[Rule, ...]:
    searched = set(hw_paths)
    if study.scale_with is None:
        rules = _default_rules(base_data, searched, has_area)
        where = "space"
    else:
        rules = [Rule(t, tuple(d)) for t, d in study.scale_with.items()]
        where = "scale_with"
        for r in rules:
            try:
                field_annotation(r.target)
            except ValueError as e:
                raise CodesignError(str(e), file=file, field=f"scale_with.{r.target}") from None
            if read_path(base_data, r.target) is None:
                raise CodesignError("the base spec has no value here to scale", file=file,
                                    field=f"scale_with.{r.target}")
    for r in rules:
        t = read_path(base_data, r.target)
        if not isinstance(t, (int, float, dict)) or isinstance(t, bool):
            raise CodesignError(f"only numbers or per-dtype peaks can be scaled, got {t!r}", file=file,
                                field=f"scale_with.{r.target}")
        for drv in r.drivers:
            if drv == AREA:
                if not has_area:
                    raise CodesignError("scaling with 'area' needs the area model (codesign.hardware.area) and a "
                                        "base spec it can price", file=file, field=f"scale_with.{r.target}")
                continue
            b = read_path(base_data, drv)
            if b is None or not _magnitude(b):
                raise CodesignError(
                    f"{r.target} scales with {drv}, but the base spec states no {drv} to take the ratio to; "
                    f"add it to the base spec or write scale_with explicitly", file=file, field=where)
    return tuple(rules)
