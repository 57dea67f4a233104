"""`eilab tune`: a study config's search on Ray Tune. The study's sampler proposes through OptunaSearch, ASHA
stops trials whose intermediate objective lags (Li et al. 2020, "A System for Massively Parallel
Hyperparameter Tuning", MLSys), and every trial lands in the study's Optuna storage (with its run directory,
overrides, metrics and seed as user attributes, as `eilab study optimize` stores them), so `eilab study
best|export|report` and `eilab dashboard` show Tune's trials too. A trial ASHA stops is PRUNED in Optuna and
its run is closed as `pruned`. A local Ray binds to loopback without its dashboard; `address` joins a cluster.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any

import ray
import zarr
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from eilab.cluster import study as studies
from eilab.sim.config import ConfigError

METRIC = "objective"
STEP = "t_ms"
RECORDED = ("run_dir", "overrides", "seed", "git_commit", "host")  # copied into the Optuna trial's user attributes


def trial(params: dict[str, Any], source: str, runs_dir: str) -> None:
    """One Tune trial (in a Ray worker): simulate, reporting the objective and metrics after every piece; a trial
    ASHA stops ends in tune.report, which closes its run as `pruned`."""
    s = studies.load_study(source)
    cfg, raw = s.load(params)
    run_dir = Path(runs_dir) / f"tune-{tune.get_context().get_trial_id()}"
    fixed = {"run_dir": str(run_dir), "overrides": " ".join(s.overrides(params)), "seed": cfg.run.seed,
             "git_commit": studies.source_commit() or "", "host": ray.util.get_node_ip_address()}
    times = studies.report_times(s.spec.objective.skip_ms, s.spec.objective.report_every_ms, cfg.run.t_ms)
    with closing(studies.simulate(s, cfg, raw, run_dir, times)) as pieces:
        for t, metrics in pieces:
            tune.report({METRIC: studies.scores(s.spec, metrics)[0], STEP: t, **fixed,
                         **{f"metric/{k}": v for k, v in metrics.items()}})


class StudySearch(OptunaSearch):
    """OptunaSearch that also records each trial's run and metrics in the Optuna trial, and tells a trial ASHA
    stopped before the end as PRUNED (its run too)."""

    def __init__(self, t_end: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.t_end = t_end

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if result and ot_trial is not None:
            for key in RECORDED:
                ot_trial.set_user_attr(key, result[key])
            ot_trial.set_user_attr("metrics", {k.removeprefix("metric/"): v for k, v in result.items()
                                               if k.startswith("metric/")})
            if result[STEP] < self.t_end - 1e-9:
                mark_pruned(Path(result["run_dir"]), result[STEP])
                result = None  # OptunaSearch tells a trial without a result as PRUNED
        super().on_trial_complete(trial_id, result, error)


def mark_pruned(run_dir: Path, t_ms: float) -> None:
    """Mark the run of a trial Tune stopped mid-piece as `pruned` (Tune ends such a trial's process without
    telling it; the store is visible here when Ray is local or the file system shared)."""
    store = run_dir / "run.zarr"
    if store.is_dir():
        zarr.open_group(store, mode="r+").attrs.update({"status": "pruned", "pruned": {"time_ms": t_ms}})


def start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Join the cluster at `address`, or start a local Ray on loopback without its dashboard; whether we started it."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
        return False
    ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    return True


def run_tune(s: studies.Study, n_trials: int, address: str | None = None, cpus_per_trial: float = 1.0,
             gpus_per_trial: float = 0.0, num_cpus: int | None = None) -> dict[str, Any]:
    """Run n_trials Tune trials of study `s` (ASHA over simulated ms) into its Optuna storage; the number of
    trials, the best objective and its parameters."""
    if not s.spec.single:
        raise ConfigError(f"{s.source}: objective.combine = 'separate': eilab tune runs one objective (ASHA stops "
                          "trials by one metric); use eilab study optimize for several")
    cfg, _ = s.load({})
    obj = s.spec.objective
    storage = studies.open_storage(s.storage_url)
    studies.open_study(s, storage)  # the study exists before Tune's search loads it (same directions, same name)
    search = StudySearch(cfg.run.t_ms, metric=METRIC, mode="min",
                         space={p.path: p.distribution() for p in s.spec.space},
                         sampler=studies.build_sampler(s.spec), study_name=s.name, storage=storage)
    asha = ASHAScheduler(time_attr=STEP, max_t=cfg.run.t_ms, grace_period=obj.skip_ms + obj.report_every_ms,
                         reduction_factor=s.spec.pruner.reduction_factor)
    runs_dir = s.runs_dir.resolve()
    trainable = tune.with_resources(
        tune.with_parameters(trial, source=str(s.source.resolve()), runs_dir=str(runs_dir)),
        {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
    started = start_ray(address, num_cpus)
    try:
        results = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=search, scheduler=asha, num_samples=n_trials, metric=METRIC,
                                        mode="min"),
            run_config=tune.RunConfig(name=f"{s.name}-tune", storage_path=str(runs_dir / "tune"), verbose=0),
        ).fit()
    finally:
        if started:
            ray.shutdown()
    for r in results:  # again now that every trial's process has ended: one still running may have rewritten
        m = r.metrics or {}  # its store's attributes after on_trial_complete marked it
        if "run_dir" in m and m.get(STEP, cfg.run.t_ms) < cfg.run.t_ms - 1e-9:
            mark_pruned(Path(m["run_dir"]), m[STEP])
    best = results.get_best_result(metric=METRIC, mode="min", scope="last")
    return {"trials": len(results), "best": best.metrics[METRIC],
            "params": {p.path: best.config[p.path] for p in s.spec.space}}
