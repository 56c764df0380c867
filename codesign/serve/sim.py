"""The serving simulator: requests arrive, schedulers form steps, the engine prices them.

An event loop over request arrivals and step completions. Every engine (a replica, a
pipeline's virtual engine, or a prefill / decode pool member) runs one step at a time; at
the start of a step its scheduler picks the work, at the end the work's effects land
(first tokens, new tokens, finished requests). Step times come from
:class:`codesign.perf.steps.StepCost`: there is no second performance model here.

Schedulers (``Policy.name``):
- ``static``: a batch of up to max_num_seqs waiting requests is formed when the engine is
  idle, prefilled together, then decoded until its longest output is done (finished
  sequences keep their slot: padding); every response returns when the batch ends
  (FasterTransformer / Hugging Face generate).
- ``continuous``: in-flight batching as vLLM's v0 scheduler runs it: when requests wait and
  fit, a prefill-only step admits them (FCFS, within max_num_batched_tokens and
  max_num_seqs); otherwise one decode step of every running sequence (Orca, OSDI 2022;
  Kwon et al., SOSP 2023). Prefill steps stall the running decodes.
- ``chunked``: Sarathi-Serve / vLLM v1: every step carries all running decodes plus prompt
  chunks that fill the token budget (in-progress prompts first, then new ones, each chunk
  at most ``chunk`` tokens).
- ``disaggregated``: prompts run on prefill engines, their KV cache crosses the host link
  to decode engines, which only decode (DistServe, OSDI 2024; Splitwise, ISCA 2024).

Speculative decoding (``speculative_k`` > 0, with a draft model's step costs): every
decode step runs k draft steps, then one target pass over k + 1 tokens per sequence; each
sequence keeps its drafts up to the first rejected one (each accepted with probability
``acceptance``) plus the target's own token.

Paged KV cache (vLLM): blocks of ``block_size`` tokens; a request is admitted only when its
prompt's blocks are free; a decode sequence takes a new block every block_size tokens and,
when none is free, the newest running sequence is preempted: its blocks are freed and it
is recomputed later (its prompt plus the tokens it had, as one prefill). Static batching
reserves prompt + output blocks up front. Prefix caching: a share ``prefix_hit`` of every
prompt's tokens is found in the cache and not recomputed (its attention still reads them).
Hybrid models' recurrent layers keep a fixed state per sequence instead of per-token KV: it
takes ``StepCost.state_tokens`` tokens' worth of blocks once per sequence, like a prefix.

Capacity scheduling: vLLM admits a request when its prompt's blocks are free and preempts
when decodes run out (above); TensorRT-LLM's default GUARANTEED_NO_EVICT (``no_evict``)
admits a request only when the blocks of its prompt and its whole output are free, so a
started request is never paused (TensorRT-LLM performance-tuning guide, "Useful Runtime
Options"). ``whole_prompts``: a prompt is never split over steps, it waits for a step whose
token budget still holds it (TensorRT-LLM without chunked context, its default before the
LLM API: the scheduler stops admitting when the next prompt exceeds max_num_tokens' rest;
TensorRT-LLM guide "Tuning Max Batch Size and Max Num Tokens"); a prompt longer than the
whole budget is still split.

Serving front end (:class:`Frontend`): the HTTP / OpenAI API server is one serial server
(one Python event loop: FastAPI in NIM and vLLM's OpenAI server, SGLang's tokenizer
manager) in its own process beside the engine loop. Every request takes
``request_s`` of it (parse, chat template, tokenise, hand over) before the engine sees it,
and every step's new tokens ``token_s`` each (detokenise, format and send one streamed
chunk) before the clients see them; both queue FIFO. It staggers requests that arrive
together (a closed loop's clients that finish in the same step), delays what the clients
see and, near its capacity (1 / (request_s + output tokens x token_s) requests per
second), caps a closed loop's throughput. Its work is taken out of the runtime's
request_overhead (the same host work, seen unloaded), so an idle server's TTFT is unchanged.

Neglected: a front end that shares the engine loop's thread (vLLM <= 0.5: its work would
hold up the next step), sampling differences between requests, the overlap of swaps with compute
(a swap delays the step it precedes); in speculative decoding, the extra attention work of checking k + 1
tokens per sequence (the cache is read once) and the draft's own prefill.
"""
from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..errors import CodesignError
from ..perf.steps import StepCost
from ..runtime import load_runtime
from .metrics import ServeResult
from .traffic import Requests

