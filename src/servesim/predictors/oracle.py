"""`oracle` (the true output length) and `noisy_oracle` (the truth times a lognormal error)."""

from __future__ import annotations

import math

from pydantic import Field

from servesim.core.request import Request
from servesim.predictors.base import PREDICTORS, BasePredictor, PredictorParams


@PREDICTORS.register("oracle")
class OraclePredictor(BasePredictor):
    def predict(self, request: Request) -> None:
        request.predicted_output_tokens = float(request.num_output_tokens)


class NoisyOracleParams(PredictorParams):
    sigma: float = Field(0.5, ge=0, le=5)
    """Standard deviation of the log of the multiplicative error (0 is the oracle)."""


@PREDICTORS.register("noisy_oracle")
class NoisyOraclePredictor(BasePredictor):
    """Truth x exp(N(0, sigma^2)): median-unbiased, so errors are symmetric in ratio (2x and 0.5x
    equally likely), as for a regression model trained on log lengths."""

    Params = NoisyOracleParams

    def predict(self, request: Request) -> None:
        sigma = self.params.sigma
        error = math.exp(sigma * float(self.rng.standard_normal())) if sigma else 1.0
        request.predicted_output_tokens = max(1.0, request.num_output_tokens * error)
