"""`eilab submit` and `eilab status`: the job scripts (dry runs, bad input without SLURM) and, on a real one-node
SLURM started for this session (tests/slurm_helpers.py), a 2-rank simulation equal to the 1-rank run, an analysis
chained after it, a run that reaches a real time limit, is signalled by SLURM, requeues itself and ends bitwise
equal to an uninterrupted run, a signal before anything was saved (the run starts over), a 4-task study array
filling one storage, and a Ray search on a Ray cluster the job starts."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import slurm_helpers
import tomli_w

from conftest import CONFIGS, assert_same_run, eilab, small_network
from eilab.cluster.cli import main
from eilab.sim.reader import open_run

pytestmark = pytest.mark.xdist_group("services")  # pytest-xdist: one worker runs SLURM, Ray and PostgreSQL

BAD_OPTIONS = [
    (["--time", "1h"], "--time"), (["--nodes", "0"], "--nodes"), (["--ntasks-per-node", "two"], "--ntasks-per-node"),
    (["--array", "0-3x"], "--array"), (["--dependency", "after12"], "--dependency"), (["--mem", "lots"], "--mem"),
    (["--partition", "a b"], "--partition"), (["--gpus", "-1"], "--gpus"),
]
LIMIT_SIGNAL_S = 10  # SIGUSR1 this long before the time limit: SLURM sends it at its first limit test (every
LIMIT_SIGNAL_AFTER_S = 60 - slurm_helpers.LIMIT_CHECK_S - LIMIT_SIGNAL_S  # 30 s) from 20 s into a 1-minute job
LIMIT_SET = ["--set", "vars.dt=0.01", "--set", "run.checkpoint_every_ms=5000", "--set", "record.counts_bin_ms=10"]
LIMIT_RUN_S = 45  # wall seconds the run of that test lasts on one core: still running at the first signal


def small_config(folder: Path, **run: object) -> Path:
    path = folder / "small.toml"
    path.write_text(tomli_w.dumps(small_network(**run)))
    return path


def here(*args: str) -> subprocess.CompletedProcess:
    """`eilab ARGS` inside this process (no interpreter start: quick), its output as `eilab(...)` gives it."""
    capture = (io.StringIO(), io.StringIO())
    with contextlib.redirect_stdout(capture[0]), contextlib.redirect_stderr(capture[1]):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse
            code = e.code
    return subprocess.CompletedProcess(args, code, capture[0].getvalue(), capture[1].getvalue())


def submitted(res: subprocess.CompletedProcess) -> str:
    """The job id `eilab submit` printed."""
    assert res.returncode == 0, res.stderr
    found = re.search(r"job (\d+) submitted", res.stdout)
    assert found, res.stdout
    return found.group(1)


# ---------------------------------------------------------------- without SLURM
@pytest.mark.parametrize(("kind", "args", "expected"), [
    ("run", ["ring600", "--ntasks-per-node", "2", "--nodes", "2", "--time", "2:00:00"],
     ["#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=2", "#SBATCH --time=2:00:00", "--signal=B:USR1@300",
      'mpiexec -n "${SLURM_NTASKS:-$SLURM_JOB_NUM_NODES}" "$@" &', "-m eilab.cluster.cli run ring600 --out",
      "resume", "scontrol requeue"]),
    ("analyze", ["RUNDIR", "--dependency", "afterok:41"], ["#SBATCH --dependency=afterok:41", "analyze RUNDIR"]),
    ("study", ["ring600_rates", "--array", "0-3", "--storage", "journal:STUDY.log"],
     ["#SBATCH --array=0-3", "study optimize ring600_rates --storage journal:STUDY.log", "-%A_%a.out"]),
    ("tune", ["ring600_rates", "--nodes", "3", "--cpus-per-task", "8"],
     ["#SBATCH --nodes=3", "ray start --head", "ray start --address", "tune ring600_rates --storage", "--address"]),
    ("train", [str(CONFIGS / "train" / "lstm_ring600_sums.toml"), "--qos", "long"], ["#SBATCH --qos=long", "train "]),
])
def test_dry_run_prints_a_valid_script_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          kind: str, args: list[str], expected: list[str]) -> None:
    args, expected = ([a.replace("RUNDIR", str(tmp_path / "r")).replace("STUDY", str(tmp_path / "s")) for a in x]
                      for x in (args, expected))
    monkeypatch.chdir(tmp_path)
    res = here("submit", kind, *args, "--dry-run")
    assert res.returncode == 0, res.stderr
    for text in expected:
        assert text in res.stdout, (text, res.stdout)
    assert "{{" not in res.stdout
    assert subprocess.run(["bash", "-n"], input=res.stdout, text=True).returncode == 0  # bash can parse it
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("option", "name"), BAD_OPTIONS)
def test_bad_options_exit_2_naming_the_option(tmp_path: Path, option: list[str], name: str) -> None:
    res = here("submit", "run", "ring600", "--out", str(tmp_path / "r"), *option)
    assert res.returncode == 2 and f"eilab: error: {name}:" in res.stderr, res.stderr
    assert list(tmp_path.iterdir()) == []


def test_missing_configs_exit_2_and_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = here("submit", "run", "no-such.toml", "--out", str(tmp_path / "r"), "--dry-run")
    assert res.returncode == 2 and "no-such.toml" in res.stderr, res.stderr
    res = here("submit", "analyze", str(tmp_path / "nothing"), "--dry-run")
    assert res.returncode == 2 and "--dependency=afterok" in res.stderr, res.stderr
    monkeypatch.setenv("EILAB_SLURM_CONFIG", str(tmp_path / "site.toml"))
    res = here("submit", "run", "ring600", "--dry-run")
    assert res.returncode == 2 and "site.toml: no such file" in res.stderr, res.stderr
    (tmp_path / "site.toml").write_text('launcher = "mpirun"\n[defaults]\npartiton = "x"\n')
    res = here("submit", "run", "ring600", "--dry-run")
    assert res.returncode == 2 and "launcher" in res.stderr and "defaults.partiton: unknown key" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site.toml"]


def test_no_sbatch_on_path_exits_2_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    res = here("submit", "run", "ring600", "--out", str(tmp_path / "r"))
    assert res.returncode == 2 and "sbatch not found on PATH" in res.stderr and "--dry-run" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_site_config_sets_defaults_modules_and_launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site.toml"
    site.write_text(tomli_w.dumps({"modules": ["openmpi/4.1"], "setup": ["source /opt/venv/bin/activate"],
                                   "launcher": "srun", "srun_mpi": "pmix", "signal_s": 120, "eilab": "eilab",
                                   "defaults": {"partition": "compute", "account": "proj7", "time": "1:00:00"}}))
    monkeypatch.setenv("EILAB_SLURM_CONFIG", str(site))
    monkeypatch.chdir(tmp_path)
    res = here("submit", "run", "ring600", "--out", "r", "--account", "other", "--dry-run")
    assert res.returncode == 0, res.stderr
    for text in ("#SBATCH --partition=compute", "#SBATCH --account=other", "#SBATCH --time=1:00:00",
                 "module load openmpi/4.1", "source /opt/venv/bin/activate", 'srun --mpi=pmix "$@"',
                 'scancel --signal=TERM "$SLURM_JOB_ID"',
                 "--signal=B:USR1@120", "set -- eilab run ring600 --out r --quiet"):
        assert text in res.stdout, (text, res.stdout)
    res = here("submit", "run", "ring600", "--time", "2", "--dry-run")
    assert res.returncode == 2 and "--time 2: no longer than the 120 s" in res.stderr, res.stderr


# ---------------------------------------------------------------- on a real SLURM
@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[slurm_helpers.Slurm]:
    """munged, slurmctld and slurmd on this machine for the session; SLURM_CONF points every client at it."""
    missing = slurm_helpers.missing_programs()
    if missing:
        pytest.skip(f"SLURM not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge")
    try:
        slurm = slurm_helpers.start_slurm(tmp_path_factory.mktemp("slurm"))
    except RuntimeError as e:
        pytest.skip(f"a one-node SLURM could not start here: {e}")
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = slurm.env["SLURM_CONF"]
    try:
        yield slurm
    finally:
        slurm.stop()
        if saved is None:
            os.environ.pop("SLURM_CONF")
        else:
            os.environ["SLURM_CONF"] = saved


def wait(cluster: slurm_helpers.Slurm, job_id: str, timeout_s: float = 180) -> str:
    return slurm_helpers.wait_job(job_id, cluster.env, timeout_s)


@pytest.fixture(scope="module")
def two_ranks(cluster: slurm_helpers.Slurm, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """A small network submitted on 2 ranks, its job id, and the same run on one rank outside SLURM."""
    folder = tmp_path_factory.mktemp("two-ranks")
    config = small_config(folder)
    job_id = submitted(eilab("submit", "run", str(config), "--out", str(folder / "job"), "--ntasks-per-node", "2",
                             cwd=folder))
    res = eilab("run", str(config), "--out", str(folder / "one"), "--quiet")
    assert res.returncode == 0, res.stderr
    return folder / "job", job_id, folder / "one"


def test_two_rank_job_equals_the_one_rank_run(cluster: slurm_helpers.Slurm, two_ranks: tuple[Path, str, Path]) -> None:
    run_dir, job_id, one = two_ranks
    assert wait(cluster, job_id) == "COMPLETED", (run_dir.parent / "job.slurm" / f"run-{job_id}.out").read_text()
    assert open_run(run_dir).attrs["n_ranks"] == 2
    assert_same_run(one, run_dir)


def test_analysis_chained_after_the_run_and_status(cluster: slurm_helpers.Slurm,
                                                   two_ranks: tuple[Path, str, Path]) -> None:
    run_dir, job_id, _ = two_ranks
    analysis = submitted(eilab("submit", "analyze", str(run_dir), "--no-spectrum", "--dependency",
                               f"afterok:{job_id}"))
    assert wait(cluster, analysis) == "COMPLETED", (run_dir.parent / "job.slurm" / f"analyze-{analysis}.out"
                                                    ).read_text()
    assert wait(cluster, job_id) == "COMPLETED"
    summary = run_dir / "summary.json"
    assert summary.stat().st_mtime >= (run_dir / "run.zarr" / "zarr.json").stat().st_mtime
    res = eilab("status", str(run_dir))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("run: complete, 200 ms simulated"), res.stdout
    assert re.search(rf"job {job_id} \(run, .*\): ", res.stdout) and f"job {analysis} (analyze" in res.stdout
    res = eilab("status", str(run_dir.parent / "nothing"))
    assert res.returncode == 2 and "neither a run directory" in res.stderr
    assert [here("status", str(d), "--has-checkpoint").returncode for d in (run_dir, run_dir.parent / "nothing")] \
        == [0, 1]  # what a requeued start asks: complete (nothing to redo), and no store yet (start over)


def test_a_job_sbatch_refuses_exits_2_and_leaves_nothing(cluster: slurm_helpers.Slurm, tmp_path: Path) -> None:
    res = here("submit", "run", str(small_config(tmp_path)), "--out", str(tmp_path / "r"), "--partition", "nosuch")
    assert res.returncode == 2 and "sbatch refused" in res.stderr and "partition" in res.stderr, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.toml"]


def test_a_real_time_limit_signals_the_job_which_requeues_and_resumes_bitwise(
        cluster: slurm_helpers.Slurm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--time=1 (a minute: SLURM's least) and --signal=B:USR1@10 (signal_s in the site file): SLURM itself
    signals the job at its first time-limit test from 20 s after the start (it tests every 30 s and signals up to
    30 s early rather than late), so the job is submitted when the next test comes 21-31 s after the start. A
    requeued start, 11 s or more after a test (the requeue hold), is signalled two tests later (~45 s); a longer
    chain ends equal all the same. The run is sized to last LIMIT_RUN_S on this machine as it is now."""
    site = tmp_path / "site.toml"
    site.write_text(f"signal_s = {LIMIT_SIGNAL_S}\n")
    monkeypatch.setenv("EILAB_SLURM_CONFIG", str(site))
    res = eilab("run", "ring600", "--out", str(tmp_path / "speed"), "--quiet", *LIMIT_SET, "--set", "run.t_ms=2000")
    assert res.returncode == 0, res.stderr
    ms_per_s = 2000 / open_run(tmp_path / "speed").attrs["summary"]["timings"]["simulate_s"]  # this machine now
    limit_run = [*LIMIT_SET, "--set", f"run.t_ms={max(5000, round(ms_per_s * LIMIT_RUN_S, -3)):g}"]
    reference = tmp_path / "reference"  # meanwhile, on the machine's other core
    uninterrupted = subprocess.Popen([sys.executable, "-m", "eilab.cluster.cli", "run", "ring600", "--out",
                                      str(reference), "--quiet", *limit_run], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "long"
    try:
        while (check := slurm_helpers.next_limit_check(cluster.root)) - time.time() < LIMIT_SIGNAL_AFTER_S + 1.5:
            time.sleep(max(0.5, check + 0.5 - time.time()))  # too soon after the start: wait for the test after it
        job_id = submitted(here("submit", "run", "ring600", "--out", str(run_dir), *limit_run, "--time", "1"))
        output = tmp_path / "long.slurm" / f"run-{job_id}.out"
        assert wait(cluster, job_id, 900) == "COMPLETED", output.read_text()
    finally:
        _, err = uninterrupted.communicate(timeout=900)
    assert uninterrupted.returncode == 0, err
    text = output.read_text()
    signalled = [int(s) for s in re.findall(r"time-limit signal after (\d+) s", text)]
    assert signalled and LIMIT_SIGNAL_AFTER_S - 2 <= signalled[0] < 60, text  # by SLURM, before the limit
    assert "requeued to resume" in text and "start 1 (resume)" in text, text
    resumed = open_run(run_dir).attrs["resumed"]
    assert len(resumed) == text.count("requeued to resume") >= 1 and resumed[0]["step"] > 0, text
    assert_same_run(reference, run_dir)


def test_a_signal_before_any_checkpoint_starts_the_run_over(cluster: slurm_helpers.Slurm,
                                                           two_ranks: tuple[Path, str, Path]) -> None:
    """The time-limit signal (here `scancel --signal=USR1 --batch`, as SLURM's --signal=B:USR1 sends it) while the
    ranks are still starting: nothing is saved, so the requeued job starts the run over and completes it."""
    _, _, one = two_ranks
    run_dir = one.parent / "over"
    job_id = submitted(eilab("submit", "run", str(one.parent / "small.toml"), "--out", str(run_dir), "--time", "10",
                             cwd=one.parent))
    output = one.parent / "over.slurm" / f"run-{job_id}.out"
    slurm_helpers.wait_for(lambda: output.exists() and "start 0 (first)" in output.read_text(), 60, "job start")
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True, env=cluster.env)
    assert wait(cluster, job_id) == "COMPLETED", output.read_text()
    text = output.read_text()
    assert "requeued to start over" in text and "start 1 (over)" in text and "--force" in text, text
    assert not open_run(run_dir).attrs.get("resumed")
    assert_same_run(one, run_dir)


