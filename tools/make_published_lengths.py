"""Write the estimated length files that published throughput rows replay (data/measurements/published).

    PYTHONPATH=src python tools/make_published_lengths.py

The datasets behind these benchmarks are not redistributable (MLPerf's are for MLCommons members), so
each file is a lognormal stand-in with the published mean: clipped to the benchmark's limits and
rescaled until the clipped mean matches. The means and their sources are in the README beside the
files; the spread (sigma) is an assumption. Deterministic: one seed per file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "data" / "measurements" / "published" / "lengths"
FILES = {
    # name: (rows, (prompt mean, sigma, min, max), (output mean, sigma, min, max))
    "sharegpt-est.csv": (2000, (217.4, 1.0, 4, 1024), (201.7, 1.0, 4, 1024)),
    "mlperf-llama2-70b-est.csv": (24576, (300.0, 0.8, 10, 1024), (294.45, 0.8, 1, 1024)),
    "mlperf-llama3.1-405b-est.csv": (8313, (9428.0, 0.5, 500, 20000), (684.68, 0.8, 1, 2000)),
}


def clipped_lognormal(rng, n: int, mean: float, sigma: float, low: int, high: int) -> np.ndarray:
    """n integer draws in [low, high] whose mean is `mean` (the scale is solved for after clipping)."""
    base = rng.standard_normal(n)
    scale = mean
    for _ in range(60):
        draws = np.clip(np.rint(scale * np.exp(sigma * base - sigma**2 / 2)), low, high)
        scale *= mean / draws.mean()
    return draws.astype(int)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for seed, (name, (rows, prompt, output)) in enumerate(sorted(FILES.items())):
        rng = np.random.default_rng(seed)
        p = clipped_lognormal(rng, rows, *prompt)
        o = clipped_lognormal(rng, rows, *output)
        lines = ["num_prefill_tokens,num_decode_tokens"] + [f"{a},{b}" for a, b in zip(p, o)]
        (OUT / name).write_text("\n".join(lines) + "\n")
        print(f"{name}: {rows} rows, prompt mean {p.mean():.1f}, output mean {o.mean():.1f}")


if __name__ == "__main__":
    main()
