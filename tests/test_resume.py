"""Checkpoint and resume: kill a real multi-rank run (one rank, or the whole job) and resume it on
another number of ranks; the final store equals an uninterrupted run bitwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import CONFIGS, assert_same_run, eilab, mpi_eilab, start_and_kill
from eilab.sim.reader import open_run

# 7 checkpoints; a kill once the first (125 ms, step 2500) is written leaves 875 ms of network and 6 checkpoints:
# on 2-3 ranks (a spike exchange every 0.05 ms step) seconds for it to land mid-run. Each checkpoint costs more than
# 125 ms of ring600 on one rank, hence few of them.
SETTINGS = ["--set", "run.t_ms=1000", "--set", "run.checkpoint_every_ms=125"]
FIRST_CHECKPOINT = 2500  # step


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "ref"
    res = eilab("run", str(CONFIGS / "ring600.toml"), "--out", str(out), "--quiet", *SETTINGS)
    assert res.returncode == 0, res.stderr
    return out


@pytest.mark.parametrize(("ranks", "whole_job", "resume_ranks"), [(2, False, 3), (3, True, 1)])
def test_kill_and_resume_is_bitwise_identical(uninterrupted: Path, tmp_path: Path, ranks: int,
                                              whole_job: bool, resume_ranks: int) -> None:
    run_dir = tmp_path / "run"
    start_and_kill(run_dir, ranks, whole_job, CONFIGS / "ring600.toml", SETTINGS, min_step=FIRST_CHECKPOINT)
    res = mpi_eilab(resume_ranks, "resume", str(run_dir), "--quiet")
    assert res.returncode == 0, res.stderr
    assert_same_run(uninterrupted, run_dir)
    resumed = open_run(run_dir).attrs["resumed"]
    assert resumed[0]["n_ranks"] == resume_ranks and resumed[0]["step"] >= FIRST_CHECKPOINT


def test_resume_refuses_complete_runs_and_runs_without_checkpoint(uninterrupted: Path, tmp_path: Path) -> None:
    res = eilab("resume", str(uninterrupted))
    assert res.returncode == 2 and "complete already" in res.stderr
    res = eilab("resume", str(tmp_path / "nothing"))
    assert res.returncode == 2 and "not an eilab run directory" in res.stderr


def test_float32_ring_resumes_bitwise(tmp_path: Path) -> None:
    """A float32 ring is checkpointed as float32: killed on 2 ranks and resumed on 1, the run equals an uninterrupted
    one with the same ring bitwise."""
    settings = [*SETTINGS, "--set", "run.ring_precision='float32'"]
    res = eilab("run", str(CONFIGS / "ring600.toml"), "--out", str(tmp_path / "ref"), "--quiet", *settings)
    assert res.returncode == 0, res.stderr
    run_dir = tmp_path / "run"
    start_and_kill(run_dir, 2, True, CONFIGS / "ring600.toml", settings, min_step=FIRST_CHECKPOINT)
    res = mpi_eilab(1, "resume", str(run_dir), "--quiet")
    assert res.returncode == 0, res.stderr
    assert_same_run(tmp_path / "ref", run_dir)
    assert open_run(run_dir).attrs["resumed"][0]["step"] >= FIRST_CHECKPOINT
