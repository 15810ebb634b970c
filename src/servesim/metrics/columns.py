"""A run's tables as numpy columns, so that a run needs no pandas (a third of a short run's start).

`Columns` is an ordered mapping of equal-length arrays. It supports what the metrics read from a
table (`cols[name]`, `name in cols`, `len(cols)`, `cols[mask]` for a row subset) with the same
semantics as a pandas DataFrame, so the metric functions accept either. `to_frame()` makes the
DataFrame when one is asked for; `write_csv` writes exactly the bytes `DataFrame.to_csv(index=False)`
writes (numbers as numpy prints them, NaN and None as empty cells, minimal quoting).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

CSV_ROWS = 1 << 15
"""Rows of a CSV formatted at a time."""


class Columns(Mapping):
    """Named columns of one length; `cols[bool array]` is the rows where it is True."""

    def __init__(self, columns: Mapping[str, np.ndarray], length: int | None = None):
        self._cols = {name: np.asarray(values) for name, values in columns.items()}
        lengths = {len(v) for v in self._cols.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")
        self._len = lengths.pop() if lengths else (length or 0)

    def __getitem__(self, key):
        if isinstance(key, str):
            return self._cols[key]
        return Columns({name: values[key] for name, values in self._cols.items()})

    def __iter__(self) -> Iterator[str]:
        return iter(self._cols)

    def __len__(self) -> int:
        return self._len

    def __contains__(self, name) -> bool:
        return name in self._cols

    @property
    def columns(self) -> list[str]:
        return list(self._cols)

    def __setitem__(self, name: str, values) -> None:
        """Add or replace a column (a scalar fills every row)."""
        values = np.asarray(values)
        self._cols[name] = np.full(self._len, values) if values.ndim == 0 else values

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self._cols, columns=self.columns, copy=False)

    def write_csv(self, path: str | Path) -> None:
        """The same bytes as `self.to_frame().to_csv(path, index=False)`, written `CSV_ROWS` rows
        at a time (a cell is a Python string: a million rows at once would be gigabytes)."""
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(self.columns)
            for at in range(0, self._len, CSV_ROWS):
                cells = [_cells(v[at : at + CSV_ROWS]) for v in self._cols.values()]
                writer.writerows(zip(*cells))


def _cells(values: np.ndarray) -> list[str]:
    """One column's cells as pandas writes them."""
    if values.dtype.kind == "f":
        text = values.astype(str)
        text[np.isnan(values)] = ""
        return text.tolist()
    if values.dtype.kind in "iub":
        return values.astype(str).tolist()
    return ["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in values.tolist()]
