"""The one registry of metrics: what each number codesign reports is, in one table.

Every metric that an evaluation, a served run or a study produces is named here once:
its label (long, for plots and reports; short, for CLI tables), the units dimension of its
SI value (for parsing bounds such as ``5 W`` and for formatting with adaptive prefixes),
which way is better, how plots scale it, and where it comes from:

- ``summary``: ``codesign.perf.evaluate`` (one scenario on one device or group);
- ``design``: a study's design models (area/cost, quality, the worst workload's power);
- ``serve``: the serving simulator (``codesign.serve``), per design in a study.

Study objectives and constraints, CLI tables, plots and the report read this table; adding
a metric is one row here plus the code that computes it.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal


@dataclass(frozen=True)
class Metric:
    name: str
    label: str                              # "Time to first token"
    short: str                              # "TTFT" (CLI tables)
    dimension: str | None                   # codesign.units dimension of the SI value; None: a plain number
    direction: Literal["minimize", "maximize"]
    group: Literal["summary", "design", "serve"]
    plot_unit: str                          # the unit plot axes show
    plot_factor: float = 1.0                # SI value x factor = the plotted value


def _m(name, label, short, dimension, direction, group, plot_unit, plot_factor=1.0) -> Metric:
    return Metric(name, label, short, dimension, direction, group, plot_unit, plot_factor)


_GIB = 2.0**-30
_TABLE = (
    # -- one evaluation (codesign.perf.evaluate)
    _m("ttft_s", "Time to first token", "TTFT", "time", "minimize", "summary", "ms", 1e3),
    _m("tpot_s", "Time per output token", "time/token", "time", "minimize", "summary", "ms", 1e3),
    _m("e2e_latency_s", "End-to-end latency", "e2e latency", "time", "minimize", "summary", "s"),
    _m("prefill_tokens_per_s", "Prefill throughput", "prefill tok/s", None, "maximize", "summary", "tokens/s"),
    _m("decode_tokens_per_s", "Decode throughput", "decode tok/s", None, "maximize", "summary", "tokens/s"),
    _m("decode_tokens_per_s_per_request", "Decode speed per request", "decode tok/s/request", None, "maximize",
       "summary", "tokens/s"),
    _m("prefill_tokens_per_s_per_request", "Prefill speed per request", "prefill tok/s/request", None, "maximize",
       "summary", "tokens/s"),
    _m("throughput_tokens_per_s", "Throughput", "throughput tok/s", None, "maximize", "summary",
       "generated tokens/s"),
    _m("kv_transfer_s", "KV-cache transfer", "KV transfer", "time", "minimize", "summary", "ms", 1e3),
    _m("energy_j", "Energy per batch", "energy/batch", "energy", "minimize", "summary", "J"),
    _m("energy_per_token_j", "Energy per token", "energy/token", "energy", "minimize", "summary", "mJ/token", 1e3),
    _m("avg_power_w", "Average power per device", "avg power/device", "power", "minimize", "summary", "W"),
    _m("peak_power_w", "Peak power per device (the busiest phase)", "peak power/device", "power", "minimize",
       "summary", "W"),
    _m("memory_bytes", "Memory per device", "memory/device", "bytes", "minimize", "summary", "GiB", _GIB),
    _m("weight_bytes", "Weights per device", "weights/device", "bytes", "minimize", "summary", "GiB", _GIB),
    _m("kv_bytes", "KV cache per device", "KV cache/device", "bytes", "minimize", "summary", "GiB", _GIB),
    _m("activation_bytes", "Activations per device", "activations/device", "bytes", "minimize", "summary", "GiB",
       _GIB),
    _m("capacity_bytes", "Memory capacity", "capacity/device", "bytes", "maximize", "summary", "GiB", _GIB),
    _m("min_devices", "Devices needed to fit", "min devices", None, "minimize", "summary", "devices"),
    _m("devices", "Devices", "devices", None, "minimize", "summary", "devices"),
    # -- a study's design models
    _m("area_mm2", "Die area", "area", "area", "minimize", "design", "mm²"),
    _m("die_cost_usd", "Die cost", "die cost", "money", "minimize", "design", "USD"),
    _m("chip_cost_usd", "Chip cost", "chip cost", "money", "minimize", "design", "USD"),
    _m("power_w", "Power", "power", "power", "minimize", "design", "W"),
    _m("cost_per_mtok_usd", "Cost per million tokens", "cost / M tokens", "money", "minimize", "design", "USD/Mtok"),
    _m("quality_ppl_increase_pct", "Perplexity increase", "ppl increase %", None, "minimize", "design", "%"),
    # -- the serving simulator
    _m("max_rate_under_slo", "Highest request rate within the SLOs", "max rate", None, "maximize", "serve",
       "requests/s"),
    _m("max_rate_per_device", "Highest rate within the SLOs per device", "max rate/device", None, "maximize",
       "serve", "requests/s"),
    _m("goodput_req_per_s", "Goodput", "goodput", None, "maximize", "serve", "requests/s"),
    _m("goodput_per_usd", "Requests within the SLOs per USD", "requests/USD", None, "maximize", "serve",
       "requests/USD"),
    _m("p99_ttft_s", "TTFT, p99", "TTFT p99", "time", "minimize", "serve", "ms", 1e3),
    _m("p99_tpot_s", "Time per output token, p99", "TPOT p99", "time", "minimize", "serve", "ms", 1e3),
    _m("serve_energy_per_token_j", "Energy per token served", "energy/token", "energy", "minimize", "serve",
       "mJ/token", 1e3),
)
METRICS: MappingProxyType = MappingProxyType({m.name: m for m in _TABLE})


def in_group(group: str) -> dict[str, Metric]:
    """The metrics of one group, in table order."""
    return {m.name: m for m in _TABLE if m.group == group}


# units of a column that is not in the table, read from its suffix (display only)
_SUFFIX_UNITS = (("_s", "s"), ("_j", "J"), ("_w", "W"), ("_bytes", "B"), ("_usd", "USD"), ("_pct", "%"),
                 ("_mm2", "mm²"), ("_per_s", "1/s"))


def bare(column: str) -> str:
    """A metric's name from a trials-table column: 'values_tpot_s' / 'user_attrs_tpot_s' -> 'tpot_s'."""
    for pre in ("values_", "user_attrs_"):
        if column.startswith(pre):
            return column[len(pre):]
    return column


def display(name: str) -> tuple[str, str, float]:
    """(label, plot unit, factor from the SI value to the plotted one) of a metric or of a
    column named like one; a name outside the table gets its unit from its suffix."""
    name = bare(name)
    if name in METRICS:
        m = METRICS[name]
        return m.label, m.plot_unit, m.plot_factor
    for suf, unit in _SUFFIX_UNITS:
        if name.endswith(suf):
            return name[: -len(suf)].replace("_", " "), unit, 1.0
    return name.replace("_", " "), "as exported", 1.0


def direction(name: str) -> str:
    """'minimize' or 'maximize' for a metric (a rate outside the table is maximised)."""
    m = METRICS.get(bare(name))
    if m is not None:
        return m.direction
    return "maximize" if "per_s" in name else "minimize"
