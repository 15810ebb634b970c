"""A workload config -> one RequestTable: sources (the workload itself, or its classes), merged.

Randomness: every source draws from a sub-stream named after its class ("class", name) and, within
it, one per purpose (arrivals, prompt, output, sessions, ...), so adding a class, or a draw in one
class, shifts nothing in the others.

Counts: each source yields its first `num_requests` and/or those before `duration_s`; the merge,
sorted by arrival (stable: ties keep class order), is cut the same way. For independent sources
that is exactly the first `num_requests` of the superposed stream.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from servesim.config.workload import ArrivalConfig, LengthsConfig, SessionsConfig, TraceConfig, WorkloadConfig
from servesim.core.errors import ConfigError
from servesim.workload.filters import LengthLimit
from servesim.workload.readers import ReadOptions, read_trace
from servesim.workload.streams import substream
from servesim.workload.synthetic import arrival_times, lengths
from servesim.workload.table import RequestTable, concat

if TYPE_CHECKING:  # programs, sessions and trace replay are imported by the workloads that have them
    from servesim.workload.sessions import LengthSampler

log = logging.getLogger("servesim.workload")
Resolver = Callable[[str], Path]


@dataclass(frozen=True)
class Source:
    """One stream of requests: the whole workload, or one class with the workload's defaults filled in."""

    key: str
    name: str | None
    priority: int
    ttft_slo: float | None
    tpot_slo: float | None
    arrival: ArrivalConfig
    lengths: LengthsConfig
    sessions: SessionsConfig | None
    trace: TraceConfig | None


def sources(cfg: WorkloadConfig) -> list[Source]:
    if not cfg.classes:
        return [Source("workload", None, 0, None, None, cfg.arrival, cfg.lengths, cfg.sessions, cfg.trace)]
    return [
        Source(
            f"workload.classes.{i}",
            c.name,
            c.priority,
            c.slo.ttft_s,
            c.slo.tpot_s,
            c.arrival or cfg.arrival,
            c.lengths or cfg.lengths,
            None if c.trace is not None else (c.sessions or cfg.sessions),
            c.trace,
        )
        for i, c in enumerate(cfg.classes)
    ]


def build_requests(
    cfg: WorkloadConfig,
    rng: np.random.Generator,
    resolve_path: Resolver | None = None,
    limit: LengthLimit | None = None,
) -> RequestTable:
    """The requests of a workload config, sorted by arrival, drawn only from `rng` (the workload stream).

    `limit`: generated lengths are drawn within these caps (`workload.filter` with `drop`)."""
    resolve = resolve_path or Path
    if cfg.programs is not None:
        return program_requests(cfg, rng, resolve)
    srcs = sources(cfg)
    rngs = [substream(rng, "class", s.name or "") for s in srcs]
    traces = {i: load_trace(s, rngs[i], resolve) for i, s in enumerate(srcs) if s.trace is not None}
    scale = rate_factor(cfg, srcs, traces)
    tables = []
    for i, s in enumerate(srcs):
        trace = traces.get(i)
        if trace is not None and trace.timed:
            table = trace if scale == 1.0 else trace.with_arrivals(trace.arrival_s / scale)
        else:
            table = synthetic(s, cfg, rngs[i], s.arrival.rate * scale, resolve, rows=trace, limit=limit)
        tables.append(label(table, s) if cfg.classes else table)
    try:
        merged = concat(tables).sorted_by_arrival()
    except ValueError as exc:
        raise ConfigError("workload.classes", str(exc)) from None
    return cap(merged, cfg)


def program_requests(cfg: WorkloadConfig, rng: np.random.Generator, resolve: Resolver) -> RequestTable:
    """The calls of agentic programs, recorded or generated (`workload.programs`)."""
    from servesim.workload.programs import generate_programs, programs_table, read_programs

    p = cfg.programs
    key = "workload.programs"
    if p.path is not None:
        programs, key = read_programs(resolve(p.path)), "workload.programs.path"
    else:
        rng = substream(rng, "programs")
        rate = cfg.rate if cfg.rate is not None else cfg.arrival.rate
        starts = arrival_times(cfg.arrival, substream(rng, "starts"), p.num_programs, None, rate)
        programs = generate_programs(p, starts, rng)
    return programs_table(programs, p.hash_block_size, key).sorted_by_arrival()


