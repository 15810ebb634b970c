"""Hypothesis strategies for whole configs, for the end-to-end fuzzers (tests/test_fuzz_*.py).

`valid_configs()` draws small runnable configs across the features. Each entry of `FEATURES` is one
independent part of a config (a dotted-key -> value mapping drawn by a strategy); a new feature adds
its keys as one more entry, or one more alternative in a `one_of`, and every fuzzer picks it up.
Runs stay small (tens of requests, short prompts) so hundreds of them fit in CI.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from servesim.config.loader import set_dotted

ROOT = Path(__file__).resolve().parents[1]

BASE: dict[str, Any] = {
    "model": "llama3-8b",
    "hardware": "h100-sxm",
    "workload": {"num_requests": 12},
    "output": {"timeseries_interval_s": None},
}
SCHEDULERS = ["fcfs", "chunked_prefill", "srtf", "edf", "priority"]
ROUTERS = [
    "round_robin", "random", "least_loaded", "least_tokens", "power_of_two", "prefix_affinity", "conductor",
    "dualmap",
]
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
        {  # a replayed trace (Azure format), or lengths resampled from a file (small synthetic files)
            "workload.trace": st.builds(
                lambda n, scale, start: {
                    "path": str(ROOT / "tests/data/fuzz_azure_trace.csv"), "format": "azure",
                    "max_requests": n, "time_scale": scale, "start_s": start,
                },
                st.integers(1, 16), st.floats(0.01, 1), st.sampled_from([0.0, 1.0]),
            ),
            "workload.num_requests": st.sampled_from([None, 8]),
        }
    ),
    st.fixed_dictionaries(
        {
            "workload.num_requests": st.integers(1, 16),
            "workload.arrival": ARRIVALS,
            "workload.lengths": st.just(
                {"empirical": str(ROOT / "tests/data/fuzz_lengths.csv")}
            ),
        }
    ),
    st.fixed_dictionaries(
        {  # a time window instead of a count (constant arrivals: never empty)
            "workload.duration_s": st.floats(0.2, 1.0),
            "workload.arrival": st.builds(lambda r: {"process": "constant", "rate": r}, st.floats(10, 40)),
            "workload.lengths": st.fixed_dictionaries({"prompt": lengths(800), "output": lengths(40)}),
        }
    ).map(lambda d: {**d, "workload.num_requests": None}),
    st.fixed_dictionaries(
        {  # agentic programs: chains (or fan-outs) of calls separated by tool time
            "workload.programs": st.fixed_dictionaries(
                {
                    "num_programs": st.integers(1, 4),
                    "calls": st.builds(lambda n: {"dist": "uniform", "min": 1, "max": n}, st.integers(1, 5)),
                    "tool_time": st.one_of(
                        st.builds(lambda t: {"dist": "fixed", "mean": t}, st.floats(0, 0.3)),
                        st.builds(lambda t: {"dist": "exponential", "mean": t}, st.floats(0, 0.3)),
                    ),
                    "system_prompt_tokens": st.sampled_from([0, 64, 300]),
                    "new_tokens": lengths(300),
                    "output": lengths(40),
                    "fan_out": st.integers(1, 3),
                    "fan_out_prob": st.sampled_from([0.0, 0.3, 1.0]),
                    "hash_block_size": st.sampled_from([1, 16, 128]),
                }
            ),
            "workload.arrival": ARRIVALS,
            "workload.num_requests": st.sampled_from([None, None, 5]),
        }
    ),
)
PROGRAM_CONFLICTS = ("workload.sessions", "workload.classes", "workload.trace", "workload.filter")
"""Keys `workload.programs` cannot be combined with (another feature may draw them)."""
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
                    "prefill_tp": st.sampled_from([None, 2]),  # 2: holds every drawn model
                    "decode_tp": st.sampled_from([None, 2]),
                    "prefill_engine": st.one_of(  # each pool's own engine keys
                        st.none(), st.builds(lambda n: {"max_num_seqs": n}, st.integers(1, 16))
                    ),
                    "decode_engine": st.one_of(
                        st.none(),
                        st.builds(lambda n, s: {"max_num_seqs": n, "scheduler": s},
                                  st.integers(1, 64), st.sampled_from(["fcfs", "srtf", "priority"])),
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
    st.builds(lambda mhz: {"power.clock_mhz": mhz}, st.floats(600, 1400)),
    st.builds(lambda cap: {"power.cap_w": cap}, st.floats(200, 700)),
    st.builds(
        lambda budget, cap: {"power.budget": {"budget_w": budget, "cap_w": cap, "interval_s": 0.05}},
        st.floats(300, 3000),
        st.floats(200, 700),
    ),
)
ENGINE_KINDS = [
    None, "tensorrt-llm", "tensorrt-llm-pytorch", "vllm", "vllm-rocm-2024", "vllm-cuda-v0", "sglang",
    "jetstream", "mindie", "optimum-habana", "tgi-gaudi",
]
ACCELERATORS = [  # (hardware, tp) that hold llama3-8b: every catalog family
    ("h100-sxm", 1), ("h200-sxm", 1), ("a100-80gb", 1), ("a100-pcie-80gb", 1), ("a800-80gb", 1), ("a40", 1),
    ("h800-sxm", 1), ("h20", 1), ("b200", 1), ("gb200", 1), ("l40s", 1), ("l4", 1), ("mi300x", 1),
    ("mi325x", 1), ("mi355x", 1), ("ascend-910b", 1), ("ascend-910c", 1), ("tpu-v5e", 2), ("tpu-v5p", 1),
    ("tpu-v6e", 1), ("gaudi2", 1), ("gaudi3", 1),
]
MODELS = [  # (model, tp) on an 80 GB part: GQA, MHA, sliding window, MoE, MLA
    ("llama3-8b", 1), ("llama3.1-8b", 1), ("llama2-7b", 1), ("mistral-7b", 1), ("qwen2.5-7b", 2),
    ("qwen3-8b", 1), ("qwen1.5-moe-a2.7b", 1), ("qwen3-30b-a3b", 2), ("opt-13b", 1), ("mixtral-8x7b", 2),
    ("llama2-13b", 2),
]
NO_TDP = {"tpu-v5e", "tpu-v5p", "tpu-v6e", "ascend-910c"}
"""Parts without a catalog `tdp_w`: they cannot be power-capped."""
CLOCKED = {"h100-sxm": 1980, "h200-sxm": 1980, "a100-80gb": 1410}
"""Parts with a catalog `max_clock_mhz` (MHz): a clock limit needs it."""
HARDWARE = st.one_of(  # the accelerator and model, and the engine the cost model prices
    st.just({}),
    st.builds(
        lambda hw, kind: {"hardware": hw[0], "cluster.tp": hw[1], "engine.kind": kind},
        st.sampled_from(ACCELERATORS),
        st.sampled_from(ENGINE_KINDS),
    ),
    st.builds(
        lambda m, pp, kind, steps: {
            "model": m[0], "cluster.tp": m[1], "cluster.pp": pp, "engine.kind": kind,
            "engine.num_scheduler_steps": steps,
        },
        st.sampled_from(MODELS),
        st.sampled_from([1, 1, 2]),
        st.sampled_from(ENGINE_KINDS),
        st.sampled_from([1, 1, 8]),
    ),
)
AUTOSCALERS = st.one_of(
    st.builds(lambda t, tol: {"name": "target_utilization", "target": t, "tolerance": tol},
              st.floats(0.05, 1.0), st.floats(0, 0.5)),
    st.builds(lambda r: {"name": "queue_length", "requests_per_instance": r}, st.floats(0.5, 20)),
    st.builds(
        lambda r, w, la: {
            "name": "predicted_load", "requests_per_instance": r, "window_s": w, "lookahead_s": la
        },
        st.floats(0.5, 20), st.floats(0.01, 1), st.floats(0, 1),
    ),
    st.builds(lambda a, b, t: {"name": "schedule", "points": [[0, a], [t, b]]},
              st.integers(1, 3), st.integers(1, 3), st.floats(0.01, 0.5)),
)
AUTOSCALING = st.builds(
    lambda policy, hi, interval, cooldown, fixed, bw: {
        "policy": policy, "min_instances": 1, "max_instances": hi, "interval_s": interval,
        "cooldown_s": cooldown, "cold_start": {"fixed_s": fixed, "load_bandwidth_gb_s": bw},
    },
    AUTOSCALERS, st.integers(1, 3), st.floats(0.02, 0.3), st.floats(0, 0.3), st.floats(0, 0.1),
    st.floats(10, 1000),  # weights load in 0.02-1.6 s: short runs
)
STRAGGLERS = st.lists(
    st.builds(lambda at, f, d: {"at_s": at, "instance": 0, "factor": f, "duration_s": d},
              st.floats(0, 0.3), st.floats(1, 20), st.floats(0.001, 0.5)),
    max_size=2,
)
LINK_DEGRADATIONS = st.lists(
    st.builds(lambda at, f, d, link: {"at_s": at, "factor": f, "duration_s": d, "link": link},
              st.floats(0, 0.3), st.floats(1, 100), st.floats(0.001, 0.5),
              st.sampled_from(["kv", "migration", "all"])),
    max_size=2,
)
FAULTS = st.fixed_dictionaries(
    {
        "failures": st.lists(
            st.builds(lambda at, i, d: {"at_s": at, "instance": i, "duration_s": d},
                      st.floats(0, 0.3), st.integers(0, 3), st.one_of(st.none(), st.floats(0.01, 0.3))),
            max_size=3,
        ),
        "mtbf_s": st.one_of(st.none(), st.floats(0.02, 1.0)),
        "repair_s": st.floats(0.01, 0.3),
        "on_failure": st.sampled_from(["retry", "fail"]),
        "max_retries": st.integers(0, 3),
        "stragglers": STRAGGLERS,
    }
)
MIGRATION = st.fixed_dictionaries(
    {
        "policy": st.one_of(
            st.builds(lambda t, p, m: {"name": "load", "threshold": t, "min_pressure": p, "max_moves": m},
                      st.floats(0, 1), st.floats(0, 1), st.integers(1, 4)),
            st.sampled_from(["fragmentation", "priority", {"name": "fragmentation", "max_moves": 1}]),
        ),
        "interval_s": st.floats(0.02, 0.3),
        "bandwidth_gb_s": st.floats(1, 200),
        "latency_s": st.floats(0, 0.01),
        "channels": st.integers(1, 3),
        "drain": st.booleans(),
    }
)
ELASTIC = st.one_of(  # a fleet that changes during the run
    st.just({}),
    st.just({}),
    st.fixed_dictionaries(  # stragglers and link degradation: any cluster
        {"cluster.faults": st.fixed_dictionaries(
            {"stragglers": STRAGGLERS, "link_degradations": LINK_DEGRADATIONS})}
    ),
    st.fixed_dictionaries(  # autoscaling, failures, migration: one colocated pool
        {
            "cluster.instances": st.integers(1, 3),
            "cluster.autoscaling": st.one_of(st.none(), AUTOSCALING),
            "cluster.faults": st.one_of(st.none(), FAULTS),
            "cluster.migration": st.one_of(st.none(), MIGRATION),
        }
    ),
)
ELASTIC_KEYS = ("cluster.autoscaling", "cluster.migration")
"""With these (or instance failures), the cluster must be one colocated pool."""


def tier(max_gb: float):
    return st.fixed_dictionaries(
        {
            "capacity_gb": st.floats(0.1, max_gb),
            "bandwidth_gb_s": st.one_of(st.none(), st.floats(0.5, 100)),
            "latency_s": st.floats(0, 1e-3),
            "eviction": EVICTIONS,
        }
    )


EVICTIONS = st.one_of(
    st.sampled_from(["lru", "lfu", "program"]),
    st.builds(lambda t: {"name": "ttl", "ttl_s": t}, st.floats(0.01, 1)),
)
KV_TIERS = st.one_of(  # tiers below the GPU, the cluster pool, agentic retention (prefix cache on)
    st.just({}),
    st.just({}),
    st.fixed_dictionaries(
        {
            "engine.prefix_caching": st.just(True),
            "kv.gpu_eviction": EVICTIONS,
            "kv.dram": st.one_of(st.none(), tier(2)),
            "kv.ssd": st.one_of(st.none(), tier(4)),
            "kv.pool": st.one_of(
                st.none(),
                st.fixed_dictionaries(
                    {
                        "capacity_gb": st.floats(0.1, 8),
                        "bandwidth_gb_s": st.floats(0.5, 100),
                        "latency_s": st.floats(0, 1e-3),
                        "eviction": EVICTIONS,
                        "publish": st.sampled_from(["evict", "compute"]),
                    }
                ),
            ),
            "kv.transfers": st.sampled_from(["overlap", "stall"]),
            "kv.retention": st.one_of(
                st.sampled_from([{"mode": "lru"}, {"mode": "none"}, {"mode": "program"}]),
                st.builds(lambda t: {"mode": "ttl", "ttl_s": t}, st.floats(0.01, 1)),
            ),
        }
    ),
)
EXTRAS = st.fixed_dictionaries(  # engine, SLO and pricing keys no other feature draws
    {
        "engine.kv_allocation": st.sampled_from(["prompt", "chunk"]),
        "engine.kv_watermark": st.sampled_from([0.0, 0.01, 0.2]),
        "engine.max_run_steps": st.sampled_from([1, 7, 4096, 4096, 4096, 4096]),  # 1: every step an event
        "engine.gpu_memory_utilization": st.sampled_from([0.7, 0.9, 1.0]),
        "slo.objectives": st.one_of(
            st.just({}),
            st.builds(
                lambda e2e, tbt, slow: {
                    "tight": {"e2e_s": e2e, "tbt_s": tbt},
                    "slow": {"ttft_slowdown": slow, "e2e_slowdown": slow, "queue_s": 0.0},
                },
                st.floats(0.01, 5), st.floats(0.001, 0.5), st.floats(1, 10),
            ),
        ),
        "pricing": st.one_of(
            st.just({}),
            st.builds(lambda usd, c, pue: {"usd_per_gpu_hour": usd, "carbon_g_per_kwh": c, "pue": pue},
                      st.floats(0, 10), st.floats(0, 1000), st.floats(1, 2)),
        ),
        "workload.filter": st.one_of(
            st.none(),
            st.none(),
            st.builds(lambda total, action: {"max_total_tokens": total, "action": action},
                      st.sampled_from([64, 600, "model"]), st.sampled_from(["clip", "reject"])),
            st.just({"max_total_tokens": "model", "action": "drop"}),  # a tight drop may never draw
        ),
    }
)
FEATURES = {
    "workload": WORKLOADS,
    "cluster": CLUSTERS,
    "policy": POLICIES,
    "engine": ENGINE,
    "misc": MISC,
    "stress": STRESS,
    "power": POWER,
    "hardware": HARDWARE,
    "elastic": ELASTIC,
    "kv tiers": KV_TIERS,
    "extras": EXTRAS,
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
    return build_config(compatible(overrides))


def compatible(overrides: dict[str, Any]) -> dict[str, Any]:
    """Drop the keys one feature drew that another feature's draw rules out."""
    out = dict(overrides)
    if "empirical" in (out.get("workload.lengths") or {}):
        out.pop("workload.lengths.prompt", None)  # resampled from the file instead
        out.pop("workload.lengths.output", None)
    if out.get("workload.trace") is not None:
        out.pop("workload.sessions", None)  # sessions apply to generated arrivals
    if out.get("workload.programs") is not None:
        for key in PROGRAM_CONFLICTS:
            out.pop(key, None)
        if out.get("workload.duration_s") is not None:
            out.pop("workload.duration_s")
    faults = out.get("cluster.faults") or {}
    if any(out.get(k) is not None for k in ELASTIC_KEYS) or faults.get("failures") or faults.get("mtbf_s"):
        for key in ("cluster.pools", "cluster.disaggregation"):
            out.pop(key, None)
    elif "cluster.pools" in out or "cluster.disaggregation" in out:
        out.pop("cluster.instances", None)  # the pools' total (an elastic draw set a count)
    if out.get("cluster.autoscaling") is not None:
        hi = out["cluster.autoscaling"]["max_instances"]
        out["cluster.instances"] = min(out.get("cluster.instances", 1), hi)
    if out.get("hardware") not in CLOCKED:
        out.pop("power.clock_mhz", None)
    if out.get("hardware") in NO_TDP:
        out = {k: v for k, v in out.items() if not k.startswith("power.")}
    return out
