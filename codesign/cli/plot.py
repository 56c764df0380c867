"""``codesign plot <kind> ... --out FILE`` and ``codesign report ... --out report.html``.

Engine plots (roofline, compare, breakdown, sweep) take the same device, workload,
scenario and compression options as ``codesign eval``; study plots (pareto, history,
importance, parallel) take ``--study NAME|FILE [--storage URL]`` or ``--trials CSV``;
``validation`` takes the kernel runner's CSV. The format (PNG, SVG, PDF) comes from the
``--out`` extension, checked before any work is done.
"""
from __future__ import annotations

import shlex
from pathlib import Path

import click

from .. import plots
from .. import report as rep
from ..assess import evaluate_many, sweep_results
from ..errors import CodesignError
from ..io import read_csv_table
from ..search.load import load_trials, study_references
from .common import (
    build_compression,
    build_scenario,
    check_out,
    compression_options,
    scenario_options,
    split_names,
    split_rates,
)

_OUT = click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
                    help="Image file to write: .png, .svg or .pdf.")


def _engine_options(f):
    """--hardware --workload + the scenario and compression options of 'codesign eval'."""
    f = compression_options(f)
    f = scenario_options(f)
    f = click.option("--workload", "-w", required=True,
                     help="Library model name, YAML file or HF config.json (compare: comma-separated).")(f)
    f = click.option("--hardware", "-H", required=True,
                     help="Device name or YAML file; several comma-separated, e.g. h100-sxm,a100-80gb,l4.")(f)
    return f


def _study_options(f):
    f = click.option("--objectives", default=None,
                     help="Comma-separated objective metrics (default: the study's; required for a CSV "
                          "without values_ columns).")(f)
    f = click.option("--results-dir", default="results", show_default=True, type=click.Path(file_okay=False),
                     help="Folder of the default embedded study storages.")(f)
    f = click.option("--storage", default=None, metavar="URL", help="Where the study lives (as 'codesign study').")(f)
    f = click.option("--trials", "trials_csv", default=None, type=click.Path(dir_okay=False),
                     help="Trials CSV ('codesign study export' trials.csv, or Optuna's trials_dataframe).")(f)
    f = click.option("--study", "study_ref", default=None, metavar="NAME|FILE", help="A study by name or YAML file.")(f)
    return f


def _results(kwargs, *, multi_workload: bool = False):
    hardware = split_names(kwargs.pop("hardware"), "--hardware")
    workloads = split_names(kwargs.pop("workload"), "--workload")
    if len(workloads) > 1 and not multi_workload:
        raise CodesignError("this plot takes one workload", field="--workload")
    sc = build_scenario(kwargs)
    comp = build_compression(kwargs)
    return hardware, workloads, sc, comp, evaluate_many(hardware, workloads, sc, comp)


def _command_line(ctx) -> str:
    """The command that reproduces this run: its non-default options, in declaration order."""
    parts = ["codesign", ctx.command_path.split()[-1]]
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        if v is None or v == p.default or not p.opts:
            continue
        if getattr(p, "is_flag", False):
            parts.append(p.opts[0] if v else (p.secondary_opts or [p.opts[0]])[0])
        else:
            parts += [p.opts[0], shlex.quote(str(v))]
    return " ".join(parts)


def _written(path: Path) -> None:
    click.echo(f"wrote {path}")


@click.group("plot")
def plot():
    """Plots for showing a decision: rooflines, comparisons, breakdowns, sweeps, studies, validation.

    \b
    Examples:
      codesign plot compare --hardware h100-sxm,a100-80gb,l4 --workload llama-3.1-8b --out cmp.png
      codesign plot roofline --hardware h100-sxm --workload llama-3.1-8b --batch 8 --out roof.svg
      codesign plot breakdown --hardware h100-sxm --workload llama-3.1-8b --weight-bits 4 --out bd.pdf
      codesign plot sweep --hardware h100-sxm,l4 --workload llama-3.1-8b --over context --out ctx.png
      codesign plot pareto --study quickstart --reference h100-sxm --out front.png
      codesign plot validation --csv validation.csv --out val.png
    """


@plot.command("roofline")
@_engine_options
@click.option("--level", default=None, help="Memory level for arithmetic intensity (default: main memory).")
@_OUT
def roofline_cmd(out, level, **kwargs):
    """Operators of a scenario on the roofline of one device or several (overlaid)."""
    path = check_out(out)
    *_, rs = _results(kwargs)
    _written(plots.save(plots.roofline(rs, level=level), path))


