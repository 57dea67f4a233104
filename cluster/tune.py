"""`eilab tune`: a study config's search on Ray Tune. The study's sampler proposes through OptunaSearch, ASHA
stops trials whose intermediate objective lags (Li et al. 2020, "A System for Massively Parallel
Hyperparameter Tuning", MLSys), and every trial lands in the study's Optuna storage (with its run directory,
overrides, metrics and seed as user attributes, as `eilab study optimize` stores them), so `eilab study
best|export|report` and `eilab dashboard` show Tune's trials too. A trial ASHA stops is PRUNED in Optuna and
its run is closed as `pruned`. A local Ray binds to loopback without its dashboard; `address` joins a cluster.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

import ray
import zarr
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from eilab.cluster import study as studies
from eilab.sim.config import Config, ConfigError
from eilab.sim.reader import zarr_path
from eilab.sim.store import update_run_attrs

METRIC = "objective"
STEP = "t_ms"
CHECKPOINT_FILE = "trial.json"  # a Tune checkpoint: the trial's run directory and the simulated time reached, ms
RECORDED = ("run_dir", "overrides", "seed", "git_commit", "host")  # copied into the Optuna trial's user attributes


def trial(params: dict[str, Any], source: str, runs_dir: str, extra: list[str]) -> None:
    """One Tune trial (in a Ray worker) with the study's overrides and `extra` ones (engine_checkpoints): simulate,
    reporting the objective and metrics after every piece with a Tune checkpoint (the run directory and the time
    reached); a trial ASHA stops ends in tune.report, which closes its run as `pruned`. A trial Tune restores (its
    worker died; a restored experiment) resumes its run from the engine's last checkpoint in the store, or starts it
    again when it cannot (resumable)."""
    s = studies.load_study(source)
    cfg, raw = s.load(params, extra)
    restored = tune.get_checkpoint()
    if restored:
        with restored.as_directory() as folder:
            run_dir = Path(json.loads((Path(folder) / CHECKPOINT_FILE).read_text())["run_dir"])
    else:
        run_dir = Path(runs_dir) / f"tune-{tune.get_context().get_trial_id()}"
    resume = restored is not None and resumable(run_dir)
    fixed = {"run_dir": str(run_dir), "overrides": " ".join([*s.overrides(params), *extra]), "seed": cfg.run.seed,
             "git_commit": studies.source_commit() or "", "host": ray.util.get_node_ip_address()}
    times = studies.report_times(s.spec.objective.skip_ms, s.spec.objective.report_every_ms, cfg.run.t_ms)
    with closing(studies.simulate(s, cfg, raw, run_dir, times, resume=resume)) as pieces:
        for piece in pieces:
            with tempfile.TemporaryDirectory(prefix="eilab-tune-") as folder:
                (Path(folder) / CHECKPOINT_FILE).write_text(json.dumps({"run_dir": str(run_dir), STEP: piece.t_ms}))
                tune.report({METRIC: studies.scores(s.spec, piece.metrics)[0], STEP: piece.t_ms, **fixed,
                             **{f"metric/{k}": v for k, v in piece.metrics.items()}},
                            checkpoint=tune.Checkpoint.from_directory(folder))


def engine_checkpoints(s: studies.Study, cfg: Config) -> list[str]:
    """The override that has the engine checkpoint a Tune trial's run every report_every_ms (so a restored trial
    loses at most one piece), unless the study's config `cfg` checkpoints already."""
    return [] if cfg.run.checkpoint_every_ms > 0 else [f"run.checkpoint_every_ms={s.spec.objective.report_every_ms!r}"]


def resumable(run_dir: Path) -> bool:
    """Whether a restored trial's run can go on from an engine checkpoint (one exists and the run is not complete:
    a worker that died after the run's end but before its last report simulates it again)."""
    store = zarr_path(run_dir)
    if not store.is_dir():
        return False
    attrs = zarr.open_group(store, mode="r").attrs
    return "checkpoint" in attrs and attrs.get("status") != "complete"


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
    """Mark the run of a trial Tune stopped as `pruned` (Tune ends such a trial's process without telling it; the
    store is visible here when Ray is local or the file system shared). A worker still running keeps the mark:
    its writer does not overwrite a status another process set (eilab.sim.store.update_run_attrs)."""
    store = zarr_path(run_dir)
    if store.is_dir():
        update_run_attrs(store, {"status": "pruned", "pruned": {"time_ms": t_ms}})


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
             gpus_per_trial: float = 0.0, num_cpus: int | None = None, resume: bool = False) -> dict[str, Any]:
    """Run n_trials Tune trials of study `s` (ASHA over simulated ms) into its Optuna storage; the number of
    trials, the best objective and its parameters. A trial whose worker dies is restored from its last Tune
    checkpoint (at most workers.max_retry times); `resume` continues the study's last Tune experiment (one whose
    driver was stopped) where it stopped, its unfinished and failed trials from their checkpoints."""
    if s.trains:
        raise ConfigError(f"{s.source}: objective.train: eilab tune searches simulation objectives (ASHA stops runs "
                          "by simulated time); use eilab study optimize for a training objective")
    if not s.spec.single:
        raise ConfigError(f"{s.source}: objective.combine = 'separate': eilab tune runs one objective (ASHA stops "
                          "trials by one metric); use eilab study optimize for several")
    extra = engine_checkpoints(s, s.load({})[0])
    cfg, _ = s.load({}, extra)  # a bad checkpoint interval stops here, before any trial
    obj = s.spec.objective
    runs_dir = s.runs_dir.resolve()
    experiment = runs_dir / "tune" / f"{s.name}-tune"
    if resume and not tune.Tuner.can_restore(experiment):
        raise ConfigError(f"{experiment}: no Tune experiment of study {s.name!r} to resume; run `eilab tune` without "
                          "--resume")
    storage = studies.open_storage(s.storage_url)
    studies.open_study(s, storage)  # the study exists before Tune's search loads it (same directions, same name)
    search = StudySearch(cfg.run.t_ms, metric=METRIC, mode="min",
                         space={p.path: p.distribution() for p in s.spec.space},
                         sampler=studies.build_sampler(s.spec), study_name=s.name, storage=storage)
    asha = ASHAScheduler(time_attr=STEP, max_t=cfg.run.t_ms, grace_period=obj.skip_ms + obj.report_every_ms,
                         reduction_factor=s.spec.pruner.reduction_factor)
    trainable = tune.with_resources(
        tune.with_parameters(trial, source=str(s.source.resolve()), runs_dir=str(runs_dir), extra=extra),
        {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
    started = start_ray(address, num_cpus)
    try:
        if resume:
            tuner = tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=search, scheduler=asha, num_samples=n_trials, metric=METRIC,
                                            mode="min"),
                run_config=tune.RunConfig(name=experiment.name, storage_path=str(experiment.parent), verbose=0,
                                          failure_config=tune.FailureConfig(max_failures=s.spec.workers.max_retry)))
        results = tuner.fit()
    finally:
        if started:
            ray.shutdown()
    best = results.get_best_result(metric=METRIC, mode="min", scope="last")
    return {"trials": len(results), "best": best.metrics[METRIC],
            "params": {p.path: best.config[p.path] for p in s.spec.space}}
