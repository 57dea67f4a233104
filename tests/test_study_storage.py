"""Study storages besides SQLite: a PostgreSQL server this session starts from Debian's postgresql package
(its own data directory, a unix socket only, stopped after) with two workers, and Optuna's journal file."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from search_helpers import load, write_study

from conftest import eilab
from eilab.sim.reader import open_run

pytestmark = pytest.mark.xdist_group("services")  # pytest-xdist: one worker runs SLURM, Ray and PostgreSQL


def pg_command(tool: str, *args: str) -> list[str]:
    """A PostgreSQL program run as the `postgres` user when we are root (the server refuses root)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}")) or [shutil.which(tool)]
    if found[-1] is None:
        pytest.skip(f"PostgreSQL's {tool} not found: install Debian's postgresql package to run this test")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return [*as_postgres, found[-1], *args]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL server on a unix socket in a temporary directory, with a database `eilab`."""
    home = Path(tempfile.mkdtemp(prefix="eilab-pg-"))
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
    data = home / "data"
    init = subprocess.run(pg_command("initdb", "-D", str(data), "-A", "trust", "-U", "postgres"), capture_output=True,
                          text=True)
    if init.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip(f"PostgreSQL could not be initialised (initdb: {init.stderr.strip()[-300:]})")
    start = subprocess.run(pg_command("pg_ctl", "-D", str(data), "-l", str(home / "log"), "-w", "-o",
                                      f"-k {home} -c listen_addresses=''", "start"), capture_output=True, text=True)
    try:
        if start.returncode != 0:
            pytest.skip(f"PostgreSQL did not start: {(home / 'log').read_text()[-300:]}")
        subprocess.run(pg_command("createdb", "-h", str(home), "-U", "postgres", "eilab"), check=True)
        yield f"postgresql+psycopg2://postgres@/eilab?host={home}"
    finally:
        subprocess.run(pg_command("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"), capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_two_workers_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    config = write_study(tmp_path, storage=postgres_url, budget={"trials": 4})
    res = eilab("study", "optimize", str(config), "--jobs", "2")
    assert res.returncode == 0, res.stderr
    study = load(config)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 4
    assert all(open_run(t.user_attrs["run_dir"]).status == "complete" for t in done)
    assert not list(tmp_path.glob("*.db"))  # the trials are in the server, not in a SQLite file


def test_unreachable_postgresql_exits_2(tmp_path: Path) -> None:
    config = write_study(tmp_path, storage=f"postgresql+psycopg2://postgres@/eilab?host={tmp_path / 'nothing'}")
    res = eilab("study", "optimize", str(config))
    assert res.returncode == 2 and "storage postgresql+psycopg2://postgres@/eilab" in res.stderr
    assert "cannot open it" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "tiny").exists()


def test_journal_file_storage(tmp_path: Path) -> None:
    journal = tmp_path / "shared" / "tiny.log"
    config = write_study(tmp_path, storage=f"journal:{journal}", budget={"trials": 2})
    res = eilab("study", "optimize", str(config))
    assert res.returncode == 0, res.stderr
    assert journal.stat().st_size > 0
    assert len(load(config).get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 2
    best = eilab("study", "best", str(config))
    assert best.returncode == 0 and "params: vars.S_EE=" in best.stdout
