"""Study YAML schema: what a study file may say, checked before any trial runs.

This module checks the *shape* of a study file (types, unknown keys, empty ranges,
unknown metrics). Whether a ``space`` path exists in the base hardware spec, and
what its units mean, is checked when the study is compiled against that spec
(:mod:`codesign.search.space`), by applying a sample override and validating the
result with the hardware schema itself.

A study file::

    name: quickstart
    hardware: rk3588-npu               # library name, YAML path, or an inline spec mapping
    space:                             # dotted spec paths (as apply_overrides takes them)
      compute.cores: {type: int, low: 2, high: 32, log: true}
      compute.clock: {type: float, low: 0.4 GHz, high: 1.2 GHz}
      memory.CBUF.capacity: {type: log, low: 128 KiB, high: 2 MiB}
      dram: {type: categorical, choices: {lpddr5: {memory.LPDDR4X.bandwidth: 51.2 GB/s}, ...}}
    compression:
      weight_bits: {type: categorical, choices: [16, 8, 4]}
      group_size: {type: categorical, choices: [32, 128], when: {weight_bits: 4}}
    workloads:
      - {workload: llama-3.2-3b, batch: 1, prompt: 512, generate: 128, weight: 1}
    objectives:
      - {metric: tpot_s, direction: minimize}
      - energy_per_token_j            # a bare name takes the metric's usual direction
    constraints:
      fits: true
      power_w: {max: 10 W}
    sampler: {name: nsga2, seed: 1, options: {population_size: 40}}   # auto (default)|exhaustive|tpe|nsga2|...
    trials: 200          # completed trials the study should hold (run/resume bring it there)
    timeout: 600 s       # optional wall-clock budget per invocation
    batch: 40            # optional: trials asked and evaluated together (default: a generation)
    baseline: true       # optional: trial 0 is the base spec uncompressed (where the space has it)
    scale_with: {compute.matrix.peak: [compute.cores, compute.clock]}   # optional; default rules in space.py

Objectives take the weighted mean over workloads; constraints the worst workload
(metrics.py). Metric names: :data:`METRICS` (the engine's summary plus area_mm2,
die_cost_usd, chip_cost_usd, power_w, cost_per_mtok_usd, quality_ppl_increase_pct) and
``fits: true``.
"""
from __future__ import annotations

import difflib
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..metrics import in_group
from ..units import UnitError, parse_quantity


# ---------------------------------------------------------------------------
# Metrics a study may optimise or constrain (codesign.metrics is the table):
# name -> (default direction, units dimension for bounds written with units or None)
def _pairs(group: str) -> dict[str, tuple[str, str | None]]:
    return {name: (m.direction, m.dimension) for name, m in in_group(group).items()}


SUMMARY_METRICS = _pairs("summary")       # codesign.perf.evaluate's summary
DESIGN_METRICS = _pairs("design")         # codesign.search.metrics: area/cost and quality models
SERVE_METRICS = _pairs("serve")           # the serving simulator, for workloads with a serve block
METRICS = {**SUMMARY_METRICS, **DESIGN_METRICS, **SERVE_METRICS}
# serving choices a study may search (section ``serving``): layout and scheduler limits
SERVING_FIELDS = ("tp", "pp", "batch", "replicas", "max_num_seqs", "max_batched_tokens")
SAMPLERS = ("auto", "exhaustive", "tpe", "nsga2", "nsga3", "gp", "random", "grid")
ENUMERATION_OPTIONS = ("max_designs", "chunk_size")      # what auto / exhaustive take (samplers.py)
SCENARIO_FIELDS = ("batch", "prompt", "generate", "dtype", "tp", "pp", "dp", "ep", "attention", "microbatches",
                   "ubatch", "compiled_context", "beams", "runtime")


