"""``codesign eval | compare | sweep``: thin layers over :func:`codesign.perf.evaluate`."""
from __future__ import annotations

import math

import click

from ..accuracy.bands import bands_for_summary
from ..assess import evaluate
from ..errors import CodesignError
from ..io import frame
from ..metrics import METRICS
from ..units import format_number, format_quantity
from .common import (
    build_compression,
    build_scenario,
    check_writable,
    compression_options,
    echo_json,
    echo_table,
    scenario_options,
    split_names,
    with_units,
)

# summary metrics shown in tables: labels and units from the one registry (codesign.metrics),
# then the rows that are not metrics
_OTHER_ROWS = {"fits": "fits", "bound": "bound", "quality_status": "quality source",
               "quant_gemm_sqnr_db": "GEMM SQNR dB (measured)"}
_SHOWN = [(k, _OTHER_ROWS[k], None) if k in _OTHER_ROWS else (k, METRICS[k].short, METRICS[k].dimension)
          for k in ("ttft_s", "tpot_s", "prefill_tokens_per_s", "decode_tokens_per_s", "throughput_tokens_per_s",
                    "e2e_latency_s", "energy_per_token_j", "avg_power_w", "peak_power_w", "memory_bytes", "capacity_bytes", "fits",
                    "min_devices", "bound", "cost_per_mtok_usd", "quality_ppl_increase_pct", "quality_status",
                    "quant_gemm_sqnr_db")]


# what a device that cannot hold the model cannot honestly show
_NEEDS_FIT = {"ttft_s", "tpot_s", "prefill_tokens_per_s", "decode_tokens_per_s", "throughput_tokens_per_s",
              "e2e_latency_s", "energy_per_token_j", "avg_power_w", "cost_per_mtok_usd"}


def _shown(key, row: dict, dim) -> str:
    """A table cell; timing and energy of a design that does not fit say so instead."""
    if key in _NEEDS_FIT and not bool(row.get("fits", True)):
        need = row.get("min_devices")
        return f"does not fit (needs {int(need)})" if isinstance(need, (int, float)) and need == need else "does not fit"
    return _fmt(key, row.get(key), dim)


# what a missing number means, per metric (instead of nan / inf in a table)
_NOT_A_NUMBER = {"cost_per_mtok_usd": "n/a (no price)", "quant_gemm_sqnr_db": "exact (not quantized)"}


def _fmt(key, value, dim):
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return _NOT_A_NUMBER.get(key, "no data")
    if dim:
        return format_quantity(value, dim)
    return format_number(value)


def _eval(hardware, workload, kwargs, measure: bool = False, **scenario_update):
    op = kwargs.pop("operating_point", None)
    dec = kwargs.pop("decode_hardware", None)
    sc = build_scenario(kwargs, **scenario_update)
    comp = build_compression(kwargs)
    return evaluate(hardware, workload, sc, comp, measure=measure, operating_point=op, decode_hardware=dec)


def _common(f):
    f = compression_options(f)
    f = scenario_options(f)
    f = click.option("--workload", "-w", required=True, help="Library model name, YAML file or HF config.json.")(f)
    return f


