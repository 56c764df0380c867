"""``codesign workload list|show|import``."""
from __future__ import annotations

import click
import yaml

from ..errors import CodesignError
from ..workload import list_workloads, load_workload
from ..workload.hf import import_hf_config
from .common import check_writable, echo_json, echo_table


@click.group("workload")
def workload():
    """LLM workloads: list the library, show one, import a Hugging Face config.json."""


@workload.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(as_json):
    """List the built-in models with their sizes."""
    rows = []
    for m in list_workloads():
        rows.append({"name": m.name, "family": m.family or "", "arch": m.architecture,
                     "params (B)": round(m.param_count() / 1e9, 3),
                     "active (B)": round(m.param_count(active=True) / 1e9, 3),
                     "layers": m.num_layers, "hidden": m.hidden_size, "heads": m.num_heads,
                     "kv heads": m.kv_heads, "moe": f"{m.moe.num_experts}x top{m.moe.top_k}" if m.moe else ""})
    echo_json(rows) if as_json else echo_table(rows)


@workload.command("show")
@click.argument("ref")
def show_cmd(ref):
    """Show one model (library name, YAML or config.json) with derived parameter counts."""
    m = load_workload(ref)
    d = m.model_dump(exclude_none=True)
    d["derived"] = {"params": m.param_count(), "active_params": m.param_count(active=True),
                    "head_dim": m.hd, "kv_heads": m.kv_heads}
    echo_json(d)


@workload.command("import")
@click.argument("path", type=click.Path(dir_okay=True))
@click.option("--name", help="Name for the imported model (default: from the config or folder).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the workload YAML here.")
def import_cmd(path, name, out):
    """Import a Hugging Face config.json (file or model folder) from disk; no network."""
    check_writable(out)
    m = import_hf_config(path, name=name)
    text = yaml.safe_dump(m.model_dump(exclude_none=True, exclude_defaults=True), sort_keys=False)
    if out:
        try:
            with open(out, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise CodesignError(f"cannot write: {e.strerror}", file=out) from None
        click.echo(f"wrote {out} ({m.name}, {m.param_count() / 1e9:.3f} B parameters)")
    else:
        click.echo(text, nl=False)


COMMANDS = [workload]
