"""Agentic programs: LLM calls linked by tool calls, generated or read from JSONL.

A program is a DAG of calls. A call waits for its parents to finish, then for its tool time, and
its prompt is the conversation so far: its first parent's prompt and output, the outputs of any
other parents (a join after a fan-out), then its own new tokens (the tool's result). Roots start
with the shared system prompt. Prefix hashes follow the tokens: a call shares the full hash
blocks of its first parent's prompt; every later block is its own (so a block that mixes the
parent's prompt tail with newer tokens is new, as it is for a real KV cache).

Recorded programs (`workload.programs.path`), one JSON object per line:

    {"start_s": 0.0, "system_prompt_tokens": 1000,
     "calls": [{"new_tokens": 500, "output_tokens": 80},
               {"parents": [0], "tool_s": 2.5, "new_tokens": 300, "output_tokens": 60}]}

`parents` are indices of earlier calls of the same program (default: the previous call; `[]` for a
root), `tool_s` the seconds between the parents' end and the call (default 0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from servesim.config.workload import MAX_REQUESTS, ProgramsConfig
from servesim.core.errors import ConfigError, InputFileError
from servesim.workload.sessions import MAX_HISTORY_BLOCKS, think_times
from servesim.workload.streams import substream
from servesim.workload.synthetic import lengths
from servesim.workload.table import RequestTable


@dataclass
class Program:
    start_s: float
    system_prompt_tokens: int
    parents: list[tuple] = field(default_factory=list)
    tool_s: list[float] = field(default_factory=list)
    new_tokens: list[int] = field(default_factory=list)
    output_tokens: list[int] = field(default_factory=list)


def generate_programs(cfg: ProgramsConfig, starts: np.ndarray, rng: np.random.Generator) -> list[Program]:
    """Chains of calls; with `fan_out_prob`, a step fans out into `fan_out` parallel calls that the
    next call joins. Every draw comes from its own sub-stream."""
    n = len(starts)
    counts = lengths(cfg.calls, n, substream(rng, "calls"))
    total = int(counts.sum())
    if total > MAX_REQUESTS:
        raise ConfigError("workload.programs.calls", f"{n} programs draw {total:.3g} calls, more than the "
                          f"{MAX_REQUESTS:,} requests one run holds; lower calls or num_programs")
    new = lengths(cfg.new_tokens, total, substream(rng, "new_tokens"))
    out = lengths(cfg.output, total, substream(rng, "output"))
    tool = think_times(cfg.tool_time, total, substream(rng, "tool"))
    fan = substream(rng, "fan_out").random(total) < cfg.fan_out_prob
    programs, k = [], 0
    for p in range(n):
        prog = Program(float(starts[p]), cfg.system_prompt_tokens)
        frontier: tuple = ()
        i = 0
        while i < counts[p]:
            width = min(cfg.fan_out if fan[k + i] else 1, int(counts[p]) - i)
            first = i
            for _ in range(width):
                prog.parents.append(frontier)
                prog.tool_s.append(float(tool[k + i]) if frontier else 0.0)
                prog.new_tokens.append(int(new[k + i]))
                prog.output_tokens.append(int(out[k + i]))
                i += 1
            frontier = tuple(range(first, first + width))
        k += int(counts[p])
        programs.append(prog)
    return programs


def read_programs(path: Path) -> list[Program]:
    """Programs from a JSONL file; a malformed line is an InputFileError naming it."""
    programs = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            programs.append(_parse_program(json.loads(line)))
        except (ValueError, TypeError, KeyError) as exc:
            raise InputFileError(path, f"bad program: {exc}", line=number) from None
    if not programs:
        raise InputFileError(path, "no programs")
    return programs


def _parse_program(obj: dict) -> Program:
    if not isinstance(obj, dict) or not isinstance(obj.get("calls"), list) or not obj["calls"]:
        raise ValueError("expected an object with a non-empty `calls` list")
    prog = Program(float(obj.get("start_s", 0.0)), int(obj.get("system_prompt_tokens", 0)))
    if prog.start_s < 0 or prog.system_prompt_tokens < 0:
        raise ValueError("start_s and system_prompt_tokens must be >= 0")
    for i, call in enumerate(obj["calls"]):
        parents = tuple(int(x) for x in call.get("parents", [i - 1] if i else []))
        if any(not 0 <= x < i for x in parents):
            raise ValueError(f"call {i}: parents must be earlier calls")
        new, out, tool = int(call["new_tokens"]), int(call["output_tokens"]), float(call.get("tool_s", 0))
        if new < 1 or out < 1 or tool < 0:
            raise ValueError(f"call {i}: new_tokens and output_tokens >= 1, tool_s >= 0")
        prog.parents.append(parents)
        prog.tool_s.append(tool if parents else 0.0)
        prog.new_tokens.append(new)
        prog.output_tokens.append(out)
    return prog


def programs_table(programs: list[Program], block: int, key: str = "workload.programs") -> RequestTable:
    """One row per call. A non-root call's `arrival_s` is only a lower bound (its parents' start
    plus tool times): the engine issues it when its parents have finished. Each call's prompt
    repeats its conversation, so the block ids grow quadratically with a program's calls: more
    than MAX_HISTORY_BLOCKS in all is a ConfigError naming `key`, before they are made."""
    _check_history_blocks(programs, block, key)
    rows = []
    next_id = 1 << 30  # above any system-prompt block id
    for pid, prog in enumerate(programs):
        system_blocks = prog.system_prompt_tokens // block
        prompts = call_prompts(prog)
        hashes: list[tuple[int, ...]] = []
        arrivals: list[float] = []
        for i, parents in enumerate(prog.parents):
            if parents:
                first = parents[0]
                inherited = hashes[first][: prompts[first] // block]
                arrival = max(arrivals[q] for q in parents) + prog.tool_s[i]
            else:
                arrival = prog.start_s
                inherited = tuple(range(system_blocks))
            prompt = prompts[i]
            own = (prompt + block - 1) // block - len(inherited)
            ids = inherited + tuple(range(next_id, next_id + own))
            next_id += own
            hashes.append(ids)
            arrivals.append(arrival)
            rows.append((arrival, prompt, prog.output_tokens[i], pid, i, parents, prog.tool_s[i], ids))
    arrival, prompt, output, pid, index, parents, tool, ids = zip(*rows)
    parent_col = np.empty(len(rows), dtype=object)
    parent_col[:] = list(parents)
    return RequestTable(
        arrival, prompt, output, prefix_hashes=list(ids), hash_block_size=block,
        program_id=np.asarray(pid, np.int64), call_index=np.asarray(index, np.int64),
        call_parents=parent_col, tool_s=np.asarray(tool, np.float64),
    )


def call_prompts(prog: Program) -> list[int]:
    """Prompt tokens of each call: its first parent's prompt and every parent's output (the
    conversation it continues), or the system prompt for a root call; then its new tokens."""
    prompts: list[int] = []
    for i, parents in enumerate(prog.parents):
        if parents:
            base = prompts[parents[0]] + sum(prog.output_tokens[q] for q in parents)
        else:
            base = prog.system_prompt_tokens
        prompts.append(base + prog.new_tokens[i])
    return prompts


def _check_history_blocks(programs: list[Program], block: int, key: str) -> None:
    """The prompts' block ids in all, counted without making them (Python integers: no overflow)."""
    blocks = 0
    for prog in programs:
        blocks += sum(-(-prompt // block) for prompt in call_prompts(prog))
        if blocks > MAX_HISTORY_BLOCKS:
            raise ConfigError(key, f"the calls' prompts hold over {MAX_HISTORY_BLOCKS:,} KV blocks in all "
                              "(each repeats its program's conversation); lower the calls, the lengths "
                              "or raise hash_block_size")
