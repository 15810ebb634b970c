"""Length predictors: what each writes into `predicted_output_tokens`, and its RNG stream."""

import math

import numpy as np
import pytest

from servesim.core.rng import stream
from servesim.predictors import PREDICTORS
from servesim.predictors.bucket import BucketPredictor
from servesim.predictors.mean import MeanPredictor
from servesim.predictors.oracle import NoisyOraclePredictor, OraclePredictor
from tests.factories import req


def predict_all(predictor, outputs, cls="default"):
    out = []
    for i, o in enumerate(outputs):
        r = req(i, 10, int(o), class_name=cls)
        predictor.predict(r)
        out.append(r.predicted_output_tokens)
    return np.array(out)


def test_registry_names():
    assert PREDICTORS.names() == ["bucket", "mean", "noisy_oracle", "oracle"]


def test_oracle_is_the_truth():
    assert list(predict_all(OraclePredictor(), [1, 7, 300])) == [1.0, 7.0, 300.0]


def test_noisy_oracle_sigma_zero_is_the_oracle():
    p = NoisyOraclePredictor(NoisyOraclePredictor.Params(sigma=0), stream(1, "predictor"))
    assert list(predict_all(p, [5, 50])) == [5.0, 50.0]


def test_noisy_oracle_log_error_has_the_configured_spread():
    p = NoisyOraclePredictor(NoisyOraclePredictor.Params(sigma=0.5), stream(1, "predictor"))
    log_err = np.log(predict_all(p, np.full(4000, 200)) / 200)
    assert abs(np.median(log_err)) < 0.03
    assert log_err.std() == pytest.approx(0.5, rel=0.05)


def test_noisy_oracle_is_deterministic_per_seed():
    a = predict_all(NoisyOraclePredictor(rng=stream(3, "predictor")), [100] * 5)
    b = predict_all(NoisyOraclePredictor(rng=stream(3, "predictor")), [100] * 5)
    c = predict_all(NoisyOraclePredictor(rng=stream(4, "predictor")), [100] * 5)
    assert list(a) == list(b) and list(a) != list(c)


def test_bucket_perfect_accuracy_predicts_the_true_bucket_midpoint():
    p = BucketPredictor(BucketPredictor.Params(boundaries=[10, 100], accuracy=1.0))
    # buckets [1,10) -> 5.5, [10,100) -> 55, [100, inf) -> 150
    assert list(predict_all(p, [3, 10, 99, 100, 5000])) == [5.5, 55.0, 55.0, 150.0, 150.0]


@pytest.mark.parametrize("miss", ["adjacent", "uniform"])
def test_bucket_accuracy_is_the_hit_rate(miss):
    params = BucketPredictor.Params(boundaries=[10, 100, 1000], accuracy=0.7, miss=miss)
    p = BucketPredictor(params, stream(2, "predictor"))
    truth = np.full(5000, 50)
    pred = predict_all(p, truth)
    assert np.mean(pred == 55.0) == pytest.approx(0.7, abs=0.02)
    if miss == "adjacent":  # misses land in a neighbouring bucket only
        assert set(pred[pred != 55.0]) == {5.5, 550.0}
    else:
        assert set(pred[pred != 55.0]) == {5.5, 550.0, 1500.0}


def test_bucket_rejects_unsorted_edges():
    with pytest.raises(ValueError):
        BucketPredictor.Params(boundaries=[100, 10])


def test_mean_learns_per_class_history():
    p = MeanPredictor(MeanPredictor.Params(prior=42))
    assert predict_all(p, [1], "chat")[0] == 42
    for o, cls in [(100, "chat"), (300, "chat"), (10, "code")]:
        p.observe(req(0, 1, o, class_name=cls))
    assert predict_all(p, [1], "chat")[0] == 200
    assert predict_all(p, [1], "code")[0] == 10
    assert predict_all(p, [1], "new")[0] == pytest.approx(410 / 3)  # all classes


def test_predictions_are_positive_and_finite():
    for name in PREDICTORS.names():
        cls = PREDICTORS.get(name)
        p = cls(cls.Params(), stream(0, "predictor"))
        pred = predict_all(p, [1, 2, 5000])
        assert all(math.isfinite(x) and x > 0 for x in pred)
