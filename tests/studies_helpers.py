"""Small configs shared by the studies tests (kept tiny: each simulation takes milliseconds)."""

from pathlib import Path

import yaml

SMALL = {
    "seed": 3,
    "model": "llama3-8b",
    "hardware": "h100-sxm",
    "workload": {
        "num_requests": 60,
        "arrival": {"process": "poisson", "rate": 20.0},
        "lengths": {
            "prompt": {"dist": "lognormal", "mean": 500, "sigma": 0.8, "max": 3000},
            "output": {"dist": "lognormal", "mean": 80, "sigma": 0.8, "max": 600},
        },
    },
    "slo": {"ttft_s": 0.5, "tpot_s": 0.05},
}


def write_config(folder: Path, name: str = "small.yaml", **top) -> Path:
    path = Path(folder) / name
    path.write_text(yaml.safe_dump({**SMALL, **top}, sort_keys=False))
    return path
