"""`eilab tune`: a study config on Ray Tune (a local Ray of 2 CPUs on loopback, ASHA, OptunaSearch with the
study's sampler); its trials land in the study's Optuna storage with their runs."""

from __future__ import annotations

from pathlib import Path

import optuna
from search_helpers import load, write_study

from conftest import eilab
from eilab.sim.reader import open_run


def test_tune_trials_land_in_the_optuna_storage(tmp_path: Path) -> None:
    config = write_study(tmp_path, objective={"set": ["run.t_ms=600"]}, budget={"trials": 3})
    res = eilab("tune", str(config), "--num-cpus", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "3 Ray Tune trials" in res.stdout
    study = load(config)
    assert len(study.trials) == 3
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in study.trials)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert done, "ASHA stopped every trial"
    for t in study.trials:
        run = open_run(t.user_attrs["run_dir"], allow_incomplete=True)
        assert run.status == ("complete" if t.state == optuna.trial.TrialState.COMPLETE else "pruned")
        assert run.attrs["config_given"]["vars"]["S_EE"] == t.params["vars.S_EE"]
        assert set(t.user_attrs["metrics"]) == {"rate.E", "mfe_rate"}
    for t in done:
        m = t.user_attrs["metrics"]
        assert t.value == abs(m["rate.E"] - 15) / 15 + abs(m["mfe_rate"] - 5) / 5
    assert not list(tmp_path.glob("ray_results*"))  # Tune's files stay in the study's runs folder
    assert (tmp_path / "tiny" / "tune").is_dir()