POLICIES = ("static", "continuous", "chunked", "disaggregated")
MAX_STEPS = 50_000_000        # a run that needs more steps is refused, not left running


@dataclass(frozen=True)
class Policy:
    """Scheduler and KV-cache settings (defaults: vLLM's for a GPU server)."""
    name: Literal["static", "continuous", "chunked", "disaggregated"] = "chunked"
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    chunk: int | None = None          # most prompt tokens of one request per step (chunked)
    block_size: int = 16
    memory_utilization: float = 0.9
    prefix_hit: float = 0.0           # share of each prompt's tokens found in the prefix cache
    router: Literal["least-loaded", "round-robin"] = "least-loaded"
    # multi-step scheduling (vLLM 0.6 --num-scheduler-steps): the scheduler runs once per
    # this many decode steps, so a new prompt waits for the ones already scheduled
    scheduler_steps: int = 1
    # speculative decoding: draft tokens per step (0: off) and the chance each is accepted
    speculative_k: int = 0
    acceptance: float = 0.7
    # a preempted sequence's KV cache is dropped and recomputed, or swapped to host memory over
    # the host link and back (vLLM's two preemption modes)
    preemption: Literal["recompute", "swap"] = "recompute"
    # TensorRT-LLM's capacity scheduler: GUARANTEED_NO_EVICT reserves prompt + output blocks at
    # admission (never preempts); False: vLLM's (prompt blocks, preempt when decodes run out)
    no_evict: bool = False
    # prompts are never split over steps (TensorRT-LLM without chunked context)
    whole_prompts: bool = False

    def __post_init__(self):
        checks = [(self.name in POLICIES, "name", f"one of {', '.join(POLICIES)}"),
                  (self.max_num_seqs >= 1, "max_num_seqs", "an integer >= 1"),
                  (self.max_num_batched_tokens >= 1, "max_num_batched_tokens", "an integer >= 1"),
                  (self.chunk is None or self.chunk >= 1, "chunk", "an integer >= 1"),
                  (self.block_size >= 1, "block_size", "an integer >= 1"),
                  (0 < self.memory_utilization <= 1, "memory_utilization", "a share in (0, 1]"),
                  (0 <= self.prefix_hit < 1, "prefix_hit", "a share in [0, 1)"),
                  (self.router in ("least-loaded", "round-robin"), "router", "least-loaded or round-robin"),
                  (self.scheduler_steps >= 1, "scheduler_steps", "an integer >= 1"),
                  (0 <= self.speculative_k <= 16, "speculative_k", "an integer in 0..16"),
                  (0 <= self.acceptance <= 1, "acceptance", "a probability in [0, 1]"),
                  (self.preemption in ("recompute", "swap"), "preemption", "recompute or swap")]
        for ok, name, want in checks:
            if not ok:
                raise CodesignError(f"expected {want}, got {getattr(self, name)!r}", field=name)


