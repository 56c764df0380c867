"""One call from names to a served run: step-cost tables for the engine(s), then the loop."""
from __future__ import annotations

from ..compression import Compression
from ..perf.steps import StepCost, step_cost
from ..workload.scenario import Scenario
from .metrics import ServeResult
from .sim import Policy, simulate
from .traffic import Requests


def engines(hardware, workload, scenario: Scenario | None = None, compression: Compression | None = None,
            policy: Policy | None = None, decode_hardware=None, max_context: int | None = None
            ) -> tuple[StepCost, StepCost | None]:
    """The step-cost tables of the engine (and of the decode pool's, for disaggregation)."""
    pol = policy or Policy()
    kw = dict(max_tokens=pol.max_num_batched_tokens, max_seqs=pol.max_num_seqs, max_context=max_context,
              memory_utilization=pol.memory_utilization)
    cost = step_cost(hardware, workload, scenario, compression, **kw)
    dec = step_cost(decode_hardware, workload, scenario, compression, **kw) if decode_hardware else None
    return cost, dec


def serve(hardware, workload, requests: Requests, scenario: Scenario | None = None,
          compression: Compression | None = None, policy: Policy | None = None, *, replicas: int = 1,
          decode_hardware=None, decode_replicas: int = 1) -> ServeResult:
    """Simulate ``requests`` served by ``replicas`` engines of ``scenario.tp`` x ``scenario.pp`` devices."""
    cost, dec = engines(hardware, workload, scenario, compression, policy, decode_hardware)
    return simulate(cost, requests, policy, replicas=replicas, decode_cost=dec, decode_replicas=decode_replicas)
