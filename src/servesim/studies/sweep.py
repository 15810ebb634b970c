"""Sweeps: run many points of one config and collect their summaries in `DIR/sweep.csv`.

Layout of sweep.csv: the point's keys, then the flattened summary metrics (`latency.ttft.p99`), then
`status` (ok|failed) and `error`. Rows are appended and flushed as points finish, so a sweep that is
interrupted (Ctrl-C, a killed job) keeps every finished point; `resume=True` runs only the points
without an `ok` row (failed points are retried). When the sweep completes, the file is rewritten in
point order, so a resumed sweep and an uninterrupted one produce the same file (bar `sim.wall_s`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from servesim.config import SimConfig, load_config
from servesim.core.errors import ArgumentError, ConfigError, InputFileError
from servesim.core.files import read_json, read_table, read_text
from servesim.progress import progress_bar
from servesim.simulation import dump_config, simulate
from servesim.studies.executor import check_backend, run_tasks
from servesim.studies.points import expand, format_point, format_value, point_id
from servesim.studies.summaries import flatten

SWEEP_CSV = "sweep.csv"
MANIFEST = "sweep.json"
STATUS_COLUMNS = ("status", "error")
RUNS = "runs"
RUN_DIR = "run_dir"
"""With `keep_runs`, the column naming each point's folder of run files (`runs/0003`)."""


@dataclass
class SweepPlan:
    """A validated sweep: the base config, the point keys, and one validated config per point."""

    base: SimConfig
    keys: list[str]
    points: list[dict]
    configs: list[SimConfig]


