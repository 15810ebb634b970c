"""Formats not shipped (BurstGPT, Azure 2024, generic CSV, multimodal ServeGen) on small files
written here, and every bad-input path of the readers: file and line named, or rows skipped and counted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from servesim.core.errors import ConfigError, InputFileError
from servesim.core.rng import stream
from servesim.workload.readers import ReadOptions, detect_format, read_trace

SKIP = ReadOptions(skip_bad_rows=True)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- BurstGPT ----------------------------------------------------------------------------------

BURST6 = """Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
5,ChatGPT,472,18,490,Conversation log
45,ChatGPT,1087,0,1087,Conversation log
118,GPT-4,417,276,693,API log
131,ChatGPT,0,0,0,Conversation log
150,ChatGPT,1360,142,1502,Conversation log
"""
BURST8 = """Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type
5,a1,2.5,ChatGPT,472,18,490,Conversation log
45,,1.0,GPT-4,300,20,320,API log
60,a1,3.1,ChatGPT,900,50,950,Conversation log
90,b7,1.2,ChatGPT,100,0,100,Conversation log
95,b7,4.0,ChatGPT,120,30,150,Conversation log
"""


def test_burstgpt_six_columns_drops_failures_and_counts_them(tmp_path):
    data = read_trace(write(tmp_path, "BurstGPT_1.csv", BURST6))
    assert data.format == "burstgpt"
    np.testing.assert_array_equal(data.table.arrival_s, [5, 118, 150])
    np.testing.assert_array_equal(data.table.prompt_tokens, [472, 417, 1360])
    assert data.report.dropped == {"failed": 2}
    assert data.table.session_id is None


def test_burstgpt_eight_columns_read_by_name_with_sessions(tmp_path):
    data = read_trace(write(tmp_path, "BurstGPT_3.csv", BURST8))
    t = data.table
    np.testing.assert_array_equal(t.prompt_tokens, [472, 300, 900, 120])
    np.testing.assert_array_equal(t.output_tokens, [18, 20, 50, 30])
    assert t.session_id.tolist() == [0, -1, 0, 1]  # API rows have no session
    assert data.report.dropped == {"failed": 1}


# -- Azure 2024, generic CSV, multimodal ServeGen -------------------------------------------------


def test_azure_2024_timestamps_with_time_zone(tmp_path):
    text = (
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-10 00:00:00.009930+00:00,1000,20\n"
        "2024-05-10 00:00:01.509930+00:00,2000,30\n"
        "2024-05-10 01:00:00.009930+00:00,3000,40\n"
    )
    t = read_trace(write(tmp_path, "AzureLLMInferenceTrace_code_1week.csv", text)).table
    np.testing.assert_allclose(t.arrival_s, [0.0, 1.5, 3600.0])


def test_csv_with_a_column_mapping_and_time_unit(tmp_path):
    path = write(tmp_path, "mine.csv", "t_ms,inp,outp,user\n0,10,5,u1\n250,20,6,u2\n500,30,7,u1\n")
    with pytest.raises(InputFileError, match="no prompt column"):
        read_trace(path, "csv")
    opts = ReadOptions(
        columns={"arrival": "t_ms", "prompt": "inp", "output": "outp", "session": "user"}, time_unit="ms"
    )
    t = read_trace(path, "csv", opts).table
    np.testing.assert_allclose(t.arrival_s, [0, 0.25, 0.5])
    assert t.session_id.tolist() == [0, 1, 0]
    with pytest.raises(ConfigError, match="workload.trace.columns: unknown key 'arival'"):
        read_trace(path, "csv", ReadOptions(columns={"arival": "t_ms"}))


def test_servegen_multimodal_prompt_sums_text_and_items(tmp_path):
    folder = tmp_path / "mm-image"
    folder.mkdir()
    (folder / "chunk-1-trace.csv").write_text("0,5.0,1.0,Gamma,1.0,0.2\n600,0,0,,0,0\n")
    pmfs = {
        "text_tokens": "{40: 1.0}",
        "image_count": "{2: 1.0}",
        "image_tokens": "{100: 1.0}",
        "audio_count": "{0: 1.0}",
        "audio_tokens": "{0: 1.0}",
        "output_tokens": "{0: 0.5, 8: 0.5}",
    }
    (folder / "chunk-1-dataset.json").write_text(json.dumps({"0": pmfs}))
    t = read_trace(folder, rng=stream(0, "workload")).table
    assert np.all(t.prompt_tokens == 240)
    assert set(t.output_tokens.tolist()) == {1, 8}  # a sampled 0 becomes 1
    assert np.all(t.arrival_s < 600)
    assert len(t) == pytest.approx(3000, rel=0.15)


def test_servegen_client_without_dataset_file(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "chunk-1-trace.csv").write_text("0,1.0,1.0,Gamma,1.0,1.0\n")
    (folder / "chunk-2-trace.csv").write_text("0,1.0,1.0,Weibull,1.0,1.0\n")
    (folder / "chunk-2-dataset.json").write_text(
        json.dumps({"0": {"input_tokens": "{5: 1}", "output_tokens": "{5: 1}"}})
    )
    data = read_trace(folder)
    assert "skipped 1 client(s) without a dataset file: m/chunk-1" in data.report.warnings[0]
    with pytest.raises(InputFileError, match="chunk-1-dataset.json: missing"):
        read_trace(folder / "chunk-1-trace.csv")


# -- bad rows: the first bad line, or skipped and counted ------------------------------------------

AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
GOOD = "2023-11-16 18:17:03.9799600,4808,10\n"


@pytest.mark.parametrize(
    "row, line, reason, message",
    [
        (
            "2023-11-16 18:17:05.0,abc,10\n",
            3,
            "non_numeric",
            "column 'ContextTokens': expected a number, got 'abc'",
        ),
        ("2023-11-16 18:17:05.0,-4,10\n", 3, "negative", "expected a non-negative number, got -4"),
        ("2023-11-16 18:17:05.0,12.5,10\n", 3, "non_integer", "expected an integer, got 12.5"),
        ("2023-11-16 18:17:05.0,12\n", 3, "missing", "column 'GeneratedTokens': missing value"),
        ("yesterday,12,10\n", 3, "bad_timestamp", "column 'TIMESTAMP': expected a date-time"),
    ],
)
def test_malformed_azure_row_names_file_and_line(tmp_path, row, line, reason, message):
    path = write(tmp_path, "t.csv", AZURE_HEADER + GOOD + row + GOOD)
    with pytest.raises(InputFileError) as err:
        read_trace(path, "azure")
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert message in str(err.value)
    assert "--skip-bad-rows" in str(err.value)
    data = read_trace(path, "azure", SKIP)
    assert len(data.table) == 2
    assert data.report.skipped == {reason: 1}


@pytest.mark.filterwarnings("error")
def test_a_timestamp_column_of_bare_numbers_is_bad_timestamps_not_epochs(tmp_path):
    """Numbers where date-times belong are each a bad timestamp, read without pandas' deprecated
    numbers-with-a-format path (which a future pandas reads as epochs: a silently valid trace)."""
    path = write(tmp_path, "t.csv", AZURE_HEADER + "1700000000,12,10\n1700000001.5,12,10\n")
    with pytest.raises(InputFileError) as err:
        read_trace(path, "azure")
    assert str(err.value).startswith(f"{path}:2: column 'TIMESTAMP': expected a date-time")


def test_earliest_bad_line_is_reported_whatever_the_column(tmp_path):
    text = AZURE_HEADER + GOOD + "2023-11-16 18:17:05.0,5,x\n" + "bad,5,5\n" + GOOD
    with pytest.raises(InputFileError, match=r":3: column 'GeneratedTokens'"):
        read_trace(write(tmp_path, "t.csv", text), "azure")


def test_blank_lines_keep_line_numbers_right(tmp_path):
    text = AZURE_HEADER + GOOD + "\n\n" + "2023-11-16 18:17:05.0,-1,5\n"
    with pytest.raises(InputFileError, match=r":5: "):
        read_trace(write(tmp_path, "t.csv", text), "azure")


def test_row_with_extra_fields(tmp_path):
    path = write(tmp_path, "t.csv", AZURE_HEADER + GOOD + "2023-11-16 18:17:05.0,1,2,3\n" + GOOD)
    with pytest.raises(InputFileError, match=r":3: expected 3 fields, saw 4"):
        read_trace(path, "azure")
    data = read_trace(path, "azure", SKIP)
    assert len(data.table) == 2 and data.report.skipped == {"extra_fields": 1}


def test_out_of_order_rows_are_sorted_with_a_warning(tmp_path):
    text = AZURE_HEADER + "2023-11-16 18:00:10.0,1,1\n2023-11-16 18:00:00.0,2,2\n2023-11-16 18:00:20.0,3,3\n"
    data = read_trace(write(tmp_path, "t.csv", text), "azure")
    np.testing.assert_array_equal(data.table.arrival_s, [0, 10, 20])
    np.testing.assert_array_equal(data.table.prompt_tokens, [2, 1, 3])
    assert "out of order" in data.report.warnings[0]


def test_zero_token_rows_are_dropped_and_counted(tmp_path):
    text = AZURE_HEADER + GOOD + "2023-11-16 18:17:05.0,0,5\n" + GOOD
    data = read_trace(write(tmp_path, "t.csv", text), "azure")
    assert len(data.table) == 2 and data.report.dropped == {"zero_tokens": 1}


@pytest.mark.parametrize("text, match", [("", "empty file"), (AZURE_HEADER, "no requests in the trace")])
def test_empty_trace_is_an_error(tmp_path, text, match):
    with pytest.raises(InputFileError, match=match):
        read_trace(write(tmp_path, "t.csv", text), "azure")


def test_all_rows_bad_and_skipped_is_still_an_error(tmp_path):
    with pytest.raises(InputFileError, match="no requests in the trace after dropping rows"):
        read_trace(write(tmp_path, "t.csv", AZURE_HEADER + "x,1,1\n"), "azure", SKIP)


def test_missing_file_and_missing_columns(tmp_path):
    with pytest.raises(InputFileError, match="nope.csv: no such file"):
        read_trace(tmp_path / "nope.csv")
    with pytest.raises(InputFileError, match=r"t.csv:1: missing column\(s\) 'GeneratedTokens'"):
        read_trace(write(tmp_path, "t.csv", "TIMESTAMP,ContextTokens\nx,1\n"), "azure")


def test_unknown_format_lists_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match="unknown trace format 'parquet'; valid: azure, burstgpt, csv"):
        read_trace(write(tmp_path, "t.csv", AZURE_HEADER + GOOD), "parquet")
    with pytest.raises(InputFileError, match="cannot tell the trace format"):
        read_trace(write(tmp_path, "u.csv", "a,b\n1,2\n"))


MOONCAKE_ROW = '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [1, 2]}'


@pytest.mark.parametrize(
    "bad, reason, message",
    [
        ('{"timestamp": 5, "input_length": 600', "bad_json", "invalid JSON"),
        (
            '{"timestamp": 5, "input_length": 600, "output_length": 5, "hash_ids": [1]}',
            "bad_hash_ids",
            "expected ceil(input_length / 512) = 2 ids, got 1",
        ),
        (
            '{"timestamp": "soon", "input_length": 600, "output_length": 5, "hash_ids": [1, 2]}',
            "non_numeric",
            "field",
        ),
        ('{"timestamp": 5, "output_length": 5, "hash_ids": [1, 2]}', "missing", "'input_length': missing"),
    ],
)
def test_malformed_mooncake_line(tmp_path, bad, reason, message):
    path = write(tmp_path, "t.jsonl", "\n".join([MOONCAKE_ROW, bad, MOONCAKE_ROW]) + "\n")
    with pytest.raises(InputFileError) as err:
        read_trace(path)
    assert str(err.value).startswith(f"{path}:2: ")
    if reason != "non_numeric":
        assert message in str(err.value)
    data = read_trace(path, options=SKIP)
    assert len(data.table) == 2 and data.report.skipped == {reason: 1}


def test_mooncake_block_size_option(tmp_path):
    row = '{"timestamp": 0, "input_length": 40, "output_length": 5, "hash_ids": [1, 2, 3]}'
    path = write(tmp_path, "qwen.jsonl", row + "\n")
    with pytest.raises(InputFileError, match="set workload.trace.block_size"):
        read_trace(path)
    t = read_trace(path, options=ReadOptions(block_size=16)).table
    assert t.prefix_hashes == [(1, 2, 3)] and t.hash_block_size == 16


def test_detection_of_written_files(tmp_path):
    assert detect_format(write(tmp_path, "a.csv", BURST6)) == "burstgpt"
    assert detect_format(write(tmp_path, "b.jsonl", MOONCAKE_ROW + "\n")) == "mooncake"
    assert detect_format(write(tmp_path, "c.csv", "arrival_s,prompt_tokens,output_tokens\n0,1,1\n")) == "csv"
