"""Helpers of the search tests: small study configs of ring600 and reading their studies back."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import tomli_w

from conftest import ROOT

TINY_STUDY: dict[str, Any] = {
    "objective": {"config": "ring600", "set": ["run.t_ms=500"], "skip_ms": 100.0, "report_every_ms": 200.0,
                  "metrics": [{"name": "rate.E", "target": 15.0}, {"name": "mfe_rate", "target": 5.0}]},
    "space": [{"path": "vars.S_EE", "low": 0.008, "high": 0.03, "log": True},
              {"path": "vars.f_E", "low": 0.05, "high": 0.09}],
    "sampler": {"seed": 3, "n_startup_trials": 2},
    "pruner": {"name": "none"},
    "budget": {"trials": 3},
    "workers": {"heartbeat_s": 1, "grace_s": 2, "max_retry": 2},
}


def write_study(folder: Path, name: str = "tiny", storage: str | None = None, **tables: Any) -> Path:
    """A study config of ring600 in `folder` (its storage and runs there too); `tables` replace or extend tables of
    TINY_STUDY, e.g. budget={"trials": 4}."""
    raw = copy.deepcopy(TINY_STUDY)
    for key, value in tables.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    raw["storage"] = storage or f"sqlite:///{folder / (name + '.db')}"
    raw["runs_dir"] = str(folder / name)
    path = folder / f"{name}.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


def load(study_config: Path, storage: str | None = None) -> Any:
    """The Optuna study of a study config, read back through optuna itself."""
    import optuna

    from eilab.cluster.study import load_study, open_storage

    s = load_study(study_config, storage)
    return optuna.load_study(study_name=s.name, storage=open_storage(s.storage_url))


def start_worker(*args: str) -> subprocess.Popen:
    """`eilab study optimize ...` in its own session (so that a test can kill it and only it)."""
    return subprocess.Popen([sys.executable, "-m", "eilab.cluster.cli", "study", "optimize", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL a worker started by start_worker (its whole session) and reap it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
