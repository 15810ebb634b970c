"""`bucket`: a classifier of the output length into length classes, right with a given accuracy.

Learned predictors for scheduling (S3, the "learning to rank" line) mostly classify lengths into
buckets. A miss lands in a neighbouring bucket (`miss: adjacent`, what classifiers mostly get wrong)
or in any other bucket (`miss: uniform`). The prediction is the bucket's midpoint.
"""

from __future__ import annotations

import bisect
from itertools import pairwise
from typing import Literal

from pydantic import Field, field_validator

from servesim.core.request import Request
from servesim.predictors.base import PREDICTORS, BasePredictor, PredictorParams


class BucketParams(PredictorParams):
    boundaries: list[int] = Field(default_factory=lambda: [64, 128, 256, 512, 1024, 2048])
    """Ascending bucket edges, tokens: buckets [1, b0), [b0, b1), ..., [b_last, inf); the open
    last bucket predicts 1.5 x b_last."""
    accuracy: float = Field(0.8, ge=0, le=1)
    """Probability that the predicted bucket is the true one."""
    miss: Literal["adjacent", "uniform"] = "adjacent"
    """Where a wrong prediction lands."""

    @field_validator("boundaries")
    @classmethod
    def _ascending(cls, v: list[int]) -> list[int]:
        if not v or v[0] < 2 or any(b >= c for b, c in pairwise(v)):
            raise ValueError("must be a non-empty, strictly ascending list of edges >= 2")
        return v


@PREDICTORS.register("bucket")
class BucketPredictor(BasePredictor):
    Params = BucketParams

    def __init__(self, params=None, rng=None):
        super().__init__(params, rng)
        edges = [1, *self.params.boundaries, 2 * self.params.boundaries[-1]]
        self.midpoints = [(lo + hi) / 2 for lo, hi in pairwise(edges)]

    def bucket_of(self, num_tokens: int) -> int:
        return bisect.bisect_right(self.params.boundaries, num_tokens)

    def predict(self, request: Request) -> None:
        true = self.bucket_of(request.num_output_tokens)
        request.predicted_output_tokens = self.midpoints[self._draw(true)]

    def _draw(self, true: int) -> int:
        n = len(self.midpoints)
        if n == 1 or self.rng.random() < self.params.accuracy:
            return true
        if self.params.miss == "uniform":
            other = int(self.rng.integers(n - 1))
            return other if other < true else other + 1
        if true == 0 or true == n - 1:
            return 1 if true == 0 else n - 2
        return true - 1 if self.rng.random() < 0.5 else true + 1