@click.command("eval")
@click.option("--hardware", "-H", required=True, help="Library device name or YAML file.")
@_common
@click.option("--operating-point", default=None, help="A DVFS point the spec declares.")
@click.option("--decode-hardware", default=None, help="Run decode on this device (disaggregated serving).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write the per-operator table here.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (summary + notes).")
@click.option("--ops/--no-ops", "show_ops", default=True, help="Show the per-operator breakdown.")
def eval_cmd(hardware, workload, csv_path, as_json, show_ops, **kwargs) -> None:
    """Evaluate one model scenario on one device: TTFT, time per token, tokens/s, energy, fit."""
    check_writable(csv_path)
    r = _eval(hardware, workload, kwargs, measure=True)
    if csv_path:
        r.ops.to_csv(csv_path, index=False)       # the per-operator table needs pandas: built only when asked
    if as_json:
        out = dict(r.summary)
        out.update(hardware=r.hardware.name, workload=r.model.name, scenario=r.scenario.model_dump(),
                   compression=r.compression.model_dump(exclude_defaults=True) if r.compression else None,
                   error_band=_bands(r))
        echo_json(out)
        return
    served = r.compression.distill_to if r.compression and r.compression.distill_to else None
    what = f"{served} (distilled from {r.model.title})" if served else r.model.title
    click.echo(f"{what} on {r.hardware.title}  (batch {r.scenario.batch}, prompt {r.scenario.prompt}, "
               f"generate {r.scenario.generate}, {r.scenario.dtype}, tp {r.scenario.tp}, pp {r.scenario.pp})")
    echo_table([{"metric": label, "value": _fmt(k, r.summary.get(k), dim)} for k, label, dim in _SHOWN
                if k in r.summary])
    if show_ops:
        # time per pass by operator kind and phase (plain Python: the table needs no pandas)
        total: dict = {}
        for row in r.op_rows():
            key = (row["phase"], row["kind"])
            total[key] = total.get(key, 0.0) + row["total_s"]
        per_phase: dict = {}
        for (phase, _), t in total.items():
            per_phase[phase] = per_phase.get(phase, 0.0) + t
        if total:
            click.echo("")
            click.echo("time per pass by operator kind (decode: one step at the mean context):")
            echo_table([{"phase": phase, "kind": kind, "time": format_quantity(t, "time"),
                         "share": f"{100 * t / per_phase[phase]:.1f}%" if per_phase[phase] else "-"}
                        for (phase, kind), t in total.items()])
    for n in r.notes:
        click.echo(f"note: {n}")


def _bands(r) -> dict:
    """p10-p90 band per metric from the cross-validated residuals of published measurements."""
    return bands_for_summary(r.summary, r.hardware.device_class, r.scenario.runtime)


@click.command("compare")
@click.option("--hardware", "-H", required=True, help="Comma-separated devices, e.g. h100-sxm,a100-80gb,l4.")
@_common
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write the comparison table here.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def compare_cmd(hardware, workload, csv_path, as_json, **kwargs):
    """The same scenario on several devices, side by side."""
    check_writable(csv_path)
    rows, bands = [], []
    for ref in split_names(hardware):
        r = _eval(ref, workload, dict(kwargs))
        rows.append({"hardware": r.hardware.name, **r.summary})
        bands.append(_bands(r))
    if csv_path:
        frame(rows).to_csv(csv_path, index=False)
    if as_json:
        echo_json([dict(row, error_band=b) for row, b in zip(rows, bands)])
        return
    table = [{"metric": label, **{row["hardware"]: _shown(k, row, dim) for row in rows}}
             for k, label, dim in _SHOWN if k in rows[0]]
    echo_table(table)


@click.command("sweep")
@click.option("--hardware", "-H", required=True, help="Comma-separated devices.")
@_common
@click.option("--over", type=click.Choice(["batch", "prompt", "generate"]), default="batch", show_default=True,
              help="Scenario field to sweep.")
@click.option("--values", default="1,2,4,8,16,32,64", show_default=True, help="Comma-separated values.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write the sweep table here.")
@click.option("--json", "as_json", is_flag=True)
def sweep_cmd(hardware, workload, over, values, csv_path, as_json, **kwargs):
    """Sweep batch size or context length: throughput against latency."""
    check_writable(csv_path)
    try:
        vals = [int(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise CodesignError(f"expected comma-separated integers, got {values!r}", field="--values") from None
    kwargs.pop(over, None)
    rows = []
    for ref in split_names(hardware):
        for v in vals:
            r = _eval(ref, workload, dict(kwargs), **{over: v})
            s = r.summary
            rows.append({"hardware": r.hardware.name, over: v, "ttft_s": s["ttft_s"], "tpot_s": s["tpot_s"],
                         "decode_tokens_per_s": s["decode_tokens_per_s"],
                         "throughput_tokens_per_s": s["throughput_tokens_per_s"],
                         "energy_per_token_j": s["energy_per_token_j"], "memory_bytes": s["memory_bytes"],
                         "fits": s["fits"], "bound": s["bound"]})
    if csv_path:
        frame(rows).to_csv(csv_path, index=False)
    if as_json:
        echo_json(rows)
    else:
        echo_table(with_units(rows))


COMMANDS = [eval_cmd, compare_cmd, sweep_cmd]
