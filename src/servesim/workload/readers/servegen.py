"""ServeGen (Alibaba Bailian) per-client statistics, turned into requests.

A client is a pair of files: `chunk-<id>-trace.csv` (no header; per window of 600 s: start, mean rate,
CV, fitted inter-arrival law `Gamma`/`Weibull`, shape, scale) and `chunk-<id>-dataset.json`
(per 6-hour window: PMFs of input and output tokens as Python dict literals). The path is one
client's trace file or a folder; a folder means every client beneath it, superposed.

Generation, per client and rate window:
- inter-arrival gaps follow the fitted law's shape, with the scale chosen so the window's mean rate is
  exactly the recorded rate (the fits' own means drift from the recorded rates); a window with a rate
  but no fit uses exponential gaps;
- input and output tokens are drawn independently from the PMFs of the 6-hour window containing the
  arrival (an empty window borrows the nearest non-empty one); multimodal clients get
  text + images/audio/video tokens; a sampled 0 becomes 1 (a request has at least one token each way).
Every window draws from its own sub-stream, so replaying part of the day gives the same requests as
the whole day, cut.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servesim.core.errors import InputFileError
from servesim.workload.readers.base import (
    Probe,
    ReadOptions,
    ReadReport,
    RowChecker,
    finalize,
    read_csv,
    show,
)
from servesim.workload.readers.registry import READERS
from servesim.workload.streams import substream
from servesim.workload.table import RequestTable, concat

TRACE_RE = re.compile(r"^chunk-(\d+)-trace\.csv$")
DATASET_RE = re.compile(r"^chunk-(\d+)-dataset\.json$")
FITS = ("Gamma", "Weibull")
MODALITIES = ("image", "audio", "video")


@dataclass
class RateWindows:
    """A ServeGen client's arrival rate and inter-arrival distribution per time window."""

    start: np.ndarray
    rate: np.ndarray
    fit: np.ndarray
    shape: np.ndarray
    scale: np.ndarray
    width: float


@dataclass
class Pmf:
    """A discrete distribution: values and their (unnormalised) probabilities."""

    values: np.ndarray
    probs: np.ndarray

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        cdf = np.cumsum(self.probs)
        index = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
        return self.values[np.minimum(index, len(self.values) - 1)]


@READERS.register("servegen")
class ServeGenTraceReader:
    timed = True

    def sniff(self, probe: Probe) -> bool:
        if probe.path.is_dir():
            return next(probe.path.rglob("chunk-*-trace.csv"), None) is not None
        name = probe.path.name
        return TRACE_RE.match(name) is not None or DATASET_RE.match(name) is not None

    def read(self, path: Path, options: ReadOptions, report: ReadReport, rng) -> RequestTable:
        clients = find_clients(path)
        tables, missing = [], []
        for key, trace_path in clients:
            dataset = trace_path.with_name(trace_path.name.replace("-trace.csv", "-dataset.json"))
            if not dataset.exists():
                if not path.is_dir():
                    raise InputFileError(
                        dataset, "missing: a ServeGen client needs its dataset file beside the trace"
                    )
                missing.append(key)
                continue
            windows = read_rate_windows(trace_path, options, report)
            pmfs = read_length_pmfs(dataset)
            table = generate_client(windows, pmfs, options, substream(rng, "servegen", key))
            if len(table):
                tables.append(table)
        if missing:
            report.warnings.append(
                f"skipped {len(missing)} client(s) without a dataset file: {', '.join(missing)}"
            )
        if not tables:
            raise InputFileError(path, "no requests: no client has a positive rate in the window")
        return finalize(path, concat(tables).sorted_by_arrival(), report)


