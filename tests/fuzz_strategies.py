"""Hypothesis strategies for whole configs, for the end-to-end fuzzers (tests/test_fuzz_*.py).

`valid_configs()` draws small runnable configs across the features. Each entry of `FEATURES` is one
independent part of a config (a dotted-key -> value mapping drawn by a strategy); a new feature adds
its keys as one more entry, or one more alternative in a `one_of`, and every fuzzer picks it up.
Runs stay small (tens of requests, short prompts) so hundreds of them fit in CI.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from servesim.config.loader import set_dotted

BASE: dict[str, Any] = {
    "model": "llama3-8b",
    "hardware": "h100-sxm",
    "workload": {"num_requests": 12},
    "output": {"timeseries_interval_s": None},
}
SCHEDULERS = ["fcfs", "chunked_prefill", "srtf", "edf", "priority"]
ROUTERS = ["round_robin", "random", "least_loaded", "least_tokens", "power_of_two", "prefix_affinity"]
PREDICTORS = ["oracle", "mean", {"name": "noisy_oracle", "sigma": 0.5}, {"name": "bucket", "accuracy": 0.7}]


def lengths(max_mean: int):
    """A length distribution of modest size (tokens)."""
    hi = st.integers(2, max_mean)
    return st.one_of(
        st.builds(lambda v: {"dist": "fixed", "value": v}, hi),
        st.builds(lambda a, b: {"dist": "uniform", "min": min(a, b), "max": max(a, b)}, hi, hi),
        st.builds(
            lambda m, s: {"dist": "lognormal", "mean": m, "sigma": s, "max": 4 * max_mean},
            st.floats(2, max_mean),
            st.floats(0, 1.5),
        ),
        st.builds(lambda a: {"dist": "zipf", "alpha": a, "min": 2, "max": max_mean}, st.floats(1.2, 3.0)),
    )


ARRIVALS = st.one_of(
    st.builds(lambda r: {"process": "poisson", "rate": r}, st.floats(0.5, 400)),
    st.builds(
        lambda r, cv: {"process": "gamma", "rate": r, "cv": cv}, st.floats(0.5, 400), st.floats(0.2, 4)
    ),
    st.builds(
        lambda r, cv: {"process": "weibull", "rate": r, "cv": cv}, st.floats(0.5, 400), st.floats(0.3, 3)
    ),
    st.builds(lambda r: {"process": "constant", "rate": r}, st.floats(0.5, 400)),
    st.builds(
        lambda r, f: {
            "process": "poisson",
            "rate": r,
            "rate_schedule": {"kind": "piecewise", "points": [[0, 1.0], [0.2, f]]},
        },
        st.floats(1, 200),
        st.floats(0.1, 5),
    ),
    st.builds(
        lambda r, a: {
            "process": "poisson",
            "rate": r,
            "rate_schedule": {"kind": "diurnal", "period_s": 2.0, "amplitude": a},
        },
        st.floats(1, 200),
        st.floats(0, 1),
    ),
)
SESSIONS = st.builds(
    lambda turns, think, system: {
        "turns": {"dist": "uniform", "min": 1, "max": turns},
        "think_time": {"dist": "exponential", "mean": think},
        "system_prompt_tokens": system,
    },
    st.integers(1, 4),
    st.floats(0, 0.5),
    st.sampled_from([0, 32, 200]),
)
CLASSES = st.builds(
    lambda pa, pb, ttft, n: {
        "workload.num_requests": n,
        "workload.classes": [
            {
                "name": "chat",
                "priority": pa,
                "slo": {"ttft_s": ttft},
                "lengths": {
                    "prompt": {"dist": "fixed", "value": 64},
                    "output": {"dist": "fixed", "value": 8},
                },
            },
            {"name": "batch", "priority": pb, "arrival": {"process": "poisson", "rate": 20.0}},
        ],
    },
    st.integers(0, 3),
    st.integers(0, 3),
    st.floats(0.01, 2.0),
    st.integers(2, 16),
)
WORKLOADS = st.one_of(
    st.fixed_dictionaries(
        {
            "workload.num_requests": st.integers(1, 20),
            "workload.arrival": ARRIVALS,
            "workload.lengths": st.fixed_dictionaries({"prompt": lengths(1500), "output": lengths(300)}),
        }
    ),
    st.fixed_dictionaries(
        {
            "workload.num_requests": st.integers(1, 16),
            "workload.arrival": ARRIVALS,
            "workload.sessions": SESSIONS,
            "workload.lengths": st.fixed_dictionaries({"prompt": lengths(400), "output": lengths(40)}),
        }
    ),
    CLASSES,
    st.fixed_dictionaries(
        {  # a time window instead of a count (constant arrivals: never empty)
            "workload.duration_s": st.floats(0.2, 1.0),
            "workload.arrival": st.builds(lambda r: {"process": "constant", "rate": r}, st.floats(10, 40)),
            "workload.lengths": st.fixed_dictionaries({"prompt": lengths(800), "output": lengths(40)}),
        }
    ).map(lambda d: {**d, "workload.num_requests": None}),
)
CLUSTERS = st.one_of(
    st.fixed_dictionaries(
        {"cluster.instances": st.integers(1, 3), "cluster.router": st.sampled_from(ROUTERS)}
    ),
    st.fixed_dictionaries(
        {  # heterogeneous pools
            "cluster.pools": st.builds(
                lambda a, b: [
                    {"name": "h100", "instances": a, "hardware": "h100-sxm"},
                    {"name": "h200", "instances": b, "hardware": "h200-sxm"},
                ],
                st.integers(1, 2),
                st.integers(1, 2),
            ),
            "cluster.router": st.sampled_from(ROUTERS),
        }
    ),
    st.fixed_dictionaries(
        {  # disaggregated, same hardware
            "cluster.disaggregation": st.fixed_dictionaries(
                {
                    "prefill_instances": st.integers(1, 2),
                    "decode_instances": st.integers(1, 2),
                    "decode_router": st.sampled_from(["least_tokens", "round_robin", "least_loaded"]),
                    "kv_link": st.fixed_dictionaries(
                        {"bandwidth_gb_s": st.floats(1, 400), "channels": st.integers(1, 3)}
                    ),
                }
            ),
        }
    ),
    st.fixed_dictionaries(
        {  # disaggregated pools on different hardware
            "cluster.pools": st.just(
                [
                    {"name": "p", "role": "prefill", "instances": 1, "hardware": "h100-sxm"},
                    {"name": "d", "role": "decode", "instances": 1, "hardware": "h200-sxm"},
                ]
            ),
            "cluster.disaggregation": st.builds(
                lambda bw: {"kv_link": {"bandwidth_gb_s": bw}}, st.floats(5, 100)
            ),
        }
    ),
)
POLICIES = st.one_of(  # the policy and the batching: one component each (`name` or `{name: ..., **params}`)
    st.fixed_dictionaries({"engine.scheduler": st.sampled_from(SCHEDULERS)}),
    st.fixed_dictionaries(
        {
            "engine.scheduler": st.sampled_from(["fcfs", "srtf", "edf", "priority"]),
            "engine.batching": st.one_of(
                st.sampled_from(["whole", "chunked"]),
                st.builds(lambda m: {"name": "chunked", "max_prefills": m}, st.integers(1, 4)),
            ),
        }
    ),
    st.builds(
        lambda a, p: {"engine.scheduler": {"name": "srtf", "aging_s": a, "preempt_to_admit": p}},
        st.sampled_from([None, 0.05, 1.0]),
        st.booleans(),
    ),
    st.builds(lambda a: {"engine.scheduler": {"name": "edf", "admission_control": a}}, st.booleans()),
    st.builds(
        lambda w: {"engine.scheduler": {"name": "priority", "class_priority": {"chat": w, "batch": 1}}},
        st.integers(0, 5),
    ),
    st.builds(  # the older spellings, still accepted
        lambda m: {"engine.scheduler": "chunked_prefill", "engine.chunked_prefill": {"max_prefills": m}},
        st.integers(1, 4),
    ),
    st.builds(
        lambda a: {"engine.scheduler": "srtf", "engine.srtf": {"aging_s": a}}, st.sampled_from([None, 1.0])
    ),
)
ENGINE = st.fixed_dictionaries(
    {
        "engine.max_num_seqs": st.integers(1, 64),
        "engine.max_num_batched_tokens": st.sampled_from([256, 2048, 8192]),
        "engine.chunk_size": st.sampled_from([32, 512]),
        "engine.block_size": st.sampled_from([1, 16, 32]),
        "engine.preemption": st.sampled_from(["recompute", "swap"]),
        "engine.prefix_caching": st.booleans(),
        "engine.predictor": st.sampled_from(PREDICTORS),
        # tiny KV (a few blocks: rejections and preemption storms), moderate, or derived from memory (huge)
        "engine.kv_capacity_tokens": st.one_of(
            st.integers(32, 600),  # tiny: prompts that never fit, rejections
            st.integers(600, 3000),  # tight: preemption storms
            st.integers(3000, 20_000),
            st.none(),  # derived from memory: huge
        ),
    }
)
MISC = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**31),
        "slo.ttft_s": st.floats(0.01, 5),
        "slo.tpot_s": st.floats(0.001, 0.5),
        "max_sim_time_s": st.one_of(st.none(), st.none(), st.floats(0.01, 1.0)),  # cut runs short
        "output.requests_csv": st.booleans(),
    }
)
STRESS = st.one_of(  # half the runs push on preemption or on prefix reuse
    st.just({}),
    st.just({}),
    st.fixed_dictionaries(  # multi-turn conversations sharing a system prompt, caching on
        {
            "engine.prefix_caching": st.just(True),
            "workload.sessions": st.builds(
                lambda turns, think: {
                    "turns": {"dist": "uniform", "min": 2, "max": turns},
                    "think_time": {"dist": "fixed", "mean": think},
                    "system_prompt_tokens": 64,
                },
                st.integers(2, 5),
                st.floats(0.05, 0.5),
            ),
            "workload.classes": st.just([]),
            "workload.duration_s": st.none(),
            "workload.num_requests": st.integers(6, 20),
        }
    ),
    st.fixed_dictionaries(
        {
            "engine.kv_capacity_tokens": st.integers(800, 4000),
            "workload.arrival": st.just({"process": "poisson", "rate": 300.0}),
            "workload.lengths.prompt": st.builds(
                lambda a: {"dist": "uniform", "min": a, "max": 2 * a}, st.integers(100, 400)
            ),
            "workload.lengths.output": st.builds(
                lambda a: {"dist": "uniform", "min": a, "max": 2 * a}, st.integers(50, 200)
            ),
        }
    ),
)
POWER = st.one_of(  # power caps and a cluster budget (energy accounting runs in every config)
    st.just({}),
    st.builds(lambda cap: {"power.cap_w": cap}, st.floats(200, 700)),
    st.builds(
        lambda budget, cap: {"power.budget": {"budget_w": budget, "cap_w": cap, "interval_s": 0.05}},
        st.floats(300, 3000),
        st.floats(200, 700),
    ),
)
FEATURES = {
    "workload": WORKLOADS,
    "cluster": CLUSTERS,
    "policy": POLICIES,
    "engine": ENGINE,
    "misc": MISC,
    "stress": STRESS,
    "power": POWER,
}
"""One strategy per independent part of a config; each draws dotted key -> value overrides."""


def build_config(overrides: dict[str, Any]) -> dict:
    config = copy.deepcopy(BASE)
    for key, value in overrides.items():
        set_dotted(config, key, copy.deepcopy(value))  # never share a strategy's constant
    return config


@st.composite
def valid_configs(draw) -> dict:
    overrides: dict[str, Any] = {}
    for strategy in FEATURES.values():
        overrides.update(draw(strategy))
    if overrides.get("engine.block_size", 16) > (overrides.get("engine.kv_capacity_tokens") or 10**9):
        overrides["engine.kv_capacity_tokens"] = overrides["engine.block_size"]
    return build_config(overrides)