def test_study_array_fills_one_storage(cluster: slurm_helpers.Slurm, tmp_path: Path) -> None:
    import optuna
    from search_helpers import write_study

    storage = f"journal:{tmp_path / 'study.log'}"
    config = write_study(tmp_path, objective={"set": ["run.t_ms=1000"]})
    job_id = submitted(eilab("submit", "study", str(config), "--storage", storage, "--n-trials", "6",
                             "--array", "0-3", cwd=tmp_path))
    assert wait(cluster, job_id, 240) == "COMPLETED"
    from eilab.cluster import study

    name = study.load_study(config, storage).name
    ostudy = optuna.load_study(study_name=name, storage=study.open_storage(storage))
    assert len(study.complete_trials(ostudy)) == 6
    outputs = sorted((tmp_path / "tiny.slurm").glob(f"study-{job_id}_*.out"))
    assert len(outputs) == 4


def test_tune_job_starts_a_ray_cluster_and_fills_the_storage(cluster: slurm_helpers.Slurm, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`eilab submit tune`: Ray's head as a job step on the (one) node at its SLURM address (loopback here), the
    search joined to it with --address, its trials in the study's Optuna storage."""
    import optuna
    from search_helpers import load, write_study

    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a one-machine Ray: `ray start` keeps loopback
    config = write_study(tmp_path, objective={"set": ["run.t_ms=300"]})
    job_id = submitted(eilab("submit", "tune", str(config), "--n-trials", "2", "--cpus-per-task", "2", cwd=tmp_path))
    output = tmp_path / "tiny.slurm" / f"tune-{job_id}.out"
    assert wait(cluster, job_id, 600) == "COMPLETED", output.read_text()[-5000:]
    assert "2 Ray Tune trials" in output.read_text(), output.read_text()[-5000:]
    trials = load(config).trials
    assert len(trials) == 2
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in trials)
    assert {t.user_attrs["host"] for t in trials} == {"127.0.0.1"}  # on the job's Ray, bound to loopback
    assert not Path(f"/tmp/ray-{job_id}").exists()
