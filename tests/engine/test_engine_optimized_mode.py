"""Results do not depend on Python's `-O` flag (issue 11.2: KV for multi-step decode runs used to
be reserved inside an `assert`, which `-O` strips: preemptions 39 -> 4, p99 TTFT halved)."""

import json
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")
PROGRAM = """
import json, servesim
config = {
    "seed": 3,
    "engine": {"kv_capacity_tokens": 5000, "max_num_seqs": 16},
    "workload": {"num_requests": 80, "arrival": {"rate": 40.0},
                 "lengths": {"prompt": {"dist": "lognormal", "mean": 300, "sigma": 1.0, "max": 2000},
                             "output": {"dist": "lognormal", "mean": 150, "sigma": 1.0, "max": 800}}},
}
s = servesim.simulate(config).summary
s["sim"].pop("wall_s")
print(json.dumps(s, sort_keys=True))
"""


def run(*flags: str) -> dict:
    out = subprocess.run(
        [sys.executable, *flags, "-c", PROGRAM], env={"PYTHONPATH": SRC}, capture_output=True,
        text=True, check=True,
    )
    return json.loads(out.stdout)


def test_python_O_gives_the_same_summary():
    normal, optimized = run(), run("-O")
    assert normal["kv"]["preemptions"] > 0 and normal["sim"]["iterations"] > 0
    assert optimized == normal
