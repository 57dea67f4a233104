"""`eilab study`: study configs checked before any trial, every trial a stored run, pruning, two workers on one
study and a worker killed mid-trial, on a real SQLite storage."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import optuna
import pytest
from search_helpers import kill, load, start_worker, write_study

from conftest import eilab
from eilab.analysis import mfe, spikes
from eilab.sim.reader import open_run

pytestmark = pytest.mark.xdist_group("services")  # pytest-xdist: services and study workers run on one worker

COMPLETE, RUNNING, PRUNED, FAIL = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING,
                                   optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


@pytest.mark.parametrize(("tables", "storage", "field"), [
    ({"space": [{"path": "vars.S_XX", "low": 0.01, "high": 0.02}]}, None, "space.path 'vars.S_XX'"),
    ({"space": [{"path": "vars.S_EE", "low": 0.02, "high": 0.02}]}, None, "empty range"),
    ({"space": [{"path": "run.t_ms", "low": -5.0, "high": 100.0}]}, None, "space.path 'run.t_ms' = -5.0"),
    ({}, "mysql+nope//x", "storage 'mysql+nope//x'"),
    ({"objective": {"metrics": [{"name": "rate.X", "target": 1.0}]}}, None, "unknown metric 'rate.X'"),
    ({"sampler": {"name": "annealing"}}, None, "sampler.name"),
    ({"objective": {"combine": "separate"}, "sampler": {"name": "cmaes"}}, None, "cmaes optimises one objective"),
])
def test_bad_study_config_exits_2_before_any_trial(tmp_path: Path, tables: dict, storage: str | None,
                                                   field: str) -> None:
    config = write_study(tmp_path, storage=storage, **tables)
    res = eilab("study", "optimize", str(config))
    assert res.returncode == 2, res.stderr
    assert field in res.stderr and "Traceback" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]  # no storage, no run written


def test_every_trial_is_a_stored_run(tmp_path: Path) -> None:
    config = write_study(tmp_path, pruner={"name": "median", "n_startup_trials": 5})  # reports, prunes none
    res = eilab("study", "optimize", str(config))
    assert res.returncode == 0, res.stderr
    study = load(config)
    trials = study.get_trials(states=(COMPLETE,))
    assert len(trials) == len(study.trials) == 3
    for t in trials:
        run = open_run(t.user_attrs["run_dir"])  # complete, its manifest checked
        given = run.attrs["config_given"]["vars"]
        assert given["S_EE"] == t.params["vars.S_EE"] and given["f_E"] == t.params["vars.f_E"]
        assert f"vars.S_EE={t.params['vars.S_EE']!r}" in t.user_attrs["overrides"]
        assert t.user_attrs["seed"] == run.attrs["seed"] and t.user_attrs["git_commit"] == run.attrs["git_commit"]
        rate_e = next(p.rate_hz for p in spikes.population_stats(run, 100.0) if p.name == "E")  # as eilab analyze
        metrics = t.user_attrs["metrics"]
        assert metrics["rate.E"] == pytest.approx(rate_e, rel=1e-12)
        assert metrics["mfe_rate"] == pytest.approx(mfe.detect_run(run, skip_ms=100.0)[1].rate_hz, rel=1e-12)
        assert t.value == pytest.approx(abs(rate_e - 15) / 15 + abs(metrics["mfe_rate"] - 5) / 5)
        assert sorted(t.intermediate_values) == [300]  # reported at 300 ms (skip 100 + 200), the end is the value
        timings = t.user_attrs["timings"]  # the run's own work lies inside the trial, the simulate phase in the run
        assert run.attrs["summary"]["timings"]["simulate_s"] == timings["simulate_s"] < timings["run_s"] \
            < timings["trial_s"]
    assert len({t.params["vars.S_EE"] for t in trials}) == 3

    best = eilab("study", "best", str(config))
    assert best.returncode == 0 and f"trial {study.best_trial.number}:" in best.stdout
    out = tmp_path / "export.json"
    assert eilab("study", "export", str(config), "--out", str(out)).returncode == 0
    exported = json.loads(out.read_text())
    assert [t["state"] for t in exported["trials"]] == ["COMPLETE"] * 3
    assert exported["trials"][0]["user_attrs"]["metrics"] == trials[0].user_attrs["metrics"]
    report = eilab("study", "report", str(config), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    for name in ("history.png", "importances.png"):
        assert (tmp_path / "report" / name).read_bytes()[:4] == b"\x89PNG"


def test_pruned_trial_is_marked_in_its_run(tmp_path: Path) -> None:
    """Median pruner after two trials: a trial of a silent network (no drive) is stopped at its first report, its
    run closed as `pruned`; the study still ends with the asked complete trials."""
    config = write_study(tmp_path, pruner={"name": "median", "n_startup_trials": 2}, budget={"trials": 3})
    assert eilab("study", "create", str(config)).returncode == 0
    study = load(config)
    good = {"vars.S_EE": 0.016, "vars.f_E": 0.07}
    for params in (good, good, {"vars.S_EE": 0.016, "vars.f_E": 0.05}, good):
        study.enqueue_trial(params)
    res = eilab("study", "optimize", str(config))
    assert res.returncode == 0, res.stderr
    study = load(config)
    assert [t.state for t in study.trials] == [COMPLETE, COMPLETE, PRUNED, COMPLETE]
    pruned = study.trials[2]
    run = open_run(pruned.user_attrs["run_dir"], allow_incomplete=True)
    assert run.status == "pruned" and run.attrs["pruned"]["time_ms"] == 300.0
    times, _ = run.spikes()
    assert times.size and times.max() <= 300.0 and int(run.counts(t0_ms=300.0).sum()) == 0  # stopped at 300 ms
    assert pruned.intermediate_values[300] > study.trials[0].intermediate_values[300]


def test_two_workers_share_one_study(tmp_path: Path) -> None:
    config = write_study(tmp_path, budget={"trials": 4})
    res = eilab("study", "optimize", str(config), "--jobs", "2")
    assert res.returncode == 0, res.stderr
    study = load(config)
    done = study.get_trials(states=(COMPLETE,))
    assert len(done) == 4
    assert all(t.state in (COMPLETE, PRUNED) for t in study.trials)
    assert all("surplus" in t.user_attrs for t in study.trials if t.state == PRUNED)
    spans = sorted((t.datetime_start, t.datetime_complete) for t in done)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), "the two workers never overlapped"


def trials(config: Path) -> list[optuna.trial.FrozenTrial]:
    """The study's trials; none while its worker has not created it yet."""
    try:
        return load(config).trials
    except KeyError:
        return []


