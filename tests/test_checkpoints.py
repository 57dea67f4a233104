"""Kill-and-resume at chosen moments (before, during and just after checkpoints, and between them), each
rank killed, resumed on another rank count: the resumed store equals an uninterrupted run bitwise.
Partial or damaged checkpoints are refused. Kills are real SIGKILLs that the process sends itself at a
named point (EILAB_KILL_AT, see store.fault_point), so every moment is hit exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import zarr

from conftest import CONFIGS, ROOT, assert_same_run, eilab, mpi_eilab, mpiexec, run_config
from eilab.sim.reader import open_run

SETTINGS = ["--set", "run.t_ms=400", "--set", "run.checkpoint_every_ms=50"]  # 7 checkpoints: slots a, b, a, ...


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_config(tmp_path_factory, "ring600", *SETTINGS)


def run_killed(run_dir: Path, ranks: int, kill_at: str, *args: str) -> subprocess.CompletedProcess:
    """`eilab ARGS` on `ranks` ranks with EILAB_KILL_AT set; asserts it died and left the run incomplete."""
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "eilab.cluster.cli", *args]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "EILAB_KILL_AT": kill_at})
    assert res.returncode != 0, f"the run was not killed at {kill_at}"
    assert open_run(run_dir, allow_incomplete=True).status == "running"
    return res


def start(run_dir: Path, ranks: int, kill_at: str) -> None:
    run_killed(run_dir, ranks, kill_at, "run", str(CONFIGS / "ring600.toml"), "--out", str(run_dir), "--quiet",
               *SETTINGS)


# (ranks, kill point "<point>:<k-th pass>:<rank>", ranks to resume on)
MATRIX = [
    (2, "checkpoint-done:2:1", 1),    # rank 1 just after the 2nd checkpoint (slot b)
    (2, "checkpoint-state:3:1", 2),   # rank 1 during the 3rd, its state written, the run still at the 2nd
    (2, "checkpoint-parts:4:0", 3),   # rank 0 during the 4th, every part written, not yet recorded
    (3, "chunk:5:2", 2),              # rank 2 between the 4th and 5th
    (3, "checkpoint-start:6:0", 1),   # rank 0 at the start of the 6th
    (1, "checkpoint-done:7", 2),      # one process just after the 7th (slot a)
]


@pytest.mark.parametrize(("ranks", "kill_at", "resume_ranks"), MATRIX, ids=[m[1] for m in MATRIX])
def test_kill_anywhere_and_resume_is_bitwise_identical(uninterrupted: Path, tmp_path: Path, ranks: int,
                                                       kill_at: str, resume_ranks: int) -> None:
    run_dir = tmp_path / "run"
    start(run_dir, ranks, kill_at)
    res = mpi_eilab(resume_ranks, "resume", str(run_dir), "--quiet")
    assert res.returncode == 0, res.stderr
    assert_same_run(uninterrupted, run_dir)
    assert open_run(run_dir).attrs["resumed"][0]["n_ranks"] == resume_ranks


def test_a_resumed_run_killed_again_resumes_bitwise(uninterrupted: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    start(run_dir, 2, "checkpoint-done:2:1")
    run_killed(run_dir, 3, "checkpoint-state:2:2", "resume", str(run_dir), "--quiet")
    res = mpi_eilab(2, "resume", str(run_dir), "--quiet")
    assert res.returncode == 0, res.stderr
    assert_same_run(uninterrupted, run_dir)
    assert [r["n_ranks"] for r in open_run(run_dir).attrs["resumed"]] == [3, 2]


def test_partial_or_damaged_checkpoints_are_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    start(run_dir, 2, "checkpoint-done:3:0")
    root = zarr.open_group(run_dir / "run.zarr", mode="r+")
    info = root.attrs["checkpoint"]
    slot = root[f"checkpoint/{info['slot']}"]
    good = slot["state"][0, 400]
    slot["state"][0, 400] = good + 1.0  # one value of rank 1's part changed
    res = eilab("resume", str(run_dir), "--quiet")
    assert res.returncode == 2 and "not whole" in res.stderr and "state differs" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    slot["state"][0, 400] = good
    del slot["pending/1-2"]  # rank 1's queued spikes lost
    res = eilab("resume", str(run_dir), "--quiet")
    assert res.returncode == 2 and "pending/times_ms missing" in res.stderr, res.stderr
    assert open_run(run_dir, allow_incomplete=True).status == "running"


def test_a_kill_before_the_first_checkpoint_cannot_be_resumed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    start(run_dir, 2, "checkpoint-parts:1:1")
    res = eilab("resume", str(run_dir), "--quiet")
    assert res.returncode == 2 and "no checkpoint was written" in res.stderr, res.stderr
