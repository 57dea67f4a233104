"""What a run directory survives: --force never deletes a user's files, one writer at a time, damaged
stores detected, SIGTERM and Ctrl-C leave a resumable run, unwritable places and full disks reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w
import zarr

from conftest import CONFIGS, ROOT, assert_same_run, eilab, mpi_eilab, mpiexec, run_config, small_network
from eilab.sim.reader import RunDamagedError, open_run

T_MS = 4000  # 7 checkpoints; a signal once the first (500 ms) is written leaves 3.5 s of network and 6 checkpoints
CHECKPOINTED = ["--set", f"run.t_ms={T_MS}", "--set", "run.checkpoint_every_ms=500"]


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "net.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("small")
    return write(tmp, small_network(t_ms=200.0))


def attrs(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "run.zarr" / "zarr.json").read_text())["attributes"]
    except (OSError, ValueError, KeyError):
        return {}


def background(*args: str, ranks: int = 0) -> subprocess.Popen:
    """`eilab ARGS` as a background process (under mpiexec with `ranks`), its own process group."""
    cmd = [sys.executable, "-m", "eilab.cluster.cli", *args]
    if ranks:
        cmd = [mpiexec(), "-n", str(ranks), *cmd]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for(predicate, job: subprocess.Popen, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert job.poll() is None, f"the run ended before {what}: {job.stderr.read()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# ---------------------------------------------------------------- --force
def test_force_refuses_a_directory_with_other_files_and_keeps_them_when_told(small: Path, tmp_path: Path) -> None:
    d = tmp_path / "thesis"
    assert eilab("run", str(small), "--out", str(d), "--quiet").returncode == 0
    (d / "chapter1.tex").write_text("years of work")
    (d / "code").mkdir()
    (d / "code" / "fit.py").write_text("x = 1")
    (d / "notes.md").write_text("my notes")
    started = open_run(d).attrs["started"]
    res = eilab("run", str(small), "--out", str(d), "--quiet", "--force")
    assert res.returncode == 2 and "did not write" in res.stderr and "chapter1.tex" in res.stderr, res.stderr
    assert open_run(d).attrs["started"] == started  # the run is untouched too
    res = eilab("run", str(small), "--out", str(d), "--quiet", "--force", "--keep-other-files")
    assert res.returncode == 0, res.stderr
    assert open_run(d).attrs["started"] != started
    assert (d / "chapter1.tex").read_text() == "years of work" and (d / "code" / "fit.py").exists()
    assert (d / "notes.md").read_text() == "my notes"


def test_force_replaces_a_run_with_its_figures_and_summary(small: Path, tmp_path: Path) -> None:
    d = tmp_path / "run"
    assert eilab("run", str(small), "--out", str(d), "--quiet").returncode == 0
    (d / "figures").mkdir()
    (d / "figures" / "raster.png").write_bytes(b"png")
    (d / "summary.json").write_text("{}")
    assert eilab("run", str(small), "--out", str(d), "--quiet", "--force").returncode == 0
    assert not (d / "figures").exists() and not (d / "summary.json").exists()
    assert sorted(p.name for p in d.iterdir()) == ["run.zarr"]  # lock and reserve gone with the writer


# ---------------------------------------------------------------- one writer
def test_a_run_being_written_is_locked_and_sigterm_without_checkpoints_marks_it_interrupted(tmp_path: Path) -> None:
    d = tmp_path / "run"
    job = background("run", str(CONFIGS / "ring600.toml"), "--out", str(d), "--quiet", "--set", "run.t_ms=100000")
    try:
        wait_for(lambda: attrs(d).get("status") == "running", job, "the run started")
        for args in (["run", str(CONFIGS / "ring600.toml"), "--out", str(d), "--force", "--quiet"],
                     ["resume", str(d), "--quiet"]):
            res = eilab(*args)
            assert res.returncode == 2, res.stderr
            assert "being written by another process" in res.stderr and f"pid {job.pid}" in res.stderr, res.stderr
        job.send_signal(signal.SIGTERM)
        _, err = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert "SIGTERM" in err and "no checkpoint" in err, err
    run = open_run(d, allow_incomplete=True)
    assert run.status == "interrupted" and not run.attrs["interrupted"]["checkpointed"]


def test_two_runs_started_together_one_wins_the_other_exits_2(small: Path, tmp_path: Path) -> None:
    d = tmp_path / "run"
    jobs = [background("run", str(small), "--out", str(d), "--quiet") for _ in range(2)]
    results = [(j.wait(timeout=120), j.stderr.read()) for j in jobs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    assert "Traceback" not in loser and ("being written" in loser or "not empty" in loser), loser
    assert open_run(d).status == "complete"


# ---------------------------------------------------------------- signals
@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_config(tmp_path_factory, "ring600", *CHECKPOINTED)


@pytest.mark.parametrize(("ranks", "sig"), [(0, signal.SIGTERM), (0, signal.SIGINT), (2, signal.SIGTERM)])
def test_a_signal_checkpoints_and_the_run_resumes_bitwise(reference: Path, tmp_path: Path, ranks: int,
                                                          sig: signal.Signals) -> None:
    d = tmp_path / "run"
    job = background("run", str(CONFIGS / "ring600.toml"), "--out", str(d), "--quiet", *CHECKPOINTED, ranks=ranks)
    try:
        wait_for(lambda: attrs(d).get("checkpoint", {}).get("step", 0) > 0, job, "the first checkpoint")
        job.send_signal(sig)
        _, err = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 128 + sig, err
    assert "Traceback" not in err and signal.Signals(sig).name in err and "eilab resume" in err, err
    run = open_run(d, allow_incomplete=True)
    assert run.status == "interrupted" and run.attrs["interrupted"]["checkpointed"]
    assert run.attrs["checkpoint"]["step"] * run.dt_ms == run.attrs["interrupted"]["time_ms"] < T_MS
    res = eilab("resume", str(d), "--quiet")
    assert res.returncode == 0, res.stderr
    assert_same_run(reference, d)


# ---------------------------------------------------------------- damaged stores
@pytest.fixture
def stored(small: Path, tmp_path: Path) -> Path:
    d = tmp_path / "run"
    assert eilab("run", str(small), "--out", str(d), "--quiet").returncode == 0
    return d


def chunk_files(d: Path, array: str) -> list[Path]:
    return sorted(p for p in (d / "run.zarr" / array / "c").rglob("*") if p.is_file())


@pytest.mark.parametrize("array", ["spikes/times_ms", "counts", "probes/v"])
def test_a_deleted_chunk_is_detected(stored: Path, array: str) -> None:
    chunk_files(stored, array)[0].unlink()
    with pytest.raises(RunDamagedError, match=array):
        open_run(stored)
    res = eilab("analyze", str(stored))
    assert res.returncode == 2 and array in res.stderr and "damaged" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_a_truncated_chunk_is_detected(stored: Path) -> None:
    f = chunk_files(stored, "spikes/gids")[0]
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    res = eilab("analyze", str(stored))
    assert res.returncode == 2 and "spikes/gids" in res.stderr and "truncated" in res.stderr, res.stderr


def test_a_corrupted_chunk_of_the_same_size_fails_its_checksum(stored: Path) -> None:
    f = chunk_files(stored, "spikes/times_ms")[0]
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    run = open_run(stored)  # the same files and sizes: found when the chunk is read
    with pytest.raises(RunDamagedError, match="spikes/times_ms"):
        run.spikes()
    res = eilab("analyze", str(stored))
    assert res.returncode == 2 and "spikes/times_ms" in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_plain_zarr_still_reads_the_checksummed_store(stored: Path) -> None:
    root = zarr.open_group(stored / "run.zarr", mode="r")
    assert root["counts"][:].sum() == open_run(stored).attrs["summary"]["spikes"]


# ---------------------------------------------------------------- where the run is written
@pytest.mark.parametrize("ranks", [1, 2])
def test_an_unwritable_out_is_refused_before_building(small: Path, tmp_path: Path, ranks: int) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    res = mpi_eilab(ranks, "run", str(small), "--out", str(blocker / "run"), "--quiet")
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("cannot write the run directory") == 1 and "Traceback" not in res.stderr, res.stderr


def test_a_full_disk_marks_the_run_failed(small: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("a full disk needs a small file system: mounting tmpfs needs root")
    try:
        raw = small_network(t_ms=3000.0)
        raw["record"]["probe_every_ms"] = 0.1
        res = eilab("run", str(write(tmp_path, raw)), "--out", str(mnt / "run"), "--quiet", "--no-size-check")
        assert res.returncode == 1 and "No space left on device" in res.stderr, res.stderr
        assert "marked failed" in res.stderr and "Traceback" not in res.stderr, res.stderr
        run = open_run(mnt / "run", allow_incomplete=True)
        assert run.status == "failed" and "No space left" in run.attrs["error"]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