def run_status(run_dir: str | None) -> str | None:
    """The stored status of a run directory; None while its store has no attributes yet."""
    try:
        return json.loads((Path(run_dir) / "run.zarr" / "zarr.json").read_text())["attributes"]["status"]
    except (TypeError, OSError, ValueError, KeyError):
        return None


@pytest.mark.parametrize("journal", [False, True], ids=["sqlite", "journal"])
def test_worker_killed_mid_trial_loses_no_trial(tmp_path: Path, journal: bool) -> None:
    """SIGKILL during trial 1: its heartbeat stops, the next worker fails it after the grace period and runs it
    again (same parameters); the study ends with exactly the asked complete trials, none left running. On a SQLite
    storage (Optuna's heartbeats) and on a journal file (eilab's JournalHeartbeatStorage)."""
    storage = f"journal:{tmp_path / 'tiny.log'}" if journal else None
    # 12 s of ring600 simulate in about 1.5 s here: the kill lands mid-run, however late the polling sees the run
    config = write_study(tmp_path, storage=storage, objective={"set": ["run.t_ms=12000"]}, budget={"trials": 3})
    worker = start_worker(str(config))
    deadline = time.monotonic() + 400  # trial 0 first; a loaded machine has taken over 120 s to get to trial 1
    killed = None
    try:
        while killed is None and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.1)
            running = [t for t in trials(config) if t.state == RUNNING and t.number == 1]
            if running and run_status(running[0].user_attrs.get("run_dir")) == "running":
                killed = running[0]
    finally:
        kill(worker)
    assert killed is not None, "trial 1 never ran"
    assert trials(config)[1].state == RUNNING, "trial 1 ended before the kill: the test needs a longer run"
    res = eilab("study", "optimize", str(config))
    assert res.returncode == 0, res.stderr
    study = load(config)
    states = [t.state for t in study.trials]
    assert states.count(COMPLETE) == 3 and RUNNING not in states
    assert study.trials[1].state == FAIL
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == 1]
    assert len(retry) == 1 and retry[0].state == COMPLETE and retry[0].params == killed.params
    assert open_run(killed.user_attrs["run_dir"], allow_incomplete=True).status == "running"  # killed: not complete


def test_two_objectives_give_a_pareto_front(tmp_path: Path) -> None:
    config = write_study(tmp_path, objective={"set": ["run.t_ms=300"], "combine": "separate"},
                         sampler={"name": "nsga2", "seed": 1}, pruner={}, budget={"trials": 3})
    res = eilab("study", "optimize", str(config))
    assert res.returncode == 0, res.stderr
    assert "Pareto front:" in res.stdout
    study = load(config)
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE] * 2
    for t in study.trials:
        m = t.user_attrs["metrics"]
        assert t.values == [abs(m["rate.E"] - 15) / 15, abs(m["mfe_rate"] - 5) / 5] and not t.intermediate_values
    report = eilab("study", "report", str(config), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    names = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert names == ["history-mfe_rate_error.png", "history-rate.E_error.png", "importances-mfe_rate_error.png",
                     "importances-rate.E_error.png", "pareto.png"]
