"""The speed-up of two `eilab study optimize` workers over one on the same study: the bundled ring600_rates
study (ring600, 20.2 s per trial) on a SQLite storage, without pruning, the same `--trials` parameter sets
enqueued for both (so both do the same simulations). `eilab study optimize --jobs J` is timed from its start
to its end (process starts, imports and numba cache loads included) and, inside it, from the first trial's
start to the last trial's end. One and two workers alternate for `--repeats` rounds; medians. Prints one
JSON object with the load average and CPU count: on a machine shared with other work the figure says how
much of a second core the study got, not what two free cores give.

    python benchmarks/study_workers.py --trials 8 --repeats 3
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
from pathlib import Path

import numpy as np
import tomli_w

ROOT = Path(__file__).resolve().parent.parent


def parameter_sets(space: list[dict], n: int, seed: int) -> list[dict[str, float]]:
    """n points of the study's search space (log-uniform where the space is log), the same for every run."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        point = {}
        for p in space:
            lo, hi = (np.log(p["low"]), np.log(p["high"])) if p.get("log") else (p["low"], p["high"])
            x = rng.uniform(lo, hi)
            point[p["path"]] = float(np.exp(x) if p.get("log") else x)
        out.append(point)
    return out


def one_run(folder: Path, jobs: int, points: list[dict[str, float]], t_ms: float | None) -> dict:
    """`eilab study optimize --jobs J` on a fresh study with `points` enqueued: wall times and trial spans."""
    import optuna

    raw = tomllib.loads((ROOT / "configs" / "studies" / "ring600_rates.toml").read_text())
    if t_ms is not None:
        raw["objective"]["set"] = [f"run.t_ms={t_ms!r}"]
    raw.update(name="workers", storage=f"sqlite:///{folder / 'workers.db'}", runs_dir=str(folder / "runs"),
               budget={"trials": len(points)}, pruner={"name": "none"})
    config = folder / "workers.toml"
    config.write_text(tomli_w.dumps(raw))
    cli = [sys.executable, "-m", "eilab.cluster.cli", "study"]
    subprocess.run([*cli, "create", str(config)], check=True, capture_output=True, cwd=folder)
    study = optuna.load_study(study_name="workers", storage=f"sqlite:///{folder / 'workers.db'}")
    for point in points:
        study.enqueue_trial(point)
    t0 = time.perf_counter()
    subprocess.run([*cli, "optimize", str(config), "--jobs", str(jobs)], check=True, capture_output=True, cwd=folder)
    wall = time.perf_counter() - t0
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return {"jobs": jobs, "wall_s": wall, "trials_span_s": span, "complete": len(done),
            "simulate_s": sum(t.user_attrs["timings"]["simulate_s"] for t in done)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--t-ms", type=float, default=None,
                    help="simulated time per trial, ms (default: the study's own, 20.2 s)")
    args = ap.parse_args()
    space = tomllib.loads((ROOT / "configs" / "studies" / "ring600_rates.toml").read_text())["space"]
    points = parameter_sets(space, args.trials, seed=1)
    rows = []
    load_before = os.getloadavg()
    for r in range(args.repeats):
        for jobs in (1, 2):
            with tempfile.TemporaryDirectory(prefix="eilab-study-workers-") as tmp:
                rows.append({"repeat": r, **one_run(Path(tmp), jobs, points, args.t_ms)})
    med = {j: {k: statistics.median(x[k] for x in rows if x["jobs"] == j) for k in ("wall_s", "trials_span_s")}
           for j in (1, 2)}
    print(json.dumps({"benchmark": "study_workers", "config": "ring600_rates", "t_ms": args.t_ms,
                      "trials": args.trials, "repeats": args.repeats, "median": med,
                      "speedup_wall": med[1]["wall_s"] / med[2]["wall_s"],
                      "speedup_trials_span": med[1]["trials_span_s"] / med[2]["trials_span_s"],
                      "load_average_before": load_before, "load_average_after": os.getloadavg(),
                      "cpus": os.cpu_count(), "nice": os.nice(0), "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
