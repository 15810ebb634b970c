"""The normalised request schema every workload source produces: one column per field."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

HASH_SPACE_BITS = 40
"""Hash ids of one source stay below 2**40; merged sources are offset by multiples of it."""


@dataclass
class RequestTable:
    """Requests, one row each. Optional columns are None when the source has no such data.

    `arrival_s` is seconds on the source's clock. Length files have no clock (`timed` False):
    their `arrival_s` is all zeros and only the row order means anything.
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    session_id: np.ndarray | None = None
    """Conversation id per request (int, -1 = none)."""
    class_name: np.ndarray | None = None
    priority: np.ndarray | None = None
    ttft_slo: np.ndarray | None = None
    """Per-request TTFT objective, seconds; NaN means the global `slo.ttft_s`."""
    tpot_slo: np.ndarray | None = None
    prefix_hashes: list[tuple[int, ...]] | None = None
    """Per request, hashes of the prompt's leading blocks of `hash_block_size` tokens."""
    hash_block_size: int = 0
    timed: bool = True
    program_id: np.ndarray | None = None
    """Agentic programs: the program of each call (int, -1 = none); see workload/programs.py."""
    call_index: np.ndarray | None = None
    """Agentic programs: the call's index within its program."""
    call_parents: np.ndarray | None = None
    """Agentic programs: per call, a tuple of the call indices it waits for (object array)."""
    tool_s: np.ndarray | None = None
    """Agentic programs: tool time between the parents' end and the call, seconds."""

    def __post_init__(self):
        self.arrival_s = np.asarray(self.arrival_s, dtype=np.float64)
        self.prompt_tokens = np.asarray(self.prompt_tokens, dtype=np.int64)
        self.output_tokens = np.asarray(self.output_tokens, dtype=np.int64)
        for name, dtype in (("session_id", np.int64), ("priority", np.int64)):
            if getattr(self, name) is not None:
                setattr(self, name, np.asarray(getattr(self, name), dtype=dtype))
        for name in ("ttft_slo", "tpot_slo"):
            if getattr(self, name) is not None:
                setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        if self.class_name is not None:
            self.class_name = np.asarray(self.class_name, dtype=object)

    def __len__(self) -> int:
        return len(self.arrival_s)

    def take(self, index) -> RequestTable:
        """The rows at `index` (an int array or a boolean mask), in that order."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        changes = {
            f.name: getattr(self, f.name)[index]
            for f in fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }
        if self.prefix_hashes is not None:
            hashes = self.prefix_hashes
            changes["prefix_hashes"] = [hashes[i] for i in index.tolist()]
        return replace(self, **changes)

    def sorted_by_arrival(self) -> RequestTable:
        """Stable sort: requests with equal arrival times keep their order."""
        order = np.argsort(self.arrival_s, kind="stable")
        if np.array_equal(order, np.arange(len(order))):
            return self
        return self.take(order)

    def with_arrivals(self, arrival_s: np.ndarray) -> RequestTable:
        return replace(self, arrival_s=np.asarray(arrival_s, dtype=np.float64), timed=True)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        cols = {
            "arrival_s": self.arrival_s,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
        }
        optional = (
            ("session_id", self.session_id),
            ("class", self.class_name),
            ("priority", self.priority),
            ("ttft_slo_s", self.ttft_slo),
            ("tpot_slo_s", self.tpot_slo),
        )
        cols.update({name: values for name, values in optional if values is not None})
        if self.prefix_hashes is not None:
            cols["hash_ids"] = [" ".join(map(str, h)) for h in self.prefix_hashes]
            cols["hash_block_size"] = np.full(len(self), self.hash_block_size, dtype=np.int64)
        return pd.DataFrame(cols)


def concat(tables: Sequence[RequestTable]) -> RequestTable:
    """Rows of every table in turn, session ids and hash ids kept apart per table.

    A column that some tables lack is filled with its neutral value (-1, "default", 0, NaN, ()).
    Raises ValueError when tables with prefix hashes disagree on the block size.
    """
    if len(tables) == 1:
        return tables[0]
    sizes = {t.hash_block_size for t in tables if t.prefix_hashes is not None}
    if len(sizes) > 1:
        raise ValueError(f"sources use different prefix-hash block sizes: {sorted(sizes)}")
    n = [len(t) for t in tables]

    def column(name, fill, dtype):
        if all(getattr(t, name) is None for t in tables):
            return None
        parts = [
            getattr(t, name) if getattr(t, name) is not None else np.full(k, fill, dtype)
            for t, k in zip(tables, n)
        ]
        return np.concatenate(parts)

    sessions = None
    if any(t.session_id is not None for t in tables):
        parts, offset = [], 0
        for t, k in zip(tables, n):
            ids = t.session_id if t.session_id is not None else np.full(k, -1, np.int64)
            parts.append(np.where(ids >= 0, ids + offset, -1))
            offset += int(ids.max(initial=-1)) + 1
        sessions = np.concatenate(parts)
    hashes = None
    if sizes:
        hashes = []
        for i, t in enumerate(tables):
            if t.prefix_hashes is None:
                hashes.extend([()] * len(t))
            else:
                off = i << HASH_SPACE_BITS
                hashes.extend(
                    t.prefix_hashes if off == 0 else [tuple(h + off for h in hs) for hs in t.prefix_hashes]
                )
    return RequestTable(
        np.concatenate([t.arrival_s for t in tables]),
        np.concatenate([t.prompt_tokens for t in tables]),
        np.concatenate([t.output_tokens for t in tables]),
        session_id=sessions,
        class_name=column("class_name", "default", object),
        priority=column("priority", 0, np.int64),
        ttft_slo=column("ttft_slo", np.nan, np.float64),
        tpot_slo=column("tpot_slo", np.nan, np.float64),
        prefix_hashes=hashes,
        hash_block_size=sizes.pop() if sizes else 0,
        timed=all(t.timed for t in tables),
    )