def load_trace(s: Source, rng: np.random.Generator, resolve: Resolver) -> RequestTable:
    """The trace of a source, read and cut to its window (its own time scale applied)."""
    from servesim.workload.replay import replay

    t = s.trace
    options = ReadOptions(
        skip_bad_rows=t.skip_bad_rows,
        block_size=t.block_size,
        columns=t.columns,
        time_unit=t.time_unit,
        start_s=t.start_s,
        end_s=t.start_s + t.duration_s if t.duration_s is not None else float("inf"),
    )
    path = resolve(t.path)
    data = read_trace(path, t.format, options, substream(rng, "trace"), format_key=f"{s.key}.trace.format")
    for message in data.report.messages(path):
        log.warning("warning: %s", message)
    return replay(data.table, t, f"{s.key}.trace")


def rate_factor(cfg: WorkloadConfig, srcs: list[Source], traces: dict[int, RequestTable]) -> float:
    """How much to multiply every source's rate by so the total is `workload.rate` (1 without it)."""
    if cfg.rate is None:
        return 1.0
    from servesim.workload.replay import observed_rate

    nominal = 0.0
    for i, s in enumerate(srcs):
        t = traces.get(i)
        nominal += observed_rate(t) if t is not None and t.timed else s.arrival.rate
    if not np.isfinite(nominal) or nominal <= 0:
        raise ConfigError("workload.rate", "cannot rescale: a trace window spans no time")
    return cfg.rate / nominal


def synthetic(
    s: Source,
    cfg: WorkloadConfig,
    rng: np.random.Generator,
    rate: float,
    resolve: Resolver,
    rows: RequestTable | None,
    limit: LengthLimit | None = None,
) -> RequestTable:
    """Generated arrivals; lengths from distributions, an empirical file, or an untimed trace's rows."""
    count, duration = cfg.num_requests, cfg.duration_s
    if rows is not None and count is None and duration is None:
        count = len(rows)
    sampler = rows_in_order(rows) if rows is not None else length_sampler(s, rng, resolve)
    if limit is not None and rows is None:
        sampler = limit.resampling(sampler, s.key)
    arrivals = arrival_times(s.arrival, substream(rng, "arrivals"), count, duration, rate)
    if count is not None and len(arrivals) < count and duration is None:
        log.warning(
            "warning: %s.arrival.rate_schedule ends (last factor 0) after %d of %d requests",
            s.key,
            len(arrivals),
            count,
        )
    if s.sessions is not None:
        from servesim.workload.sessions import expand_sessions

        return expand_sessions(arrivals, s.sessions, sampler, substream(rng, "sessions"))
    if rows is not None:
        arrivals = arrivals[: len(rows)]
    prompt, output = sampler(len(arrivals), substream(rng, "lengths"))
    return RequestTable(arrivals, prompt, output)


def length_sampler(s: Source, rng: np.random.Generator, resolve: Resolver) -> LengthSampler:
    cfg = s.lengths
    if cfg.empirical is None:

        def draw(n: int, r: np.random.Generator):
            return lengths(cfg.prompt, n, substream(r, "prompt")), lengths(
                cfg.output, n, substream(r, "output")
            )

        return draw
    path = resolve(cfg.empirical)
    data = read_trace(
        path, cfg.format, ReadOptions(), substream(rng, "empirical"), format_key=f"{s.key}.lengths.format"
    )
    for message in data.report.messages(path):
        log.warning("warning: %s", message)
    pool = data.table

    def resample(n: int, r: np.random.Generator):
        pick = r.integers(0, len(pool), n)
        return pool.prompt_tokens[pick], pool.output_tokens[pick]

    return resample


def rows_in_order(rows: RequestTable) -> LengthSampler:
    def take(n: int, r: np.random.Generator):
        return rows.prompt_tokens[:n], rows.output_tokens[:n]

    return take


def label(table: RequestTable, s: Source) -> RequestTable:
    n = len(table)
    return replace(
        table,
        class_name=np.full(n, s.name, dtype=object),
        priority=np.full(n, s.priority, dtype=np.int64),
        ttft_slo=np.full(n, np.nan if s.ttft_slo is None else s.ttft_slo),
        tpot_slo=np.full(n, np.nan if s.tpot_slo is None else s.tpot_slo),
    )


def cap(table: RequestTable, cfg: WorkloadConfig) -> RequestTable:
    if cfg.duration_s is not None and table.timed:
        table = table.take(table.arrival_s < cfg.duration_s)
    if cfg.num_requests is not None and len(table) > cfg.num_requests:
        table = table.take(np.arange(cfg.num_requests))
    if len(table) == 0:
        raise ConfigError(
            "workload", "the workload has no requests (check duration_s, the rate and the trace window)"
        )
    return table
