"""eilab.ml.metrics against closed forms: rollouts of an AR(1), MFE onsets of known bursts (the detection
threshold of predictions chosen on the validation split only), accuracy; the ridge penalty grid."""

from __future__ import annotations

import numpy as np
import pytest
from ml_helpers import Series, ar1

from eilab.cluster.train import evaluate
from eilab.ml.baselines import Persistence, RidgeAR, TrainMean
from eilab.ml.data import Segment, WindowSet
from eilab.ml.metrics import mfe_thresholds, next_bin, onset_scores, rollout_mse


def test_rollout_of_an_ar1_follows_the_closed_form() -> None:
    """The best h-step forecast of x_t = a x_{t-1} + c + e_t (unit noise) errs by (1 - a^2h) / (1 - a^2)."""
    s = Series(ar1(200_000, 0.7, 1.0, seed=4))
    train = WindowSet([s], [Segment(0, 0, 40_000)], 2, 1)
    ar = RidgeAR.fit(train, WindowSet([s], [Segment(0, 40_010, 45_000)], 2, 1))
    test = WindowSet([s], [Segment(0, 45_010, 200_000)], 2, 6)
    got = rollout_mse({"ar": ar, "persistence": Persistence(1, 1)}, test, np.arange(0, len(test), 4), batch=8192)
    want = [(1 - 0.7 ** (2 * h)) / (1 - 0.7**2) for h in range(1, 7)]
    assert got["ar"] == pytest.approx(want, rel=0.05)
    # persistence: x_{t+h} - x_t has variance 2 (1 - a^h) / (1 - a^2)
    assert got["persistence"] == pytest.approx([2 * (1 - 0.7**h) / (1 - 0.7**2) for h in range(1, 7)], rel=0.05)


def bursts(onsets: list[int], n: int = 1000) -> np.ndarray:
    """E and I sums (n, 2): a background of 1 spike per bin and 3-bin bursts of 40 spikes from each onset."""
    x = np.ones((n, 2))
    for b in onsets:
        x[b : b + 3] = 40.0
    return x


def test_mfe_onsets_within_two_ms() -> None:
    true = bursts([100, 300, 500, 700])
    near = onset_scores(bursts([102, 299, 500]), true, 1.0)
    assert near == {"predicted": 3, "true": 4, "precise": 3, "recalled": 3}
    far = onset_scores(bursts([105, 303, 900]), true, 1.0)
    assert far["precise"] == 0 and far["recalled"] == 0 and far["predicted"] == 3


def test_accuracy_beside_all_zeros() -> None:
    values = np.zeros((100, 2))
    values[::4, 0] = 1.0  # channel 0: one in four bins holds a spike; channel 1 silent
    ws = WindowSet([Series(values)], [Segment(0, 0, 100)], 4, 1)
    scores = next_bin({"mean": TrainMean(np.array([0.25, 0.0]), 1), "persistence": Persistence(2, 1)}, ws, 1.0,
                      mfe=False)
    n = len(ws)
    zeros = 1 - np.count_nonzero(values[4:, 0]) / (2 * n)
    assert scores["all_zeros"]["accuracy"] == pytest.approx(zeros)
    assert scores["mean"]["accuracy"] == pytest.approx(zeros)  # rounds to 0 everywhere
    assert scores["mean"]["mse_per_output"] == pytest.approx([0.25 * 0.75 ** 2 + 0.75 * 0.25 ** 2, 0.0], abs=0.01)
    # persistence: the last input bin is never the spiking one's neighbour with a spike (period 4)
    assert scores["persistence"]["mse_per_output"][0] == pytest.approx(2 * 0.25)


class Damped:
    """Sees the last bin and predicts a quarter of it: a one-step predictor whose bursts come one bin late and
    a quarter high, as a smoothed conditional mean's do."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        return 0.25 * x[:, -1:, :]


def windows(*onsets: list[int]) -> WindowSet:
    return WindowSet([Series(bursts(o), key=i) for i, o in enumerate(onsets)],
                     [Segment(i, 0, 1000) for i in range(len(onsets))], 4, 1)


def test_mfe_threshold_of_predictions_is_chosen_on_the_validation_split() -> None:
    """The true series' threshold (mean + 3 sd of the E + I sum: 2.94 + 3 x 8.5 = 28 counts) lies above the
    damped bursts (20 counts): no predicted onset. A threshold chosen on validation runs finds every test onset
    one bin late (within 2 ms; none without lag), and it stays the same whatever the test runs are."""
    damped = {"damped": Damped()}
    true = bursts([100, 300, 500, 700])
    assert onset_scores(0.25 * np.roll(true, 1, axis=0), true, 1.0)["predicted"] == 0
    val = windows([100, 300, 500, 700], [200, 650])
    theta = mfe_thresholds(damped, val, 1.0)["damped"]
    assert 0.5 < theta <= 20.0  # above the damped background (2 x 0.25), at most the damped bursts
    for test in (windows([150, 420, 800]), windows([250, 600], [90, 333, 910])):
        scores = evaluate(damped, [("validation", val), ("test", test)], 2, 8, 1.0)
        assert scores["mfe_thresholds"] == {"damped": theta}
        mfe = scores["splits"]["test"]["damped"]["mfe_onsets"]
        assert mfe["precision"] == mfe["recall"] == 1.0 and mfe["theta"] == theta
        assert mfe["no_lag"]["precision"] == mfe["no_lag"]["recall"] == 0.0  # every onset came one bin late
        assert "mfe_onsets" not in scores["splits"]["validation"]["damped"]


def test_ridge_picks_a_large_penalty_where_the_inputs_tell_little() -> None:
    """y_{t+1} = w . x_t + e with 200 standard normal inputs, w_i ~ N(0, tau^2), e ~ N(0, 1), 250 training
    windows: the Bayes-optimal ridge penalty is 1 / tau^2 = 7,500, 30 times the mean input variance x n
    (Hastie, Tibshirani & Friedman 2009, sec. 3.4.1), far above the old grid's largest (1). Its MSE is near
    1 + 200 tau^2 x 30 / 31 = 1.026, while alpha = 1 overfits."""
    p, n, tau2 = 200, 250, 1 / (250 * 30)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40_500, p))
    w = rng.normal(scale=np.sqrt(tau2), size=p)
    y = np.zeros(len(x))
    y[1:] = x[:-1] @ w + rng.normal(size=len(x) - 1)
    s = Series(np.column_stack([y, x]), n_out=1)
    train, val = WindowSet([s], [Segment(0, 0, n + 1)], 1, 1), WindowSet([s], [Segment(0, 300, 20_300)], 1, 1)
    test = WindowSet([s], [Segment(0, 20_400, 40_400)], 1, 1)
    xt, yt = test.batch(np.arange(len(test)))
    ar, one = RidgeAR.fit(train, val), RidgeAR.fit(train, val, (1.0,))
    assert ar.alpha >= 10.0
    mse = np.mean((ar.predict(xt) - yt) ** 2)
    assert mse == pytest.approx(1 + p * tau2 * 30 / 31, abs=0.03)
    assert np.mean((one.predict(xt) - yt) ** 2) > mse + 0.1
