"""The steppable Simulation: advance_to in any pieces equals one run bitwise; report sees the progress."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from conftest import assert_same_run, eilab, small_network
from eilab.sim.config import load_config
from eilab.sim.engine import Progress, Simulation, run
from eilab.sim.reader import open_run


@pytest.mark.parametrize("separate_phases", [False, True])
def test_advance_to_in_pieces_equals_one_run(tmp_path: Path, separate_phases: bool) -> None:
    cfg, raw = load_config(raw=small_network(t_ms=300.0))
    one = run(cfg, raw, tmp_path / "one", progress=False, separate_phases=separate_phases)
    reports: list[Progress] = []
    handed = np.zeros_like(open_run(tmp_path / "one").counts())

    def on_counts(bin0: int, counts: np.ndarray) -> None:
        handed[bin0 : bin0 + counts.shape[0]] += counts

    with Simulation.create(cfg, raw, tmp_path / "pieces", progress=False, separate_phases=separate_phases,
                           report=reports.append, on_counts=on_counts) as sim:
        for t in (0.1, 37.3, 100.0, 100.0, 250.5, 1000.0):
            reached = sim.advance_to(t)
            assert min(t, 300.0) <= reached <= 300.0 and reached == sim.t_ms
            if t == 0.1:
                with pytest.raises(RuntimeError, match="advance_to"):
                    sim.close()  # not at the end yet
        summary = sim.close()
    assert_same_run(tmp_path / "one", tmp_path / "pieces")
    assert summary.spikes == one.spikes > 0
    np.testing.assert_array_equal(handed, open_run(tmp_path / "one").counts())  # every bin handed over once
    times = [p.t_ms for p in reports]
    assert times == sorted(times) and times[-1] == 300.0
    assert reports[-1].spikes == {k: v["spikes"] for k, v in summary.populations.items()}
    for name, p in summary.populations.items():
        assert reports[-1].rates_hz[name] == pytest.approx(p["rate_hz"], rel=1e-12)


def test_a_simulation_left_by_an_error_is_marked_failed_and_unlocked(tmp_path: Path) -> None:
    cfg, raw = load_config(raw=small_network(t_ms=100.0))
    with pytest.raises(ZeroDivisionError), Simulation.create(cfg, raw, tmp_path / "r", progress=False) as sim:
        sim.advance_to(50.0)
        raise ZeroDivisionError("a user's analysis in the loop failed")
    stored = open_run(tmp_path / "r", allow_incomplete=True)
    assert stored.status == "failed" and "ZeroDivisionError" in stored.attrs["error"]
    assert not (tmp_path / "r" / ".eilab.lock").exists()


def test_a_run_with_a_drive_file_resumes_and_is_analysed_elsewhere(tmp_path: Path) -> None:
    """The drive file's samples live in the run: moved to another directory, with the file gone, the run
    resumes bitwise and is analysed."""
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    raw = small_network(t_ms=400.0, checkpoint_every_ms=100.0)
    raw["drive"].append({"target": "E", "kind": "current", "file": "input.txt", "file_dt_ms": 1.0})
    (home / "input.txt").write_text("\n".join(str(50.0 * (k % 7)) for k in range(400)))
    (home / "net.toml").write_text(tomli_w.dumps(raw))
    assert eilab("run", "net.toml", "--out", "ref", "--quiet", cwd=home).returncode == 0
    env = {**os.environ, "EILAB_KILL_AT": "checkpoint-done:2"}
    killed = subprocess.run([sys.executable, "-m", "eilab.cluster.cli", "run", "net.toml", "--out", "run", "--quiet"],
                            cwd=home, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode != 0
    shutil.move(home / "run", elsewhere / "run")
    (home / "input.txt").unlink()
    res = eilab("resume", "run", "--quiet", cwd=elsewhere)
    assert res.returncode == 0, res.stderr
    assert_same_run(home / "ref", elsewhere / "run")
    assert open_run(elsewhere / "run").drive_samples()[2][:3].tolist() == [0.0, 50.0, 100.0]
    res = eilab("analyze", str(elsewhere / "run"), "--no-spectrum", cwd=tmp_path)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("transfer", ["linear", "rectified"])
def test_a_rate_network_has_the_same_lifecycle(tmp_path: Path, transfer: str) -> None:
    """Rate networks step through RateSimulation like spiking ones: pieces equal one run bitwise."""
    from test_rate import rate_net

    from eilab.sim.rate import RateSimulation

    cfg, raw = load_config(raw=rate_net(transfer, 0.01, 20.0, 20, t_ms=50.0))
    one = run(cfg, raw, tmp_path / "one", progress=False)
    reports: list[Progress] = []
    with RateSimulation.create(cfg, raw, tmp_path / "pieces", progress=False, report=reports.append) as sim:
        for t in (0.005, 12.34, 30.0, 99.0):
            assert sim.advance_to(t) == pytest.approx(min(max(t, 0.01), 50.0), abs=0.01)
        summary = sim.close()
    a, b = open_run(tmp_path / "one"), open_run(tmp_path / "pieces")
    np.testing.assert_array_equal(a.rates(), b.rates())
    assert summary.populations == one.populations and summary.integration == one.integration
    assert reports[-1].t_ms == 50.0 and reports[-1].rates_hz["A"] == summary.populations["A"]["final_rate_hz"]
