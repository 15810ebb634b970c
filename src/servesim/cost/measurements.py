"""Measured iterations (docs/interface.md "Measurement CSV") read into priced-ready rows.

`gpu, model, tp, kind, prefill_lens, prior_ctx, decode_batch, decode_ctx, ms[, includes_comm]
[, moe_kernels]`: one measured engine iteration a row (`moe_kernels`: `fused` or `looped`, how the
row's MoE layers ran; empty or absent: as the profile says). Any malformed row is an
`InputFileError` naming its line.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from servesim.catalog.specs import get_model, hardware_by_alias, model_names
from servesim.core.errors import ConfigError, InputFileError
from servesim.core.files import open_text
from servesim.cost.base import StepShape

REQUIRED = ("gpu", "model", "tp", "kind", "prefill_lens", "prior_ctx", "decode_batch", "decode_ctx", "ms")
KINDS = ("prefill", "prefill_batch", "decode", "mixed")


@dataclass(frozen=True)
class Measurement:
    line: int
    gpu: str
    hardware: str | None
    """Catalog name of the `gpu` column, if it names a known device."""
    model: str
    tp: int
    kind: str
    prefill_lens: tuple[int, ...]
    prior_ctx: int
    decode_batch: int
    decode_ctx: int
    seconds: float
    includes_comm: bool
    moe_kernels: str | None = None
    """How the row's MoE layers ran (`fused`, `looped`); None: as the profile says."""

    def shape(self, window: int = 0) -> StepShape:
        """The row's step; decodes read at most `window` tokens (the model's sliding window)."""
        chunks = [(c, self.prior_ctx) for c in self.prefill_lens]
        ctx = min(self.decode_ctx, window) if window else self.decode_ctx
        return StepShape(chunks, self.decode_batch, self.decode_batch * ctx)

    @property
    def label(self) -> str:
        lens = "+".join(map(str, self.prefill_lens))
        if len(set(self.prefill_lens)) == 1 and len(self.prefill_lens) > 2:
            lens = f"{len(self.prefill_lens)}x{self.prefill_lens[0]}"
        parts = [f"{self.model} tp{self.tp} {self.kind}"]
        if lens:
            parts.append(f"prefill {lens}" + (f" after {self.prior_ctx}" if self.prior_ctx else ""))
        if self.decode_batch:
            parts.append(f"decode {self.decode_batch}x{self.decode_ctx}")
        return " ".join(parts)


def read_measurements(path: str | Path) -> list[Measurement]:
    p = Path(path)
    handle = open_text(p, "measurements")
    with handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            expected = ", ".join(REQUIRED)
            raise InputFileError(p, f"missing column(s) {', '.join(missing)}; expected {expected}", 1)
        rows = [_parse(p, reader.line_num, raw) for raw in reader]
    if not rows:
        raise InputFileError(p, "no measurement rows")
    return rows


def _parse(path: Path, line: int, raw: dict) -> Measurement:
    row = _Row(path, line, raw)
    if None in raw or any(raw.get(c) is None for c in REQUIRED):
        row.fail("wrong number of fields")
    kind = row.choice("kind", KINDS)
    model = raw["model"].strip()
    if model not in model_names():
        row.fail(f"model: unknown model {model!r}; valid: {', '.join(model_names())}")
    lens = row.chunk_lengths()
    ms = row.milliseconds()
    comm = row.choice("includes_comm", ("0", "1"), default="1")
    moe = row.choice("moe_kernels", ("fused", "looped", ""), default="")
    tp = row.integer("tp", 1)
    batch, decode_ctx = row.integer("decode_batch"), row.integer("decode_ctx")
    _check_kind(row, kind, lens, batch)
    try:
        spec = get_model(model)
    except ConfigError as exc:  # pragma: no cover - names come from the catalog
        row.fail(str(exc))
    if spec.num_heads % tp:
        row.fail(f"tp: {tp} does not divide the {spec.num_heads} heads of {model}")
    gpu = raw["gpu"].strip()
    if not gpu:
        row.fail("gpu: empty")
    return Measurement(
        line=line,
        gpu=gpu,
        hardware=hardware_by_alias(gpu),
        model=model,
        tp=tp,
        kind=kind,
        prefill_lens=lens,
        prior_ctx=row.integer("prior_ctx"),
        decode_batch=batch,
        decode_ctx=decode_ctx,
        seconds=ms / 1e3,
        includes_comm=comm == "1",
        moe_kernels=moe or None,
    )


def _check_kind(row: _Row, kind: str, lens: tuple[int, ...], batch: int) -> None:
    """A row's chunks and decodes must be what its kind of step has."""
    if kind in ("prefill", "prefill_batch") and (not lens or batch):
        row.fail(f"kind {kind}: needs prefill_lens and no decodes")
    if kind == "decode" and (lens or not batch):
        row.fail("kind decode: needs decode_batch >= 1 and no prefill_lens")
    if kind == "mixed" and not (lens and batch):
        row.fail("kind mixed: needs both prefill_lens and decode_batch")


class _Row:
    """One CSV row's columns, each read with an error naming the file, the line and the column."""

    def __init__(self, path: Path, line: int, raw: dict):
        self.path, self.line, self.raw = path, line, raw

    def fail(self, msg: str):
        raise InputFileError(self.path, msg, self.line)

    def integer(self, col: str, minimum: int = 0) -> int:
        text = self.raw[col].strip()
        try:
            value = int(text) if text else 0
        except ValueError:
            self.fail(f"{col}: expected an integer, got {text!r}")
        if value < minimum:
            self.fail(f"{col}: must be >= {minimum}, got {value}")
        return value

    def choice(self, col: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        """The column's text, one of `allowed`; `default` where an optional column is empty."""
        text = self.raw[col].strip() if default is None else (self.raw.get(col) or default).strip()
        if text not in allowed:
            if default is None:
                self.fail(f"{col}: expected one of {', '.join(allowed)}, got {text!r}")
            named = [a for a in allowed if a]
            wanted = f"{', '.join(named)} or empty" if "" in allowed else " or ".join(named)
            self.fail(f"{col}: expected {wanted}, got {text!r}")
        return text

    def chunk_lengths(self) -> tuple[int, ...]:
        text = self.raw["prefill_lens"].strip()
        try:
            lens = tuple(int(x) for x in text.split("+")) if text else ()
        except ValueError:
            self.fail(f"prefill_lens: expected '+'-joined integers, got {text!r}")
        if any(c <= 0 for c in lens):
            self.fail("prefill_lens: chunk lengths must be >= 1")
        return lens

    def milliseconds(self) -> float:
        try:
            ms = float(self.raw["ms"])
        except ValueError:
            self.fail(f"ms: expected a number, got {self.raw['ms']!r}")
        if not ms > 0 or ms == float("inf"):
            self.fail(f"ms: must be a positive number, got {self.raw['ms']!r}")
        return ms
