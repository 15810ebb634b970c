"""`mean`: the mean output length of finished requests of the same class (history, no lookahead)."""

from __future__ import annotations

from pydantic import Field

from servesim.core.request import Request
from servesim.predictors.base import PREDICTORS, BasePredictor, PredictorParams


class MeanParams(PredictorParams):
    prior: float = Field(256.0, gt=0)
    """Prediction before any request has finished, tokens."""


@PREDICTORS.register("mean")
class MeanPredictor(BasePredictor):
    """Per class; a class not seen yet falls back to the mean over all classes, then the prior."""

    Params = MeanParams

    def __init__(self, params=None, rng=None):
        super().__init__(params, rng)
        self._sums: dict[str, list[float]] = {}  # class -> [total tokens, count]
        self._all = [0.0, 0]

    def predict(self, request: Request) -> None:
        total, count = self._sums.get(request.class_name, self._all)
        if not count:
            total, count = self._all
        request.predicted_output_tokens = total / count if count else self.params.prior

    def observe(self, request: Request) -> None:
        acc = self._sums.setdefault(request.class_name, [0.0, 0])
        for a in (acc, self._all):
            a[0] += request.num_output_tokens
            a[1] += 1
