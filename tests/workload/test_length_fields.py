"""The plain length-file path's numpy checks and parser against their definitions (per line; loadtxt)."""

import io

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.workload.readers.lengths import _digit_columns, _fields_match


def _per_line(body: str, commas: int) -> bool:
    return all(line.count(",") == commas for line in body.split("\n") if line)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="1,\n\u00e9", max_size=40), st.integers(0, 3))
def test_field_count_check_is_the_per_line_rule(body, commas):
    assert _fields_match(body, commas) == _per_line(body, commas)


def _loadtxt(body: str, columns: tuple[int, ...]) -> np.ndarray:
    return np.loadtxt(io.StringIO(body), delimiter=",", usecols=columns, dtype=float, comments=None, ndmin=2)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0129,\n.-e\u00e9", max_size=40), st.integers(1, 4), st.data())
def test_digit_columns_read_what_loadtxt_reads_or_decline(body, fields, data):
    """Where the numpy digit parser answers, the field count check passes and loadtxt reads the same."""
    columns = tuple(sorted(data.draw(st.sets(st.integers(0, fields - 1), min_size=1, max_size=2))))
    got = _digit_columns(body, fields, columns)
    if got is not None:
        assert _fields_match(body, fields - 1)
        assert got.tobytes() == _loadtxt(body, columns).tobytes()


ROWS = st.lists(st.lists(st.from_regex(r"[0-9]{1,15}", fullmatch=True), min_size=3, max_size=3), min_size=1,
                max_size=30)


@settings(max_examples=300, deadline=None)
@given(ROWS, st.booleans())
def test_digit_columns_read_every_plain_length_file(rows, final_newline):
    body = "\n".join(",".join(r) for r in rows) + ("\n" if final_newline else "")
    got = _digit_columns(body, 3, (0, 2))
    assert got is not None and got.tobytes() == _loadtxt(body, (0, 2)).tobytes()
