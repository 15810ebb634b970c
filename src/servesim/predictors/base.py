"""The output-length predictor protocol: what a policy may know of a request's future.

Policies never read `Request.num_output_tokens`; they read `predicted_output_tokens`, which a
predictor writes when the request arrives. Only the `oracle` predictor copies the truth.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict

from servesim.core.request import Request
from servesim.registry import Registry


@runtime_checkable
class LengthPredictor(Protocol):
    """- `predict(request)`: set `request.predicted_output_tokens` (> 0) for an arriving request.
    - `observe(request)`: learn from a finished request (its true output length is now known)."""

    def predict(self, request: Request) -> None: ...

    def observe(self, request: Request) -> None: ...


PREDICTORS: Registry = Registry("predictor", "engine.predictor", required=("predict", "observe"))


class PredictorParams(BaseModel):
    """A predictor's own parameters; subclasses add fields. Each builds its validator when it
    first validates (`defer_build`): a run builds only its own predictor's."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class BasePredictor:
    """Holds the params and the predictor's RNG stream; learns nothing by default."""

    Params = PredictorParams

    def __init__(
        self, params: PredictorParams | None = None, rng: np.random.Generator | None = None
    ):
        self.params = params if params is not None else self.Params()
        self.rng = rng if rng is not None else np.random.default_rng(0)

    def predict(self, request: Request) -> None:
        raise NotImplementedError

    def observe(self, request: Request) -> None:
        pass
