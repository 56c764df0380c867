"""What quantization does to numbers: output error and SQNR of quantized GEMMs.

Weights are quantized with symmetric round-to-nearest (RTN, no AWQ/GPTQ calibration):
for each output channel and each group of ``group_size`` consecutive input channels
(the whole input dimension when ``group_size`` is None: per-channel scales)

    scale = max|w| / qmax,  qmax = 2^(bits-1) - 1,  w_hat = scale * clip(round(w / scale), -qmax, qmax)

and the GEMM ``Y = X W`` is compared with ``X W_hat`` in float64:

    rel_error = ||Y - Y_hat||_F / ||Y||_F,   SQNR = -20 log10(rel_error)  [dB]

Weights are realistic rather than Gaussian: Student-t entries (heavy tails; LLM weight
kurtosis is well above 3) with a few *outlier input channels* scaled up (the outlier
features of LLM.int8, Dettmers et al. 2022, show up as large rows of W and large columns
of X). Group-wise scales confine an outlier row's damage to its group, which is why
g128/g64/g32 beat per-channel at 4 bits.

A closed form is returned next to the measurement: RTN error is ~uniform in
[-scale/2, scale/2], variance scale^2/12 per weight, so
E||X dW||^2 = sum_i ||X[:, i]||^2 sum_j scale_ij^2 / 12 (Bennett 1948; the usual
quantization-noise model). It matches the measurement within a fraction of a dB except for
very coarse grids with heavy tails, where the uniform-noise assumption fails.

Optional activation quantization (``act_bits``): per-token symmetric RTN of X (W8A8,
SmoothQuant's baseline) - outlier channels then dominate each token's scale.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import CodesignError


def realistic_weights(k: int, n: int, *, dist: str = "student_t", dof: float = 5.0, outlier_frac: float = 0.005,
                      outlier_scale: float = 8.0, rng: np.random.Generator) -> np.ndarray:
    """A (k, n) weight matrix (input channels x output channels), std ~ 1/sqrt(k)."""
    if dist == "gaussian":
        w = rng.standard_normal((k, n))
    elif dist == "student_t":
        if dof <= 2:
            raise CodesignError(f"dof must be > 2 (finite variance), got {dof}", field="dof")
        w = rng.standard_t(dof, size=(k, n)) / math.sqrt(dof / (dof - 2))
    else:
        raise CodesignError(f"dist must be gaussian or student_t, got {dist!r}", field="dist")
    rows = _outlier_rows(k, outlier_frac, rng)
    w[rows] *= outlier_scale
    return w / math.sqrt(k)


def _outlier_rows(k: int, frac: float, rng: np.random.Generator) -> np.ndarray:
    count = int(round(frac * k))
    return rng.choice(k, size=count, replace=False) if count else np.zeros(0, dtype=int)


def quantize(w: np.ndarray, bits: int, group_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric RTN of ``w`` (k, n) along the input dimension; returns (w_hat, scales per weight)."""
    if not 2 <= bits <= 16:
        raise CodesignError(f"bits must be between 2 and 16, got {bits}", field="bits")
    k, n = w.shape
    g = k if group_size is None else group_size
    if g <= 0 or k % g:
        raise CodesignError(f"group_size {group_size} must divide the input dimension {k}", field="group_size")
    qmax = 2 ** (bits - 1) - 1
    wg = w.reshape(k // g, g, n)
    scale = np.abs(wg).max(axis=1, keepdims=True) / qmax
    scale = np.where(scale > 0, scale, 1.0)
    q = np.clip(np.rint(wg / scale), -qmax, qmax)
    return (q * scale).reshape(k, n), np.broadcast_to(scale, wg.shape).reshape(k, n)


def quantize_tokens(x: np.ndarray, bits: int) -> np.ndarray:
    """Per-token (row) symmetric RTN of activations."""
    qmax = 2 ** (bits - 1) - 1
    s = np.abs(x).max(axis=1, keepdims=True) / qmax
    s = np.where(s > 0, s, 1.0)
    return np.clip(np.rint(x / s), -qmax, qmax) * s


def sqnr_db(ref: np.ndarray, approx: np.ndarray) -> float:
    noise = float(np.sum((ref - approx) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(float(np.sum(ref ** 2)) / noise)


def measured_gemm_error(bits: int, group_size: int | None = None, *, k: int = 4096, n: int = 512, m: int = 128,
                        dist: str = "student_t", dof: float = 5.0, outlier_frac: float = 0.005,
                        outlier_scale: float = 8.0, act_bits: int | None = None, seed: int = 0) -> dict:
    """Relative output error and SQNR of a ``bits``-bit weight-quantized GEMM (m x k) @ (k x n).

    Returns ``dict(rel_error, sqnr_db, weight_sqnr_db, predicted_sqnr_db)``; deterministic
    for a given seed. Activations are Gaussian with the same outlier input channels
    (x ``outlier_scale``) as the weights' outlier rows.
    """
    rng = np.random.default_rng(seed)
    w = realistic_weights(k, n, dist=dist, dof=dof, outlier_frac=outlier_frac, outlier_scale=outlier_scale, rng=rng)
    x = rng.standard_normal((m, k))
    rows = np.argsort(-np.abs(w).max(axis=1))[: int(round(outlier_frac * k))]
    x[:, rows] *= outlier_scale                     # outlier features live in the same channels
    w_hat, scales = quantize(w, bits, group_size)
    x_hat = quantize_tokens(x, act_bits) if act_bits else x
    y, y_hat = x @ w, x_hat @ w_hat
    err = float(np.linalg.norm(y - y_hat) / np.linalg.norm(y))
    # closed form (weight-only): uniform noise scale^2/12 weighted by activation energy per input channel
    noise = float(np.sum((x ** 2).sum(axis=0) * (scales ** 2).sum(axis=1)) / 12.0)
    pred = 10 * math.log10(float(np.sum(y ** 2)) / noise) if noise > 0 else math.inf
    return {"rel_error": err, "sqnr_db": -20 * math.log10(err) if err > 0 else math.inf,
            "weight_sqnr_db": sqnr_db(w, w_hat), "predicted_sqnr_db": pred,
            "bits": bits, "group_size": group_size, "act_bits": act_bits}


def error_table(bits=(8, 4, 3), groups=(None, 128, 64, 32), **kw) -> list[dict]:
    """measured_gemm_error over a grid (for reports and the compression quality proxy)."""
    return [measured_gemm_error(b, g, **kw) for b in bits for g in groups]
