"""Shared helpers: small configs and the eilab command."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


def small_network(**run: object) -> dict:
    """Two LIF populations with Poisson drive: a quick, active E/I network."""
    return {
        "run": {"t_ms": 200.0, "dt_ms": 0.1, "seed": 3, "progress": False, **run},
        "populations": [
            {"name": "E", "n": 80, "type": "E", "model": "lif_delta",
             "params": {"tau_m": 20.0, "E_L": 0.0, "V_th": 20.0, "V_reset": 10.0, "t_ref": 2.0},
             "v_init": [0.0, 20.0]},
            {"name": "I", "n": 20, "type": "I", "model": "lif_delta",
             "params": {"tau_m": 20.0, "E_L": 0.0, "V_th": 20.0, "V_reset": 10.0, "t_ref": 2.0},
             "v_init": [0.0, 20.0]},
        ],
        "projections": [
            {"pre": "E", "post": "E", "rule": "fixed_indegree", "k": 8, "weight": 0.2, "delay_ms": 1.5},
            {"pre": "E", "post": "I", "rule": "fixed_indegree", "k": 8, "weight": 0.2, "delay_ms": 1.0},
            {"pre": "I", "post": "E", "rule": "bernoulli", "p": 0.2, "weight": 1.0, "delay_ms": 0.8},
            {"pre": "I", "post": "I", "rule": "bernoulli", "p": 0.2, "weight": 1.0, "delay_ms": 2.0},
        ],
        "drive": [
            {"target": "E", "kind": "poisson", "rate_hz": 20.0, "indegree": 100, "weight": 0.25},
            {"target": "I", "kind": "poisson", "rate_hz": 20.0, "indegree": 100, "weight": 0.25},
        ],
        "record": {"counts_bin_ms": 1.0, "probe_every_ms": 0.5,
                   "probes": [{"population": "E", "neurons": [0, 5]}, {"population": "I", "neurons": [1]}]},
    }


def eilab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed `eilab` command as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "eilab.cluster.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def mpiexec() -> str:
    """The mpiexec beside this Python (the mpi extra's mpich) or on PATH; skips the test when the mpi extra
    (mpi4py and an MPI launcher) is not installed."""
    hint = "install the 'mpi' extra (pip install 'eilab[mpi]') to run the MPI tests"
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip(f"mpi4py not installed: {hint}")
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.skip(f"mpiexec not found: {hint}")
    return found


def mpi_eilab(n: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [mpiexec(), "-n", str(n), sys.executable, "-m", "eilab.cluster.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def checkpoint_step(run_dir: Path) -> int:
    try:
        attrs = json.loads((run_dir / "run.zarr" / "zarr.json").read_text())["attributes"]
    except (OSError, ValueError, KeyError):
        return -1
    return attrs.get("checkpoint", {}).get("step", -1)


def start_and_kill(run_dir: Path, ranks: int, whole_job: bool, config: Path, settings: list[str],
                   min_step: int) -> None:
    """Start `eilab run` on `ranks` ranks, kill it (one rank, or the whole job) with SIGKILL once a
    checkpoint at or after `min_step` exists, and check the run was left incomplete."""
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "eilab.cluster.cli", "run",
           str(config), "--out", str(run_dir), "--quiet", *settings]
    job = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.monotonic() + 240
    while checkpoint_step(run_dir) < min_step and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.05)
    assert job.poll() is None, "the run ended before it could be killed"
    if whole_job:
        os.killpg(job.pid, signal.SIGKILL)
    else:
        ranks_procs = [p for p in psutil.Process(job.pid).children(recursive=True) if "eilab" in " ".join(p.cmdline())]
        assert ranks_procs, "no rank processes found"
        ranks_procs[-1].send_signal(signal.SIGKILL)
    try:
        job.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    from eilab.sim.reader import open_run

    assert open_run(run_dir, allow_incomplete=True).status != "complete"


def assert_same_run(a: Path, b: Path) -> None:
    """Two complete runs hold bitwise the same spikes, counts, probes and totals (and b's totals are its spikes)."""
    from eilab.sim.reader import open_run

    ra, rb = open_run(a), open_run(b)
    for x, y in zip(ra.spikes(), rb.spikes(), strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(ra.counts(), rb.counts())
    pa, pb = ra.probes(), rb.probes()
    for var in ("v", "syn_e", "syn_i", "ext"):
        np.testing.assert_array_equal(pa[var], pb[var])
    assert ra.attrs["summary"]["spikes"] == rb.attrs["summary"]["spikes"] == rb.spikes()[0].size
    assert ra.attrs["summary"]["populations"] == rb.attrs["summary"]["populations"]
    assert int(rb.counts().sum()) == rb.spikes()[0].size


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """pytest-xdist (`--dist loadgroup`) hands out ungrouped tests one by one, so a module-scoped fixture (a
    simulation, a training) would be set up again on every worker: the tests that use a module fixture of their own
    module go to one worker together (a group named after the module), unless they name a group already."""
    for item in items:
        module = item.nodeid.split("::")[0]
        defs = getattr(item, "_fixtureinfo", None)
        if defs is None or item.get_closest_marker("xdist_group"):
            continue
        if any(d.scope == "module" and d.baseid == module for ds in defs.name2fixturedefs.values() for d in ds):
            item.add_marker(pytest.mark.xdist_group(module))


@pytest.fixture
def configs() -> Path:
    return CONFIGS


def run_config(tmp_path_factory: pytest.TempPathFactory, config: str, *args: str) -> Path:
    """`eilab run configs/<config>.toml [args]` as the README says, from the project root, into a new directory."""
    out = tmp_path_factory.mktemp(config) / config
    res = eilab("run", f"configs/{config}.toml", "--out", str(out), "--quiet", *args, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(scope="session")
def ring600(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ring600 run on the embedded defaults, shared by every test that only reads it."""
    return run_config(tmp_path_factory, "ring600")
