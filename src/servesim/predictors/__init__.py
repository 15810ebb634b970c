"""Output-length predictors behind one protocol; importing this registers the built-ins."""

from servesim.predictors import bucket, mean, oracle  # noqa: F401  (registers)
from servesim.predictors.base import PREDICTORS, BasePredictor, LengthPredictor, PredictorParams

__all__ = ["PREDICTORS", "BasePredictor", "LengthPredictor", "PredictorParams"]
