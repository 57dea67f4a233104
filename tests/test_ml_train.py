"""`eilab train` and `eilab predict` as a user runs them: runs generated and reused, a training stopped and
resumed to the weights of an uninterrupted one, metrics.json, bad configs and mismatched models (exit 2)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from ml_helpers import ei_ratio_config

from conftest import CONFIGS, eilab, small_network
from eilab.cluster.train import check_out_dir, run_plan
from eilab.ml.config import load_train_config
from eilab.sim.config import ConfigError, load_config
from eilab.sim.engine import run
from eilab.sim.reader import open_run

torch = pytest.importorskip("torch")

TRAIN = {
    "data": {"set": ["drive.0.rate_hz=50", "drive.1.rate_hz=50"], "seeds": {"train": [1, 2], "test": [3]},
             "bin_ms": 1.0, "k": 5, "outputs": "sums", "rollout_ms": 5.0, "rollout_windows": 16},
    "model": {"hidden": 4},
    "train": {"epochs": 2, "batch": 64, "windows_per_epoch": 256, "patience": 5, "seed": 1, "device": "cpu"},
}


def write_config(folder: Path, name: str = "train.toml", **data: object) -> Path:
    """A training config on a small, active E/I network (conftest.small_network, 400 ms runs)."""
    net = folder / "net.toml"
    if not net.exists():
        net.write_text(tomli_w.dumps(small_network(t_ms=400.0)))
    cfg = {**TRAIN, "data": {**TRAIN["data"], "config": str(net), "runs_dir": str(folder / "runs"), **data}}
    path = folder / name
    path.write_text(tomli_w.dumps(cfg))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A training stopped after one epoch and resumed (directory A); the runs it generated."""
    folder = tmp_path_factory.mktemp("train")
    config = write_config(folder)
    first = eilab("train", str(config), "--out", str(folder / "A"), "--max-epochs", "1", "--jobs", "2", "--quiet")
    assert first.returncode == 0, first.stderr
    assert "3 simulated" in first.stderr and "stopped after epoch 1" in first.stderr
    assert not (folder / "A" / "metrics.json").exists()
    second = eilab("train", str(config), "--out", str(folder / "A"), "--quiet")
    assert second.returncode == 0, second.stderr
    assert "3 reused, 0 simulated" in second.stderr and "ridge_ar" in second.stdout
    return folder, config


