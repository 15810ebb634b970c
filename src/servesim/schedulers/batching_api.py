"""The batching contract (`Batching`) and the batchings' config models (`engine.batching`
parameters), apart from `schedulers.batching` so that module compiles in the opt-in mypyc core
(setup.py): mypyc's C for a pydantic model does not build, and a compiled class is no protocol
`@runtime_checkable` accepts. `schedulers.batching` re-exports all three."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from servesim.core.request import Request


@runtime_checkable
class Batching(Protocol):
    """- `fill(scheduler)`: build `scheduler.plan` for the next step.
    - `rejection_reason(request, limits)`: why this batching can never run a request, or None."""

    def fill(self, scheduler) -> None: ...

    def rejection_reason(self, request: Request, limits) -> str | None: ...


class BatchingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChunkedParams(BatchingParams):
    max_prefills: int | None = Field(None, ge=1)
    """Most requests given a prompt chunk in one step (None: as many as the budget holds)."""
