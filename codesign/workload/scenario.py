"""A serving scenario: how the model is run (batch, lengths, datatypes, parallelism)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# the module, not its names: codesign.runtime imports workload.ops, so either package may be
# half-loaded when the other starts; load_runtime is looked up when a scenario is validated
from .. import runtime
from ..errors import CodesignError

Dtype = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8"]


class Scenario(BaseModel):
    """One request shape, served ``batch`` requests at a time.

    ``dtype`` is the 16-bit (or other) datatype of weights, activations and KV cache
    before compression; :class:`codesign.compression.Compression` narrows them.
    """
    model_config = ConfigDict(frozen=True, extra="forbid")

    batch: int = Field(default=1, gt=0)
    prompt: int = Field(default=512, ge=0)          # prompt (prefill) tokens per request
    generate: int = Field(default=128, ge=0)        # generated tokens per request
    dtype: Dtype = "bf16"
    tp: int = Field(default=1, gt=0)                # tensor parallel degree
    pp: int = Field(default=1, gt=0)                # pipeline stages
    dp: int = Field(default=1, gt=0)                # data-parallel replicas
    ep: int = Field(default=1, gt=0)                # expert parallel degree (MoE), within tp x dp
    attention: Literal["fused", "unfused"] = "fused"
    microbatches: int | None = Field(default=None, gt=0)   # pipeline micro-batches (default: min(batch, pp))
    runtime: str = "generic"                        # software stack (codesign.runtime library name)
    # prompt tokens per physical pass (llama.cpp -ub); None: the runtime's prefill_ubatch
    ubatch: int | None = Field(default=None, gt=0)
    # KV positions a fixed-shape compiled graph holds (an AI Hub model's context_length); None:
    # the runtime's compiled_context
    compiled_context: int | None = Field(default=None, gt=0)
    # beam search / parallel sampling: each request decodes `beams` sequences that share its
    # prompt's KV cache; the answer is one sequence (generated tokens count once per request)
    beams: int = Field(default=1, ge=1, le=64)

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, v):
        """A library runtime name, alias or YAML path, stored as the runtime's name or path."""
        try:
            rt = runtime.load_runtime(v)
        except CodesignError as e:
            raise ValueError(str(e)) from None
        return v if v.endswith((".yaml", ".yml")) else rt.name

    @model_validator(mode="after")
    def _check(self):
        if self.prompt == 0 and self.generate == 0:
            raise ValueError("prompt and generate cannot both be 0")
        if self.ep > 1 and (self.tp * self.dp) % self.ep:
            raise ValueError(f"ep ({self.ep}) must divide tp x dp ({self.tp * self.dp}): experts are spread "
                             "over the devices of one pipeline stage")
        return self

    @property
    def kv_slots(self) -> int | None:
        """KV positions every attention spans in a fixed-shape compiled graph (None: the sequence's own)."""
        return self.compiled_context or runtime.load_runtime(self.runtime).compiled_context

    @property
    def pass_tokens(self) -> int | None:
        """Prompt tokens per physical prefill pass (Scenario.ubatch, else the runtime's prefill_ubatch)."""
        return self.ubatch or runtime.load_runtime(self.runtime).prefill_ubatch

    @property
    def window_scope(self) -> str:
        """What a sliding-window layer's prompt pass scores: 'window' or the whole windowed 'cache'."""
        return runtime.load_runtime(self.runtime).prefill_window

    @property
    def sequential_recurrences(self) -> tuple[str, ...]:
        """Recurrent mixer kinds whose prompt the runtime scans token by token (else chunked)."""
        return runtime.load_runtime(self.runtime).sequential_recurrences

    @property
    def devices(self) -> int:
        return self.tp * self.pp * self.dp
