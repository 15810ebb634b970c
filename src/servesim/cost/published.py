"""Published end-to-end throughput results as rows the simulator can replay ("Throughput CSV").

One row is one published measurement: a model on `instances` copies of a `tp` x `pp` layout of one
device, a batching limit, request lengths (fixed, or a length file), and the tokens per second the
publisher measured. `docs/cost-model.md` section 9 documents every column. Rows are strict: a bad row is
an `InputFileError` naming its line, so `servesim costmodel calibrate/check` exit 2 before anything runs.

`trtllm_bench_settings` reproduces how `trtllm-bench throughput` (TensorRT-LLM's benchmark) picks its
batch size and token budget when the user gives neither, so rows that say `trtllm-bench` need no guess.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from servesim.catalog.specs import (
    DTYPE_BYTES,
    ModelSpec,
    get_hardware,
    get_model,
    hardware_names,
    model_names,
)
from servesim.core.errors import ConfigError, InputFileError

REQUIRED = (
    "id", "device", "model", "weight_dtype", "act_dtype", "kv_dtype", "tp", "instances", "batch",
    "mode", "num_requests", "metric", "tokens_per_s", "split", "source",
)
OPTIONAL = (
    "pp", "max_tokens", "input_len", "output_len", "lengths", "memory_fraction", "padded_cache",
    "engine", "note", "scheduler_steps",
)
MODES = ("continuous", "static")
METRICS = ("output", "total")
SPLITS = ("fit", "engine", "check")
"""`fit`: calibrates its device family; `engine`: calibrates its engine profile on top of the fitted
family (tools/fit_published.py); `check`: held out."""
AUTO = "trtllm-bench"


@dataclass(frozen=True)
class PublishedRow:
    line: int
    id: str
    device: str
    model: str
    weight_dtype: str
    act_dtype: str
    kv_dtype: str
    tp: int
    pp: int
    instances: int
    batch: int | str
    """Most sequences an instance runs at once, or `trtllm-bench` (that tool's own choice)."""
    max_tokens: int | str | None
    """Token budget of one step (prefill chunks + decodes); None: the engine default (8192)."""
    mode: str
    """`continuous`: in-flight batching with chunked prefill; `static`: one batch of `batch` prompts,
    prefilled together and decoded together to the end (offline scripts)."""
    input_len: int | None
    output_len: int | None
    lengths: Path | None
    """Length file (`num_prefill_tokens, num_decode_tokens`) instead of fixed lengths."""
    num_requests: int
    memory_fraction: float
    padded_cache: int | None
    """Static KV cache length every decode reads (JetStream), if the engine pads."""
    metric: str
    tokens_per_s: float
    split: str
    engine: str
    """The engine profile that produced the row (`cost/engines/`), or empty: the device profile alone."""
    source: str
    note: str
    scheduler_steps: int = 1
    """Decode steps the engine runs per scheduling (vLLM V0's `--num-scheduler-steps`; 1: every step
    is scheduled, the engines' default): the serial host time of a pure-decode step is shared by them."""

    @property
    def spec(self) -> ModelSpec:
        return get_model(
            {"base": self.model, "weight_dtype": self.weight_dtype, "act_dtype": self.act_dtype,
             "kv_dtype": self.kv_dtype}
        )

    @property
    def is_mlperf(self) -> bool:
        """An MLPerf Inference result (from an MLCommons `inference_results_v*` repository): held out
        from every fit, the project's own check."""
        return "inference_results_v" in self.source

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.instances


def read_published(path: str | Path) -> list[PublishedRow]:
    """All rows of a Throughput CSV; any malformed row raises InputFileError naming its line."""
    p = Path(path)
    try:
        handle = p.open(newline="")
    except OSError as exc:
        raise InputFileError(p, f"cannot read throughput rows ({exc.strerror or exc})") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            expected = ", ".join(REQUIRED)
            raise InputFileError(p, f"missing column(s) {', '.join(missing)}; expected {expected}", 1)
        unknown = [c for c in reader.fieldnames if c not in REQUIRED + OPTIONAL]
        if unknown:
            raise InputFileError(p, f"unknown column(s) {', '.join(unknown)}", 1)
        rows = [_RowParser(p, raw, reader.line_num).row() for raw in reader]
    if not rows:
        raise InputFileError(p, "no throughput rows")
    seen: dict[str, int] = {}
    for r in rows:
        if r.id in seen:
            raise InputFileError(p, f"id: {r.id!r} already used on line {seen[r.id]}", r.line)
        seen[r.id] = r.line
    return rows


class _RowParser:
    """Turns one raw CSV row into a PublishedRow, failing on the first bad field with its line."""

    def __init__(self, path: Path, raw: dict, line: int):
        self.path, self.raw, self.line = path, raw, line

    def fail(self, msg: str):
        raise InputFileError(self.path, msg, self.line)

    def text(self, col: str, required: bool = True) -> str:
        value = (self.raw.get(col) or "").strip()
        if required and not value:
            self.fail(f"{col}: empty")
        return value

    def integer(self, col: str, default: int | None = None, minimum: int = 1) -> int | None:
        text = self.text(col, required=default is None and col in REQUIRED)
        if not text:
            return default
        try:
            value = int(text)
        except ValueError:
            self.fail(f"{col}: expected an integer, got {text!r}")
        if value < minimum:
            self.fail(f"{col}: must be >= {minimum}, got {value}")
        return value

    def number(self, col: str, default: float | None, low: float, high: float) -> float:
        text = self.text(col, required=default is None)
        if not text:
            return default
        try:
            value = float(text)
        except ValueError:
            self.fail(f"{col}: expected a number, got {text!r}")
        if not low < value <= high:
            self.fail(f"{col}: must be in ({low}, {high}], got {text}")
        return value

    def choice(self, col: str, valid) -> str:
        value = self.text(col)
        if value not in valid:
            self.fail(f"{col}: expected one of {', '.join(valid)}, got {value!r}")
        return value

    def engine(self) -> str:
        from servesim.cost.engines import engine_kinds

        return self.choice("engine", engine_kinds()) if self.text("engine", required=False) else ""

    def row(self) -> PublishedRow:
        if None in self.raw or any(self.raw.get(c) is None for c in REQUIRED):
            self.fail("wrong number of fields")
        device, model = self.choice("device", hardware_names()), self.choice("model", model_names())
        dtypes = [self.choice(c, DTYPE_BYTES) for c in ("weight_dtype", "act_dtype", "kv_dtype")]
        batch = self.text("batch")
        if batch != AUTO:
            batch = self.integer("batch")
        max_tokens = self.text("max_tokens", required=False) or None
        if max_tokens not in (None, AUTO):
            max_tokens = self.integer("max_tokens")
        lengths = self.text("lengths", required=False)
        input_len, output_len = self.integer("input_len", 0), self.integer("output_len", 0)
        if bool(lengths) == bool(input_len and output_len):
            self.fail("give either input_len and output_len, or lengths (a length file)")
        row = PublishedRow(
            line=self.line, id=self.text("id"), device=device, model=model,
            weight_dtype=dtypes[0], act_dtype=dtypes[1], kv_dtype=dtypes[2],
            tp=self.integer("tp"), pp=self.integer("pp", 1), instances=self.integer("instances"),
            batch=batch, max_tokens=max_tokens, mode=self.choice("mode", MODES),
            input_len=input_len or None, output_len=output_len or None,
            lengths=(self.path.parent / lengths) if lengths else None,
            num_requests=self.integer("num_requests"),
            memory_fraction=self.number("memory_fraction", 0.9, 0.0, 1.0),
            padded_cache=self.integer("padded_cache", 0) or None,
            metric=self.choice("metric", METRICS),
            tokens_per_s=self.number("tokens_per_s", None, 0.0, math.inf),
            split=self.choice("split", SPLITS), engine=self.engine(),
            source=self.text("source"), note=self.text("note", required=False),
            scheduler_steps=self.integer("scheduler_steps", 1),
        )
        self._check_layout(row)
        return row

    def _check_layout(self, row: PublishedRow) -> None:
        if row.lengths is not None and not row.lengths.is_file():
            self.fail(f"lengths: no such file {str(row.lengths)!r}")
        if row.mode == "static" and row.batch == AUTO:
            self.fail("batch: a static batch needs its size")
        from servesim.cost.parallel import check_layout

        try:
            spec = row.spec
            check_layout(spec, row.tp, row.pp)
        except ConfigError as exc:
            self.fail(str(exc))
        hw = get_hardware(row.device)
        if spec.weight_bytes(row.tp) / row.pp >= hw.hbm_bytes * row.memory_fraction:
            self.fail(f"tp: {row.model} weights do not fit {row.tp} x {row.pp} {row.device}")


def trtllm_bench_settings(row: PublishedRow, input_len: float, output_len: float) -> tuple[int, int]:
    """(max batch size, max tokens per step) as `trtllm-bench throughput` chooses them by default.

    Its rule (TensorRT-LLM `bench/build/tuning.py`): the KV memory left by the weights over KV bytes
    of one target sequence gives the requests that fit; that, capped at 4096 and split over pipeline
    stages, rounded up to a multiple of 32/128/256 (at least 64), is the batch; the token budget is
    batch x (1 + input/output) capped at 32768, rounded up to 256/512/1024 (at least 2048).
    """
    spec, hw = row.spec, get_hardware(row.device)
    gpus = row.tp * row.pp
    kv_heads = max(row.tp, spec.num_kv_heads)
    kv_per_token = 2 * spec.num_layers * kv_heads * spec.head_dim * DTYPE_BYTES[spec.kv_dtype]
    free = hw.hbm_bytes * gpus - spec.num_params * DTYPE_BYTES[spec.weight_dtype]
    requests = free * row.memory_fraction / (kv_per_token * (input_len + output_len))
    batch = min(requests, 4096) / row.pp
    tokens = min(batch * (1 + input_len / output_len), 32768)
    step = 32 if batch < 256 else 128 if batch < 1024 else 256
    max_batch = max(64, step * math.ceil(batch / step))
    step = 256 if tokens < 4096 else 512 if tokens < 8192 else 1024
    max_tokens = max(2048, step * math.ceil(tokens / step))
    return max_batch, max_tokens
