"""The normalised request schema every workload source produces: one column per field."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class RequestTable:
    """Requests sorted by arrival. Optional columns are None when the source has no such data."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    session_id: np.ndarray | None = None
    class_name: np.ndarray | None = None
    prefix_hashes: list[tuple[int, ...]] | None = None
    """Per request, hashes of the prompt's leading blocks of `hash_block_size` tokens."""
    hash_block_size: int = 0

    def __post_init__(self):
        self.arrival_s = np.asarray(self.arrival_s, dtype=np.float64)
        self.prompt_tokens = np.asarray(self.prompt_tokens, dtype=np.int64)
        self.output_tokens = np.asarray(self.output_tokens, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.arrival_s)

    def to_frame(self) -> pd.DataFrame:
        cols = {
            "arrival_s": self.arrival_s,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
        }
        if self.session_id is not None:
            cols["session_id"] = self.session_id
        if self.class_name is not None:
            cols["class"] = self.class_name
        if self.prefix_hashes is not None:
            cols["hash_ids"] = [" ".join(map(str, h)) for h in self.prefix_hashes]
        return pd.DataFrame(cols)
