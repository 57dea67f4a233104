"""Studies of a training config: every trial an `eilab train` directory scored by its validation metrics (never
the test split), on a small E/I network (conftest.small_network) and a SQLite storage."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import tomli_w
from search_helpers import load

from conftest import eilab, small_network

pytest.importorskip("torch")

TRAIN = {
    "data": {"set": ["drive.0.rate_hz=50", "drive.1.rate_hz=50"], "seeds": {"train": [1], "validation": [2],
                                                                             "test": [3]},
             "bin_ms": 1.0, "k": 5, "outputs": "sums", "rollout_ms": 5.0, "rollout_windows": 16},
    "model": {"hidden": 4},
    "train": {"epochs": 1, "batch": 64, "windows_per_epoch": 128, "patience": 5, "seed": 1, "device": "cpu"},
}


def write_study(folder: Path, metric: str = "splits.validation.lstm.mse") -> Path:
    """A training config of 400 ms runs of the small network, and a study of its LSTM's hidden size and rate."""
    (folder / "net.toml").write_text(tomli_w.dumps(small_network(t_ms=400.0)))
    train = {**TRAIN, "data": {**TRAIN["data"], "config": str(folder / "net.toml")}}
    (folder / "train.toml").write_text(tomli_w.dumps(train))
    study = {"objective": {"train": "train.toml", "combine": "separate", "metrics": [{"name": metric}]},
             "space": [{"path": "model.hidden", "type": "int", "low": 2, "high": 6},
                       {"path": "train.lr", "low": 1e-3, "high": 1e-2, "log": True}],
             "sampler": {"seed": 2}, "budget": {"trials": 2},
             "storage": f"sqlite:///{folder / 'lstm.db'}", "runs_dir": str(folder / "lstm")}
    path = folder / "lstm.toml"
    path.write_text(tomli_w.dumps(study))
    return path


def test_a_training_study_scores_validation_metrics(tmp_path: Path) -> None:
    config = write_study(tmp_path)
    res = eilab("study", "optimize", str(config))
    assert res.returncode == 0, res.stderr[-3000:]
    study = load(config)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == len(study.trials) == 2
    for t in trials:
        out = Path(t.user_attrs["run_dir"])
        metrics = json.loads((out / "metrics.json").read_text())
        assert t.value == metrics["splits"]["validation"]["lstm"]["mse"] == t.user_attrs["metrics"][
            "splits.validation.lstm.mse"]
        meta = json.loads((out / "meta.json").read_text())
        assert meta["model"]["hidden"] == t.params["model.hidden"]
        assert f"lr = {t.params['train.lr']!r}" in (out / "config.toml").read_text()
    runs = sorted(p.name for p in (tmp_path / "lstm" / "data").iterdir())
    assert runs == ["net-seed1", "net-seed2", "net-seed3"]  # simulated once, shared by both trials


@pytest.mark.parametrize(("metric", "says"), [
    ("splits.test.lstm.mse", "the test split is never searched on"),
    ("splits.validation.nope.mse", "no predictor 'nope'"),
])
def test_a_test_split_or_unknown_metric_exits_2(tmp_path: Path, metric: str, says: str) -> None:
    config = write_study(tmp_path, metric)
    res = eilab("study", "optimize", str(config))
    assert res.returncode == 2 and says in res.stderr and "objective.metrics" in res.stderr, res.stderr
    assert not (tmp_path / "lstm.db").exists() and not (tmp_path / "lstm").exists()
