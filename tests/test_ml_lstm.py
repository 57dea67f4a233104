"""eilab.ml.lstm: shapes, the loss falls, early stopping, and a stopped training resumed from its
checkpoint ends with the weights of an uninterrupted one (CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ml_helpers import Series, ar1

torch = pytest.importorskip("torch")

from eilab.ml.config import TrainSettings  # noqa: E402
from eilab.ml.data import Segment, WindowSet  # noqa: E402
from eilab.ml.lstm import LSTMNet, LSTMPredictor, load_net, train  # noqa: E402


def windows(h: int = 1) -> tuple[WindowSet, WindowSet]:
    """AR(1) series (coefficient 0.8) on two channels, 3000 training and 1000 validation bins."""
    s = Series(np.hstack([ar1(4000, 0.8, 1.0, seed=1), ar1(4000, 0.8, 0.0, seed=2)]))
    return WindowSet([s], [Segment(0, 0, 3000)], 8, h), WindowSet([s], [Segment(0, 3020, 4000)], 8, h)


SETTINGS = TrainSettings(epochs=3, lr=1e-2, batch=128, patience=5, seed=3, device="cpu", threads=1,
                         windows_per_epoch=2048)


def fresh(h: int = 1, seed: int = 0) -> LSTMNet:
    torch.manual_seed(seed)
    return LSTMNet(2, 2, h, hidden=8, layers=1)


def test_shapes_and_the_loss_falls(tmp_path: Path) -> None:
    tr, va = windows()
    norm = tr.normaliser()
    net = fresh()
    history = train(net, tr, va, norm, SETTINGS, tmp_path, progress=False)
    assert [e["epoch"] for e in history] == [1, 2, 3]
    assert history[-1]["val_loss"] < history[0]["val_loss"] and history[-1]["train_loss"] < history[0]["train_loss"]
    # an AR(1) of coefficient 0.8 leaves 1 - 0.8^2 = 36 % of the variance unpredictable one step ahead
    assert 0.3 < history[-1]["val_loss"] < 0.5
    x, _ = va.batch(np.arange(5))
    pred = LSTMPredictor(net, norm, torch.device("cpu")).predict(x)
    assert pred.shape == (5, 1, 2) and pred.dtype == np.float32
    assert LSTMPredictor(fresh(h=3), norm, torch.device("cpu")).predict(x).shape == (5, 3, 2)
    again = load_net(tmp_path, 2, 2, 1, 8, 1, torch.device("cpu"))
    for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_stopped_training_resumes_to_the_same_weights(tmp_path: Path) -> None:
    tr, va = windows()
    norm = tr.normaliser()
    whole = fresh()
    train(whole, tr, va, norm, SETTINGS, tmp_path / "whole", progress=False)
    first = fresh()
    history = train(first, tr, va, norm, SETTINGS, tmp_path / "parts", max_epochs=1, progress=False)
    assert len(history) == 1
    resumed = fresh(seed=99)  # other initial weights: the checkpoint restores weights, optimizer and RNG states
    history = train(resumed, tr, va, norm, SETTINGS, tmp_path / "parts", progress=False)
    assert [e["epoch"] for e in history] == [1, 2, 3]
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_early_stopping_waits_patience_epochs(tmp_path: Path) -> None:
    tr, va = windows()
    s = TrainSettings(epochs=50, lr=1e-12, batch=256, patience=2, seed=1, device="cpu", windows_per_epoch=256)
    history = train(fresh(), tr, va, tr.normaliser(), s, tmp_path, progress=False)
    # lr 1e-12 leaves float32 weights as they are: the first epoch is the best, two more without improvement stop it
    assert len(history) == 3
