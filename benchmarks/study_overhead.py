"""A study trial's overhead beyond its simulation: one `eilab study optimize` worker runs the bundled
ring600_rates study (ring600, 20.2 s per trial, a report to the pruner every 4 s) on a SQLite storage.

A trial's wall time is its share of the worker's: from storing trial k-1 to storing trial k. Two overheads:
- beyond the stored run (`overhead_*`): minus the run's own work, creating the run (the network build, the
  Zarr store), advancing it and closing it (the last rows and spikes written, the manifest), as `eilab run`
  does it (the trial's `timings.run_s`). What is left is the search's: sampling, the storage round trips and
  heartbeats, the metrics at every report, the pruner.
- beyond the engine's simulate phase (`overhead_vs_simulate_*`): minus only the time inside
  `Simulation.advance_to` (`timings.simulate_s`), so laying out and closing the store count as overhead too.
The same in CPU time of the worker process (every thread), which other work on the machine changes less
(`timings.worker_cpu_s`, `run_cpu_s`, `simulate_cpu_s`). The medians are over trials 1.. of the worker (trial 0
also carries the process start and the numba cache loads, which a worker pays once: `worker_start_s`,
`first_trial_s`). The median pruner is told to wait for more trials than run, so every trial reports and none
is pruned. Prints one JSON object.

    nice -n 0 python benchmarks/study_overhead.py --trials 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import datetime
from pathlib import Path

import tomli_w

ROOT = Path(__file__).resolve().parent.parent


def study_config(folder: Path, trials: int, t_ms: float | None) -> Path:
    """The bundled ring600_rates study with its storage and runs in `folder`; the pruner reports, prunes none."""
    raw = tomllib.loads((ROOT / "configs" / "studies" / "ring600_rates.toml").read_text())
    if t_ms is not None:
        raw["objective"]["set"] = [f"run.t_ms={t_ms!r}"]
    raw.update(name="overhead", storage=f"sqlite:///{folder / 'overhead.db'}", runs_dir=str(folder / "runs"),
               budget={"trials": trials})
    raw["pruner"]["n_startup_trials"] = trials + 1
    path = folder / "overhead.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


def measure(trials: int, t_ms: float | None, folder: Path) -> dict:
    """Run one worker and return the per-trial overheads and their medians."""
    import optuna

    from eilab.sim.reader import open_run

    config = study_config(folder, trials, t_ms)
    started = datetime.now()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "eilab.cluster.cli", "study", "optimize", str(config)], check=True,
                   cwd=folder, capture_output=True)
    total_s = time.perf_counter() - t0
    study = optuna.load_study(study_name="overhead", storage=f"sqlite:///{folder / 'overhead.db'}")
    done = sorted(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.datetime_complete)
    rows, previous, previous_cpu = [], started, 0.0
    for t in done:
        timings = open_run(t.user_attrs["run_dir"]).attrs["summary"]["timings"]
        mine = t.user_attrs["timings"]
        wall = (t.datetime_complete - previous).total_seconds()
        cpu = mine["worker_cpu_s"] - previous_cpu
        rows.append({"trial": t.number, "wall_s": wall, "run_s": mine["run_s"], "simulate_s": timings["simulate_s"],
                     "overhead_s": wall - mine["run_s"], "overhead_vs_simulate_s": wall - timings["simulate_s"],
                     "cpu_s": cpu, "run_cpu_s": mine["run_cpu_s"], "simulate_cpu_s": mine["simulate_cpu_s"],
                     "overhead_cpu_s": cpu - mine["run_cpu_s"],
                     "overhead_vs_simulate_cpu_s": cpu - mine["simulate_cpu_s"], "build_s": timings["build_s"],
                     "jit_s": timings["jit_s"]})
        previous, previous_cpu = t.datetime_complete, mine["worker_cpu_s"]
    steady = rows[1:]

    def median(key: str) -> float:
        return statistics.median(r[key] for r in steady)

    return {"benchmark": "study_overhead", "config": "ring600_rates", "t_ms": t_ms, "trials": len(rows),
            **{f"median_{key}": median(key) for key in ("wall_s", "run_s", "simulate_s", "overhead_s",
                                                        "overhead_vs_simulate_s", "cpu_s", "run_cpu_s",
                                                        "simulate_cpu_s", "overhead_cpu_s",
                                                        "overhead_vs_simulate_cpu_s")},
            "overhead_fraction": median("overhead_s") / median("wall_s"),
            "overhead_vs_simulate_fraction": median("overhead_vs_simulate_s") / median("wall_s"),
            "overhead_cpu_fraction": median("overhead_cpu_s") / median("cpu_s"),
            "overhead_vs_simulate_cpu_fraction": median("overhead_vs_simulate_cpu_s") / median("cpu_s"),
            "worker_start_s": (done[0].datetime_start - started).total_seconds(),
            "first_trial_s": rows[0]["wall_s"], "worker_total_s": total_s,
            "load_average": os.getloadavg(), "cpus": os.cpu_count(), "nice": os.nice(0), "per_trial": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8, help="complete trials the worker runs (at least 3)")
    ap.add_argument("--t-ms", type=float, default=None,
                    help="simulated time per trial, ms (default: the study's own, 20.2 s)")
    args = ap.parse_args()
    if args.trials < 3:
        ap.error("--trials: give at least 3 (the medians leave trial 0 out)")
    with tempfile.TemporaryDirectory(prefix="eilab-study-overhead-") as tmp:
        print(json.dumps(measure(args.trials, args.t_ms, Path(tmp)), indent=1))


if __name__ == "__main__":
    main()
