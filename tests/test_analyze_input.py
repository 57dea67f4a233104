"""`eilab analyze` on awkward input: the transient option, runs without spikes, a missing analysis
extra, mpiexec; and importing the analysis leaves the user's matplotlib backend alone."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from conftest import ROOT, eilab, mpi_eilab, small_network
from eilab.analysis.mfe import detect_counts, detect_run
from eilab.analysis.spikes import fano_factor
from eilab.sim.reader import open_run

T_MS = 200.0


def active_network(**run: object) -> dict:
    """small_network with a drive strong enough to make it fire (mean input 40 mV against a 20 mV threshold)."""
    raw = small_network(**run)
    for d in raw["drive"]:
        d["rate_hz"] = 80.0
    return raw


def make_run(tmp: Path, name: str, raw: dict) -> Path:
    (tmp / f"{name}.toml").write_text(tomli_w.dumps(raw))
    res = eilab("run", str(tmp / f"{name}.toml"), "--out", str(tmp / name), "--quiet")
    assert res.returncode == 0, res.stderr
    return tmp / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same network (same seed) recorded with spikes, with counts only, and with neither."""
    tmp = tmp_path_factory.mktemp("analyze_input")
    no_spikes, nothing = active_network(t_ms=T_MS), active_network(t_ms=T_MS)
    no_spikes["record"]["spikes"] = False
    nothing["record"].update(spikes=False, counts_bin_ms=0.0)
    return {"spikes": make_run(tmp, "spikes", active_network(t_ms=T_MS)),
            "counts": make_run(tmp, "counts", no_spikes), "nothing": make_run(tmp, "nothing", nothing)}


def files_in(path: Path) -> set[Path]:
    return set(path.rglob("*"))


@pytest.mark.parametrize("skip", ["-100", "nan", "inf", "-inf", str(T_MS), "1e6"])
def test_skip_ms_outside_the_run_is_refused(runs: dict[str, Path], skip: str) -> None:
    before = files_in(runs["spikes"])
    res = eilab("analyze", str(runs["spikes"]), f"--skip-ms={skip}")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "--skip-ms" in res.stderr and f"{T_MS:g} ms" in res.stderr and "Traceback" not in res.stderr
    assert files_in(runs["spikes"]) == before  # nothing written


def test_short_run_gets_a_default_transient_that_fits(tmp_path: Path) -> None:
    """80 ms (less than the usual 100 ms transient): a fifth of the run is left out; the rates are the
    spikes in (16, 80] ms per neuron and second."""
    out = make_run(tmp_path, "short", active_network(t_ms=80.0))
    res = eilab("analyze", str(out))
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skip_ms"] == pytest.approx(16.0)
    run = open_run(out)
    times, gids = run.spikes()
    for row in summary["populations"]:
        sl = run.gids_of(row["name"])
        n_spikes = np.count_nonzero((gids >= sl.start) & (gids < sl.stop) & (times > 16.0))
        assert row["rate_hz"] == pytest.approx(n_spikes / (sl.stop - sl.start) / 0.064, rel=1e-12)
        assert row["rate_hz"] > 10.0


def test_run_without_spikes_is_analysed_from_its_counts(runs: dict[str, Path]) -> None:
    """Rates, Fano factor, synchrony and MFEs from the counts equal those from the spikes (skip and
    MFE bins are multiples of the 1 ms count bin); no ISI CV, and the output says why."""
    spk, cnt = open_run(runs["spikes"]), open_run(runs["counts"])
    np.testing.assert_array_equal(spk.counts(), cnt.counts())  # recording does not change the dynamics
    assert cnt.spikes()[0].size == 0
    results = {}
    for name in ("spikes", "counts"):
        res = eilab("analyze", str(runs[name]), "--skip-ms", "50", "--no-spectrum")
        assert res.returncode == 0, res.stderr
        results[name] = (res.stdout, json.loads((runs[name] / "summary.json").read_text()))
    stdout, from_counts = results["counts"]
    _, from_spikes = results["spikes"]
    assert "spikes not recorded" in stdout and "record.spikes = false" in stdout
    for a, b, (_, total) in zip(from_spikes["populations"], from_counts["populations"],
                                spk.attrs["summary"]["populations"].items(), strict=True):
        assert b["rate_hz"] > 10.0 and b["rate_hz"] == pytest.approx(a["rate_hz"], rel=1e-12)
        assert b["rate_sd_hz"] == pytest.approx(a["rate_sd_hz"], rel=1e-9)
        assert b["fano"] == pytest.approx(a["fano"], rel=1e-12, nan_ok=True)
        assert b["synchrony"] == pytest.approx(a["synchrony"], rel=1e-12)
        assert math.isnan(b["cv_isi"]) and not math.isnan(a["cv_isi"])
        assert b["rate_hz"] == pytest.approx(cnt.counts(b["name"])[50:].sum() / total["n"] / 0.15, rel=1e-12)
    assert from_counts["mfe"]["stats"] == from_spikes["mfe"]["stats"]
    assert "raster" not in from_counts["figures"] and "rates" in from_counts["figures"]
    theta = float(np.median(spk.counts()[50:].sum(axis=1)))  # a low threshold: many events to compare
    events_spikes, stats_spikes = detect_run(spk, skip_ms=50.0, theta=theta)
    events_counts, stats_counts = detect_run(cnt, skip_ms=50.0, theta=theta)
    assert len(events_spikes) > 5
    assert events_counts == events_spikes and stats_counts == stats_spikes


