"""Shared fixtures: small configs that simulate in milliseconds."""

from __future__ import annotations

import copy

import pytest

SMALL = {
    "seed": 7,
    "model": "llama3-8b",
    "hardware": "h100-sxm",
    "engine": {"scheduler": "fcfs", "max_num_seqs": 32, "max_num_batched_tokens": 4096},
    "workload": {
        "num_requests": 60,
        "arrival": {"process": "poisson", "rate": 20.0},
        "lengths": {
            "prompt": {"dist": "lognormal", "mean": 400, "sigma": 0.8, "max": 3000},
            "output": {"dist": "lognormal", "mean": 60, "sigma": 0.8, "max": 400},
        },
    },
}


def small_config(**changes) -> dict:
    """A deep copy of SMALL with dotted-key changes applied."""
    from servesim.config.loader import set_dotted

    cfg = copy.deepcopy(SMALL)
    for key, value in changes.items():
        set_dotted(cfg, key, value)
    return cfg


@pytest.fixture
def small():
    return small_config
