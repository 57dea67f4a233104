"""eilab.ml.lstm: shapes, the loss falls, early stopping, and a stopped training resumed from its
checkpoint ends with the weights of an uninterrupted one (CPU); every neuron's counts as inputs of the E and I
sums (data.inputs = "neurons"), alone and through `eilab train` and `eilab predict`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from ml_helpers import Series, ar1

from conftest import eilab, small_network

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


def test_neuron_inputs_train_on_the_sums(tmp_path: Path) -> None:
    """Three AR(1) channels (coefficient 0.8), two of type E summed into one output, one of type I: each sum
    leaves 1 - 0.8^2 = 36 % of its variance unpredictable one step ahead; predictions come back in counts of
    the sums (their means 2 x 5 and 0), not of the first input channels."""
    s = Series(np.hstack([ar1(4000, 0.8, 1.0, seed=4), ar1(4000, 0.8, 1.0, seed=5), ar1(4000, 0.8, 0.0, seed=6)]),
               n_out=2)
    s.summed = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    tr, va = WindowSet([s], [Segment(0, 0, 3000)], 8, 1), WindowSet([s], [Segment(0, 3020, 4000)], 8, 1)
    norm = tr.normaliser()
    torch.manual_seed(0)
    net = LSTMNet(3, 2, 1, hidden=8, layers=1)
    history = train(net, tr, va, norm, SETTINGS, tmp_path, progress=False)
    assert 0.3 < history[-1]["val_loss"] < 0.5
    x, y = va.batch(np.arange(len(va)))
    pred = LSTMPredictor(net, norm, torch.device("cpu")).predict(x)
    assert pred.shape == y.shape == (len(va), 1, 2)
    assert pred.mean(axis=(0, 1)) == pytest.approx([10.0, 0.0], abs=0.5)


@pytest.mark.parametrize(("inputs", "channels"), [("neurons", 100), ("sectors", 10)])
def test_eilab_train_and_predict_with_neuron_or_sector_inputs(tmp_path: Path, inputs: str, channels: int) -> None:
    """The whole command on a small network: 100 neuron (or 2 x 5 sector) input channels, E and I sums out;
    rollouts reported as not defined; `eilab predict` applies the model to a run."""
    net = tmp_path / "net.toml"
    net.write_text(tomli_w.dumps(small_network(t_ms=300.0)))
    cfg = {"data": {"config": str(net), "set": ["drive.0.rate_hz=50", "drive.1.rate_hz=50"], "runs_dir": "runs",
                    "seeds": {"train": [1], "test": [2]}, "k": 4, "outputs": "sums", "inputs": inputs,
                    "sectors": 5, "rollout_windows": 8,
                    "cache_mib": 1},  # blocks read again and again: the same windows
           "model": {"hidden": 4},
           "train": {"epochs": 1, "batch": 64, "windows_per_epoch": 128, "seed": 1, "device": "cpu"}}
    (tmp_path / "train.toml").write_text(tomli_w.dumps(cfg))
    done = eilab("train", "train.toml", "--out", "T", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "T"
    meta, m = json.loads((out / "meta.json").read_text()), json.loads((out / "metrics.json").read_text())
    assert (meta["n_in"], meta["n_out"], meta["inputs"]) == (channels, 2, inputs)
    assert len(meta["normaliser"]["mean"]) == channels and len(meta["normaliser"]["out_mean"]) == 2
    assert np.load(out / "ridge.npz")["w"].shape == (4 * channels + 1, 2)
    assert m["rollout"]["mse"] == {} and "not defined" in m["rollout"]["not_defined"]
    for name in ("lstm", "ridge_ar", "persistence", "window_mean", "train_mean"):
        assert len(m["splits"]["test"][name]["mse_per_output"]) == 2
    applied = eilab("predict", "T", "runs/net-seed2", "--out", "p.json", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    again = json.loads((tmp_path / "p.json").read_text())["splits"]["test"]
    assert again["lstm"]["mse"] == pytest.approx(m["splits"]["test"]["lstm"]["mse"], rel=1e-5)


def test_eilab_train_and_predict_with_the_neuron_wise_lstm(tmp_path: Path) -> None:
    """model.kind = "neuron" with external input on a small network: one LSTM shared by the 100 neurons,
    streamed along the runs, conditioned on the next bin's drive (model.next_drive), trained on every neuron's
    count (model.loss); the loss falls, the baselines stand beside it, rollouts are scored for it as for them,
    and `eilab predict` gives the same test MSE and rollouts from the saved model."""
    net = tmp_path / "net.toml"
    net.write_text(tomli_w.dumps(small_network(t_ms=300.0)))
    cfg = {"data": {"config": str(net), "set": ["drive.0.rate_hz=50", "drive.1.rate_hz=50"], "runs_dir": "runs",
                    "seeds": {"train": [1, 3], "validation": [4], "test": [2]}, "k": 4, "outputs": "sums",
                    "external": True, "rollout_windows": 8},
           "model": {"kind": "neuron", "hidden": 4, "tbptt": 40, "streams": 2, "next_drive": True,
                     "loss": "neurons"},
           "train": {"epochs": 3, "lr": 0.01, "seed": 1, "device": "cpu", "patience": 3}}
    (tmp_path / "train.toml").write_text(tomli_w.dumps(cfg))
    done = eilab("train", "train.toml", "--out", "T", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "T"
    meta, m = json.loads((out / "meta.json").read_text()), json.loads((out / "metrics.json").read_text())
    assert len(meta["neuron_normaliser"]["mean"]) == 6  # count, E and I synaptic input, 2 types, drive
    assert len(meta["neuron_normaliser"]["drive_levels"]) == 2  # per type
    history = m["training"]["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert 0 < history[0]["target_bins"] <= 2 * 300  # bins, not neuron-bins: two training runs of 300 bins
    assert m["rollout"]["windows"] == 8 and "not_defined" not in m["rollout"]
    for name in ("lstm", "ridge_ar", "persistence", "window_mean", "train_mean"):
        assert len(m["splits"]["test"][name]["mse_per_output"]) == 2
        assert len(m["rollout"]["mse"][name]) == 50 and np.isfinite(m["rollout"]["mse"][name]).all()
    assert np.isfinite(m["splits"]["test"]["lstm"]["mse"])
    applied = eilab("predict", "T", "runs/net-seed2", "--out", "p.json", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    again = json.loads((tmp_path / "p.json").read_text())["splits"]["test"]
    assert again["lstm"]["mse"] == pytest.approx(m["splits"]["test"]["lstm"]["mse"], rel=1e-5)
    rolled = json.loads((tmp_path / "p.json").read_text())["rollout"]["mse"]["lstm"]
    np.testing.assert_allclose(rolled, m["rollout"]["mse"]["lstm"], rtol=1e-5)
