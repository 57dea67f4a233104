"""The predictability ceiling (eilab.ml.ceiling): a branch under the run's own drive seed is the stored run, the
ceiling of neurons that fire on every kick is the binomial variance, a current-driven network has none, and
`eilab train` reports it beside the model with the room the LSTM closes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from conftest import eilab, small_network
from eilab.ml.ceiling import Replay, ceiling, drive_seeds, room_closed
from eilab.sim.config import ConfigError, load_config
from eilab.sim.engine import run
from eilab.sim.reader import Run, open_run

DT = 0.1


def simulate(cfg: dict, folder: Path, name: str) -> Run:
    path = folder / f"{name}.toml"
    path.write_text(tomli_w.dumps(cfg))
    config, raw = load_config(path, [])
    run(config, raw, folder / name, progress=False)
    return open_run(folder / name)


def active_network(**run_: object) -> dict:
    """conftest.small_network with its Poisson drive at 50 Hz: it fires."""
    cfg = small_network(**run_)
    for d in cfg["drive"]:
        d["rate_hz"] = 50.0
    return cfg


def test_a_branch_under_the_runs_own_drive_seed_is_the_stored_run(tmp_path: Path) -> None:
    stored = simulate(active_network(t_ms=200.0), tmp_path, "net")
    replay = Replay(stored)
    replay.advance(1205, replay.drive(replay.own_seed))  # stops inside a slice (min delay 8 steps) and a bin
    replay.advance(1500 - 1205, replay.drive(replay.own_seed))
    other = drive_seeds(replay.own_seed, 2)
    counts = replay.branch([other[0], replay.own_seed, other[1]], 50, 10)  # 1 ms bins from 150 ms
    truth = stored.counts()[150:200]
    assert truth.sum() > 100
    np.testing.assert_array_equal(counts[1], truth)
    assert not np.array_equal(counts[0], truth) and not np.array_equal(counts[2], truth)
    assert replay.step == 1500
    np.testing.assert_array_equal(replay.branch([replay.own_seed], 50, 10)[0], truth)  # the state was put back


@pytest.mark.parametrize("bin_ms", [1.0, 5.0])
def test_the_ceiling_of_neurons_that_fire_on_every_kick_is_binomial(tmp_path: Path, bin_ms: float) -> None:
    """No connections, no refractory time, a kick of the threshold's size: a neuron fires in a step iff it gets
    a kick, so its count in a bin of B steps is Binomial(B, 1 - exp(-mu)) whatever its state, independent of
    every other neuron and bin: variance B p (1 - p) per neuron, N times that for a population's sum."""
    cfg = small_network(t_ms=400.0, dt_ms=DT)
    cfg["projections"] = []
    for p in cfg["populations"]:
        p["params"].update(V_th=1.0, V_reset=0.0, t_ref=0.0)
        p["v_init"] = 0.0
    rate, indegree = 35.0, 100
    cfg["drive"] = [{"target": name, "kind": "poisson", "rate_hz": rate, "indegree": indegree, "weight": 1.0}
                    for name in ("E", "I")]
    stored = simulate(cfg, tmp_path, "kicks")
    b = round(bin_ms / DT)
    p = 1.0 - math.exp(-rate * indegree * DT / 1000.0)
    per_neuron = b * p * (1.0 - p)
    neurons = ceiling([stored], bin_ms, "neurons", 10 // int(bin_ms), 3, 30, 8)
    assert neurons.per_branch.shape == (30, 3, 100)
    np.testing.assert_allclose(neurons.variance.mean(axis=1), per_neuron, rtol=0.05)  # 30 x 7 x 100 dof per step
    sums = ceiling([stored], bin_ms, "sums", 10 // int(bin_ms), 3, 30, 8).to_json()
    for o, n in enumerate((80, 20)):
        assert abs(sums["mse_per_output"][o] - n * per_neuron) < 4 * sums["se_per_output"][o]
    for h in range(3):
        assert abs(sums["rollout_mse"][h] - 50 * per_neuron) < 4 * sums["rollout_se"][h]


def test_a_current_driven_network_has_no_ceiling(tmp_path: Path) -> None:
    cfg = small_network(t_ms=100.0)
    cfg["drive"] = [{"target": name, "kind": "current", "amplitude": 500.0} for name in ("E", "I")]
    stored = simulate(cfg, tmp_path, "current")
    assert stored.counts().sum() > 100
    c = ceiling([stored], 1.0, "sums", 20, 5, 10, 4)
    assert c.per_branch.shape == (10, 5, 2)
    assert np.all(c.variance == 0.0)


def test_the_ceiling_refuses_what_it_cannot_measure(tmp_path: Path) -> None:
    stored = simulate(active_network(t_ms=20.0), tmp_path, "short")
    with pytest.raises(ConfigError, match=r"ceiling\.seeds"):
        ceiling([stored], 1.0, "sums", 5, 1, 4, 1)
    with pytest.raises(ConfigError, match="lengthen the runs"):
        ceiling([stored], 1.0, "sums", 15, 10, 4, 4)
    assert room_closed(5.6, 5.7, 5.7) is None and room_closed(5.65, 5.7, 5.2) == pytest.approx(0.1)


def test_eilab_train_reports_the_ceiling(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    net = tmp_path / "net.toml"
    net.write_text(tomli_w.dumps(active_network(t_ms=300.0)))
    cfg = {"data": {"config": str(net), "seeds": {"train": [1], "test": [2]}, "bin_ms": 1.0, "k": 5,
                    "rollout_ms": 4.0, "rollout_windows": 16, "runs_dir": str(tmp_path / "runs")},
           "model": {"hidden": 4},
           "train": {"epochs": 1, "batch": 64, "windows_per_epoch": 128, "device": "cpu"},
           "ceiling": {"branches": 12, "seeds": 4, "horizon_ms": 3.0}}
    path = tmp_path / "train.toml"
    path.write_text(tomli_w.dumps(cfg))
    res = eilab("train", str(path), "--out", str(tmp_path / "out"), "--quiet")
    assert res.returncode == 0, res.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    c = metrics["ceiling"]
    assert c["branches"] == 12 and c["seeds"] == 4 and c["horizon_ms"] == 3.0 and len(c["rollout_mse"]) == 3
    assert len(c["mse_per_output"]) == 2 and 0.0 < c["mse"] < metrics["splits"]["test"]["train_mean"]["mse"]
    assert set(c["lstm_room_closed"]) == {"next_bin", "rollout"}
    assert "ceiling" in res.stdout and "of the room between ridge AR and the ceiling" in res.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(tomli_w.dumps({**cfg, "ceiling": {"branches": 10, "seeds": 1}}))
    res = eilab("train", str(bad), "--out", str(tmp_path / "bad"))
    assert res.returncode == 2 and "ceiling.seeds" in res.stderr and "Traceback" not in res.stderr
