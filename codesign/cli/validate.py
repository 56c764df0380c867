"""``codesign calibrate`` and ``codesign validate``: measure this machine, check the model against it."""
from __future__ import annotations

import math

import click

from .. import plots
from ..errors import CodesignError
from ..hardware import load_hardware
from ..validate.calibrate import calibrate as measure_machine
from ..validate.calibrate import write_spec
from ..validate.compare import LONG_KERNEL_S
from ..validate.compare import validate as validate_kernels
from ..validate.e2e import run_e2e, validation_rows
from .common import check_writable, echo_json, echo_table

_BACKEND = click.option("--backend", type=click.Choice(["numpy", "torch"]), default="numpy", show_default=True,
                        help="Kernel library to run.")
_DEVICE = click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
                       help="Where the torch backend runs (numpy: cpu only).")
_THREADS = click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
                        help="BLAS / torch intra-op threads (single thread is the reference setting).")
_DTYPE = click.option("--dtype", type=click.Choice(["fp32", "fp64", "fp16", "bf16"]), default="fp32",
                      show_default=True, help="Datatype of the kernels (profiles / validation).")


def _log(quiet: bool):
    return (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))


@click.command("calibrate")
@_BACKEND
@_DEVICE
@_THREADS
@_DTYPE
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Hardware YAML to write.")
@click.option("--quick", is_flag=True, help="Tiny sizes and time caps (seconds; for tests, not for use).")
@click.option("--repeat", type=click.IntRange(1, 9), default=1, show_default=True,
              help="Calibrate N times and keep each figure's median.")
@click.option("--datasheet", default="auto", show_default=True,
              help="Library spec whose figures bound a GPU calibration (auto: by the GPU's name; none: no check).")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def calibrate(backend, device, threads, dtype, out, quick, repeat, datasheet, quiet):
    """Measure this machine with real kernels and write a hardware spec (class cpu, or gpu for cuda).

    \b
    Example:
      codesign calibrate --out host.yaml
      codesign validate --hardware host.yaml
    """
    spec = measure_machine(backend=backend, device=device, threads=threads, dtype=dtype, quick=quick,
                           repeat=repeat, log=_log(quiet), datasheet=datasheet)
    write_spec(spec, out)
    load_hardware(out)          # what we wrote must load
    click.echo(f"wrote {out} ({spec['name']})")


@click.command("validate")
@click.option("--hardware", "hardware", required=True, help="Calibrated spec (YAML file or library name).")
@_BACKEND
@_DEVICE
@_THREADS
@_DTYPE
@click.option("--shapes", type=click.Choice(["quick", "full", "gpu"]), default="quick", show_default=True,
              help="Shape set (real model dimensions; see codesign.validate.compare.SHAPE_SETS).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write per-kernel rows as CSV.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Predicted-vs-measured PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-blocks", is_flag=True, help="Skip the whole transformer-block runs.")
