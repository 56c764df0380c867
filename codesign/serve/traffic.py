"""Traffic for the serving simulator: arrival times and request lengths.

Arrivals: a renewal process at ``rate`` requests/s with gamma inter-arrival times of shape
``burstiness`` (vLLM benchmark_serving's convention: 1 is Poisson, below 1 burstier, the
coefficient of variation is 1/sqrt(burstiness)); ``burstiness=inf`` is evenly spaced.
Lengths: ``fixed:N`` (or just N), ``uniform:lo=..,hi=..``, ``lognormal:mean=..,sd=..``
(the mean and standard deviation of the lengths themselves, not of their logarithm),
``exponential:mean=..``, or ``csv:FILE[:COLUMN]`` (an empirical distribution, resampled).
A trace CSV gives every request: ``arrival_s, prompt_tokens, output_tokens``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CodesignError
from ..io import read_csv_table

MAX_REQUESTS = 2_000_000         # bounded memory: a run holds a few arrays of this length


@dataclass(frozen=True)
class Requests:
    """Requests sorted by arrival: arrival times (s), prompt and output token counts."""
    arrival: np.ndarray
    prompt: np.ndarray
    output: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival)

    def scaled(self, factor: float) -> Requests:
        """The same requests arriving ``factor`` times faster (common random numbers across
        rates, so latency is monotone in the rate up to the scheduler's own effects)."""
        return Requests(self.arrival / factor, self.prompt, self.output)


def _kv(text: str, where: str) -> dict[str, float]:
    out = {}
    for part in filter(None, (s.strip() for s in text.split(","))):
        key, sep, val = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key.strip()] = float(val)
        except ValueError:
            raise CodesignError(f"expected key=value numbers, e.g. mean=512,sd=256; got {part!r}", field=where) from None
    return out


def sample_lengths(spec: str | int, n: int, rng: np.random.Generator, where: str = "--prompt-dist",
                   low: int = 1, high: int | None = None) -> np.ndarray:
    """``n`` integer lengths (>= ``low``, <= ``high``) drawn from the distribution ``spec``."""
    text = str(spec).strip()
    kind, _, rest = text.partition(":")
    kind = kind.lower()
    if kind.isdigit() or kind == "fixed":
        try:
            val = int(kind if kind.isdigit() else rest)
        except ValueError:
            raise CodesignError(f"fixed length needs an integer, e.g. fixed:512; got {text!r}", field=where) from None
        x = np.full(n, float(val))
    elif kind == "uniform":
        a = _kv(rest, where)
        if not {"lo", "hi"} <= set(a) or a["lo"] > a["hi"]:
            raise CodesignError(f"uniform needs lo=..,hi=.. with lo <= hi; got {text!r}", field=where)
        x = rng.integers(int(a["lo"]), int(a["hi"]) + 1, n).astype(float)
    elif kind == "lognormal":
        a = _kv(rest, where)
        if "mean" not in a or a["mean"] <= 0 or a.get("sd", -1) < 0:
            raise CodesignError(f"lognormal needs mean=..(>0),sd=..(>=0); got {text!r}", field=where)
        m, s = a["mean"], a["sd"]
        sigma2 = math.log1p((s / m) ** 2)          # moments of the length -> of its logarithm
        x = rng.lognormal(math.log(m) - sigma2 / 2, math.sqrt(sigma2), n)
    elif kind == "exponential":
        a = _kv(rest, where)
        if a.get("mean", 0) <= 0:
            raise CodesignError(f"exponential needs mean=..(>0); got {text!r}", field=where)
        x = rng.exponential(a["mean"], n)
    elif kind == "csv":
        path, _, col = rest.partition(":")
        vals = _csv_column(Path(path), col or None, where)
        x = rng.choice(vals, n)
    else:
        raise CodesignError(f"unknown length distribution {kind!r}: expected N, fixed:N, uniform:lo=,hi=, "
                            "lognormal:mean=,sd=, exponential:mean= or csv:FILE[:COLUMN]", field=where)
    x = np.maximum(np.rint(x), low)
    if high is not None:
        x = np.minimum(x, high)
    return x.astype(np.int64)


def _read_csv(path: Path):
    """A trace or length table: at most 200 MiB and MAX_REQUESTS rows (bounded memory)."""
    return read_csv_table(path, max_bytes=200 * 2**20, max_rows=MAX_REQUESTS + 1)


def _numeric(df, col: str, path: Path, where: str) -> np.ndarray:
    vals = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(vals) | (vals < 0))
    if len(bad):
        raise CodesignError(f"{path} row {bad[0] + 2}, column {col}: expected a number >= 0, got "
                            f"{str(df[col].iloc[bad[0]])[:40]!r}", field=where)
    return vals


def _csv_column(path: Path, col: str | None, where: str) -> np.ndarray:
    df = _read_csv(path)
    if col is None:
        col = df.columns[0]
    if col not in df.columns:
        raise CodesignError(f"{path} has no column {col!r} (columns: {', '.join(map(str, df.columns[:8]))})", field=where)
    vals = _numeric(df, col, path, where)
    if not len(vals):
        raise CodesignError(f"{path} column {col}: no values", field=where)
    return vals


def load_trace(path, where: str = "--trace") -> Requests:
    """Requests from a CSV with columns arrival_s, prompt_tokens, output_tokens."""
    path = Path(path)
    df = _read_csv(path)
    need = ("arrival_s", "prompt_tokens", "output_tokens")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise CodesignError(f"{path} lacks column {missing[0]} (expected {', '.join(need)})", field=where)
    if len(df) > MAX_REQUESTS:
        raise CodesignError(f"{path} has more than {MAX_REQUESTS} requests", field=where)
    if not len(df):
        raise CodesignError(f"{path} holds no requests", field=where)
    a, pr, out = (_numeric(df, c, path, where) for c in need)
    order = np.argsort(a, kind="stable")
    return Requests(a[order] - a.min(), np.maximum(pr[order], 1).astype(np.int64),
                    np.maximum(out[order], 1).astype(np.int64))


def poisson_like(rate: float, n: int, burstiness: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival times of ``n`` requests at ``rate``/s with gamma(shape=burstiness) gaps."""
    if not rate > 0 or not math.isfinite(rate):
        raise CodesignError(f"the request rate must be a positive number, got {rate}", field="--rate")
    if not burstiness > 0:
        raise CodesignError(f"burstiness must be > 0 (1 = Poisson), got {burstiness}", field="--burstiness")
    if math.isinf(burstiness):
        gaps = np.full(n, 1.0 / rate)
    else:
        gaps = rng.gamma(burstiness, 1.0 / (rate * burstiness), n)
    t = np.cumsum(gaps)
    return t - t[0]


def make_requests(rate: float, n: int, prompt="lognormal:mean=1024,sd=512", output="lognormal:mean=256,sd=128",
                  burstiness: float = 1.0, seed: int = 0, max_context: int | None = None) -> Requests:
    """``n`` synthetic requests; prompt + output are kept within ``max_context``."""
    if not 0 < n <= MAX_REQUESTS:
        raise CodesignError(f"requests must be in 1..{MAX_REQUESTS}, got {n}", field="--requests")
    rng = np.random.default_rng(seed)
    arrival = poisson_like(rate, n, burstiness, rng)
    p = sample_lengths(prompt, n, rng, "--prompt-dist", high=max_context - 1 if max_context else None)
    o = sample_lengths(output, n, rng, "--output-dist")
    if max_context:
        o = np.maximum(np.minimum(o, max_context - p), 1)
    return Requests(arrival, p, o)
