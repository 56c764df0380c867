"""The ``codesign`` command line: a thin layer over the Python API.

Every sub-command lives in its own module and registers itself on ``main``.
Bad input (a :class:`codesign.errors.CodesignError`) prints one line and exits 2.
"""
from __future__ import annotations

import importlib
import sys

import click

from ..errors import CodesignError

SUBCOMMAND_MODULES = ("hardware", "workload", "evaluate", "serve", "study", "validate", "plot", "report", "accuracy")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


for _name in SUBCOMMAND_MODULES:
    try:
        _mod = importlib.import_module(f".{_name}", __name__)
    except ModuleNotFoundError as _e:  # a sub-command module not written yet
        if _e.name != f"{__name__}.{_name}":
            raise
        continue
    for _cmd in getattr(_mod, "COMMANDS", ()):
        main.add_command(_cmd)


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
        import os
        if os.environ.get("CODESIGN_DEBUG"):
            raise
        click.echo(f"internal error: {type(e).__name__}: {e} (set CODESIGN_DEBUG=1 for the traceback; "
                   "please report it)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    run()
