"""Check a plugin before a paper does: `check_policy(cls)` and `check_router(cls)`.

Each runs the plugin on small workloads under every engine feature it can meet (whole and chunked
batching, both KV allocations, recompute and swap preemption under a tight KV cache, prefix
caching, prefill/decode disaggregation) and checks the simulator's invariants on every run:

- KV block conservation after every step of every instance, and no block held at the end;
- request conservation: every arrived request completed or was rejected with a reason;
- causality: arrival <= first token <= finish, and every completed request got all its tokens;
- multi-step decode runs give the same per-request times as stepping one iteration at a time
  (`engine.max_run_steps: 1`), so a policy's `repeat_limits` (or its `rank_changes`) is honest;
- determinism: the same seed gives the same requests table.

A failure raises `PluginCheckError` naming the scenario and what broke.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from servesim.build import build
from servesim.config import load_config
from servesim.registry import Registry
from servesim.routers import ROUTERS
from servesim.schedulers import POLICIES
from servesim.simulation import SimulationResult, run

_LENGTHS = {"prompt": {"dist": "lognormal", "mean": 300, "sigma": 0.8, "max": 2000},
            "output": {"dist": "lognormal", "mean": 60, "sigma": 0.8, "max": 300}}
_SESSIONS = {"turns": {"dist": "uniform", "min": 1, "max": 4},
             "think_time": {"dist": "exponential", "mean": 0.5}, "system_prompt_tokens": 256}
BASE: dict[str, Any] = {
    "model": "llama3-8b", "hardware": "h100-sxm", "slo": {"ttft_s": 0.5, "tpot_s": 0.05},
    "engine": {"max_num_seqs": 12, "max_num_batched_tokens": 4096, "chunk_size": 256},
    "workload": {"num_requests": 48, "arrival": {"process": "poisson", "rate": 30.0},
                 "lengths": _LENGTHS, "sessions": _SESSIONS},
}
"""A small, contended workload with shared prefixes (multi-turn sessions)."""

TIGHT_KV = {"engine.kv_capacity_tokens": 3000}

POLICY_SCENARIOS: dict[str, dict[str, Any]] = {
    "whole": {},
    "chunked": {"engine.batching": "chunked"},
    "tight-kv-recompute": {**TIGHT_KV},
    "tight-kv-swap": {**TIGHT_KV, "engine.preemption": "swap"},
    "chunked-chunk-allocation-tight-kv": {
        **TIGHT_KV, "engine.batching": "chunked", "engine.kv_allocation": "chunk",
    },
    "prefix-caching": {"engine.prefix_caching": True, "cluster.instances": 2,
                       "cluster.router": "prefix_affinity"},
    "disaggregated": {
        "cluster.disaggregation": {"prefill_instances": 1, "decode_instances": 2},
        "engine.prefix_caching": True, "engine.kv_capacity_tokens": 12000,
    },
}

ROUTER_SCENARIOS: dict[str, dict[str, Any]] = {
    "three-instances": {"cluster.instances": 3},
    "prefix-caching": {"cluster.instances": 3, "engine.prefix_caching": True},
    "tight-kv-chunked": {**TIGHT_KV, "cluster.instances": 2, "engine.batching": "chunked"},
    "pools": {"cluster.pools": [{"name": "a", "instances": 1}, {"name": "b", "instances": 2,
                                                              "hardware": "a100-80gb"}]},
}


class PluginCheckError(AssertionError):
    """A plugin broke an invariant; the message names the scenario and the invariant."""


@dataclass
class CheckReport:
    plugin: str
    scenarios: list[str] = field(default_factory=list)
    """Scenarios that passed every check."""
    completed: dict[str, int] = field(default_factory=dict)
    preemptions: dict[str, int] = field(default_factory=dict)
    prefix_hit_rate: dict[str, float] = field(default_factory=dict)


def check_policy(policy, params: dict | None = None, seed: int = 0) -> CheckReport:
    """Check a scheduling policy: a class, a `module:Class` path or a built-in name."""
    spec = _component(POLICIES, policy, params)
    overrides = {name: {"engine.scheduler": spec, **changes}
                 for name, changes in POLICY_SCENARIOS.items()}
    return _check(spec, overrides, seed)


def check_router(router, params: dict | None = None, seed: int = 0) -> CheckReport:
    """Check a router (as cluster router, and as the decode router of a disaggregated cluster):
    a class, a `module:Class` path or a built-in name."""
    spec = _component(ROUTERS, router, params)
    overrides = {name: {"cluster.router": spec, **changes}
                 for name, changes in ROUTER_SCENARIOS.items()}
    overrides["decode-router"] = {
        "cluster.disaggregation": {"prefill_instances": 1, "decode_instances": 3,
                                   "decode_router": spec},
    }
    return _check(spec, overrides, seed)


def checked_run(config, overrides: dict | None = None, table=None) -> SimulationResult:
    """Simulate with KV conservation checked after every step; then the end-of-run checks.
    `table` replaces the workload's requests (a `RequestTable`)."""
    built = build(load_config(config, overrides), table=table)
    result = run(built, after_step=lambda instance: instance.kv.check_conservation())
    for part in built.parts:
        part.kv.check_conservation()
        if part.kv.num_free_blocks != part.kv.num_blocks or part.kv.num_detached_blocks:
            raise PluginCheckError("KV blocks still held when every request is done")
    check_requests(result.requests)
    return result


