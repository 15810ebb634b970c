"""Output-length predictors behind one protocol; importing this registers the default, the others
register when a config first names one (`PREDICTORS.lazy`)."""

from servesim.predictors import oracle  # noqa: F401  (registers the default)
from servesim.predictors.base import PREDICTORS, BasePredictor, LengthPredictor, PredictorParams

PREDICTORS.lazy("servesim.predictors.bucket", "bucket")
PREDICTORS.lazy("servesim.predictors.mean", "mean")

__all__ = ["PREDICTORS", "BasePredictor", "LengthPredictor", "PredictorParams"]
