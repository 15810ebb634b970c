"""Each reader against the shipped traces: row count, span and length statistics exactly as
measured independently (plain csv/json parsing here, and the figures of traces/README.md)."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from servesim.core.rng import stream
from servesim.workload.readers import ReadOptions, detect_format, read_trace
from servesim.workload.readers.base import ReadReport
from servesim.workload.readers.servegen import find_clients, read_rate_windows

TRACES = Path(__file__).resolve().parents[2] / "traces"
AZURE_CODE = TRACES / "azure2023" / "AzureLLMInferenceTrace_code.csv"
AZURE_CONV = TRACES / "azure2023" / "AzureLLMInferenceTrace_conv.csv"
MOONCAKE_CONV = TRACES / "mooncake" / "conversation_trace.jsonl"
MOONCAKE_SYN = TRACES / "mooncake" / "synthetic_trace.jsonl"
SHAREGPT = TRACES / "sharegpt" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv"
ARXIV = TRACES / "arxiv-summarization" / "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv"
SERVEGEN = TRACES / "servegen"

# (file, format, rows, span_s, prompt mean/median/max, output mean/median/max), from traces/README.md
PUBLISHED = [
    (AZURE_CODE, "azure", 8819, 3435.9, (2048, 1469, 7437), (28, 13, 1899)),
    (AZURE_CONV, "azure", 19366, 3501.7, (1155, 1020, 14050), (211, 129, 1000)),
    (MOONCAKE_CONV, "mooncake", 12031, 3537.0, (12035, 6909, 126195), (343, 350, 2000)),
    (MOONCAKE_SYN, "mooncake", 3993, 1022.0, (15325, 11587, 191378), (149, 69, 893)),
    (SHAREGPT, "lengths", 30731, None, (2340, 1730, 8141), (439, 415, 1024)),
    (ARXIV, "lengths", 28257, None, (2588, 2730, 4054), (291, 167, 4056)),
]


def independent_parse(path: Path):
    """(arrival seconds or None, prompt, output) with the standard library only."""
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        t = [r["timestamp"] / 1000 for r in rows]
        return t, [r["input_length"] for r in rows], [r["output_length"] for r in rows]
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if "TIMESTAMP" in rows[0]:
        stamps = [datetime.fromisoformat(r["TIMESTAMP"][:26]) for r in rows]
        t = [(s - stamps[0]).total_seconds() for s in stamps]
        return t, [int(r["ContextTokens"]) for r in rows], [int(r["GeneratedTokens"]) for r in rows]
    return None, [int(r["num_prefill_tokens"]) for r in rows], [int(r["num_decode_tokens"]) for r in rows]


@pytest.mark.parametrize(
    "path, fmt, rows, span, prompt, output", PUBLISHED, ids=lambda v: getattr(v, "name", None)
)
def test_reader_reproduces_published_figures(path, fmt, rows, span, prompt, output):
    data = read_trace(path)
    table = data.table
    assert data.format == fmt
    assert len(table) == rows
    assert not data.report.skipped and not data.report.dropped and not data.report.warnings
    if span is None:
        assert not table.timed
    else:
        assert table.arrival_s[-1] - table.arrival_s[0] == pytest.approx(span, abs=0.05)
    for values, (mean, median, top) in ((table.prompt_tokens, prompt), (table.output_tokens, output)):
        assert round(values.mean()) == mean
        assert np.median(values) == median
        assert values.max() == top


@pytest.mark.parametrize("path", [p for p, *_ in PUBLISHED], ids=lambda p: p.name)
def test_reader_matches_an_independent_parse_row_for_row(path):
    table = read_trace(path).table
    t, prompt, output = independent_parse(path)
    np.testing.assert_array_equal(table.prompt_tokens, prompt)
    np.testing.assert_array_equal(table.output_tokens, output)
    if t is not None:
        # datetime keeps microseconds; the 7th fractional digit of Azure stamps is always 0 here
        np.testing.assert_allclose(table.arrival_s, t, atol=1e-6)
    for q in (50, 90, 99):
        assert np.percentile(table.prompt_tokens, q) == np.percentile(prompt, q)
        assert np.percentile(table.output_tokens, q) == np.percentile(output, q)


def test_mooncake_hashes_are_the_files_own():
    table = read_trace(MOONCAKE_SYN).table
    rows = [json.loads(line) for line in MOONCAKE_SYN.read_text().splitlines()]
    assert table.hash_block_size == 512
    assert table.prefix_hashes == [tuple(r["hash_ids"]) for r in rows]


@pytest.mark.parametrize(
    "path, fmt",
    [
        (AZURE_CODE, "azure"),
        (MOONCAKE_CONV, "mooncake"),
        (SHAREGPT, "lengths"),
        (ARXIV, "lengths"),
        (SERVEGEN / "language" / "m-large", "servegen"),
        (SERVEGEN / "reason" / "deepseek-r1" / "chunk-28-trace.csv", "servegen"),
        (SERVEGEN / "reason" / "deepseek-r1" / "chunk-28-dataset.json", "servegen"),
    ],
)
def test_format_is_detected_from_the_content(path, fmt):
    assert detect_format(path) == fmt


# -- ServeGen: statistics in, requests out -----------------------------------------------------


def client_rows(trace: Path) -> list[list[str]]:
    with open(trace, newline="") as fh:
        return list(csv.reader(fh))


def test_servegen_windows_read_exactly():
    trace = SERVEGEN / "language" / "m-large" / "chunk-143-trace.csv"
    rows = client_rows(trace)
    w = read_rate_windows(trace, ReadOptions(), ReadReport())
    assert len(w.start) == len(rows) == 144
    assert w.width == 600
    assert w.start[-1] + w.width == 86_400
    np.testing.assert_array_equal(w.rate, [float(r[1]) for r in rows])
    assert list(w.fit) == [r[3] for r in rows]


def test_servegen_client_hits_each_windows_rate():
    trace = SERVEGEN / "language" / "m-large" / "chunk-143-trace.csv"
    table = read_trace(trace, rng=stream(1, "workload")).table
    rows = client_rows(trace)
    counts = np.histogram(table.arrival_s, bins=np.arange(0, 86_400 + 600, 600))[0]
    expected = np.array([float(r[1]) * 600 for r in rows])
    assert len(table) == pytest.approx(expected.sum(), rel=0.02)
    busy = expected > 2000  # per-window counts of a bursty renewal process: a loose band
    assert np.all(np.abs(counts[busy] - expected[busy]) < 0.35 * expected[busy])
    assert np.all(counts[expected == 0] == 0)


def test_servegen_lengths_come_from_the_window_pmfs():
    import ast

    base = SERVEGEN / "language" / "m-large" / "chunk-34"
    data = json.loads(Path(f"{base}-dataset.json").read_text())
    table = read_trace(Path(f"{base}-trace.csv"), rng=stream(2, "workload")).table
    first = table.arrival_s < 21_600
    pmf = ast.literal_eval(data["0"]["input_tokens"])
    assert set(np.unique(table.prompt_tokens[first])) <= {max(int(k), 1) for k in pmf}
    mean = sum(k * p for k, p in pmf.items()) / sum(pmf.values())
    assert table.prompt_tokens[first].mean() == pytest.approx(mean, rel=0.05)


def test_servegen_window_hint_gives_the_same_requests_as_the_whole_day():
    folder = SERVEGEN / "reason" / "deepseek-r1"
    whole = read_trace(folder, rng=stream(3, "workload")).table
    part = read_trace(
        folder, options=ReadOptions(start_s=30_000, end_s=40_000), rng=stream(3, "workload")
    ).table
    cut = whole.take((whole.arrival_s >= 30_000) & (whole.arrival_s < 40_000))
    in_part = part.take((part.arrival_s >= 30_000) & (part.arrival_s < 40_000))
    np.testing.assert_array_equal(cut.arrival_s, in_part.arrival_s)
    np.testing.assert_array_equal(cut.output_tokens, in_part.output_tokens)


def test_servegen_folder_superposes_every_client():
    folder = SERVEGEN / "language" / "m-mid"
    assert [k for k, _ in find_clients(folder)] == ["m-mid/chunk-14", "m-mid/chunk-23", "m-mid/chunk-63"]
    table = read_trace(folder, options=ReadOptions(end_s=1200), rng=stream(0, "workload")).table
    window = table.arrival_s < 1200
    expected = sum(float(r[1]) * 600 for f in folder.glob("*-trace.csv") for r in client_rows(f)[:2])
    assert window.sum() == pytest.approx(expected, rel=0.1)
    assert np.all(np.diff(table.arrival_s) >= 0)
    assert table.prompt_tokens.min() >= 1 and table.output_tokens.min() >= 1