def find_clients(path: Path) -> list[tuple[str, Path]]:
    """(stable key, trace file) per client, in a fixed order. The key is `<model folder>/chunk-<id>`."""
    if path.is_dir():
        files = [p for p in path.rglob("chunk-*-trace.csv") if TRACE_RE.match(p.name)]
        if not files:
            raise InputFileError(path, "no ServeGen chunk-<id>-trace.csv files in this folder")
    elif TRACE_RE.match(path.name):
        files = [path]
    elif DATASET_RE.match(path.name):  # either file of a client names the client
        files = [path.with_name(path.name.replace("-dataset.json", "-trace.csv"))]
        if not files[0].exists():
            raise InputFileError(files[0], "missing: a ServeGen client needs its trace beside its dataset")
    else:
        raise InputFileError(path, "expected a ServeGen chunk-<id>-trace.csv file or a folder of them")

    def key(p: Path) -> str:
        return f"{p.parent.name}/chunk-{TRACE_RE.match(p.name).group(1)}"

    files.sort(key=lambda p: (str(p.parent), int(TRACE_RE.match(p.name).group(1))))
    return [(key(p), p) for p in files]


def read_rate_windows(path: Path, options: ReadOptions, report: ReadReport) -> RateWindows:
    frame = read_csv(path, options, report, header=False)
    if frame.shape[1] != 7:  # six columns and _line
        raise InputFileError(
            path, f"expected 6 columns (start, rate, cv, fit, shape, scale), got {frame.shape[1] - 1}", 1
        )
    frame.columns = ["start", "rate", "cv", "fit", "shape", "scale", "_line"]
    check = RowChecker(path, frame["_line"].to_numpy(), options, report)
    start = check.numeric(frame["start"], "start (column 1)", integer=False)
    rate = check.numeric(frame["rate"], "rate (column 2)", integer=False)
    fit = frame["fit"].fillna("").astype(str).str.strip().to_numpy()
    raw_fit = frame["fit"]
    check.flag(
        ~np.isin(fit, ("",) + FITS),
        "bad_fit",
        lambda i: f"column 4: expected Gamma, Weibull or empty, got {show(raw_fit[i])}",
    )
    fitted = np.isin(fit, FITS)
    shape = np.where(
        fitted,
        check.numeric(frame["shape"].where(fitted, 1.0), "shape (column 5)", integer=False, positive=True),
        np.nan,
    )
    scale = np.where(
        fitted,
        check.numeric(frame["scale"].where(fitted, 1.0), "scale (column 6)", integer=False, positive=True),
        np.nan,
    )
    keep = check.finish()
    start, rate, fit, shape, scale = start[keep], rate[keep], fit[keep], shape[keep], scale[keep]
    order = np.argsort(start, kind="stable")
    steps = np.diff(start[order])
    width = float(np.median(steps)) if len(steps) and np.median(steps) > 0 else 600.0
    return RateWindows(start[order], rate[order], fit[order], shape[order], scale[order], width)