def test_run_without_spikes_or_counts_reports_its_totals(runs: dict[str, Path]) -> None:
    res = eilab("analyze", str(runs["nothing"]), "--no-spectrum")
    assert res.returncode == 0, res.stderr
    assert "neither spikes nor counts recorded" in res.stdout
    summary = json.loads((runs["nothing"] / "summary.json").read_text())
    totals = open_run(runs["nothing"]).attrs["summary"]["populations"]
    for row in summary["populations"]:
        t = totals[row["name"]]
        assert row["rate_hz"] > 10.0 and row["rate_hz"] == pytest.approx(t["spikes"] / t["n"] / (T_MS / 1000))
    assert "mfe" not in summary and "raster" not in summary["figures"]


def test_silent_record_and_short_record_statistics() -> None:
    """No spike at all: no event (the threshold mean + 3 sd is 0 there). One Fano window: no variance."""
    events, stats = detect_counts(np.zeros((50, 4), np.uint16), np.zeros((50, 2), np.uint16), 1.0, 0.0, 50.0)
    assert events == [] and stats.n_events == 0 and not stats.present
    assert np.isnan(fano_factor(np.ones((150, 3), np.uint16), 100)).all()
    assert fano_factor(np.tile([[0], [2]], (100, 1)), 1)[0] == pytest.approx(1.0)  # counts 0, 2: var 1, mean 1


BLOCKER = '''import sys


class BlockAnalysisExtra:
    """As if scipy, matplotlib and xarray were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("scipy", "matplotlib", "xarray"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, BlockAnalysisExtra())
'''


def test_missing_analysis_extra_is_named(runs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}

    def python(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)

    assert python("-c", "import matplotlib").returncode != 0  # the extra is really missing here
    before = files_in(runs["spikes"])
    res = python("-m", "eilab.cluster.cli", "analyze", str(runs["spikes"]))
    assert res.returncode == 2, res.stderr
    assert "pip install 'eilab[analysis]'" in res.stderr and "Traceback" not in res.stderr
    assert files_in(runs["spikes"]) == before


def test_analysis_leaves_the_matplotlib_backend_alone(runs: dict[str, Path], tmp_path: Path) -> None:
    """A user's backend (here svg) survives importing eilab.analysis and drawing the PNG figures."""
    code = ("import matplotlib; from eilab.analysis.report import analyze; print(matplotlib.get_backend()); "
            f"s = analyze({str(runs['spikes'])!r}, spectrum=False); print(matplotlib.get_backend()); "
            "print(open(s['figures']['raster'], 'rb').read(8) == b'\\x89PNG\\r\\n\\x1a\\n')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env={**os.environ, "MPLBACKEND": "svg"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["svg", "svg", "True"]


def test_errors_under_mpiexec_are_printed_once(runs: dict[str, Path], tmp_path: Path) -> None:
    raw = small_network()
    raw["run"]["t_ms"] = -1.0
    (tmp_path / "bad.toml").write_text(tomli_w.dumps(raw))
    res = mpi_eilab(2, "run", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and res.stderr.count("run.t_ms") == 1, res.stderr
    before = files_in(runs["spikes"])
    res = mpi_eilab(2, "analyze", str(runs["spikes"]))
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("eilab: error:") == 1 and "without mpiexec" in res.stderr
    assert files_in(runs["spikes"]) == before
