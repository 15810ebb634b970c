"""Markdown tables for study reports: a frame's columns and rows, floats in one chosen format."""

from __future__ import annotations


def markdown_table(frame, float_format: str = ".5g") -> str:
    """Render a DataFrame-like object (``columns`` and ``itertuples``) as a GitHub markdown table.

    Floats use ``float_format``; every other value its ``str``, so counts and labels stay exact.
    """

    def cell(value) -> str:
        return format(value, float_format) if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + " --- |" * len(frame.columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