def _unknown_metric(name: str) -> str:
    close = difflib.get_close_matches(name, list(METRICS) + ["fits"], n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"unknown metric {name!r}{hint} (known: {', '.join(METRICS)}, fits)"


def metric_value(metric: str, value, what: str) -> float:
    """A bound for ``metric``: a plain number, or a quantity in the metric's dimension ('10 W')."""
    dim = METRICS[metric][1]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    if dim is None:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{what}: expected a plain number for {metric}, got {value!r}") from None
    try:
        return parse_quantity(value, dim)
    except UnitError as e:
        raise ValueError(f"{what}: {e}") from None


def positive(v, dimension: str, example: str):
    """An SI value above 0 from a number or a quantity ('2 s', '5 W'); None stays None."""
    if v is None:
        return v
    try:
        x = parse_quantity(v, dimension)
    except UnitError as e:
        raise ValueError(str(e)) from None
    if not x > 0:
        raise ValueError(f"expected a {dimension} above 0 such as {example}, got {v!r}")
    return x


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Scalar = int | float | str | bool | None


class DimensionSpec(_Strict):
    """One search dimension. Quantities with units are allowed in low/high/step/choices.

    type ``int`` (optionally ``log: true``), ``float`` (optionally ``log: true``, ``step``),
    ``log`` (a float on a log scale) or ``categorical``. A categorical may map labels
    to groups of overrides (``choices: {label: {path: value, ...}}``) to switch several
    fields together, e.g. a memory technology's bandwidth, energy and capacity.
    ``when: {other: value}`` (or a list of values) makes the dimension conditional:
    it is only sampled, and only applied, when ``other`` took that value.
    """
    type: Literal["int", "float", "log", "categorical"]
    low: Scalar = None
    high: Scalar = None
    step: Scalar = None
    log: bool = False
    choices: list[Any] | dict[str, dict[str, Any]] | None = None
    when: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _shape(self):
        if self.type == "categorical":
            if self.low is not None or self.high is not None or self.step is not None:
                raise ValueError("a categorical dimension takes 'choices', not low/high/step")
            if not self.choices:
                raise ValueError("choices: a categorical dimension needs at least one choice")
            if isinstance(self.choices, list):
                for i, c in enumerate(self.choices):
                    if isinstance(c, dict):
                        raise ValueError(f"choices[{i}]: a mapping choice needs a label; write choices as "
                                         "{label: {path: value}}")
        else:
            if self.choices is not None:
                raise ValueError(f"a {self.type} dimension takes low/high, not 'choices'")
            if self.low is None or self.high is None:
                raise ValueError(f"a {self.type} dimension needs both 'low' and 'high'")
            if self.type == "log" and self.step is not None:
                raise ValueError("a log dimension cannot have a step")
            if self.log and self.step is not None:
                raise ValueError("log: true cannot be combined with a step")
            if self.type == "int":
                for key in ("low", "high", "step"):
                    v = getattr(self, key)
                    if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                        raise ValueError(f"{key}: an int dimension needs an integer, got {v!r}")
        if self.when is not None and not self.when:
            raise ValueError("when: give at least one condition, e.g. {weight_bits: 4}")
        return self


class ServeSpec(_Strict):
    """Traffic a design must serve (``codesign serve``): Poisson arrivals at ``rate`` (for
    goodput and tail latency) and SLOs at ``percentile`` (for ``max_rate_under_slo``)."""
    rate: float | None = Field(default=None, gt=0)
    requests: int = Field(default=400, ge=20, le=20000)
    prompt: str = "lognormal:mean=1024,sd=512"
    output: str = "lognormal:mean=256,sd=128"
    policy: Literal["static", "continuous", "chunked", "disaggregated"] = "chunked"
    replicas: int = Field(default=1, ge=1)
    max_num_seqs: int = Field(default=256, ge=1)
    max_batched_tokens: int = Field(default=8192, ge=1)
    slo_ttft: float | str | None = None
    slo_tpot: float | str | None = None
    percentile: float = Field(default=99.0, gt=0, le=100)
    seed: int = 0

    @field_validator("slo_ttft", "slo_tpot")
    @classmethod
    def _seconds(cls, v):
        return positive(v, "time", "'2 s' or '100 ms'")


class WorkloadEntry(_Strict):
    """A model with one serving scenario; ``weight`` is its share in the objectives."""
    workload: str | dict = Field(description="library name, YAML path, or an inline model mapping")
    weight: float = Field(default=1.0, gt=0)
    batch: int | None = None
    prompt: int | None = None
    generate: int | None = None
    dtype: str | None = None
    tp: int | None = None
    pp: int | None = None
    dp: int | None = None
    ep: int | None = None
    attention: str | None = None
    microbatches: int | None = None
    ubatch: int | None = None
    compiled_context: int | None = None
    beams: int | None = None
    runtime: str | None = None
    serve: ServeSpec | None = None

    def scenario_fields(self) -> dict:
        return {k: getattr(self, k) for k in SCENARIO_FIELDS if getattr(self, k) is not None}


class Objective(_Strict):
    metric: str
    direction: Literal["minimize", "maximize"] | None = None

    @field_validator("metric")
    @classmethod
    def _known(cls, v):
        if v not in METRICS:
            raise ValueError(_unknown_metric(v))
        return v

    @property
    def sense(self) -> str:
        return self.direction or METRICS[self.metric][0]


class Bound(_Strict):
    max: int | float | str | None = None
    min: int | float | str | None = None

    @model_validator(mode="after")
    def _one(self):
        if self.max is None and self.min is None:
            raise ValueError("give 'max' and/or 'min'")
        return self


class SamplerSpec(_Strict):
    """``auto`` (the default) enumerates a discrete space that fits, else picks TPE or NSGA-II
    (codesign.search.samplers.choose_sampler); ``exhaustive`` insists on enumerating."""
    name: Literal["auto", "exhaustive", "tpe", "nsga2", "nsga3", "gp", "random", "grid"] = "auto"
    seed: int | None = 0
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("options")
    @classmethod
    def _enumeration_options(cls, v, info):
        name = info.data.get("name")
        if name in ("auto", "exhaustive"):
            for k, x in v.items():
                if k not in ENUMERATION_OPTIONS:
                    raise ValueError(f"{name} takes {', '.join(ENUMERATION_OPTIONS)}, not {k!r} "
                                     "(name a sampler to set its own options)")
                if isinstance(x, bool) or not isinstance(x, int) or x < 1:
                    raise ValueError(f"{k}: expected a positive integer, got {x!r}")
        return v


class StudySpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    description: str | None = None
    hardware: str | dict | list[str | dict]   # a list: the device itself is a choice (a 'hardware' dimension)
    space: dict[str, DimensionSpec] = Field(default_factory=dict)
    scale_with: dict[str, list[str]] | None = None
    compression: dict[str, DimensionSpec] = Field(default_factory=dict)
    serving: dict[str, DimensionSpec] = Field(default_factory=dict)    # SERVING_FIELDS
    # every design runs capped at this board power (power.limit: its clock drops above it), the
    # way a package or supply budget works, rather than designs above it being thrown away
    power_limit: float | str | None = None
    workloads: list[WorkloadEntry] = Field(min_length=1)
    objectives: list[Objective] = Field(min_length=1)
    constraints: dict[str, Bound | bool] = Field(default_factory=dict)
    sampler: SamplerSpec = SamplerSpec()
    trials: int = Field(default=100, gt=0)
    timeout: float | str | None = None
    batch: int | None = Field(default=None, gt=0)
    baseline: bool = False      # evaluate the base spec (uncompressed) as the study's first trial

    @field_validator("objectives", mode="before")
    @classmethod
    def _bare_names(cls, v):
        if isinstance(v, list):
            return [{"metric": o} if isinstance(o, str) else o for o in v]
        return v

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, v):
        for metric, bound in v.items():
            if metric == "fits":
                if bound is not True:
                    raise ValueError("fits: only 'fits: true' is meaningful (the model must fit in memory)")
                continue
            if metric not in METRICS:
                raise ValueError(_unknown_metric(metric))
            if isinstance(bound, bool):
                raise ValueError(f"{metric}: expected {{max: value}} and/or {{min: value}}")
            lo = metric_value(metric, bound.min, f"{metric}.min") if bound.min is not None else None
            hi = metric_value(metric, bound.max, f"{metric}.max") if bound.max is not None else None
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"{metric}: empty range: min ({bound.min}) is above max ({bound.max})")
        return v

    @field_validator("power_limit")
    @classmethod
    def _power_limit(cls, v):
        return positive(v, "power", "'5 W'")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v):
        return positive(v, "time", "'600 s'")

    @model_validator(mode="after")
    def _devices(self):
        if isinstance(self.hardware, list):
            if not self.hardware:
                raise ValueError("hardware: give a device, or a list of devices to choose from")
            names = [h if isinstance(h, str) else h.get("name") for h in self.hardware]
            if len(set(map(str, names))) != len(names):
                raise ValueError("hardware: a device is listed twice")
            if self.space:
                raise ValueError("space: a study that chooses among devices (a hardware list) cannot also change "
                                 "their figures; study one device's figures in a study of its own")
        return self

    @model_validator(mode="after")
    def _serving(self):
        for key in self.serving:
            if key not in SERVING_FIELDS:
                raise ValueError(f"serving.{key}: not a serving choice (known: {', '.join(SERVING_FIELDS)})")
        used = {o.metric for o in self.objectives} | set(self.constraints)
        serve = used & set(SERVE_METRICS)
        if "replicas" in self.serving and not serve:
            raise ValueError("serving.replicas: replicas only matter to serving metrics (give workloads a "
                             "'serve' block and use e.g. max_rate_under_slo)")
        for i, w in enumerate(self.workloads):
            if serve and w.serve is None:
                raise ValueError(f"workloads[{i}].serve: the study uses {sorted(serve)[0]}, a serving metric: "
                                 "every workload needs a serve block (rate, lengths, SLOs)")
            if w.serve is None:
                continue
            if serve & {"max_rate_under_slo", "max_rate_per_device"} and not (w.serve.slo_ttft or w.serve.slo_tpot):
                raise ValueError(f"workloads[{i}].serve: max_rate_under_slo needs slo_ttft and/or slo_tpot")
            at_rate = serve & {"goodput_req_per_s", "goodput_per_usd", "p99_ttft_s", "p99_tpot_s",
                               "serve_energy_per_token_j"}
            if at_rate and w.serve.rate is None:
                raise ValueError(f"workloads[{i}].serve.rate: {sorted(at_rate)[0]} is measured at a request rate")
        return self

    @model_validator(mode="after")
    def _names(self):
        seen = set()
        for o in self.objectives:
            if o.metric in seen:
                raise ValueError(f"objectives: {o.metric} is listed twice")
            seen.add(o.metric)
        both = set(self.space) & set(self.compression)
        if both:
            raise ValueError(f"compression: {sorted(both)[0]!r} is also a hardware space path")
        return self

    @property
    def timeout_s(self) -> float | None:
        return cast("float | None", self.timeout)  # already SI seconds after validation
