"""One error type for bad input: it knows the file, the field path and what was expected.

The CLI prints ``str(err)`` as a single line and exits with status 2.
"""
from __future__ import annotations

import os


class CodesignError(Exception):
    """Bad input: ``file: field: message`` on one line."""

    exit_code = 2

    def __init__(self, message: str, file: str | os.PathLike[str] | None = None, field: str | None = None):
        self.message = message
        self.file = str(file) if file is not None else None
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.field) if p]
        return ": ".join(parts + [self.message])


def field_path(loc) -> str:
    """('memory', 0, 'bandwidth') -> 'memory[0].bandwidth'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def from_pydantic(exc, file, prefix: tuple = ()) -> CodesignError:
    """Turn the first pydantic validation error into a one-line CodesignError."""
    err = exc.errors()[0]
    loc = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    msg = err["msg"]
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        msg = "unknown field (check the spelling; see the README for the schema)"
    elif kind == "missing":
        msg = "required field is missing"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    elif msg.startswith("Assertion failed, "):
        msg = msg[len("Assertion failed, "):]
    if len(msg) > 300:          # a hostile value echoed back must not flood the terminal
        msg = msg[:297] + "..."
    extra = len(exc.errors()) - 1
    if extra:
        msg += f" (and {extra} more problem{'s' if extra > 1 else ''})"
    return CodesignError(msg, file=file, field=field_path(loc) or None)
