"""``codesign hardware list|show|check``."""
from __future__ import annotations

import click

from ..errors import CodesignError
from ..hardware import list_hardware, load_hardware
from ..hardware.classes import CLASSES
from ..units import format_quantity, format_rate
from .common import echo_json, echo_table


@click.group("hardware")
def hardware():
    """Hardware specs: list the library, show one, check your own YAML files."""


def _row(s) -> dict:
    mem = s.main_memory()
    best = max((s.matrix_peak(d) or 0, d) for d in s.matrix_dtypes()) if s.matrix_dtypes() else (0, "-")
    bf16 = s.matrix_peak("bf16") or s.matrix_peak("fp16")
    return {
        "name": s.name, "class": s.device_class, "vendor": s.vendor or "",
        "bf16/fp16": format_quantity(bf16, "rate") if bf16 else "-",
        "best peak": f"{format_rate(best[0], best[1].startswith('int'))} {best[1]}" if best[0] else "-",
        "memory": f"{format_quantity(mem.capacity, 'bytes')} {mem.name}",
        "bandwidth": format_quantity(mem.bandwidth, "bandwidth"),
        "TDP": format_quantity(s.power.tdp, "power") if s.power.tdp else "-",
    }


@hardware.command("list")
@click.option("--class", "device_class", type=click.Choice(list(CLASSES)), help="Only this class.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(device_class, as_json):
    """List the built-in devices with their key figures."""
    specs = [s for s in list_hardware() if not device_class or s.device_class == device_class]
    rows = [_row(s) for s in specs]
    echo_json(rows) if as_json else echo_table(rows)


@hardware.command("show")
@click.argument("ref")
def show_cmd(ref):
    """Show one spec (library name or YAML file) in full, with SI values."""
    s = load_hardware(ref)
    echo_json(s.model_dump(by_alias=True, exclude_none=True))


@hardware.command("check")
@click.argument("files", nargs=-1, required=True)
@click.option("--strict", is_flag=True, help="Also fail on figures that cite no source.")
def check_cmd(files, strict):
    """Validate hardware YAML files; one line per problem, exit 2 on any."""
    bad = 0
    for f in files:
        try:
            s = load_hardware(f)
        except CodesignError as e:
            click.echo(f"error: {e}", err=True)
            bad += 1
            continue
        missing = s.unsourced()
        if missing:
            msg = f"{f}: {len(missing)} figure(s) cite no source: {', '.join(missing[:6])}" + (" ..." if len(missing) > 6 else "")
            click.echo(("error: " if strict else "warning: ") + msg, err=True)
            bad += strict
            if strict:
                continue
        click.echo(f"ok: {f} ({s.name}, {s.device_class})")
    if bad:
        raise SystemExit(2)


COMMANDS = [hardware]
