"""Trace reading speed: wall seconds (median of repeats) to read each shipped trace, and rows per
second on a large generated BurstGPT-like and Azure-2024-like file.

Usage: python benchmarks/bench_readers.py [--repeats 5] [--rows 2000000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from servesim.core.rng import stream
from servesim.workload import read_trace

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [
    "traces/azure2023/AzureLLMInferenceTrace_code.csv",
    "traces/azure2023/AzureLLMInferenceTrace_conv.csv",
    "traces/mooncake/conversation_trace.jsonl",
    "traces/mooncake/synthetic_trace.jsonl",
    "traces/sharegpt/sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
    "traces/arxiv-summarization/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
    "traces/servegen/language/m-large",
]


def timed(path: Path, repeats: int) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows = len(read_trace(path, rng=stream(0, "workload")).table)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), rows


def large_files(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.exponential(0.5, n))
    req = rng.integers(1, 3000, n)
    resp = np.where(rng.random(n) < 0.08, 0, rng.integers(1, 800, n))
    burst = folder / "BurstGPT_like.csv"
    pd.DataFrame(
        {
            "Timestamp": t.round(3),
            "Model": "ChatGPT",
            "Request tokens": req,
            "Response tokens": resp,
            "Total tokens": req + resp,
            "Log Type": "Conversation log",
        }
    ).to_csv(burst, index=False)
    stamps = (pd.Timestamp("2024-05-10") + pd.to_timedelta(t, unit="s")).strftime("%Y-%m-%d %H:%M:%S.%f")
    azure = folder / "Azure2024_like.csv"
    pd.DataFrame({"TIMESTAMP": stamps + "+00:00", "ContextTokens": req, "GeneratedTokens": resp + 1}).to_csv(
        azure, index=False
    )
    return [burst, azure]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"pandas {pd.__version__}; median of {args.repeats}"
    )
    print(f"{'file':<90}{'rows':>10}{'seconds':>10}{'rows/s':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = [ROOT / p for p in SHIPPED] + large_files(Path(tmp), args.rows)
        for path in paths:
            seconds, rows = timed(path, args.repeats)
            print(
                f"{str(path.relative_to(ROOT) if ROOT in path.parents else path.name):<90}{rows:>10}"
                f"{seconds:>10.3f}{rows / seconds:>12.0f}"
            )


if __name__ == "__main__":
    main()
