"""eilab.ml.metrics against closed forms: rollouts of an AR(1), MFE onsets of known bursts, accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from ml_helpers import Series, ar1

from eilab.ml.baselines import Persistence, RidgeAR, TrainMean
from eilab.ml.data import Segment, WindowSet
from eilab.ml.metrics import next_bin, onset_scores, rollout_mse


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