def check_requests(frame: pd.DataFrame) -> None:
    """Request conservation and causality on a requests table (no time limit: none unfinished)."""
    status = frame["status"]
    if (status == "unfinished").any():
        raise PluginCheckError(f"{int((status == 'unfinished').sum())} requests never finished")
    rejected = frame[status == "rejected"]
    if (rejected["rejected_reason"] == "").any():
        raise PluginCheckError("a request was rejected without a reason")
    done = frame[status == "completed"]
    if len(done) + len(rejected) != len(frame) or not frame["request_id"].is_unique:
        raise PluginCheckError("requests were lost or counted twice")
    if not ((done["arrival_s"] <= done["first_token_s"]) & (done["first_token_s"] <= done["finish_s"])).all():
        raise PluginCheckError("a token came before its request arrived, or after it finished")
    if not (done["generated_tokens"] == done["output_tokens"]).all():
        raise PluginCheckError("a completed request did not get all its output tokens")


def _check(spec, overrides: dict[str, dict], seed: int) -> CheckReport:
    report = CheckReport(str(spec))
    for name, changes in overrides.items():
        changes = {"seed": seed, **changes}
        try:
            multi = checked_run(BASE, changes)
            single = checked_run(BASE, {**changes, "engine.max_run_steps": 1})
            again = run(build(load_config(BASE, changes))).requests
        except PluginCheckError as exc:
            raise PluginCheckError(f"{name}: {exc}") from None
        _same_times(name, multi.requests, single.requests)
        if not multi.requests.equals(again):
            raise PluginCheckError(f"{name}: the same seed gave different results")
        report.scenarios.append(name)
        report.completed[name] = multi.summary["requests"]["completed"]
        report.preemptions[name] = multi.summary["kv"]["preemptions"]
        report.prefix_hit_rate[name] = multi.summary["kv"]["prefix_hit_rate"]
    return report


def _same_times(name: str, multi: pd.DataFrame, single: pd.DataFrame) -> None:
    for column in ("first_token_s", "finish_s", "tbt_max_s"):
        a, b = multi[column].to_numpy(float), single[column].to_numpy(float)
        if not np.array_equal(np.isnan(a), np.isnan(b)) or np.nanmax(np.abs(a - b), initial=0) > 1e-9:
            raise PluginCheckError(
                f"{name}: multi-step decode runs differ from single steps in {column} (a policy "
                "whose ranking changes while requests decode must bound the run: repeat_limits)"
            )
    if not (multi["preemptions"] == single["preemptions"]).all() or not (
        multi["status"] == single["status"]
    ).all():
        raise PluginCheckError(f"{name}: multi-step decode runs differ from single steps")


def _component(registry: Registry, plugin, params: dict | None):
    """The config value naming `plugin`; a class must be importable as `module:Class`."""
    if isinstance(plugin, type):
        path = f"{plugin.__module__}:{plugin.__qualname__}"
        if "<locals>" in path or registry.get(path) is not plugin:
            raise TypeError(f"{path}: define the class at module level, so a config can name it")
        plugin = path
    else:
        registry.get(plugin)  # a clear error for an unknown name now, not in the first scenario
    return {"name": plugin, **params} if params else plugin


__all__ = [
    "CheckReport",
    "PluginCheckError",
    "check_policy",
    "check_requests",
    "check_router",
    "checked_run",
]
