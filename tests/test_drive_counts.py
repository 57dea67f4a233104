"""record.drive_counts: the Poisson drive events each neuron received per bin, equal to the kicks the engine
drew (seen through the probes), with the Poisson mean, on any rank count and across a resume."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from conftest import eilab, mpi_eilab, small_network
from eilab.sim.reader import open_run

W_DRIVE, EVENTS_PER_MS = 0.25, 20.0 * 100 / 1000.0  # small_network: 100 sources at 20 Hz, 0.25 mV each


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = small_network(t_ms=300.0, checkpoint_every_ms=100.0)
    cfg["record"].update(drive_counts=True, probe_every_ms=0.1, counts_bin_ms=2.0)
    path = tmp_path_factory.mktemp("drive") / "drive.toml"
    path.write_text(tomli_w.dumps(cfg))
    return path


@pytest.fixture(scope="module")
def one_rank(config: Path) -> Path:
    out = config.parent / "one"
    res = eilab("run", str(config), "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    return out


def test_drive_counts_are_the_kicks_the_probes_saw(one_rank: Path) -> None:
    run = open_run(one_rank)
    drive = run.drive_counts()
    assert drive.shape == (150, 100) and drive.dtype == np.uint32
    probes = run.probes()
    ext = probes["ext"].astype(np.float64)  # lif_delta: x / dt, mV/ms, one sample per step
    kicks = np.rint(ext * 0.1 / W_DRIVE).reshape(150, 20, -1).sum(axis=1)
    np.testing.assert_array_equal(drive[:, probes["probe"]], kicks)
    np.testing.assert_array_equal(run.drive_counts("I"), drive[:, 80:])
    mean, n = drive.mean(), drive.size  # Poisson(2 ms x 2 events/ms) per neuron and bin
    assert abs(mean - 2 * EVENTS_PER_MS) < 5 * math.sqrt(2 * EVENTS_PER_MS / n)
    assert abs(drive.var() / mean - 1.0) < 0.05  # Fano factor 1


def test_drive_counts_are_the_same_on_two_ranks_and_after_a_resume(config: Path, one_rank: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    two, killed = config.parent / "two", config.parent / "killed"
    res = mpi_eilab(2, "run", str(config), "--out", str(two), "--quiet")
    assert res.returncode == 0, res.stderr
    expected = open_run(one_rank).drive_counts()
    np.testing.assert_array_equal(open_run(two).drive_counts(), expected)
    monkeypatch.setenv("EILAB_KILL_AT", "checkpoint-done:2")
    assert eilab("run", str(config), "--out", str(killed), "--quiet").returncode != 0
    monkeypatch.delenv("EILAB_KILL_AT")
    assert eilab("resume", str(killed), "--quiet").returncode == 0
    np.testing.assert_array_equal(open_run(killed).drive_counts(), expected)


def test_drive_counts_need_counts(tmp_path: Path) -> None:
    cfg = small_network()
    cfg["record"].update(drive_counts=True, counts_bin_ms=0.0)
    path = tmp_path / "c.toml"
    path.write_text(tomli_w.dumps(cfg))
    res = eilab("run", str(path), "--out", str(tmp_path / "run"))
    assert res.returncode == 2 and "record.drive_counts" in res.stderr


def test_a_drive_seed_changes_the_drive_and_nothing_else(tmp_path: Path) -> None:
    """run.drive_seed: the same network and initial state (the connectivity and init streams keep run.seed),
    another Poisson drive; drive_seed = seed is the default."""
    from eilab.sim.config import Config
    from eilab.sim.network import build_connectivity

    runs = {}
    for name, extra in (("default", {}), ("same", {"drive_seed": 3}), ("other", {"drive_seed": 4})):
        cfg = small_network(t_ms=50.0, **extra)
        cfg["record"]["drive_counts"] = True
        path = tmp_path / f"{name}.toml"
        path.write_text(tomli_w.dumps(cfg))
        assert eilab("run", str(path), "--out", str(tmp_path / name), "--quiet").returncode == 0
        runs[name] = open_run(tmp_path / name)
        conn = build_connectivity(Config(**cfg), 0, 100)
        np.testing.assert_array_equal(conn.targets, build_connectivity(Config(**small_network()), 0, 100).targets)
    np.testing.assert_array_equal(runs["same"].drive_counts(), runs["default"].drive_counts())
    assert np.mean(runs["other"].drive_counts() != runs["default"].drive_counts()) > 0.5
    v0 = {name: r.probes()["v"][0] for name, r in runs.items()}  # after the first step: the same initial V
    assert np.abs(v0["other"] - v0["default"]).max() < 2.0  # differs only by one step's drive (a few 0.25 mV kicks)
