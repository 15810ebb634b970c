"""The batchings' config models (`engine.batching` parameters), apart from `schedulers.batching`
so that module holds no pydantic model and compiles in the opt-in mypyc core (setup.py): mypyc's
C for a pydantic model does not build. `schedulers.batching` re-exports both."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BatchingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChunkedParams(BatchingParams):
    max_prefills: int | None = Field(None, ge=1)
    """Most requests given a prompt chunk in one step (None: as many as the budget holds)."""