def plan_sweep(
    config: str | Path | Mapping | SimConfig,
    grid: Mapping[str, list] | None = None,
    points: Sequence[Mapping[str, Any]] | None = None,
    seeds: int | Sequence[int] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SweepPlan:
    """Expand and validate every point before anything runs (a bad key fails here, naming it)."""
    base = load_config(config, overrides)
    if isinstance(seeds, int):
        if seeds < 1:
            raise ArgumentError("seeds", f"must be >= 1, got {seeds}")
        seeds = [base.seed + i for i in range(seeds)]
    keys, pts = expand(grid, points, seeds)
    configs = [_point_config(base, p) for p in pts]
    return SweepPlan(base, keys, pts, configs)


def _point_config(base: SimConfig, point: dict) -> SimConfig:
    """The config of one point; an error says which point (and keeps the key it names)."""
    try:
        return load_config(base, point)
    except ConfigError as exc:
        raise ConfigError(exc.key, f"{exc.message} (point {format_point(point)})") from None


def evaluate(config: SimConfig, save_to: str | Path | None = None) -> dict:
    """One point: its flattened summary with status ok, or status failed and the error's one line.
    `save_to`: also write the run's files there (summary.json, requests.csv, ... as `run` does)."""
    try:
        result = simulate(config)
        if save_to is not None:
            result.save(save_to)
    except Exception as exc:  # noqa: BLE001  (a failing point is recorded, never fatal)
        message = " ".join(str(exc).split()) or type(exc).__name__
        return {"status": "failed", "error": f"{type(exc).__name__}: {message}"}
    return {**flatten(result.summary), "status": "ok", "error": ""}


def evaluate_saving(task: tuple[SimConfig, str]) -> dict:
    """`evaluate` for workers: (config, folder) -> the row, the run's files in the folder."""
    config, folder = task
    return {**evaluate(config, folder), RUN_DIR: folder}


def run_sweep(
    plan: SweepPlan,
    out: str | Path,
    workers: int | None = None,
    backend: str = "local",
    address: str | None = None,
    resume: bool = False,
    progress: bool = True,
    keep_runs: bool = False,
) -> pd.DataFrame:
    """Run the plan's points not yet done, appending each to `out/sweep.csv` as it finishes.

    `keep_runs`: each point also writes its run's files (requests.csv, summary.json, ...) into
    `out/runs/NNNN` (NNNN: the point's position in the plan), named in the `run_dir` column."""
    check_backend(workers, backend, address)
    out = Path(out)
    path = out / SWEEP_CSV
    manifest = _manifest(plan)
    kept: dict[tuple, dict] = {}
    if resume and path.exists():
        _check_manifest(out / MANIFEST, manifest)
        kept = {pid: row for pid, row in read_rows(path, plan.keys).items() if row["status"] == "ok"}
    elif path.exists() and not resume:
        raise ArgumentError("out", f"{path} exists; resume that sweep or choose another output folder")
    ids = [point_id(p, plan.keys) for p in plan.points]
    todo = [i for i, pid in enumerate(ids) if pid not in kept]
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    writer = SweepWriter(path, plan.keys, kept)
    bar = progress_bar(len(todo), "sweep", "points", enabled=progress)
    failed = 0
    try:
        if keep_runs:
            tasks = [(plan.configs[i], str(out / RUNS / f"{i:04d}")) for i in todo]
            results = run_tasks(evaluate_saving, tasks, workers, backend, address)
        else:
            results = run_tasks(evaluate, [plan.configs[i] for i in todo], workers, backend, address)
        for j, result in results:
            i = todo[j]
            cells = dict(zip(plan.keys, ids[i]))
            # the point's own cells win over a metric of the same name (`slo.ttft_s`)
            writer.add(ids[i], {**{k: _cell(v) for k, v in result.items()}, **cells})
            if result["status"] != "ok":
                failed += 1
                bar.set_postfix(failed=failed, refresh=False)
            bar.update()
    finally:
        bar.close()
    writer.rewrite(order=ids)
    return read_frame(path)


class SweepWriter:
    """sweep.csv, one row per finished point. Appends while the columns stay the same; when a row
    brings new metric columns (the first successful point, say), rewrites the file atomically."""

    def __init__(self, path: Path, keys: list[str], rows: Mapping[tuple, dict]):
        self.path = path
        self.keys = list(keys)
        self.rows: dict[tuple, dict] = dict(rows)
        self.metrics: list[str] = []
        for row in self.rows.values():
            self._grow(row)
        self.rewrite()

    @property
    def columns(self) -> list[str]:
        return self.keys + self.metrics + list(STATUS_COLUMNS)

    def add(self, pid: tuple, row: dict) -> None:
        self.rows[pid] = row
        if self._grow(row):
            self.rewrite()
            return
        with open(self.path, "a", newline="") as f:
            f.write(self._line(row))
            f.flush()
            os.fsync(f.fileno())

    def rewrite(self, order: Sequence[tuple] = ()) -> None:
        """The whole file, rows in `order` first (then any others), via a temporary file."""
        rank = {pid: i for i, pid in enumerate(order)}
        arrival = {pid: i for i, pid in enumerate(self.rows)}
        pids = sorted(self.rows, key=lambda p: (rank.get(p, len(rank)), arrival[p]))
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            f.write(self._line({c: c for c in self.columns}))
            f.writelines(self._line(self.rows[pid]) for pid in pids)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _grow(self, row: Mapping[str, str]) -> bool:
        known = set(self.columns)
        new = [c for c in row if c not in known]
        self.metrics += new
        return bool(new)

    def _line(self, row: Mapping[str, str]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([row.get(c, "") for c in self.columns])
        return buf.getvalue()


def read_rows(path: Path, keys: Sequence[str]) -> dict[tuple, dict]:
    """Rows of a sweep.csv by point id. A last line cut short by a kill is dropped."""
    text = read_text(path, "sweep.csv")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in (*keys, *STATUS_COLUMNS) if c not in (reader.fieldnames or [])]
    if missing:
        raise InputFileError(path, f"not a sweep of these keys (missing column {missing[0]!r})")
    rows = {}
    for row in reader:
        if None in row.values() or row["status"] not in ("ok", "failed"):
            continue  # a torn row
        rows[tuple(row[k] for k in keys)] = row
    return rows


def read_frame(path: str | Path) -> pd.DataFrame:
    return read_table(path, "sweep.csv", keep_default_na=True)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(float(value))
    return value if isinstance(value, str) else format_value(value)


def _manifest(plan: SweepPlan) -> dict:
    digest = hashlib.sha256(dump_config(plan.base).encode()).hexdigest()
    return {"servesim_sweep": 1, "config_sha256": digest, "keys": plan.keys}


def _check_manifest(path: Path, expected: dict) -> None:
    try:
        found = read_json(path, "sweep manifest")
    except InputFileError:
        raise InputFileError(path, "missing or unreadable: cannot tell which sweep wrote it") from None
    if not isinstance(found, dict):
        raise InputFileError(path, "not a sweep manifest: cannot tell which sweep wrote it")
    if found.get("keys") != expected["keys"]:
        raise ArgumentError("resume", f"{path} has keys {found.get('keys')}, this sweep {expected['keys']}")
    if found.get("config_sha256") != expected["config_sha256"]:
        raise ArgumentError("resume", f"{path} was written for a different base config")
