"""Strict CSV reading for engine-run files: typed columns, one error naming the file and line.

`.csv.gz` files are read through gzip; line numbers count the uncompressed text (header = line 1).
"""

from __future__ import annotations

import csv
import gzip
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from servesim.core.errors import InputFileError


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    """`float` (finite), `int` (>= 0), `ints` ('+'-joined integers >= 0, maybe empty), `text`."""
    required: bool = True
    aliases: tuple[str, ...] = ()
    blank_ok: bool = False
    """An empty field is allowed (read as NaN / -1 / '')."""


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError
    return value


def _int(text: str) -> int:
    value = int(float(text)) if "." in text else int(text)
    if value < 0 or (("." in text) and float(text) != value):
        raise ValueError
    return value


def _ints(text: str) -> tuple[int, ...]:
    return tuple(_int(x) for x in text.split("+")) if text else ()


PARSERS: dict[str, tuple[Callable, str, object]] = {
    "float": (_float, "a number", math.nan),
    "int": (_int, "an integer >= 0", -1),
    "ints": (_ints, "'+'-joined integers >= 0", ()),
    "text": (str, "text", ""),
}


def read_columns(path: Path, columns: list[Column]) -> tuple[dict[str, list], np.ndarray]:
    """{column: values} for the columns present (optional ones may be absent) and the line numbers."""
    try:
        raw = gzip.open(path, "rt", newline="") if path.suffix == ".gz" else path.open(newline="")
    except OSError as exc:
        raise InputFileError(path, f"cannot read ({exc.strerror or exc})") from None
    with raw as handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames or []
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise InputFileError(path, f"cannot read ({exc})") from None
        found = _resolve(path, header, columns)
        values: dict[str, list] = {c.name: [] for c in columns if c.name in found}
        lines = []
        try:
            for row in reader:
                line = reader.line_num
                if None in row or any(row.get(found[n]) is None for n in values):
                    raise InputFileError(path, "wrong number of fields", line)
                for col in columns:
                    if col.name in values:
                        values[col.name].append(_parse(path, line, col, row[found[col.name]]))
                lines.append(line)
        except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
            raise InputFileError(path, f"cannot read ({exc})") from None
    if not lines:
        raise InputFileError(path, "no rows")
    return values, np.array(lines)


def _resolve(path: Path, header: list[str], columns: list[Column]) -> dict[str, str]:
    found, missing = {}, []
    for col in columns:
        name = next((n for n in (col.name, *col.aliases) if n in header), None)
        if name is not None:
            found[col.name] = name
        elif col.required:
            missing.append(col.name)
    if missing:
        raise InputFileError(path, f"missing column(s) {', '.join(missing)}", 1)
    return found


def _parse(path: Path, line: int, col: Column, text: str):
    parse, expected, blank = PARSERS[col.kind]
    text = text.strip()
    if not text and col.kind not in ("ints", "text"):
        if col.blank_ok:
            return blank
        raise InputFileError(path, f"{col.name}: expected {expected}, got an empty field", line)
    try:
        return parse(text)
    except ValueError:
        raise InputFileError(path, f"{col.name}: expected {expected}, got {text!r}", line) from None