@plot.command("compare")
@_engine_options
@click.option("--metrics", default=",".join(("ttft_s", "tpot_s", "throughput_tokens_per_s", "energy_per_token_j",
                                             "cost_per_mtok_usd")), show_default=True,
              help="Comma-separated summary metrics.")
@click.option("--kind", type=click.Choice(["auto", "bars", "heatmap"]), default="auto", show_default=True,
              help="Grouped bars, or a normalised heat map (auto: above 12 device-workload pairs).")
@_OUT
def compare_cmd(out, metrics, kind, **kwargs):
    """TTFT, time per token, throughput, energy and cost per token across devices (and workloads)."""
    path = check_out(out)
    ms = split_names(metrics, "--metrics")
    *_, rs = _results(kwargs, multi_workload=True)
    unknown = [m for m in ms if m not in rs[0].summary]
    if unknown:
        raise CodesignError(f"unknown metric {unknown[0]!r}; evaluate() gives "
                            f"{', '.join(k for k, v in rs[0].summary.items() if isinstance(v, (int, float)))}",
                            field="--metrics")
    _written(plots.save(plots.compare(rs, ms, kind=kind), path))


@plot.command("breakdown")
@_engine_options
@click.option("--share/--absolute", default=False, show_default=True,
              help="Shares of the phase time (%) on the axis instead of milliseconds per pass/step.")
@_OUT
def breakdown_cmd(out, share, **kwargs):
    """Time per phase (one panel per device and phase) by operator kind and by binding resource."""
    path = check_out(out)
    *_, rs = _results(kwargs)
    _written(plots.save(plots.breakdown(rs, normalize=share), path))


@plot.command("sweep")
@_engine_options
@click.option("--over", type=click.Choice(["batch", "context"]), default="batch", show_default=True,
              help="batch: throughput vs time per token; context: time per token vs prompt length.")
@click.option("--values", default=None,
              help="Comma-separated batch sizes or prompt lengths (default 1..128 / 128..32768, powers of 2).")
@_OUT
def sweep_cmd(out, over, values, **kwargs):
    """Throughput against latency over batch sizes, or time per token against context."""
    path = check_out(out)
    vals = None
    if values:
        try:
            vals = [int(v) for v in split_names(values, "--values")]
        except ValueError:
            raise CodesignError(f"expected comma-separated integers, got {values!r}", field="--values") from None
    hardware = split_names(kwargs.pop("hardware"), "--hardware")
    workload = kwargs.pop("workload")
    kwargs.pop("batch" if over == "batch" else "prompt")
    sc = build_scenario(kwargs)
    comp = build_compression(kwargs)
    rs = sweep_results(hardware, workload, sc, comp, over=over, values=vals)
    _written(plots.save(plots.sweep(rs, over=over), path))


def _trials(study_ref, storage, results_dir, trials_csv, objectives):
    objs = split_names(objectives, "--objectives") if objectives else None
    return load_trials(study_ref, storage, trials_csv, objs, results_dir)


@plot.command("pareto")
@_study_options
@click.option("--reference", default=None,
              help="Comma-separated real devices to mark, evaluated on the study's workloads (needs --study).")
@click.option("--no-base", is_flag=True, help="Do not mark the study's base device.")
@_OUT
def pareto_cmd(out, study_ref, trials_csv, storage, results_dir, objectives, reference, no_base):
    """Pareto front of a study (pairwise panels for 3+ objectives), with reference devices."""
    path = check_out(out)
    st = _trials(study_ref, storage, results_dir, trials_csv, objectives)
    refs = {}
    if st.study is not None and (reference or not no_base):
        refs = study_references(st.study, split_names(reference) if reference else (), include_base=not no_base)
        for name, why in refs.pop("_skipped", {}).items():
            click.echo(f"note: {name} not marked: {why}", err=True)
    elif reference:
        raise CodesignError("reference devices are evaluated on the study's workloads: give --study",
                            field="--reference")
    _written(plots.save(plots.pareto(st.trials, st.objectives, directions=st.directions, references=refs), path))


@plot.command("history")
@_study_options
@_OUT
def history_cmd(out, study_ref, trials_csv, storage, results_dir, objectives):
    """Objective values by trial number with the best so far."""
    path = check_out(out)
    st = _trials(study_ref, storage, results_dir, trials_csv, objectives)
    _written(plots.save(plots.history(st.trials, st.objectives, directions=st.directions), path))


