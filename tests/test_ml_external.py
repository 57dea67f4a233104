"""data.external (issue 22, point 1): the Poisson drive events as fed-only input channels after the counts,
binned as the counts; rollouts feed back the predictions and take the drive from the true future; a run
without drive counts is refused."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import zarr
from ml_helpers import Series

from conftest import eilab, small_network
from eilab.cluster.train import run_plan, stored_config_matches
from eilab.ml.baselines import Persistence
from eilab.ml.config import load_train_config
from eilab.ml.data import Segment, WindowSet, open_series
from eilab.ml.metrics import rollout, rollout_mse
from eilab.sim.config import ConfigError, load_config
from eilab.sim.engine import run
from eilab.sim.reader import open_run

ACTIVE = ["drive.0.rate_hz=50", "drive.1.rate_hz=50"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An active 200 ms run with drive counts in 0.5 ms bins, and one without."""
    folder = tmp_path_factory.mktemp("external")
    out = {}
    for name, drive in (("drive", "true"), ("plain", "false")):
        cfg, raw = load_config(raw=small_network(t_ms=200.0),
                               overrides=[*ACTIVE, "record.counts_bin_ms=0.5", f"record.drive_counts={drive}"])
        run(cfg, raw, folder / name, progress=False)
        out[name] = folder / name
    return out


def pairs(a: np.ndarray) -> np.ndarray:
    """Sums of consecutive pairs of rows (0.5 ms bins -> 1 ms bins)."""
    a = a.astype(np.int64)
    return a[: 2 * (len(a) // 2)].reshape(-1, 2, a.shape[1]).sum(axis=1)


def test_external_channels_are_the_drive_counts_binned(runs: dict[str, Path]) -> None:
    r = open_run(runs["drive"])
    counts, drive = pairs(r.counts()), pairs(r.drive_counts())
    assert drive.sum() > 0 and counts[20:120].std(axis=0).max() > 0
    neurons = open_series([r], 1.0, "neurons", external=True)[0]
    ws = WindowSet([neurons], [Segment(0, 0, neurons.n_bins)], k=4, h=2)
    x, y = ws.batch(np.array([0, 50]))
    assert (neurons.n_out, x.shape, y.shape) == (100, (2, 4, 200), (2, 2, 100))
    np.testing.assert_array_equal(x[1], np.hstack([counts[50:54], drive[50:54]]))
    np.testing.assert_array_equal(y[1], counts[54:56])
    e, i = r.gids_of("E"), r.gids_of("I")
    sums = open_series([r], 1.0, "sums", external=True)[0]
    want = np.stack([counts[:, e].sum(1), counts[:, i].sum(1), drive[:, e].sum(1), drive[:, i].sum(1)], 1)
    np.testing.assert_array_equal(sums.bins(10, 190), want[10:190])
    norm = WindowSet([sums], [Segment(0, 20, 120)], k=4, h=1).normaliser()
    np.testing.assert_allclose(norm.mean, want[20:120].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(norm.std, want[20:120].std(axis=0), rtol=1e-5)


def test_a_run_without_drive_counts_is_refused(runs: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match=re.escape("data.external = true: ") + ".*recorded no drive counts"):
        open_series([open_run(runs["plain"])], 1.0, "sums", external=True)
    assert open_series([open_run(runs["plain"])], 1.0, "sums")[0].n_channels == 2


class LastDrive:
    """Predicts the next count as the last bin's external input (exact for counts[t] = drive[t - 1])."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x[:, -1:, 1:2]


def test_rollouts_take_the_true_future_drive() -> None:
    drive = np.random.default_rng(2).integers(0, 9, 60).astype(np.float32)
    counts = np.r_[0.0, drive[:-1]]
    ws = WindowSet([Series(np.stack([counts, drive], 1), n_out=1)], [Segment(0, 1, 60)], k=3, h=6)
    ids = np.arange(len(ws))
    assert rollout_mse({"last_drive": LastDrive()}, ws, ids)["last_drive"] == [0.0] * 6
    w = ws.full(ids[:1])
    np.testing.assert_array_equal(rollout(LastDrive(), w[:, :3], 6, w[:, 3:, 1:])[0, :, 0], drive[3:9])
    # persistence on a ramp without external channels: step j is off by j
    ramp = WindowSet([Series(np.arange(30.0)[:, None])], [Segment(0, 0, 30)], k=2, h=4)
    assert rollout_mse({"p": Persistence(1, 1)}, ramp, np.arange(len(ramp)))["p"] == [1.0, 4.0, 9.0, 16.0]


def test_train_with_external_input(tmp_path: Path, runs: dict[str, Path]) -> None:
    """The runs record drive counts, the LSTM and ridge read 2 + 2 channels, and predict refuses a run
    without drive counts (exit 2)."""
    (tmp_path / "net.toml").write_text(tomli_w.dumps(small_network(t_ms=300.0)))
    cfg = {"data": {"config": str(tmp_path / "net.toml"), "set": ACTIVE,
                    "seeds": {"train": [1], "test": [2]}, "k": 4,
                    "external": True, "skip_ms": 50.0, "rollout_ms": 3.0, "rollout_windows": 8,
                    "runs_dir": str(tmp_path / "runs")},
           "model": {"hidden": 4}, "train": {"epochs": 1, "batch": 64, "windows_per_epoch": 64, "device": "cpu"}}
    (tmp_path / "t.toml").write_text(tomli_w.dumps(cfg))
    plan = run_plan(load_train_config(tmp_path / "t.toml")[0], tmp_path / "runs")
    assert all("record.drive_counts=true" in o and c.record.drive_counts for _, o, c, _ in plan.values())
    res = eilab("train", str(tmp_path / "t.toml"), "--out", str(tmp_path / "out"), "--quiet")
    assert res.returncode == 0, res.stderr
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert (meta["n_in"], meta["n_out"], meta["external"]) == (4, 2, True)
    assert np.load(tmp_path / "out" / "ridge.npz")["w"].shape == (4 * 4 + 1, 2)
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert len(m["rollout"]["mse"]["ridge_ar"]) == 3 and len(m["splits"]["test"]["lstm"]["mse_per_output"]) == 2
    assert all(stored_config_matches(d, c) for d, _, c, _ in plan.values())  # a second train reuses them
    res = eilab("predict", str(tmp_path / "out"), str(runs["plain"]))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "data.external = true" in res.stderr and "recorded no drive counts" in res.stderr


def test_a_run_stored_before_a_new_config_field_is_still_reused(tmp_path: Path, runs: dict[str, Path]) -> None:
    """A run whose stored config lacks a field added since (with its default) matches today's resolved config, so
    `eilab train` reuses it; another value of any field still does not match."""
    shutil.copytree(runs["plain"], tmp_path / "old")
    root = zarr.open_group(str(tmp_path / "old" / "run.zarr"), mode="r+")
    stored = dict(root.attrs["config"])
    stored["run"] = {k: v for k, v in stored["run"].items() if k != "ring_precision"}
    root.attrs["config"] = stored
    overrides = [*ACTIVE, "record.counts_bin_ms=0.5", "record.drive_counts=false"]
    cfg, _ = load_config(raw=small_network(t_ms=200.0), overrides=overrides)
    assert stored_config_matches(tmp_path / "old", cfg)
    other, _ = load_config(raw=small_network(t_ms=200.0), overrides=[*overrides, "run.seed=2"])
    assert not stored_config_matches(tmp_path / "old", other)