@dataclass(frozen=True)
class Frontend:
    """The serving front end as one serial FIFO server (see the module docstring): seconds of
    its work per request (before the engine sees it) and per streamed token (before the
    client sees it). Zero: no front end (the engine's times are what clients see)."""
    request_s: float = 0.0
    token_s: float = 0.0

    def __post_init__(self):
        for name in ("request_s", "token_s"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise CodesignError(f"expected seconds >= 0, got {v!r}", field=f"frontend.{name}")

    @property
    def active(self) -> bool:
        return self.request_s > 0 or self.token_s > 0


def runtime_frontend(runtime) -> Frontend:
    """The serving front end a runtime declares (frontend_request, frontend_token; a runtime
    name, Runtime or Scenario); none where it declares neither."""
    name = getattr(runtime, "runtime", runtime)
    rt = load_runtime(name) if name is None or isinstance(name, str) else name
    return Frontend(request_s=rt.frontend_request or 0.0, token_s=rt.frontend_token or 0.0)


@dataclass
class _Log:
    """What the loop records: per request, per step and weighted inter-token intervals."""
    n: int
    first: np.ndarray = field(init=False)
    finish: np.ndarray = field(init=False)
    start: np.ndarray = field(init=False)
    last_tok: np.ndarray = field(init=False)
    generated: np.ndarray = field(init=False)
    preempted: np.ndarray = field(init=False)
    steps: list = field(default_factory=list)          # (t_end, dur, decode seqs, prompt tokens, kv share, waiting, engine)
    itl: list = field(default_factory=list)            # (interval, sequences)
    energy: float = 0.0                                # activity + busy energy, J
    busy_device_s: float = 0.0                          # device-seconds of kernels (all devices)

    def __post_init__(self):
        self.first = np.full(self.n, np.nan)
        self.finish = np.full(self.n, np.nan)
        self.start = np.full(self.n, np.nan)
        self.last_tok = np.full(self.n, np.nan)
        self.generated = np.zeros(self.n, dtype=np.int64)
        self.preempted = np.zeros(self.n, dtype=np.int64)


class _Engine:
    """One engine's scheduler state. ``role``: 'both', 'prefill' or 'decode'."""

    def __init__(self, idx: int, cost: StepCost, policy: Policy, kv_tokens: int, role: str, req: Requests, log: _Log,
                 draft: StepCost | None = None):
        self.idx, self.cost, self.pol, self.role, self.req, self.log = idx, cost, policy, role, req, log
        self.draft = draft if role != "prefill" and policy.speculative_k and policy.name != "static" else None
        self.rng = np.random.default_rng(idx)
        bs = policy.block_size
        self.total_blocks = kv_tokens // bs
        # a sequence's fixed recurrent state, held like a prefix of this many cached tokens
        self.state = cost.state_tokens
        self.free = self.total_blocks
        self.budget = min(policy.max_num_batched_tokens, cost.max_tokens)
        self.max_seqs = min(policy.max_num_seqs, cost.max_seqs)
        self.waiting: deque = deque()
        self.incoming = 0                  # requests the front end is still handing over
        self.swapped: deque = deque()      # (rid, cached tokens, blocks) in host memory
        self.swap_s = 0.0                  # host-link time the next step waits for (swaps out and in)
        self.swap = policy.preemption == "swap" and cost.link_bw is not None
        self.prefill: list = []            # [rid, cached tokens, tokens to compute, computed, blocks]
        self.ids = np.zeros(0, dtype=np.int64)
        self.ctx = np.zeros(0, dtype=np.int64)
        self.rem = np.zeros(0, dtype=np.int64)
        self.blocks = np.zeros(0, dtype=np.int64)
        self.busy = False
        # the planned step: (prompt chunks [(entry, q)], decode sequences, tokens each gains)
        self.plan: tuple[list, int, np.ndarray | None] | None = None
        self.last_emit = math.nan          # end of the last step that gave the running decodes a token
        self.static_left = 0               # decode steps left in a static batch
        self.multi_left = 0                # decode steps left of a multi-step schedule

    # ---------------------------------------------------------------- load
    def load(self) -> int:
        return len(self.waiting) + len(self.prefill) + len(self.ids) + len(self.swapped) + self.incoming

    def has_work(self) -> bool:
        return bool(self.waiting or self.prefill or len(self.ids) or self.swapped)

    def _blocks_for(self, tokens: int) -> int:
        """Blocks a sequence of ``tokens`` holds (its recurrent state counted once)."""
        return -(-(int(tokens) + self.state) // self.pol.block_size)

    # ---------------------------------------------------------------- planning
    def _prompt_tokens(self, rid: int) -> tuple[int, int]:
        """(cached, to compute) of a request's prompt (plus its tokens so far, if it was preempted)."""
        total = int(self.req.prompt[rid]) + int(self.log.generated[rid])
        cached = int(self.req.prompt[rid] * self.pol.prefix_hit)
        return cached, total - cached

    def _admit(self, budget: int, chunk_cap: int | None, reserve_output: bool) -> tuple[list, int]:
        """Move waiting requests (FCFS) into prefill while tokens, sequences and blocks allow."""
        new: list[list[int]] = []
        seqs = len(self.ids) + len(self.prefill)
        while self.waiting and seqs < self.max_seqs and budget > 0:
            rid = self.waiting[0]
            cached, todo = self._prompt_tokens(rid)
            need = self._blocks_for(cached + todo + (self.req.output[rid] if reserve_output else 1))
            if need > self.total_blocks:
                raise CodesignError(f"a request of {cached + todo} prompt tokens needs {need} KV blocks; the engine "
                                    f"holds {self.total_blocks}", field="--prompt-dist")
            if need > self.free:
                break
            if chunk_cap is None and todo > budget and (new or self.prefill or (self.pol.name == "chunked"
                                                                            and todo <= self.budget)):
                break          # whole prompts only: it waits for a step that holds it (or one of its own)
            self.waiting.popleft()
            self.free -= need
            entry = [rid, cached, todo, 0, need]
            self.prefill.append(entry)
            if math.isnan(self.log.start[rid]):
                self.log.start[rid] = self.now
            new.append(entry)
            seqs += 1
            budget -= min(todo, chunk_cap or todo)
        return new, budget

    def plan_step(self, now: float):
        """Choose the next step's work at ``now``; returns its duration (None: nothing to do)."""
        self.now = now
        pol = self.pol.name
        chunks: list = []           # (entry, q)
        decode = False
        if self.swapped:
            self._swap_in()
        if self.role == "decode":
            self._admit_prefilled()
            decode = len(self.ids) > 0
        elif pol == "static":
            if self.static_left == 0 and not len(self.ids) and not self.prefill:
                self._admit(self.max_seqs * self.cost.max_context, None, reserve_output=True)
                chunks = [(e, e[2]) for e in self.prefill]
            elif self.static_left > 0:
                decode = True
        elif pol == "chunked" and self.role == "both":
            budget = self.budget - len(self.ids)
            decode = len(self.ids) > 0
            cap = self.pol.chunk
            reserve = self.pol.no_evict
            for e in self.prefill:
                if budget <= 0:
                    break
                q = min(e[2] - e[3], budget, cap or budget)
                chunks.append((e, q))
                budget -= q
            new, _ = self._admit(budget, None if self.pol.whole_prompts else cap or budget, reserve_output=reserve)
            for e in new:
                if budget <= 0:
                    break
                q = min(e[2], budget, cap or budget)
                chunks.append((e, q))
                budget -= q
        elif self.multi_left > 0 and len(self.ids):
            # multi-step scheduling: the decode steps already scheduled run before anything new
            self.multi_left -= 1
            decode = True
        else:   # continuous, and the prefill pool of disaggregated serving (whole prompts)
            self._admit(self.budget, None, reserve_output=self.pol.no_evict)
            if self.prefill:
                chunks = [(e, e[2]) for e in self.prefill]
            elif self.role == "both":
                decode = len(self.ids) > 0
                self.multi_left = self.pol.scheduler_steps - 1 if decode else 0
        if decode:
            self._grow_or_preempt()
            decode = len(self.ids) > 0
        if not chunks and not decode:
            return None
        n_dec = len(self.ids) if decode else 0
        ctx_sum = float(self.ctx.sum()) if n_dec else 0.0
        k = self.pol.speculative_k if (n_dec and self.draft is not None) else 0
        # speculative decoding: k draft steps, then the target checks k + 1 tokens per sequence
        # in one pass (its KV cache read once, its token-linear ops on (k + 1) x B rows)
        cost = self.cost.step(chunks=[(e[1] + e[3], q) for e, q in chunks], decode_seqs=n_dec, decode_ctx_sum=ctx_sum,
                              extra_tokens=k * n_dec)
        costs = [cost]
        if k:
            assert self.draft is not None       # k > 0 only with a draft engine
            costs += [self.draft.step(decode_seqs=n_dec, decode_ctx_sum=ctx_sum)] * k
        advance = self._accepted(n_dec, k) if n_dec else None
        self.plan = (chunks, n_dec, advance)
        for c in costs:
            self.log.energy += c.energy
            self.log.busy_device_s += c.kernels
        wait, self.swap_s = self.swap_s, 0.0        # swaps are copies over the host link before the step
        return sum(c.time for c in costs) + wait

    def _swap_in(self):
        """Swapped sequences come back first (before new prompts) while blocks allow."""
        while self.swapped and len(self.ids) + len(self.prefill) < self.max_seqs:
            rid, ctx, blocks = self.swapped[0]
            if blocks > self.free:
                break
            self.swapped.popleft()
            self.free -= blocks
            self.swap_s += self.cost.kv_transfer_time(ctx)
            self._join([rid], [ctx], [blocks])

    def _accepted(self, n: int, k: int) -> np.ndarray:
        """Tokens each decoding sequence gains this step: 1, or with k drafts accepted in
        turn with probability alpha until the first miss, the accepted ones plus the
        target's own token (Leviathan et al., ICML 2023: mean (1 - alpha^(k+1)) / (1 - alpha))."""
        if not k:
            return np.ones(n, dtype=np.int64)
        a = self.pol.acceptance
        drafts = self.rng.geometric(1.0 - a, n) - 1 if a < 1 else np.full(n, k)   # accepted before the first miss
        return np.minimum(drafts, k) + 1

    def _grow_or_preempt(self):
        """Every decode sequence writes one more token: a new block each block_size tokens;
        without free blocks the newest sequences are preempted (recomputed later, or swapped
        out to host memory and back)."""
        if self.pol.name == "static" or not len(self.ids):
            return
        ahead = self.pol.speculative_k + 1 if self.draft is not None else 1   # tokens this step may write
        bs = self.pol.block_size
        need = np.maximum((self.ctx + ahead + self.state + bs - 1) // bs - self.blocks, 0)
        while int(need.sum()) > self.free and len(self.ids):
            # the newest running sequence gives its blocks back and waits at the front
            rid = int(self.ids[-1])
            self.free += int(self.blocks[-1])
            self.log.preempted[rid] += 1
            if self.swap:
                ctx = int(self.ctx[-1])
                self.swapped.appendleft((rid, ctx, int(self.blocks[-1])))
                self.swap_s += self.cost.kv_transfer_time(ctx)
            else:
                self.waiting.appendleft(rid)
            self.ids, self.ctx, self.rem, self.blocks = self.ids[:-1], self.ctx[:-1], self.rem[:-1], self.blocks[:-1]
            need = need[:-1]
        self.free -= int(need.sum())
        self.blocks = self.blocks + need

    def _admit_prefilled(self):
        """Decode pool: prefilled requests whose KV arrived join while blocks allow."""
        while self.waiting and len(self.ids) < self.max_seqs:
            rid = self.waiting[0]
            ctx = int(self.req.prompt[rid] + self.log.generated[rid] - 1)
            need = self._blocks_for(ctx)
            if need > self.free:
                break
            self.waiting.popleft()
            self.free -= need
            self._join([rid], [ctx], [need])

    def _join(self, rids, ctxs, blocks):
        rids = np.asarray(rids, dtype=np.int64)
        rem = self.req.output[rids] - self.log.generated[rids]
        self.ids = np.concatenate([self.ids, rids])
        self.ctx = np.concatenate([self.ctx, np.asarray(ctxs, dtype=np.int64)])
        self.rem = np.concatenate([self.rem, rem])
        self.blocks = np.concatenate([self.blocks, np.asarray(blocks, dtype=np.int64)])

    # ---------------------------------------------------------------- effects
    def end_step(self, t: float, dur: float, on_prefilled, deliver=None) -> list:
        """Apply the planned step at its end ``t``; returns the requests that finished.
        ``deliver(t, tokens)``: when the front end has streamed this step's new tokens to
        the clients (the times the log records for them)."""
        assert self.plan is not None            # plan_step planned this step
        chunks, n_dec, advance = self.plan
        self.plan = None
        log = self.log
        td = t
        if deliver is not None:
            tokens = int((self.rem > 0).sum()) if self.pol.name == "static" and n_dec else n_dec
            td = deliver(t, tokens + sum(1 for e, q in chunks if e[3] + q >= e[2]))
        done: list = []
        # decode sequences: one token each
        if n_dec:
            if self.pol.name == "static":
                live = self.rem > 0
                n_live = int(live.sum())
                if n_live:
                    log.itl.append((td - self.last_emit, n_live))
                self.rem = self.rem - live
                self.ctx = self.ctx + 1          # finished slots still step (padding)
                log.generated[self.ids[live]] += 1
                self.static_left -= 1
                if self.static_left == 0:       # the batch returns as one
                    log.finish[self.ids] = td
                    done = self.ids.tolist()
                    self.free += int(self.blocks.sum())
                    self.ids, self.ctx, self.rem, self.blocks = (a[:0] for a in (self.ids, self.ctx, self.rem, self.blocks))
            else:
                ids = self.ids[:n_dec]
                old = ~np.isnan(log.last_tok[ids])
                fresh = log.last_tok[ids] != self.last_emit
                # sequences that had the previous token together share one interval
                bulk = old & ~fresh
                if bulk.any():
                    log.itl.append((td - self.last_emit, int(bulk.sum())))
                for rid in ids[fresh & old].tolist():
                    log.itl.append((td - log.last_tok[rid], 1))
                log.last_tok[ids] = td
                assert advance is not None      # plan_step sets it whenever n_dec > 0
                adv = np.minimum(advance, self.rem[:n_dec])
                log.generated[ids] += adv
                self.ctx[:n_dec] += adv
                self.rem[:n_dec] -= adv
                fin = self.rem[:n_dec] == 0
                if fin.any():
                    idx = np.flatnonzero(fin)
                    log.finish[self.ids[idx]] = td
                    done = self.ids[idx].tolist()
                    self.free += int(self.blocks[idx].sum())
                    keep = np.ones(len(self.ids), dtype=bool)
                    keep[idx] = False
                    self.ids, self.ctx, self.rem, self.blocks = (a[keep] for a in (self.ids, self.ctx, self.rem, self.blocks))
            self.last_emit = td
        # prompt chunks: progress; a completed prompt yields its next token
        joined_r, joined_c, joined_b = [], [], []
        completed = []
        for e, q in chunks:
            e[3] += q
            if e[3] >= e[2]:
                completed.append(e)
        prompt_tokens = sum(q for _, q in chunks)
        for e in completed:
            self.prefill.remove(e)
            rid, total = e[0], e[1] + e[2]
            if math.isnan(log.first[rid]):
                log.first[rid] = td
            elif not math.isnan(log.last_tok[rid]):
                log.itl.append((td - log.last_tok[rid], 1))     # a recomputed sequence's stall
            log.last_tok[rid] = td
            log.generated[rid] += 1
            if log.generated[rid] >= self.req.output[rid]:
                log.finish[rid] = td
                self.free += e[4]
                done.append(rid)
            elif self.role == "prefill":
                self.free += e[4]
                on_prefilled(rid, t)
            else:
                joined_r.append(rid)
                joined_c.append(total)
                joined_b.append(e[4])
        if joined_r:
            self._join(joined_r, joined_c, joined_b)
            if self.pol.name == "static":
                # padding: every slot of the batch steps until the longest output is done
                self.static_left = int(self.rem.max()) if len(self.rem) else 0
        if self.pol.name == "static" and completed and not len(self.ids):
            self.static_left = 0
        if self.pol.name == "static" and joined_r:
            self.last_emit = td
        log.steps.append((t, dur, n_dec, prompt_tokens, 1.0 - self.free / max(self.total_blocks, 1),
                          len(self.waiting), self.idx))
        return done


def _route(engines: list, k: int, policy: Policy) -> _Engine:
    if policy.router == "round-robin" or len(engines) == 1:
        return engines[k % len(engines)]
    return min(engines, key=lambda e: e.load())


def simulate(cost: StepCost, requests: Requests, policy: Policy | None = None, *, replicas: int = 1,
             decode_cost: StepCost | None = None, decode_replicas: int = 1, concurrency: int | None = None,
             draft_cost: StepCost | None = None, frontend: Frontend | None = None):
    """Serve ``requests`` on ``replicas`` engines priced by ``cost`` (each of
    cost.devices devices); ``disaggregated`` runs prompts there and decodes on
    ``decode_replicas`` engines priced by ``decode_cost`` (default: the same device).
    ``concurrency``: a closed loop of that many clients instead of the requests' arrival
    times (each client sends its next request when its last one finishes, as GenAI-Perf
    and benchmark_serving --max-concurrency do). ``draft_cost``: the draft model's steps on
    the same devices, for ``policy.speculative_k`` > 0 (see codesign.serve.api.engines).
    ``frontend``: the API server's serial work (default: the runtime's, :func:`runtime_frontend`;
    ``Frontend()`` for none).
    Returns a :class:`codesign.serve.metrics.ServeResult`."""
    pol = policy or Policy()
    if replicas < 1 or decode_replicas < 1:
        raise CodesignError("replicas must be >= 1", field="--replicas")
    n = len(requests)
    log = _Log(n)
    dis = pol.name == "disaggregated"
    # a pipeline of pp stages runs pp virtual engines (vLLM), sharing the devices' KV cache
    def pool(c: StepCost, count: int, role: str, start: int) -> list:
        virt = c.pp
        kv = c.kv_capacity_tokens // virt
        return [_Engine(start + i, c, pol, kv, role, requests, log, draft_cost) for i in range(count * virt)]
    front = pool(cost, replicas, "prefill" if dis else "both", 0)
    back = pool(decode_cost or cost, decode_replicas, "decode", len(front)) if dis else []
    for e in front + back:
        if e.total_blocks < 1:
            raise CodesignError(f"no KV cache blocks left on {e.cost.spec.name}", field="hardware")
    delay = cost.request_overhead
    if frontend is None:          # the runtime's own API server
        frontend = runtime_frontend(cost.scenario)
    fe = frontend if frontend.active else None
    # host latency outside the serial front end (the front end's work is part of request_overhead)
    pre = max(delay - fe.request_s, 0.0) if fe else delay
    if concurrency is not None:
        if concurrency < 1:
            raise CodesignError(f"expected an integer >= 1, got {concurrency}", field="--concurrency")
        # closed loop: the first clients start at once, the others when a request finishes
        arrivals = np.full(n, np.inf)
        arrivals[:concurrency] = pre
        requests = Requests(np.zeros(n), requests.prompt, requests.output)
        for e in front + back:
            e.req = requests
    else:
        arrivals = requests.arrival + pre
    released = min(concurrency or n, n)
    heap: list = []         # (time, order, kind, engine or request)
    order = 0
    in_system, area, t_last = 0, 0.0, 0.0
    leaving: list = []      # times requests reach their clients (after the front end)
    steps = 0
    xfer_cost = decode_cost or cost
    # one API server per replica: engines of a replica (its pipeline's virtual engines) stream
    # through it; decode-pool engines through the replica of their number
    servers = [0.0] * replicas      # when each replica's front end is next idle
    server_of = [e.idx // cost.pp for e in front] + [(e.idx - len(front)) // (decode_cost or cost).pp % replicas
                                                     for e in back]

    token_s = fe.token_s if fe else 0.0

    def delivery(r: int):
        def deliver(t: float, tokens: int) -> float:
            if tokens <= 0:
                return t
            servers[r] = max(t, servers[r]) + tokens * token_s
            return servers[r]
        return deliver
    delivers = [delivery(r) for r in server_of] if fe else [None] * len(server_of)

    def advance(to: float):
        """Integrate the number in the system up to ``to`` (requests leave as they reach their clients)."""
        nonlocal area, t_last, in_system
        while leaving and leaving[0] <= to:
            d = heapq.heappop(leaving)
            area += in_system * (d - t_last)
            t_last = d
            in_system -= 1
        area += in_system * (to - t_last)
        t_last = to

    def arrive(k: int, t: float):
        nonlocal order, in_system
        in_system += 1
        e = _route(front, k, pol)
        if fe:                              # the front end takes it in turn, then the engine sees it
            r = server_of[e.idx]
            servers[r] = max(t, servers[r]) + fe.request_s
            e.incoming += 1
            order += 1
            heapq.heappush(heap, (servers[r], order, 2, (k, e), 0.0))
            return
        e.waiting.append(k)
        if not e.busy:
            start(e, t)

    def start(e: _Engine, now: float):
        nonlocal order, steps
        dur = e.plan_step(now)
        if dur is None:
            e.busy = False
            return
        e.busy = True
        steps += 1
        if steps > MAX_STEPS:
            raise CodesignError(f"the run needs more than {MAX_STEPS} steps: fewer requests or a shorter --duration",
                                field="--requests")
        order += 1
        heapq.heappush(heap, (now + dur, order, 0, e, dur))

    links = [c for c in (cost, xfer_cost) if c.link_bw] or [cost]

    def prefilled(rid: int, t: float):
        nonlocal order
        # the prompt's KV cache crosses the slower of the two host links
        tokens = int(requests.prompt[rid] + log.generated[rid])
        dt = max(c.kv_transfer_time(tokens) for c in links)
        order += 1
        heapq.heappush(heap, (t + dt, order, 1, rid, 0.0))

    i = 0
    while i < n or heap:
        if heap and (i >= n or heap[0][0] <= arrivals[i]):
            t, _, kind, obj, dur = heapq.heappop(heap)
            if leaving:
                advance(t)
            else:
                area += in_system * (t - t_last)
                t_last = t
            if kind == 0:
                done = obj.end_step(t, dur, prefilled, delivers[obj.idx])
                if fe:                           # they leave when their last token reaches them
                    for rid in done:
                        heapq.heappush(leaving, float(log.finish[rid]))
                else:
                    in_system -= len(done)
                if concurrency is not None:
                    for rid in done:             # each finished client sends its next request
                        if released < n:
                            seen = float(log.finish[rid])
                            requests.arrival[released] = seen
                            if fe:               # the front end may stream out of step order
                                order += 1
                                heapq.heappush(heap, (seen + pre, order, 3, released, 0.0))
                            else:
                                arrivals[released] = seen + pre
                            released += 1
                start(obj, t)
            elif kind == 1:                     # KV arrived at the decode pool
                e = _route(back, obj, pol)
                e.waiting.append(obj)
                if not e.busy:
                    start(e, t)
            elif kind == 2:                     # the front end handed a request to its engine
                k, e = obj
                e.incoming -= 1
                e.waiting.append(k)
                if not e.busy:
                    start(e, t)
            else:                               # a closed-loop client's next request
                arrive(obj, t)
        else:
            t = float(arrivals[i])
            if math.isinf(t):
                break
            if leaving:
                advance(t)
            else:
                area += in_system * (t - t_last)
                t_last = t
            arrive(i, t)
            i += 1
    if leaving:
        advance(max(leaving))
    if any(e.has_work() for e in front + back):      # a scheduler that can never run its work
        raise CodesignError("the scheduler stalled with requests left: the KV cache cannot hold them", field="policy")
    return ServeResult.build(requests, log, pol, cost, decode_cost, replicas, decode_replicas,
                             mean_in_system=area / t_last if t_last > 0 else 0.0, request_overhead=delay)
