"""The ``codesign`` command line: a thin layer over the Python API.

Every sub-command lives in a module of this package, which lists its commands in
``COMMANDS``; :data:`SUBCOMMANDS` says which module holds which command, and a module is
imported only when one of its commands runs: each module imports what it uses at its top,
and ``codesign eval`` loads the engine, not Optuna, matplotlib or the kernel runner.
Bad input (a :class:`codesign.errors.CodesignError`) prints one line and exits 2.
"""
from __future__ import annotations

import importlib
import os
import sys

import click

from ..errors import CodesignError

# command -> (the module of codesign.cli that defines it, its one-line help: the first line of
# the command's docstring, here so that `codesign --help` imports no command module)
SUBCOMMANDS = {
    "accuracy": ("accuracy", "Predict every row of a measurements CSV and report MAPE and bias by group."),
    "calibrate": ("validate", "Measure this machine with real kernels and write a hardware spec (class cpu, or gpu "
                              "for cuda)."),
    "compare": ("evaluate", "The same scenario on several devices, side by side."),
    "eval": ("evaluate", "Evaluate one model scenario on one device: TTFT, time per token, tokens/s, energy, fit."),
    "fit": ("accuracy", "Fit a runtime's free figures by robust least squares in log space, with the "
                        "leave-one-publisher-out error printed next to the in-sample one."),
    "hardware": ("hardware", "Hardware specs: list the library, show one, check your own YAML files."),
    "plot": ("plot", "Plots for showing a decision: rooflines, comparisons, breakdowns, sweeps, studies, validation."),
    "report": ("plot", "One self-contained HTML report (figures embedded, opens offline) for a comparison or a "
                       "study."),
    "runtime": ("accuracy", "Software stacks (runtimes/): list, show."),
    "serve": ("serve", "Serve request traffic: latency percentiles, throughput, goodput under SLOs, energy, cost."),
    "study": ("study", "Optimisation studies: tune chip parameters and compression with Optuna."),
    "sweep": ("evaluate", "Sweep batch size or context length: throughput against latency."),
    "validate": ("validate", "Predict each kernel with the engine, measure it with the runner, report the errors."),
    "workload": ("workload", "LLM workloads: list the library, show one, import a Hugging Face config.json."),
}


class _Commands(click.Group):
    """A group whose commands are imported from their module when asked for (SUBCOMMANDS)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in SUBCOMMANDS:
            return None
        commands = importlib.import_module(f"{__name__}.{SUBCOMMANDS[cmd_name][0]}").COMMANDS
        return next(c for c in commands if c.name == cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The list in ``codesign --help``, from SUBCOMMANDS (cut as click cuts it), importing
        no command module."""
        limit = formatter.width - 6 - max(map(len, SUBCOMMANDS))
        with formatter.section("Commands"):
            formatter.write_dl([(name, click.Command(name, help=SUBCOMMANDS[name][1]).get_short_help_str(limit))
                                for name in self.list_commands(ctx)])


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="codesign")
def main():
    """codesign: choose or design a chip for LLM inference, and the compression to fit it.

    \b
    Examples:
      codesign hardware list
      codesign eval --hardware h100-sxm --workload llama-3.1-8b --batch 8 --prompt 1024 --generate 256
      codesign compare --hardware h100-sxm,a100-80gb,l4 --workload llama-2-7b
      codesign study run studies/quickstart.yaml
    """


def run(argv=None):
    """Entry point: one clean line and exit 2 for bad input, never a bare traceback."""
    try:
        main.main(args=argv, prog_name="codesign", standalone_mode=False)
    except CodesignError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:      # one line: the command, what was wrong, where help is
        where = e.ctx.command_path if e.ctx is not None else "codesign"
        click.echo(f"error: {where}: {e.format_message()} (see '{where} --help')", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(2 if e.exit_code == 2 else e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as e:   # a bug, not bad input: one line, the traceback on request
        if os.environ.get("CODESIGN_DEBUG"):
            raise
        click.echo(f"internal error: {type(e).__name__}: {e} (set CODESIGN_DEBUG=1 for the traceback; "
                   "please report it)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    run()
