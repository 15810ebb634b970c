"""An engine run folder: what a real serving engine was given, what it did, and its settings.

    workload.csv          request_id, arrival_s, prompt_tokens, output_tokens   (required)
    engine.yaml           the engine's settings as servesim config keys          (required)
    requests.csv          request_id, first_token_s, finish_s [, arrival_s, num_tokens, finished,
                          max_token_gap_s]                                       (optional)
    steps.csv[.gz]        one row per engine step (enginerun/steps.py)           (optional)

docs/fidelity.md describes the format and how to produce it from common engines' logs. Everything is
validated when read; a bad row is an `InputFileError` naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from servesim.config.loader import read_yaml
from servesim.core.errors import InputFileError
from servesim.enginerun.steps import EngineSteps, read_steps
from servesim.enginerun.table import Column, read_columns

WORKLOAD_COLUMNS = [
    Column("request_id", "int"),
    Column("arrival_s", "float"),
    Column("prompt_tokens", "int"),
    Column("output_tokens", "int"),
]
REQUEST_COLUMNS = [
    Column("request_id", "int"),
    Column("first_token_s", "float", blank_ok=True),
    Column("finish_s", "float", blank_ok=True),
    Column("arrival_s", "float", required=False, blank_ok=True),
    Column("num_tokens", "int", required=False, blank_ok=True),
    Column("finished", "int", required=False, blank_ok=True),
    Column("max_token_gap_s", "float", required=False, blank_ok=True),
]


@dataclass
class EngineRun:
    path: Path
    config: dict
    """engine.yaml: servesim config keys (model, hardware, cluster, engine, ...)."""
    workload: pd.DataFrame
    """request_id, arrival_s, prompt_tokens, output_tokens (file order)."""
    requests: pd.DataFrame | None
    """Finished requests: request_id, arrival_s, ttft_s, tpot_s, e2e_s, tbt_max_s."""
    steps: EngineSteps | None

    @property
    def workload_path(self) -> Path:
        return self.path / "workload.csv"

    def settings(self):
        """engine.yaml validated as a config on its own (errors name the file and the key)."""
        from servesim.config import load_config
        from servesim.core.errors import ConfigError

        try:
            return load_config(self.config)
        except ConfigError as exc:
            raise InputFileError(self.path / "engine.yaml", str(exc)) from None


def read_engine_run(path: str | Path, need_steps: bool = False) -> EngineRun:
    root = Path(path)
    if not root.is_dir():
        raise InputFileError(root, "not an engine run folder (expected a directory)")
    config = read_yaml(_required(root, "engine.yaml"))
    workload = _read_workload(_required(root, "workload.csv"))
    req_path = root / "requests.csv"
    requests = _read_requests(req_path, workload) if req_path.exists() else None
    steps_path = next((root / n for n in ("steps.csv", "steps.csv.gz") if (root / n).exists()), None)
    if steps_path is None and need_steps:
        raise InputFileError(root, "no steps.csv or steps.csv.gz: calibration needs the step log")
    steps = read_steps(steps_path) if steps_path is not None else None
    return EngineRun(root, config, workload, requests, steps)


def _required(root: Path, name: str) -> Path:
    p = root / name
    if not p.exists():
        raise InputFileError(p, "missing: an engine run folder needs workload.csv and engine.yaml")
    return p


def _read_workload(path: Path) -> pd.DataFrame:
    cols, lines = read_columns(path, WORKLOAD_COLUMNS)
    frame = pd.DataFrame(cols)
    for name in ("prompt_tokens", "output_tokens"):
        bad = np.flatnonzero(frame[name].to_numpy() < 1)
        if len(bad):
            raise InputFileError(path, f"{name}: must be >= 1", int(lines[bad[0]]))
    bad = np.flatnonzero(frame["arrival_s"].to_numpy() < 0)
    if len(bad):
        raise InputFileError(path, "arrival_s: must be >= 0", int(lines[bad[0]]))
    dup = np.flatnonzero(frame["request_id"].duplicated().to_numpy())
    if len(dup):
        raise InputFileError(path, "request_id: duplicate id", int(lines[dup[0]]))
    return frame


def _read_requests(path: Path, workload: pd.DataFrame) -> pd.DataFrame:
    cols, lines = read_columns(path, REQUEST_COLUMNS)
    frame = pd.DataFrame(cols)
    frame["_line"] = lines
    known = workload.set_index("request_id")
    unknown = np.flatnonzero(~frame["request_id"].isin(known.index).to_numpy())
    if len(unknown):
        raise InputFileError(path, "request_id: not in workload.csv", int(lines[unknown[0]]))
    if "arrival_s" not in frame or frame["arrival_s"].isna().any():
        frame["arrival_s"] = known.loc[frame["request_id"], "arrival_s"].to_numpy()
    tokens = known.loc[frame["request_id"], "output_tokens"].to_numpy()
    if "num_tokens" in frame:
        tokens = np.where(frame["num_tokens"] >= 0, frame["num_tokens"], tokens)
    done = frame["first_token_s"].notna() & frame["finish_s"].notna()
    if "finished" in frame:
        done &= frame["finished"] == 1
    frame = frame[done.to_numpy()]
    tokens = tokens[done.to_numpy()]
    _check_order(path, frame)
    out = pd.DataFrame({"request_id": frame["request_id"], "arrival_s": frame["arrival_s"]})
    out["ttft_s"] = frame["first_token_s"] - frame["arrival_s"]
    out["e2e_s"] = frame["finish_s"] - frame["arrival_s"]
    out["tpot_s"] = np.where(
        tokens > 1, (frame["finish_s"] - frame["first_token_s"]) / np.maximum(tokens - 1, 1), np.nan
    )
    if "max_token_gap_s" in frame:
        out["tbt_max_s"] = frame["max_token_gap_s"]
    return out.reset_index(drop=True)


def _check_order(path: Path, frame: pd.DataFrame) -> None:
    for col, after in (("first_token_s", "arrival_s"), ("finish_s", "first_token_s")):
        bad = np.flatnonzero((frame[col] < frame[after] - 1e-6).to_numpy())
        if len(bad):
            line = int(frame["_line"].iloc[bad[0]])
            raise InputFileError(path, f"{col}: before {after}", line)