def read_length_pmfs(path: Path) -> tuple[list[float], dict[float, dict[str, Pmf]]]:
    """Every window start, and window start -> field -> PMF for the windows that hold data."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"not a readable ServeGen dataset file ({exc})") from None
    if not isinstance(data, dict):
        raise InputFileError(path, "expected {window start: {field: PMF}}")
    out, starts = {}, []
    for start, fields in data.items():
        try:
            t = float(start)
        except ValueError:
            raise InputFileError(path, f"window key {start!r}: expected seconds") from None
        starts.append(t)
        if not isinstance(fields, dict):
            raise InputFileError(path, f"window {start}: expected {{field: PMF}}")
        pmfs = {name: _parse_pmf(path, start, name, text) for name, text in fields.items()}
        pmfs = {k: v for k, v in pmfs.items() if v is not None}
        if "output_tokens" in pmfs and ("input_tokens" in pmfs or "text_tokens" in pmfs):
            out[t] = pmfs
    if not out:
        raise InputFileError(path, "no window holds input and output token PMFs")
    return sorted(starts), out


def _parse_pmf(path: Path, window: str, name: str, text) -> Pmf | None:
    try:
        pmf = ast.literal_eval(text) if isinstance(text, str) else text
        values = np.array(list(pmf.keys()), dtype=np.float64)
        probs = np.array(list(pmf.values()), dtype=np.float64)
    except (ValueError, SyntaxError, AttributeError, TypeError):
        raise InputFileError(
            path, f"window {window} field {name!r}: expected a {{value: probability}} dict"
        ) from None
    if len(values) == 0:
        return None
    if np.any(probs < 0) or not np.isfinite(probs).all() or probs.sum() <= 0:
        raise InputFileError(path, f"window {window} field {name!r}: probabilities must be >= 0 and sum > 0")
    return Pmf(values, probs / probs.sum())


def generate_client(windows: RateWindows, dataset, options: ReadOptions, rng) -> RequestTable:
    starts, pmfs = dataset
    times, prompts, outputs = [], [], []
    for k in range(len(windows.start)):
        w0, r = float(windows.start[k]), float(windows.rate[k])
        if r <= 0 or w0 + windows.width <= options.start_s or w0 >= options.end_s:
            continue
        key = f"{w0:g}"
        t = w0 + window_arrivals(windows, k, substream(rng, "arrivals", key))
        if not len(t):
            continue
        lrng = substream(rng, "lengths", key)
        ds = _nearest_window(starts, pmfs, w0)
        times.append(t)
        prompts.append(_prompt_tokens(pmfs[ds], lrng, len(t)))
        outputs.append(np.maximum(pmfs[ds]["output_tokens"].sample(lrng, len(t)), 1))
    if not times:
        return RequestTable(np.zeros(0), np.zeros(0), np.zeros(0))
    return RequestTable(np.concatenate(times), np.concatenate(prompts), np.concatenate(outputs))


def window_arrivals(windows: RateWindows, k: int, rng: np.random.Generator) -> np.ndarray:
    """Arrival offsets in [0, width) for window k: a renewal process with mean gap 1/rate."""
    rate, width, fit = windows.rate[k], windows.width, windows.fit[k]
    mean = 1.0 / rate
    if fit == "Gamma":
        a = windows.shape[k]

        def draw(n):
            return rng.gamma(a, mean / a, n)

    elif fit == "Weibull":
        c = windows.shape[k]
        unit_mean = math.gamma(1 + 1 / c)

        def draw(n):
            return rng.weibull(c, n) * (mean / unit_mean)

    else:

        def draw(n):
            return rng.exponential(mean, n)

    expected = rate * width
    n = int(expected + 6 * math.sqrt(expected) + 16)
    gaps = draw(n)
    gaps[0] *= rng.random()  # the window starts mid-gap
    t = np.cumsum(gaps)
    while t[-1] < width:
        t = np.concatenate([t, t[-1] + np.cumsum(draw(n))])
    return t[t < width]


def _nearest_window(starts: list[float], pmfs, t: float) -> float:
    """The data window containing t; when it holds no data, the data window whose start is nearest."""
    containing = [s for s in starts if s <= t]
    if containing and containing[-1] in pmfs:
        return containing[-1]
    return min(pmfs, key=lambda s: (abs(s - t), s))


def _prompt_tokens(pmfs: dict[str, Pmf], rng: np.random.Generator, n: int) -> np.ndarray:
    if "input_tokens" in pmfs:
        return np.maximum(pmfs["input_tokens"].sample(rng, n), 1)
    total = pmfs["text_tokens"].sample(rng, n) if "text_tokens" in pmfs else np.zeros(n)
    for m in MODALITIES:
        count, per_item = pmfs.get(f"{m}_count"), pmfs.get(f"{m}_tokens")
        if count is None or per_item is None:
            continue
        items = count.sample(rng, n).astype(np.int64)
        owner = np.repeat(np.arange(n), items)
        total = total + np.bincount(owner, weights=per_item.sample(rng, len(owner)), minlength=n)
    return np.maximum(total, 1)
