"""Serving under traffic: request arrivals, batching policies, paged KV cache, SLO metrics.

The simulator prices every step with the one engine (codesign.perf.steps); see sim.py."""
from .api import draft_engine, engines, serve
from .metrics import MaxRate, ServeResult, find_max_rate, meets
from .sim import POLICIES, Frontend, Policy, runtime_frontend, simulate
from .traffic import Requests, load_trace, make_requests, sample_lengths

__all__ = ["POLICIES", "draft_engine", "engines", "runtime_frontend", "Frontend", "serve",
           "MaxRate", "Policy", "Requests", "ServeResult", "find_max_rate", "load_trace",
           "make_requests",
           "meets", "sample_lengths", "simulate"]
