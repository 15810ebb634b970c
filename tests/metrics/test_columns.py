"""metrics.columns: the pandas-free tables a run writes, byte for byte what pandas writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.metrics.columns import Columns
from servesim.workload.readers import ReadOptions, ReadReport
from servesim.workload.readers.base import RowChecker, read_csv
from servesim.workload.readers.lengths import OUTPUT, PROMPT, read_plain

ROOT = Path(__file__).resolve().parents[2]
ARXIV = ROOT / "traces/arxiv-summarization/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv"

texts = st.one_of(st.none(), st.text(alphabet='ab ,"\n\r\'x-', max_size=6))


@settings(max_examples=60, deadline=None)
@given(
    floats=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=8),
    data=st.data(),
)
def test_write_csv_is_pandas_to_csv(tmp_path_factory, floats, data):
    n = len(floats)
    cols = Columns({
        "f": np.array(floats, dtype=np.float64),
        "i": np.array(data.draw(st.lists(st.integers(-2**62, 2**62), min_size=n, max_size=n)), np.int64),
        "b": np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        "s": np.array(data.draw(st.lists(texts, min_size=n, max_size=n)), dtype=object),
    })
    folder = tmp_path_factory.mktemp("csv")
    cols.write_csv(folder / "ours.csv")
    cols.to_frame().to_csv(folder / "pandas.csv", index=False)
    assert (folder / "ours.csv").read_bytes() == (folder / "pandas.csv").read_bytes()


def test_row_mask_and_columns_behave_like_a_frame():
    cols = Columns({"a": np.arange(4), "s": np.array(["x", "y", "x", "z"], dtype=object)})
    part = cols[np.asarray(cols["s"]) == "x"]
    assert len(part) == 2 and part["a"].tolist() == [0, 2]
    cols["e"] = 1.5
    assert cols.columns == ["a", "s", "e"] and cols["e"].tolist() == [1.5] * 4
    assert "e" in cols and "q" not in cols
    with pytest.raises(ValueError, match="different lengths"):
        Columns({"a": np.arange(2), "b": np.arange(3)})


def _checked_read(path: Path):
    """The length columns as the checking (pandas) reader reads them."""
    report = ReadReport()
    frame = read_csv(path, ReadOptions(), report)
    check = RowChecker(path, frame["_line"].to_numpy(), ReadOptions(), report)
    return check.numeric(frame[PROMPT], PROMPT), check.numeric(frame[OUTPUT], OUTPUT)


def test_plain_length_file_reads_as_the_checking_reader():
    prompt, output = read_plain(ARXIV)
    expected = _checked_read(ARXIV)
    assert np.array_equal(prompt, expected[0]) and np.array_equal(output, expected[1])


@pytest.mark.parametrize("body", [
    "1,10,3\n2,0,4\n",
    "1,10,3\n\n2,4,4\n",  # a blank line: no row in either reader
    "1,10.0,3\n2,1e1,4\n",  # integers written as floats
    "a,10,3\nb,7,4",  # text in another column, no final newline
])
def test_plain_rows_are_the_checking_readers_rows(tmp_path, body):
    path = tmp_path / "l.csv"
    path.write_text(f"x,{PROMPT},{OUTPUT}\n{body}")
    plain, checked = read_plain(path), _checked_read(path)
    assert [a.tolist() for a in plain] == [a.tolist() for a in checked]


@pytest.mark.parametrize("body", [
    "1,10.5,3\n",  # a fraction: the checking reader names the line
    '1,"10",3\n',  # quoting
    "1,10\n",  # a missing field
    "1,10,3,9\n",  # an extra field
    "1,-4,3\n",  # a sign
    "1,+4,3\n",
    "1, 4,3\n",  # a space
    "1,nan,3\n",
    "1,,3\n",  # an empty cell
    "1,10,3\n  \n",  # a line of spaces
])
def test_anything_irregular_goes_to_the_checking_reader(tmp_path, body):
    path = tmp_path / "l.csv"
    path.write_text(f"x,{PROMPT},{OUTPUT}\n{body}")
    assert read_plain(path) is None


def test_a_run_and_its_files_import_no_pandas(tmp_path):
    """`servesim run` of a length-file workload writes every CSV without importing pandas."""
    config = tmp_path / "c.yaml"
    config.write_text(
        f"model: llama2-7b\nhardware: h100-sxm\nworkload:\n  num_requests: 5\n"
        f"  lengths: {{empirical: {ARXIV}}}\n"
    )
    code = (
        "import sys; from servesim.cli import main; "
        f"code = main(['run', {str(config)!r}, '--out', {str(tmp_path / 'out')!r}]); "
        "assert 'pandas' not in sys.modules, 'pandas was imported'; sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"requests.csv", "timeseries.csv", "summary.json"} <= written