def test_a_resumed_training_ends_with_the_weights_of_an_uninterrupted_one(trained: tuple[Path, Path]) -> None:
    folder, config = trained
    whole = eilab("train", str(config), "--out", str(folder / "B"), "--quiet")
    assert whole.returncode == 0, whole.stderr
    a = torch.load(folder / "A" / "model.pt", weights_only=True)
    b = torch.load(folder / "B" / "model.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    hist_a = json.loads((folder / "A" / "metrics.json").read_text())["training"]["history"]
    hist_b = json.loads((folder / "B" / "metrics.json").read_text())["training"]["history"]
    assert [e["val_loss"] for e in hist_a] == [e["val_loss"] for e in hist_b] and len(hist_a) == 2


def test_the_training_directory(trained: tuple[Path, Path]) -> None:
    out = trained[0] / "A"
    m = json.loads((out / "metrics.json").read_text())
    names = {"lstm", "train_mean", "persistence", "window_mean", "ridge_ar"}
    for split in ("train", "validation", "test"):
        assert set(m["splits"][split]) == names | {"all_zeros"}
        for name in names:
            assert len(m["splits"][split][name]["mse_per_output"]) == 2
            assert m["splits"][split][name]["mse"] == pytest.approx(np.mean(m["splits"][split][name]["mse_per_output"]))
    assert set(m["splits"]["test"]["lstm"]["mfe_onsets"]) >= {"precision", "recall", "true", "predicted"}
    assert {k: len(v) for k, v in m["rollout"]["mse"].items()} == dict.fromkeys(names, 5)
    # the train mean's MSE from the stored counts: training bins [100, 334) of seeds 1 and 2 (400 bins, 100 ms
    # skipped, the last 20 % after a gap of k + h = 6 bins validates); targets from bin 100 + k on
    sums = [np.stack([r.counts("E").sum(1), r.counts("I").sum(1)], 1).astype(float)
            for r in (open_run(trained[0] / "runs" / f"net-seed{s}") for s in (1, 2))]
    mean = np.concatenate([x[100:334] for x in sums]).mean(axis=0)
    want = np.concatenate([x[105:334] for x in sums]) - mean
    assert m["splits"]["train"]["train_mean"]["mse_per_output"] == pytest.approx((want**2).mean(axis=0), rel=1e-5)
    meta = json.loads((out / "meta.json").read_text())
    assert m["splits"]["train"]["persistence"]["mse"] > 0 and meta["seed"] == 1
    assert {"eilab", "torch", "numpy"} <= set(meta["versions"]) and "git_commit" in meta
    assert (out / "config.toml").read_text() == trained[1].read_text()
    assert {p.name for p in (out / "figures").iterdir()} == {"sums.png", "rollout.png", "curves.png"}


def test_predict_applies_the_model_to_another_run(trained: tuple[Path, Path]) -> None:
    folder = trained[0]
    res = eilab("predict", str(folder / "A"), str(folder / "runs" / "net-seed3"))
    assert res.returncode == 0, res.stderr
    m = json.loads((folder / "A" / "predictions" / "net-seed3.json").read_text())
    trained_test = json.loads((folder / "A" / "metrics.json").read_text())["splits"]["test"]
    assert m["splits"]["test"]["ridge_ar"]["mse"] == pytest.approx(trained_test["ridge_ar"]["mse"], rel=1e-6)
    res = eilab("predict", str(folder / "A"), str(folder / "runs" / "net-seed3"), "--ceiling", "6", "--out",
                str(folder / "c.json"))
    assert res.returncode == 0, res.stderr
    c = json.loads((folder / "c.json").read_text())["ceiling"]
    assert c["branches"] == 6 and c["mse"] > 0 and len(c["rollout_mse"]) == 5  # rollout_ms 5 ms of 1 ms bins
    assert c["lstm_room_closed"]["next_bin"] is None or np.isfinite(c["lstm_room_closed"]["next_bin"])
    assert "ceiling" in res.stdout


def test_a_model_of_another_network_is_refused(trained: tuple[Path, Path], tmp_path: Path) -> None:
    net = small_network(t_ms=200.0)
    net["populations"][0]["n"] = 40
    cfg, raw = load_config(raw=net)
    run(cfg, raw, tmp_path / "other", progress=False)
    res = eilab("predict", str(trained[0] / "A"), str(tmp_path / "other"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "populations E (E, 40), I (I, 20) do not match the model's E (E, 80), I (I, 20)" in res.stderr
    res = eilab("predict", str(tmp_path), str(tmp_path / "other"))
    assert res.returncode == 2 and "no readable meta.json" in res.stderr


def test_bad_training_configs_exit_2_naming_the_field(tmp_path: Path) -> None:
    res = eilab("train", str(write_config(tmp_path, k=0)), "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "data.k: Input should be greater than or equal to 1" in res.stderr
    assert not (tmp_path / "out").exists()
    for data, says in [({"seeds": {"train": [1], "test": [1]}}, "data.seeds: seeds [1] are in two splits"),
                       ({"outputs": "neuron"}, "data.outputs: Input should be 'neurons' or 'sums'"),
                       ({"shuffle": True}, "data.shuffle: unknown key")]:
        with pytest.raises(ConfigError, match=re.escape(says)):
            load_train_config(write_config(tmp_path, "bad.toml", **data))
    path = write_config(tmp_path, "bad.toml")
    path.write_text(path.read_text().replace("[model]\n", '[model]\nkind = "neuron"\nnext_drive = true\n'))
    with pytest.raises(ConfigError, match=re.escape("model.next_drive needs model.kind = \"neuron\" and "
                                                    "data.external = true")):
        load_train_config(path)
    text = path.read_text().replace("next_drive = true\n", 'loss = "neurons"\n')
    path.write_text(text.replace('kind = "neuron"\n', ""))
    with pytest.raises(ConfigError, match=re.escape("model.loss = \"neurons\" needs model.kind = \"neuron\"")):
        load_train_config(path)
    for data, says in [({"bin_ms": 1.5}, "data.bin_ms = 1.5: must be a whole multiple"),
                       ({"k": 300}, "runs of 400.0 ms leave a split without a window of data.k + data.horizon = 301")]:
        with pytest.raises(ConfigError, match=re.escape(says)):
            run_plan(load_train_config(write_config(tmp_path, "bad.toml", **data))[0], tmp_path / "runs")


def test_a_run_of_another_config_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    cfg, raw = load_config(tmp_path / "net.toml", ["run.seed=1", "run.progress=false", "run.t_ms=100"])
    run(cfg, raw, tmp_path / "runs" / "net-seed1", progress=False)
    res = eilab("train", str(config), "--out", str(tmp_path / "out"), "--quiet")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{tmp_path / 'runs' / 'net-seed1'}: holds a run of another config" in res.stderr
    (tmp_path / "out").mkdir(exist_ok=True)
    (tmp_path / "out" / "config.toml").write_text(config.read_text())
    with pytest.raises(ConfigError, match="holds a training of another config"):
        check_out_dir(tmp_path / "out", write_config(tmp_path, "other.toml", k=3).read_text())


@pytest.mark.parametrize("name", sorted(p.name for p in (CONFIGS / "train").glob("*.toml")))
def test_the_bundled_training_configs_are_valid(name: str, tmp_path: Path) -> None:
    tc, _ = load_train_config(CONFIGS / "train" / name)
    if tc.task in ("surrogate", "surrogate_net"):
        pytest.skip("a surrogate (network) config plans no runs: tests/test_surrogate.py and test_surrogate_net.py "
                    "check it")
    plan = run_plan(tc, tmp_path)
    factors = tc.data.grid.factors if tc.task == "ei_ratio" else [None]
    seeds = [*tc.data.seeds.train, *tc.data.seeds.validation, *tc.data.seeds.test]
    assert sorted(plan, key=str) == sorted(((f, s) for f in factors for s in seeds), key=str)
    assert all(cfg.run.seed == seed and cfg.record.counts_bin_ms > 0 for (_, seed), (_, _, cfg, _) in plan.items())


def test_the_ei_ratio_classifier(tmp_path: Path) -> None:
    """Inhibition scaled by 0.3 or 3: rates differ several-fold, so the logistic baseline on rates separates the
    held-out run's windows; the CNN's loss falls; confusion matrices count every window once."""
    cfg = ei_ratio_config(tmp_path, [0.3, 3.0], {"epochs": 8, "batch": 4, "lr": 1e-2, "patience": 8})
    (tmp_path / "ei.toml").write_text(tomli_w.dumps(cfg))
    res = eilab("train", str(tmp_path / "ei.toml"), "--out", str(tmp_path / "out"), "--quiet")
    assert res.returncode == 0, res.stderr
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    test = m["splits"]["test"]
    assert test["windows"] == 6 and test["chance"] == 0.5
    assert np.sum(test["cnn"]["confusion"]) == np.sum(test["logistic"]["confusion"]) == 6
    assert test["logistic"]["accuracy"] == 1.0
    hist = m["training"]["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert (tmp_path / "out" / "figures" / "confusion.png").exists()
    bad = {**cfg, "data": {**cfg["data"], "grid": {"scale": ["g"], "factors": [0.5, 2.0]}}}
    (tmp_path / "bad.toml").write_text(tomli_w.dumps(bad))
    with pytest.raises(ConfigError, match=re.escape("data.grid.scale: 'g' is not in the [vars]")):
        run_plan(load_train_config(tmp_path / "bad.toml")[0], tmp_path / "runs")


def test_the_learning_rate_decays_after_epochs_without_progress_and_resumes_decayed(tmp_path: Path) -> None:
    """fit: lr times lr_decay after every lr_patience epochs in a row without a better validation loss; a run
    stopped by max_epochs and resumed has the same rates as one run straight through."""
    import torch

    from eilab.ml.config import TrainSettings
    from eilab.ml.lstm import fit

    s = TrainSettings(epochs=7, lr=0.01, patience=6, lr_decay=0.5, lr_patience=2)
    val = iter([1.0, 2.0, 3.0, 0.5, 4.0, 5.0, 6.0] * 2)

    def history(folder: Path, stops: list[int | None]) -> list[dict]:
        net = torch.nn.Linear(1, 1)
        for stop in stops:
            h = fit(net, s, folder, 4, lambda order, opt: {"train_loss": 0.0}, lambda: next(val), stop, False)
        return h

    straight = history(tmp_path / "a", [None])
    # bad epochs: 2, 3 (decay), best at 4, bad 5, 6 (decay), 7
    assert [h["lr"] for h in straight] == [0.01, 0.01, 0.005, 0.005, 0.005, 0.0025, 0.0025]
    assert [h["lr"] for h in history(tmp_path / "b", [3, None])] == [h["lr"] for h in straight]
