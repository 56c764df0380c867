"""Reading YAML safely, validating it into spec objects, and finding library entries.

Used by hardware, workload and study loading alike, so every kind of input gets
the same one-line errors: ``file: field.path: what was expected``.
"""
from __future__ import annotations

import copy
import csv
import difflib
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

from .errors import CodesignError, from_pydantic

if TYPE_CHECKING:
    import pandas as pd

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent


def data_dir(name: str) -> Path:
    """Folder of a built-in library ('hardware_specs', 'workloads', 'runtimes', 'studies', 'data').

    Installed wheels carry them under codesign/_data; a source checkout has them
    at the repository root.
    """
    for cand in (PACKAGE_DIR / "_data" / name, REPO_DIR / name):
        if cand.is_dir():
            return cand
    return REPO_DIR / name


def read_text(path) -> str:
    """A text file's content, or one clear error line naming the file."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CodesignError("file not found", file=path) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise CodesignError(f"cannot read: {e.__class__.__name__}", file=path) from None


def pandas():
    """The pandas module, imported on first use: the one lazy import point for it. Importing
    pandas takes ~0.25 s, as long as the whole of ``codesign eval`` may, and the engine needs
    no table unless one is asked for (``Result.ops``, ``--csv``); modules above the engine
    that always work with tables import pandas at module level."""
    import pandas as pd  # lazy on purpose: startup time of `codesign eval` (see the docstring)
    return pd


def frame(rows: list[dict]) -> pd.DataFrame:
    """A list of dicts (one per row) as a pandas DataFrame, pandas imported on first use."""
    return pandas().DataFrame(rows)


def read_csv_table(path, max_bytes: int | None = None, max_rows: int | None = None) -> pd.DataFrame:
    """A CSV file as a pandas DataFrame, or one clear error line naming the file; ``max_bytes``
    refuses a larger file before reading it, ``max_rows`` reads at most that many rows."""
    path = Path(path)
    if not path.is_file():
        raise CodesignError("file not found", file=path)
    if max_bytes is not None and path.stat().st_size > max_bytes:
        raise CodesignError(f"the file is over {max_bytes / 2**20:.0f} MiB", file=path)
    try:
        return pandas().read_csv(path, nrows=max_rows)
    except (ValueError, UnicodeDecodeError) as e:
        raise CodesignError(f"cannot read as CSV ({type(e).__name__})", file=path) from None


def write_csv_rows(path, rows: list[dict]) -> None:
    """Rows (dicts sharing keys) as a CSV file; one clear error line when it cannot be written."""
    path = Path(path)
    try:
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
            w.writeheader()
            w.writerows(rows)
    except OSError as e:
        raise CodesignError(f"cannot write: {e.strerror}", file=path) from None


MAX_YAML_BYTES = 4_000_000      # a spec, workload, study or runtime is kilobytes; refuse a runaway file


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's safe loader when the wheel has it (about 10x faster than the pure-Python
    one), refusing anchors/aliases (a few lines of aliases expand to gigabytes once
    validated or printed) and duplicate keys (the last would silently win)."""

    def construct_object(self, node, deep=False):
        if node in self.constructed_objects or node in self.recursive_objects:
            raise yaml.constructor.ConstructorError(None, None, "anchors and aliases (&name / *name) are not "
                                                    "allowed: write the value out", node.start_mark)
        return super().construct_object(node, deep)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is not None and key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}",
                                                            key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


_PARSED: dict = {}          # (path, mtime_ns, size) -> parsed mapping; callers get deep copies
_PARSED_MAX = 512


def read_yaml(path) -> dict:
    """Load a YAML mapping with the safe loader (no object construction). Parsed files are
    kept by (path, modification time, size), so re-reading an unchanged spec costs a copy."""
    path = Path(path)
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    if key in _PARSED:
        return copy.deepcopy(_PARSED[key])
    if key is not None and key[2] > MAX_YAML_BYTES:
        raise CodesignError(f"file is {key[2] / 1e6:.1f} MB; a YAML input is expected under "
                            f"{MAX_YAML_BYTES / 1e6:.0f} MB", file=path)
    text = read_text(path)
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise CodesignError(f"{where}YAML syntax error: {problem}", file=path) from None
    if not isinstance(data, dict):
        raise CodesignError(f"expected a YAML mapping at the top level, got {type(data).__name__}", file=path)
    if key is not None:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = copy.deepcopy(data)
    return data


def validate(model, data: dict, file=None):
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise from_pydantic(e, file) from None


@lru_cache(maxsize=8)
def _index(kind: str, extra: str | None) -> dict[str, Path]:
    """name -> file for every YAML in the library folder (and CODESIGN_*_PATH folders)."""
    folders = [data_dir(kind)]
    if extra:
        folders += [Path(p) for p in extra.split(os.pathsep) if p]
    out: dict[str, Path] = {}
    for folder in folders:
        for f in sorted(folder.rglob("*.yaml")):
            try:
                data = yaml.load(f.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 - a safe loader
            except (yaml.YAMLError, OSError, UnicodeDecodeError):
                data = None
            name = data.get("name", f.stem) if isinstance(data, dict) else f.stem
            out.setdefault(str(name), f)
            out.setdefault(f.stem, f)
    return out


def library(kind: str) -> dict[str, Path]:
    env = {"hardware_specs": "CODESIGN_HARDWARE_PATH", "workloads": "CODESIGN_WORKLOAD_PATH",
           "studies": "CODESIGN_STUDY_PATH", "runtimes": "CODESIGN_RUNTIME_PATH"}.get(kind)
    return _index(kind, os.environ.get(env) if env else None)


def resolve(kind: str, ref, what: str) -> Path:
    """A library name or a file path -> the YAML file; unknown names suggest close matches."""
    ref_s = str(ref)
    p = Path(ref_s)
    if p.suffix in (".yaml", ".yml", ".json") or os.sep in ref_s or p.is_file():
        if not p.is_file():
            raise CodesignError("file not found", file=p)
        return p
    lib = library(kind)
    if ref_s in lib:
        return lib[ref_s]
    lowered = {k.lower(): v for k, v in lib.items()}
    if ref_s.lower() in lowered:
        return lowered[ref_s.lower()]
    close = difflib.get_close_matches(ref_s.lower(), list(lowered), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; see 'codesign {what} list'"
    raise CodesignError(f"unknown {what} {ref_s!r}{hint}")
