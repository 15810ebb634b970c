"""The plain length-file path's field count check (numpy over the whole text) against its definition."""

from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.workload.readers.lengths import _fields_match


def _per_line(body: str, commas: int) -> bool:
    return all(line.count(",") == commas for line in body.split("\n") if line)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="1,\n\u00e9", max_size=40), st.integers(0, 3))
def test_field_count_check_is_the_per_line_rule(body, commas):
    assert _fields_match(body, commas) == _per_line(body, commas)