@click.option("--max-time", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Seconds of sampling per kernel at most.")
@click.option("--any-spec", is_flag=True,
              help="Compare against a spec that codesign calibrate did not measure on this machine.")
@click.option("--e2e", is_flag=True, help="Run a whole decoder (torch) and compare TTFT, TPOT and energy per token.")
@click.option("--workload", help="--e2e: the model (library name or YAML).")
@click.option("--runtime", default="pytorch-graphs", show_default=True,
              help="--e2e: runtime profile the prediction uses (the harness runs eager kernels, CUDA-graph decode).")
@click.option("--grid", default="1x512,8x1024", show_default=True,
              help="--e2e: batch x prompt points, comma-separated (e.g. 1x512,16x2048).")
@click.option("--generate", type=click.IntRange(min=2), default=128, show_default=True,
              help="--e2e: generated tokens per request.")
@click.option("--layers", type=click.IntRange(min=1), help="--e2e: run (and predict) only the first N layers.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def validate(hardware, backend, device, threads, dtype, shapes, csv_path, plot_path, as_json, no_blocks,
             max_time, any_spec, e2e, workload, runtime, grid, generate, layers, quiet):
    """Predict each kernel with the engine, measure it with the runner, report the errors.

    With --e2e: build the decoder of --workload in torch, time prefill and CUDA-graph decode
    over --grid, read board power, and compare with the prediction for --hardware.

    The last line reads `overall MAPE: X.X%`.
    """
    if e2e:
        return _validate_e2e(hardware, workload, runtime, device, dtype, grid, generate, layers, csv_path, plot_path,
                             as_json, quiet)
    check_writable(csv_path, plot_path)
    spec = load_hardware(hardware)
    # the runner times *this* machine: predictions for another device would be compared with it
    if not any_spec and "codesign calibrate" not in (spec.notes or ""):
        raise CodesignError(f"{spec.name} was not measured on this machine by codesign calibrate, so its "
                            "predictions cannot be checked against this machine's kernels: run "
                            "`codesign calibrate --out host.yaml` and validate that (or pass --any-spec)",
                            field="--hardware")
    df, rep = validate_kernels(hardware, backend=backend, device=device, dtype=dtype, threads=threads, shapes=shapes,
                               max_time=max_time, blocks=not no_blocks, log=_log(quiet or as_json))
    if csv_path:
        df.to_csv(csv_path, index=False)
    if plot_path and len(df):
        plots.save(plots.validation(df), plot_path)
    if as_json:
        echo_json({**rep, "rows": df.to_dict("records")})
        return
    if len(df):
        cols = ["kernel", "shape", "predicted_s", "measured_s", "error_pct", "bound"]
        echo_table([{c: r[c] for c in cols} for r in df.to_dict("records")], cols)
        click.echo("")
        echo_table([{"class": k, **v} for k, v in rep["per_class"].items()])
    if rep["blocks"]:
        click.echo("")
        echo_table([{c: b[c] for c in ("kernel", "predicted_s", "measured_s", "error_pct")} for b in rep["blocks"]])
    click.echo("")
    if abs(rep["drift_pct"]) > 10:
        click.echo(f"warning: the reference kernels drifted {rep['drift_pct']:+.1f}% during the run: "
                   "conditions changed; rerun on a quiet machine")
    if rep.get("busy_kernels"):
        click.echo(f"warning: {rep['busy_kernels']} kernel(s) measured while other processes used > 0.5 core")
    if len(df):
        click.echo(f"median signed error: {rep['median_signed_pct']:+.1f}%; within 10%: "
                   f"{rep['within_10pct']:.0%}; within 25%: {rep['within_25pct']:.0%}; "
                   f"{rep['kernels']} kernels, {backend}/{device} {dtype}, {threads} thread(s)")
    if rep.get("long_matrix_kernels"):
        click.echo(f"GEMM and attention kernels of >= {LONG_KERNEL_S * 1e6:.0f} us: MAPE {rep['long_matrix_mape_pct']:.1f}% "
                   f"({rep['long_matrix_kernels']} kernels)")
    mape = rep["overall_mape_pct"]
    click.echo(f"overall MAPE: {mape:.1f}%" if not math.isnan(mape) else "overall MAPE: n/a")


def _parse_grid(text: str) -> list[tuple[int, int]]:
    points = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        parts = item.lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise CodesignError(f"--grid: expected BATCHxPROMPT points like 1x512,16x2048, got {item!r}", field="--grid")
        points.append((int(parts[0]), int(parts[1])))
    if not points:
        raise CodesignError("--grid: no points given", field="--grid")
    return points


def _validate_e2e(hardware, workload, runtime, device, dtype, grid, generate, layers, csv_path, plot_path, as_json, quiet):
    if not workload:
        raise CodesignError("--e2e needs --workload (a library model name or YAML)", field="--workload")
    check_writable(csv_path, plot_path)
    df, rep = run_e2e(workload, hardware, runtime=runtime, device=device, dtype=dtype, grid=_parse_grid(grid),
                      generate=generate, layers=layers, log=_log(quiet or as_json))
    if csv_path:
        df.to_csv(csv_path, index=False)
    if plot_path and len(df):
        plots.save(plots.validation(validation_rows(df), title=f"{rep.get('model')} on {rep.get('hardware')}"), plot_path)
    if as_json:
        echo_json({**rep, "rows": df.to_dict("records")})
        return
    cols = ["batch", "prompt", "ttft_measured_s", "ttft_predicted_s", "ttft_error_pct", "tpot_measured_s",
            "tpot_predicted_s", "tpot_error_pct", "energy_per_token_measured_j", "energy_per_token_predicted_j",
            "energy_error_pct"]
    echo_table([{c: r[c] for c in cols} for r in df.to_dict("records")], cols)
    click.echo("")
    for m in ("ttft", "tpot", "energy"):
        v = rep.get(f"{m}_mape_pct", float("nan"))
        click.echo(f"{m} MAPE: {v:.1f}%" if v == v else f"{m} MAPE: n/a (not measured)")


COMMANDS = [calibrate, validate]
