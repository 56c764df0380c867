"""Model compression as a design choice: quantization, sparsity, pruning, distillation.

A :class:`Compression` says what is done to the model; :func:`storage` and
:func:`compute_dtype` say what that does to bytes and to the datatype the matrix
units really run. The perf engine calls these; nothing else decides them.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Compression(BaseModel):
    """Compression choices. The defaults mean "none" (weights/activations/KV in the scenario dtype)."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    weight_bits: Literal[16, 8, 6, 4, 3, 2] | None = None       # None: scenario dtype
    weight_format: Literal["int", "fp8", "fp4", "nf4"] = "int"
    group_size: int | None = Field(default=None, gt=0)           # None: per-channel scales
    act_bits: Literal[16, 8] | None = None
    kv_bits: Literal[16, 8, 4] | None = None
    sparsity: str | None = None          # "2:4" / "N:M" structured, or a density like "0.5" (unstructured)
    prune_heads: float = Field(default=0.0, ge=0, lt=1)          # fraction of attention heads removed
    prune_ffn: float = Field(default=0.0, ge=0, lt=1)            # fraction of FFN channels removed
    prune_layers: float = Field(default=0.0, ge=0, lt=1)         # fraction of layers removed
    distill_to: str | None = None        # replace the model by this smaller library model

    @field_validator("sparsity")
    @classmethod
    def _sparsity(cls, v):
        if v is None:
            return v
        v = str(v).strip()
        if ":" in v:
            n, _, m = v.partition(":")
            if not (n.isdigit() and m.isdigit() and 0 < int(n) < int(m)):
                raise ValueError(f"expected N:M with 0 < N < M (e.g. '2:4'), got {v!r}")
            return v
        try:
            d = float(v)
        except ValueError:
            raise ValueError(f"expected 'N:M' (e.g. '2:4') or a density in (0, 1), got {v!r}") from None
        if not 0 < d < 1:
            raise ValueError(f"a density must be in (0, 1), got {v!r}")
        return v

    @model_validator(mode="after")
    def _check(self):
        if self.weight_format == "fp8" and self.weight_bits not in (None, 8):
            raise ValueError("weight_format fp8 needs weight_bits 8")
        if self.weight_format in ("fp4", "nf4") and self.weight_bits not in (None, 4):
            raise ValueError(f"weight_format {self.weight_format} needs weight_bits 4")
        return self

    @property
    def is_none(self) -> bool:
        return self == Compression()
