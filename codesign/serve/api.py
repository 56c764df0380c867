"""One call from names to a served run: step-cost tables for the engine(s), then the loop."""
from __future__ import annotations

from typing import TypedDict

from ..compression import Compression
from ..errors import CodesignError
from ..perf.steps import StepCost, step_cost
from ..workload.scenario import Scenario
from ..workload.schema import ModelSpec
from .metrics import ServeResult
from .sim import Policy, simulate
from .traffic import Requests


class _EngineLimits(TypedDict):
    """The engine limits step_cost takes from a Policy."""
    max_tokens: int
    max_seqs: int
    max_context: int | None
    memory_utilization: float


def engines(hardware, workload, scenario: Scenario | None = None, compression: Compression | None = None,
            policy: Policy | None = None, decode_hardware=None, max_context: int | None = None
            ) -> tuple[StepCost, StepCost | None]:
    """The step-cost tables of the engine (and of the decode pool's, for disaggregation)."""
    pol = policy or Policy()
    kw = _EngineLimits(max_tokens=pol.max_num_batched_tokens, max_seqs=pol.max_num_seqs, max_context=max_context,
                       memory_utilization=pol.memory_utilization)
    cost = step_cost(hardware, workload, scenario, compression, **kw)
    dec = step_cost(decode_hardware, workload, scenario, compression, **kw) if decode_hardware else None
    return cost, dec


MTP_ACCEPTANCE = 0.85   # DeepSeek-V3 report (arXiv 2412.19437, sec. 5.4.3): the 2nd token is accepted 85-90%


def mtp_draft(model: ModelSpec) -> ModelSpec:
    """The model's multi-token-prediction module as a draft model: ``mtp_layers`` blocks of
    the same shape (MoE blocks for DeepSeek-V3) sharing the main model's embedding and head."""
    if not model.mtp_layers:
        raise CodesignError(f"{model.name} has no multi-token-prediction module (mtp_layers): name a draft model",
                            field="--draft")
    moe = model.moe.model_copy(update={"first_dense": 0}) if model.moe else None
    return model.model_copy(update={"name": f"{model.name}-mtp", "num_layers": model.mtp_layers, "mtp_layers": 0,
                                    "moe": moe})


def draft_engine(cost: StepCost, draft, max_context: int | None = None) -> StepCost:
    """The draft model's step costs on the target's devices (same runtime and parallelism).
    Both models share the memory: the draft's weights come out of the KV budget, and every
    cached token holds both models' keys and values (the target's capacity shrinks).
    ``draft="mtp"``: the target's own multi-token-prediction module (its embedding and LM
    head are the target's, so their bytes are not counted twice)."""
    shared = 0.0
    if draft == "mtp":
        draft = mtp_draft(cost.model)
        # embedding table + LM head (16-bit), split over the tensor-parallel ranks
        shared = 2 * draft.vocab_size * draft.hidden_size * 2.0 / cost.scenario.tp
    d = step_cost(cost.spec, draft, cost.scenario, None, max_tokens=cost.max_tokens, max_seqs=cost.max_seqs,
                  max_context=max_context or cost.max_context)
    budget = cost.kv_capacity_tokens * cost.kv_bytes_per_token - max(d.weight_bytes - shared, 0.0)
    tokens = int(budget // (cost.kv_bytes_per_token + d.kv_bytes_per_token))
    if tokens < cost.max_tokens:
        raise CodesignError(f"the draft {d.model.name} leaves no room for the KV cache on {cost.spec.name}",
                            field="--draft")
    cost.kv_capacity_tokens = tokens
    return d


def serve(hardware, workload, requests: Requests, scenario: Scenario | None = None,
          compression: Compression | None = None, policy: Policy | None = None, *, replicas: int = 1,
          decode_hardware=None, decode_replicas: int = 1, draft=None, concurrency: int | None = None) -> ServeResult:
    """Simulate ``requests`` served by ``replicas`` engines of ``scenario.tp`` x ``scenario.pp``
    devices behind the runtime's API server (``draft``: a draft model for
    ``policy.speculative_k`` > 0)."""
    cost, dec = engines(hardware, workload, scenario, compression, policy, decode_hardware)
    dcost = draft_engine(dec or cost, draft) if draft and policy and policy.speculative_k else None
    return simulate(cost, requests, policy, replicas=replicas, decode_cost=dec, decode_replicas=decode_replicas,
                    draft_cost=dcost, concurrency=concurrency)
