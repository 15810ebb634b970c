"""The study reports' markdown tables: header, separator, floats formatted, other values exact."""

import pandas as pd

from servesim.studies.tables import markdown_table


def test_markdown_table_formats_floats_and_keeps_other_values():
    frame = pd.DataFrame({"router": ["rr", "ll"], "moves": [3, 0], "p99_s": [1.23456789, 0.5]})
    assert markdown_table(frame).splitlines() == [
        "| router | moves | p99_s |",
        "| --- | --- | --- |",
        "| rr | 3 | 1.2346 |",
        "| ll | 0 | 0.5 |",
    ]
    assert markdown_table(frame, ".3f").splitlines()[2] == "| rr | 3 | 1.235 |"
