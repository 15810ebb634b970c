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
    def fail(msg: str):
        raise InputFileError(path, msg, line)

    if None in raw or any(raw.get(c) is None for c in REQUIRED):
        fail("wrong number of fields")

    def integer(col: str, minimum: int = 0) -> int:
        text = raw[col].strip()
        try:
            value = int(text) if text else 0
        except ValueError:
            fail(f"{col}: expected an integer, got {text!r}")
        if value < minimum:
            fail(f"{col}: must be >= {minimum}, got {value}")
        return value

    kind = raw["kind"].strip()
    if kind not in KINDS:
        fail(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    model = raw["model"].strip()
    if model not in model_names():
        fail(f"model: unknown model {model!r}; valid: {', '.join(model_names())}")
    lens_text = raw["prefill_lens"].strip()
    try:
        lens = tuple(int(x) for x in lens_text.split("+")) if lens_text else ()
    except ValueError:
        fail(f"prefill_lens: expected '+'-joined integers, got {lens_text!r}")
    if any(c <= 0 for c in lens):
        fail("prefill_lens: chunk lengths must be >= 1")
    try:
        ms = float(raw["ms"])
    except ValueError:
        fail(f"ms: expected a number, got {raw['ms']!r}")
    if not ms > 0 or ms == float("inf"):
        fail(f"ms: must be a positive number, got {raw['ms']!r}")
    comm_text = (raw.get("includes_comm") or "1").strip()
    if comm_text not in ("0", "1"):
        fail(f"includes_comm: expected 0 or 1, got {comm_text!r}")
    moe_text = (raw.get("moe_kernels") or "").strip()
    if moe_text not in ("", "fused", "looped"):
        fail(f"moe_kernels: expected fused, looped or empty, got {moe_text!r}")
    tp = integer("tp", 1)
    batch, dctx = integer("decode_batch"), integer("decode_ctx")
    if kind in ("prefill", "prefill_batch") and (not lens or batch):
        fail(f"kind {kind}: needs prefill_lens and no decodes")
    if kind == "decode" and (lens or not batch):
        fail("kind decode: needs decode_batch >= 1 and no prefill_lens")
    if kind == "mixed" and not (lens and batch):
        fail("kind mixed: needs both prefill_lens and decode_batch")
    try:
        spec = get_model(model)
    except ConfigError as exc:  # pragma: no cover - names come from the catalog
        fail(str(exc))
    if spec.num_heads % tp:
        fail(f"tp: {tp} does not divide the {spec.num_heads} heads of {model}")
    gpu = raw["gpu"].strip()
    if not gpu:
        fail("gpu: empty")
    return Measurement(
        line=line,
        gpu=gpu,
        hardware=hardware_by_alias(gpu),
        model=model,
        tp=tp,
        kind=kind,
        prefill_lens=lens,
        prior_ctx=integer("prior_ctx"),
        decode_batch=batch,
        decode_ctx=dctx,
        seconds=ms / 1e3,
        includes_comm=comm_text == "1",
        moe_kernels=moe_text or None,
    )