@plot.command("importance")
@_study_options
@_OUT
def importance_cmd(out, study_ref, trials_csv, storage, results_dir, objectives):
    """Parameter importance per objective (Optuna's evaluators for a stored study; correlation for a CSV)."""
    path = check_out(out)
    st = _trials(study_ref, storage, results_dir, trials_csv, objectives)
    src, objs = (st.optuna_study, list(st.study.objectives)) if st.optuna_study is not None and not objectives \
        else (st.trials, st.objectives)
    _written(plots.save(plots.importance(src, objs, directions=None if src is not st.trials else st.directions),
                        path))


@plot.command("parallel")
@_study_options
@click.option("--params", default=None, help="Comma-separated parameters to show (default: all).")
@_OUT
def parallel_cmd(out, study_ref, trials_csv, storage, results_dir, objectives, params):
    """Parallel coordinates of parameters and objectives, one line per trial."""
    path = check_out(out)
    st = _trials(study_ref, storage, results_dir, trials_csv, objectives)
    ps = split_names(params, "--params") if params else None
    _written(plots.save(plots.parallel_coordinates(st.trials, st.objectives, directions=st.directions, params=ps),
                        path))


@plot.command("validation")
@click.option("--csv", "csv_path", required=True, type=click.Path(dir_okay=False),
              help="The kernel runner's table (codesign validate --csv): kernel, kind, phase, predicted_s, "
                   "measured_s, error_pct.")
@_OUT
def validation_cmd(out, csv_path):
    """Predicted against measured kernel times, and the error by kernel kind."""
    path = check_out(out)
    src = Path(csv_path)
    df = read_csv_table(src)
    try:
        fig = plots.validation(df)
    except CodesignError as e:
        raise CodesignError(e.message, file=src, field=e.field) from None
    _written(plots.save(fig, path))


# ---------------------------------------------------------------------------- report
@click.command("report")
@click.option("--hardware", "-H", default=None, help="Devices to compare, comma-separated.")
@click.option("--workload", "-w", default=None, help="Model(s) for a comparison, comma-separated.")
@scenario_options
@compression_options
@_study_options
@click.option("--reference", default=None, help="Study report: real devices to mark (comma-separated).")
@click.option("--sweeps/--no-sweeps", default=True, show_default=True, help="Comparison: batch and context sweeps.")
@click.option("--serve-rates", default=None,
              help="Comparison: also serve Poisson traffic at these request rates (comma-separated).")
@click.option("--slo-ttft", type=float, default=None, help="With --serve-rates: TTFT target, seconds.")
@click.option("--slo-tpot", type=float, default=None, help="With --serve-rates: time-per-token target, seconds.")
@click.option("--format", "fmt", type=click.Choice(["png", "svg"]), default="png", show_default=True,
              help="How figures are embedded.")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
def report(hardware, workload, study_ref, trials_csv, storage, results_dir, objectives, reference, sweeps, serve_rates,
           slo_ttft, slo_tpot, fmt, out, **kwargs):
    """One self-contained HTML report (figures embedded, opens offline) for a comparison or a study.

    \b
    Examples:
      codesign report --hardware h100-sxm,a100-80gb,l4 --workload llama-3.1-8b --out report.html
      codesign report --hardware h100-sxm,a100-80gb --workload llama-3.1-8b --serve-rates 2,8,16 --out r.html
      codesign report --study quickstart --reference h100-sxm --out study.html
    """
    path = check_out(out, ("html", "htm"))
    command = _command_line(click.get_current_context())
    if study_ref or trials_csv:
        if hardware or workload:
            raise CodesignError("give either --hardware/--workload (comparison) or --study/--trials (study)",
                                field="--study")
        st = _trials(study_ref, storage, results_dir, trials_csv, objectives)
        refs = {}
        if st.study is not None:
            refs = study_references(st.study, split_names(reference) if reference else ())
        html = rep.study_report(st, references=refs, fmt=fmt, command=command)
    else:
        if not hardware or not workload:
            raise CodesignError("a comparison report needs --hardware and --workload (or give --study)",
                                field="--hardware")
        hw = split_names(hardware, "--hardware")
        wls = split_names(workload, "--workload")
        sc = build_scenario(kwargs)
        comp = build_compression(kwargs)
        rs = evaluate_many(hw, wls, sc, comp)
        extra = ()
        if serve_rates:
            extra = (rep.serving_section(hw, wls[0], sc, comp, rates=split_rates(serve_rates, "--serve-rates"),
                                         slo_ttft=slo_ttft, slo_tpot=slo_tpot, fmt=fmt),)
        html = rep.comparison_report(rs, sweeps=sweeps, fmt=fmt, command=command, extra=extra)
    _written(rep.write_html(html, path))


COMMANDS = [plot, report]
