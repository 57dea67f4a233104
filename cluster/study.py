"""Optuna studies of simulation configs: the study config, its storage, sampler and pruner, the trial
objective (a stored run, pruned by its intermediate metrics) and the worker loop (README, "Parameter
searches"; docs/architecture.md). Samplers: TPE (Bergstra et al. 2011, NeurIPS), CMA-ES (Hansen 2016,
arXiv:1604.00772), NSGA-II (Deb et al. 2002, IEEE TEC 6:182), GP (Optuna's GPSampler).

A study config (configs/studies/*.toml) names a simulation config and `--set` overrides, the metrics
of the run it scores (`rate.<POP>` Hz, `mean_rate` Hz, `mfe_rate` events/s over (skip_ms, t_ms]), the
search space over config paths, the sampler, the pruner, the budget and the storage; or a training config
and validation metrics (study_train.py). Everything is checked before a trial starts; a problem raises
ConfigError naming the field. A worker runs its trials in one process (imports and numba's cached kernels
are loaded once); a trial's metrics come from the counts the engine hands its writer (PopulationCounts), so
its reports read nothing back from the store.

Every worker stops once the study holds `trials` complete trials: a trial only starts while fewer
than `trials` trials are complete, running or waiting (a worker waits while the rest are running),
so no trial is counted twice; a worker killed mid-trial stops its heartbeat, the trial is failed once
its grace period has passed and retried (RetryHeartbeatStaleTrialCallback, at most `max_retry` times), on
SQL storages and on journal files (JournalHeartbeatStorage).
"""

from __future__ import annotations

import json
import math
import platform
import sqlite3
import time
import tomllib
import warnings
from collections.abc import Iterator
from contextlib import closing, suppress
from functools import cache, partial
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import optuna
from optuna.storages._heartbeat import BaseHeartbeat
from pydantic import Field, ValidationError, model_validator

from eilab.sim.config import Config, ConfigError, Strict, format_validation_error, load_config

STUDY_METRICS = ("mean_rate", "mfe_rate")  # besides rate.<POP>
ACTIVE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
HEARTBEAT = "eilab_heartbeat"  # a journal trial's last heartbeat (system attribute), s since the epoch
SQLITE_TIMEOUT_S = 60  # how long a worker waits for another's write lock on a SQLite study
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, retries, figures


# ---------------------------------------------------------------- the study config
class TrialFailedError(RuntimeError):
    """A trial could not be scored (its training failed): it is failed, the search goes on."""


class Param(Strict):
    """One searched config path: float (linear or log scale, optional step), int, or categorical."""

    path: str = Field(description="a config path as --set takes it, e.g. vars.S_EE or projections.EE.weight")
    type: Literal["float", "int", "categorical"] = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[str | int | float | bool] | None = None

    @model_validator(mode="after")
    def _check_range(self) -> Param:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError(f"{self.path}: a categorical parameter needs a non-empty `choices` list")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"{self.path}: a {self.type} parameter needs `low` and `high`")
        if not self.low < self.high:
            raise ValueError(f"{self.path}: empty range (low {self.low:g} must be below high {self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"{self.path}: a log-scale range needs low > 0 (got {self.low:g})")
        if self.log and self.step is not None:
            raise ValueError(f"{self.path}: give either log = true or a step, not both")
        return self

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.type == "categorical":
            return optuna.distributions.CategoricalDistribution(self.choices)
        if self.type == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log,
                                                        step=int(self.step or 1))
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def suggest(self, trial: optuna.Trial) -> Any:
        """The trial's value of this parameter (sampled, or fixed when the trial is a retry)."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.path, self.choices)
        if self.type == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.path, self.low, self.high, step=self.step, log=self.log)

    def extremes(self) -> list[Any]:
        """The values to check against the simulation config: both ends, or every choice."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]


class Metric(Strict):
    """A metric of the run; with a target it is scored as |value - target| / target (minimised)."""

    name: str = Field(description="rate.<POP> (Hz), mean_rate (Hz) or mfe_rate (MFEs per second)")
    target: float | None = Field(None, gt=0)
    direction: Literal["minimize", "maximize"] = "minimize"

    def score(self, value: float) -> float:
        return abs(value - self.target) / self.target if self.target is not None else value


class Objective(Strict):
    config: str | None = Field(None, description="simulation config: a bundled name or a path (relative to the "
                               "study file)")
    train: str | None = Field(None, description="or a training config (eilab train): a bundled name of "
                              "configs/train or a path (relative to the study file); its metrics are validation "
                              "scores of metrics.json (eilab.cluster.study_train)")
    set: list[str] = Field(default_factory=list, description="--set overrides applied to every trial (of the "
                           "training config's entries for a training objective)")
    skip_ms: float = Field(100.0, ge=0, description="transient left out of every metric, ms")
    report_every_ms: float = Field(500.0, gt=0, description="intermediate metrics (for the pruner) this often, ms")
    metrics: list[Metric] = Field(min_length=1)
    combine: Literal["sum", "separate"] = Field(
        "sum", description="sum: one objective, the summed relative errors (every metric needs a target); "
        "separate: one objective per metric (several objectives: NSGA-II, TPE or GP)")

    @model_validator(mode="after")
    def _one_config(self) -> Objective:
        if (self.config is None) == (self.train is None):
            raise ValueError("give either `config` (a simulation config) or `train` (a training config)")
        return self


class Sampler(Strict):
    name: Literal["tpe", "cmaes", "nsga2", "gp", "random"] = "tpe"
    seed: int | None = None
    n_startup_trials: int = Field(10, ge=0, description="random trials before TPE, CMA-ES or GP model the results")


class Pruner(Strict):
    name: Literal["median", "hyperband", "none"] | None = Field(
        None, description="default: median for one objective, none for several (Optuna prunes one objective)")
    n_startup_trials: int = Field(5, ge=0, description="median: trials completed before any is pruned")
    n_warmup_ms: float = Field(0.0, ge=0, description="median: simulated time before a trial can be pruned, ms")
    reduction_factor: int = Field(3, ge=2, description="hyperband")


class Budget(Strict):
    trials: int = Field(20, ge=1, description="complete trials the study ends with")
    timeout_s: float | None = Field(None, gt=0, description="a worker stops starting trials after this long, s")


class Workers(Strict):
    heartbeat_s: int = Field(10, ge=1, description="a running trial's heartbeat interval, s")
    grace_s: int | None = Field(None, ge=1, description="a trial without heartbeat this long is failed, s "
                                "(default 2 heartbeats)")
    max_retry: int = Field(2, ge=0, description="a failed (killed) trial is run again at most this often")


class StudySpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    storage: str | None = Field(None, description="sqlite:///PATH, postgresql://..., or journal:PATH (a journal "
                                "file for shared file systems); default sqlite:///studies/NAME.db")
    runs_dir: str | None = Field(None, description="trial run directories (default studies/NAME)")
    objective: Objective
    space: list[Param] = Field(min_length=1)
    sampler: Sampler = Field(default_factory=Sampler)
    pruner: Pruner = Field(default_factory=Pruner)
    budget: Budget = Field(default_factory=Budget)
    workers: Workers = Field(default_factory=Workers)

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        paths = [p.path for p in self.space]
        if len(set(paths)) < len(paths):
            raise ValueError("space: a config path is searched twice")
        if self.objective.combine == "sum" and any(m.target is None for m in self.objective.metrics):
            raise ValueError("objective.metrics: combine = 'sum' needs a target for every metric (or combine = "
                             "'separate')")
        if len(self.directions) > 1 and self.sampler.name == "cmaes":
            raise ValueError("sampler.name: cmaes optimises one objective; use nsga2, tpe or gp for several")
        if len(self.directions) > 1 and self.pruner.name not in (None, "none"):
            raise ValueError("pruner.name: Optuna prunes studies of one objective; use 'none' with combine = "
                             "'separate'")
        return self

    @property
    def directions(self) -> list[str]:
        if self.objective.combine == "sum":
            return ["minimize"]
        return ["minimize" if m.target is not None else m.direction for m in self.objective.metrics]

    @property
    def single(self) -> bool:
        return len(self.directions) == 1


class Study:
    """A loaded study config: the spec, where it came from and the simulation (or training) config it searches."""

    def __init__(self, spec: StudySpec, source: Path, config_path: Path) -> None:
        self.spec, self.source, self.config_path = spec, source, config_path

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def trains(self) -> bool:
        """Whether the objective is a training config (config_path is then the training config)."""
        return self.spec.objective.train is not None

    @property
    def storage_url(self) -> str:
        return self.spec.storage or f"sqlite:///studies/{self.name}.db"

    @property
    def runs_dir(self) -> Path:
        return Path(self.spec.runs_dir or f"studies/{self.name}")

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """The --set overrides of a trial: the study's, then the sampled parameters."""
        return [*self.spec.objective.set, *(f"{k}={toml_literal(v)}" for k, v in params.items())]

    def load(self, params: dict[str, Any], extra: list[str] | tuple[str, ...] = ()) -> tuple[Config, dict]:
        """The simulation config of a trial: its overrides, then `extra` ones."""
        return load_config(self.config_path, [*self.overrides(params), *extra, "run.progress=false"])


def studies_dir() -> Path:
    """The bundled study configs (eilab.configs/studies)."""
    return Path(__file__).resolve().parent.parent / "configs" / "studies"


def resolve_study(name: str) -> Path:
    """A study config file that exists, else a bundled study config of that name."""
    path = Path(name)
    if path.is_file() or path.name != name:
        return path
    bundled = {p.stem: p for p in sorted(studies_dir().glob("*.toml"))}
    stem = name.removesuffix(".toml")
    if stem not in bundled:
        raise ConfigError(f"{name}: no such study config, nor a bundled one of that name; bundled: "
                          f"{', '.join(bundled) or 'none'}; or give the path to a study .toml file")
    return bundled[stem]


def load_study(name: str | Path, storage: str | None = None) -> Study:
    """Read and check a study config (and its simulation config with every end of the search space);
    `storage` replaces the config's storage. Raises ConfigError naming the field."""
    from eilab.cluster.cli import resolve_config

    path = resolve_study(str(name))
    if not path.is_file():
        raise ConfigError(f"{path}: no such study config file")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    raw.setdefault("name", path.stem)
    if storage is not None:
        raw["storage"] = storage
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, str(path)).replace("invalid config", "invalid study config")
                          ) from None
    if spec.objective.train is not None:
        from eilab.cluster import study_train

        study = Study(spec, path, study_train.resolve_training(spec.objective.train, path.parent))
        study_train.check_objective(study)
    else:
        beside = path.parent / spec.objective.config
        study = Study(spec, path, beside if beside.is_file() else resolve_config(spec.objective.config))
        check_objective(study)
    check_storage_url(study.storage_url)
    return study


def check_objective(study: Study) -> None:
    """The simulation config loads with the study's overrides and with every end of the search space; every
    searched path exists in it; the metrics can be measured. ConfigError names the field."""
    where = f"{study.source}"
    try:
        cfg, raw = load_config(study.config_path, study.spec.objective.set)
    except ConfigError as e:
        raise ConfigError(f"{where}: objective.config / objective.set: {e}") from None
    for p in study.spec.space:
        if not path_exists(raw, p.path):
            raise ConfigError(f"{where}: space.path {p.path!r}: no such entry in {study.config_path} (paths are "
                              "those --set takes, e.g. vars.S_EE or projections.EE.weight)")
        for value in p.extremes():
            try:
                study.load({p.path: value})
            except ConfigError as e:
                raise ConfigError(f"{where}: space.path {p.path!r} = {value!r} gives an invalid config: {e}") from None
    check_metrics(study, cfg)


def check_metrics(study: Study, cfg: Config) -> None:
    obj, where = study.spec.objective, f"{study.source}: objective"
    pops = [p.name for p in cfg.populations]
    known = [f"rate.{p}" for p in pops] + list(STUDY_METRICS)
    for m in obj.metrics:
        if m.name not in known:
            raise ConfigError(f"{where}.metrics: unknown metric {m.name!r}; known: {', '.join(known)}")
    if cfg.is_rate_network or not cfg.record.counts_bin_ms:
        raise ConfigError(f"{where}.config: the metrics are measured from the spike counts of a spiking network; "
                          "set record.counts_bin_ms (e.g. 1.0)")
    if obj.skip_ms + obj.report_every_ms > cfg.run.t_ms:
        raise ConfigError(f"{where}.skip_ms + report_every_ms ({obj.skip_ms:g} + {obj.report_every_ms:g} ms) exceed "
                          f"run.t_ms = {cfg.run.t_ms:g} ms: nothing would be measured")


def path_exists(raw: Any, path: str) -> bool:
    """Whether a dotted config path names an entry of the raw config (list items by index or by name)."""
    node = raw
    for key in path.split("."):
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list):
            names = [x.get("name", f"{x.get('pre', '')}{x.get('post', '')}") if isinstance(x, dict) else None
                     for x in node]
            if key in names:
                node = node[names.index(key)]
            elif key.isdecimal() and int(key) < len(node):
                node = node[int(key)]
            else:
                return False
        else:
            return False
    return True


def toml_literal(value: Any) -> str:
    """A value as the right-hand side of --set KEY=VALUE."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value.item() if isinstance(value, np.generic) else value)


# ---------------------------------------------------------------- storage, sampler, pruner
def check_storage_url(url: str) -> None:
    """sqlite:///PATH, postgresql[+driver]://..., or journal:PATH; ConfigError naming `storage` otherwise."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    fix = "use sqlite:///studies/NAME.db, postgresql://USER@HOST/DB or journal:PATH/NAME.log"
    if url.startswith("journal:"):
        if not url.removeprefix("journal:").strip("/"):
            raise ConfigError(f"storage {url!r}: no journal file path; {fix}")
        return
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"storage {url!r}: not a storage URL; {fix}") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(f"storage {url!r}: unsupported database {parsed.get_backend_name()!r}; {fix}")
    if parsed.get_backend_name() == "sqlite" and not parsed.database:
        raise ConfigError(f"storage {url!r}: a SQLite storage needs a file (an in-memory one is lost); {fix}")


def open_storage(url: str, workers: Workers | None = None) -> optuna.storages.BaseStorage:
    """The Optuna storage at `url`; with `workers`, heartbeats and bounded retries of killed trials (Optuna's for
    SQL storages, JournalHeartbeatStorage for a journal file). ConfigError naming `storage` when it cannot be
    opened."""
    import sqlalchemy.exc

    check_storage_url(url)
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:").removeprefix("//"))
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        if workers is None:
            return optuna.storages.JournalStorage(backend)
        return JournalHeartbeatStorage(backend, workers)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        database = sqlalchemy.engine.make_url(url).database
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"creator": partial(sqlite_connection, database)}  # picklable (Ray Tune)
    if workers is not None:
        kwargs.update(heartbeat_interval=workers.heartbeat_s, grace_period=workers.grace_s,
                      heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                          max_retry=workers.max_retry))
    try:
        return optuna.storages.RDBStorage(url, **kwargs)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"storage {redact(url)}: cannot open it ({first}); check the URL, that the server runs "
                          "and that the user may connect") from None


class JournalHeartbeatStorage(optuna.storages.JournalStorage, BaseHeartbeat):
    """Optuna's journal file storage with heartbeats (its JournalStorage has none in Optuna 5.0: it is no
    BaseHeartbeat, so fail_stale_trials passes it by). A running trial's worker appends its wall-clock time
    (`eilab_heartbeat`, a system attribute) every `heartbeat_s`; a running trial whose last heartbeat is older
    than `grace_s` is stale (trials without one, e.g. `eilab tune`'s, never are, as in RDBStorage). Failing it
    is one appended FAIL record: the journal orders concurrent workers' records, only the first FAIL of a trial
    applies and the others' raise UpdateFinishedTrialError (Optuna's fail_stale_trials skips those), so exactly
    one worker runs the retry callback. The hosts' clocks must agree to well within grace_s."""

    def __init__(self, backend: optuna.storages.journal.BaseJournalBackend, workers: Workers) -> None:
        super().__init__(backend)
        self.heartbeat_s = workers.heartbeat_s
        self.grace_s = workers.grace_s or 2 * workers.heartbeat_s
        self.stale_callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=workers.max_retry)

    def record_heartbeat(self, trial_id: int) -> None:
        with suppress(optuna.exceptions.UpdateFinishedTrialError):  # another worker found it stale and failed it
            self.set_trial_system_attr(trial_id, HEARTBEAT, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        running = self.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        return [t._trial_id for t in running if now - t.system_attrs.get(HEARTBEAT, math.inf) > self.grace_s]

    def get_heartbeat_interval(self) -> int:
        return self.heartbeat_s

    def get_heartbeat_stale_trial_callback(self) -> optuna.storages.RetryHeartbeatStaleTrialCallback:
        return self.stale_callback


def sqlite_connection(database: str) -> sqlite3.Connection:
    """A connection to a SQLite study in write-ahead-log mode: readers do not block the writer, and a commit
    does not wait for the disk (synchronous = NORMAL: a power cut may lose the last commits, never corrupt)."""
    con = sqlite3.connect(database, timeout=SQLITE_TIMEOUT_S, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


def redact(url: str) -> str:
    """A storage URL without its password."""
    if url.startswith("journal:"):
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def build_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    s = spec.sampler
    if s.name == "tpe":
        return optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=s.n_startup_trials, multivariate=True)
    if s.name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=s.seed, n_startup_trials=s.n_startup_trials,
                                            warn_independent_sampling=False)
    if s.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s.seed)
    if s.name == "gp":
        return optuna.samplers.GPSampler(seed=s.seed, n_startup_trials=s.n_startup_trials)
    return optuna.samplers.RandomSampler(seed=s.seed)


def build_pruner(spec: StudySpec, t_ms: float) -> optuna.pruners.BasePruner:
    """The pruner; steps are simulated milliseconds."""
    p = spec.pruner
    name = p.name or ("median" if spec.single else "none")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=round(p.n_warmup_ms))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=round(spec.objective.skip_ms
                                                                 + spec.objective.report_every_ms),
                                              max_resource=round(t_ms), reduction_factor=p.reduction_factor)
    return optuna.pruners.NopPruner()


def open_study(study: Study, storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """The Optuna study, created in its storage when it is not there yet (a training objective reports no
    intermediate values: no pruner)."""
    pruner = optuna.pruners.NopPruner() if study.trains else build_pruner(study.spec, study.load({})[0].run.t_ms)
    return optuna.create_study(storage=storage or open_storage(study.storage_url, study.spec.workers),
                               study_name=study.name, directions=study.spec.directions,
                               sampler=build_sampler(study.spec), pruner=pruner, load_if_exists=True)


# ---------------------------------------------------------------- metrics
class PopulationCounts:
    """A trial's spike counts per time bin and population, summed from the counts the engine hands its
    `on_counts` hook (a one-process run: every neuron), so that the metrics after every piece of the run need
    neither a flush nor a read of the store."""

    def __init__(self, cfg: Config) -> None:
        from eilab.sim.grid import TimeGrid

        self.pops = cfg.populations
        self.starts = np.cumsum([0, *(p.n for p in self.pops[:-1])])
        self.bin_ms = cfg.record.counts_bin_ms
        self.sums = np.zeros((TimeGrid.of(cfg).n_bins, len(self.pops)), np.int64)

    def add(self, bin0: int, block: np.ndarray) -> None:
        """Counts (time_bin, neuron) of bins bin0.. of every neuron."""
        if block.shape[0]:
            self.sums[bin0 : bin0 + block.shape[0]] = np.add.reduceat(block, self.starts, axis=1, dtype=np.int64)

    def load(self, run_dir: Path, t_ms: float) -> None:
        """The stored counts of the bins before t_ms (a run resumed from its checkpoint at t_ms)."""
        from eilab.sim.reader import open_run

        self.add(0, open_run(run_dir, allow_incomplete=True).counts(None, 0.0, t_ms))

    def metrics(self, names: list[str], skip_ms: float, t_ms: float) -> dict[str, float]:
        """The metrics over (skip_ms, t_ms] (the bins that start in [skip_ms, t_ms), as Run.counts selects them):
        rate.<POP> and mean_rate in Hz, mfe_rate in MFEs per second (eilab.analysis.mfe.detect_counts on the
        summed E and I counts, which is all its event rate depends on)."""
        from eilab.analysis.mfe import detect_counts
        from eilab.sim.reader import bin_rows

        rows = self.sums[bin_rows(skip_ms, t_ms, self.bin_ms, len(self.sums))]
        seconds = (t_ms - skip_ms) / 1000.0
        out: dict[str, float] = {}
        for name in names:
            if name.startswith("rate."):
                k = next(k for k, p in enumerate(self.pops) if p.name == name.removeprefix("rate."))
                out[name] = float(rows[:, k].sum()) / self.pops[k].n / seconds
            elif name == "mean_rate":
                out[name] = sum(float(rows[:, k].sum()) for k in range(len(self.pops))) \
                    / sum(p.n for p in self.pops) / seconds
            else:
                e, i = (rows[:, [k for k, p in enumerate(self.pops) if p.type == kind]].sum(axis=1, keepdims=True)
                        for kind in ("E", "I"))
                out[name] = detect_counts(e, i, self.bin_ms, skip_ms, t_ms)[1].rate_hz
        return out


def scores(spec: StudySpec, metrics: dict[str, float]) -> list[float]:
    """The objective values of measured metrics."""
    each = [m.score(metrics[m.name]) for m in spec.objective.metrics]
    return [sum(each)] if spec.objective.combine == "sum" else each


# ---------------------------------------------------------------- one trial
class Piece(NamedTuple):
    """A trial's run after one piece: simulated time reached (ms), the metrics so far, the engine's simulate
    phase so far (s, the wall time inside Simulation.advance_to) and this process's CPU time in it (s, every
    thread: the numba kernels and zarr's writer threads); the same for all the stored run's own work so far
    (creating, advancing and closing it, as `eilab run` does: `run_s`, `run_cpu_s`)."""

    t_ms: float
    metrics: dict[str, float]
    simulate_s: float
    simulate_cpu_s: float
    run_s: float
    run_cpu_s: float


def report_times(skip_ms: float, every_ms: float, t_ms: float) -> list[float]:
    """Simulated times (ms) at which a trial measures and reports: every `every_ms` after the transient, and the end."""
    n = math.floor((t_ms - skip_ms) / every_ms + 1e-9)
    return [*(skip_ms + every_ms * k for k in range(1, n + 1) if skip_ms + every_ms * k < t_ms - 1e-9), t_ms]


def simulate(study: Study, cfg: Config, raw: dict, run_dir: Path, times: list[float],
             resume: bool = False) -> Iterator[Piece]:
    """Simulate a trial's config into run_dir in pieces ending at `times` (ms, the last one the run's end), yielding
    a Piece after each; the last piece ends the run (status `complete`). Closing the generator earlier (the trial
    was pruned or stopped) closes the run with status `pruned`. With `resume`, the run continues from its last
    engine checkpoint (the pieces before it are skipped)."""
    from eilab.sim.engine import Simulation

    obj = study.spec.objective
    names = [m.name for m in obj.metrics]
    counts = PopulationCounts(cfg)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    sim = Simulation.resume(run_dir, progress=False, on_counts=counts.add) if resume else \
        Simulation.create(cfg, raw, run_dir, force=True, progress=False, on_counts=counts.add)
    cpu_s, run_s, run_cpu_s = 0.0, time.perf_counter() - wall0, time.process_time() - cpu0
    with sim:
        if resume:
            counts.load(run_dir, sim.t_ms)
        for t in (t for t in times if t > sim.t_ms + 1e-9):
            wall0, cpu0 = time.perf_counter(), time.process_time()
            sim.advance_to(t)
            cpu_s += time.process_time() - cpu0
            if sim.step == sim.grid.total:
                sim.close()
            run_s, run_cpu_s = run_s + time.perf_counter() - wall0, run_cpu_s + time.process_time() - cpu0
            try:
                yield Piece(sim.t_ms, counts.metrics(names, obj.skip_ms, sim.t_ms), sim.sim_s, cpu_s, run_s,
                            run_cpu_s)
            except GeneratorExit:
                if sim.step < sim.grid.total:
                    sim.writer.close("pruned", pruned={"time_ms": sim.t_ms})
                return


def run_trial(study: Study, trial: optuna.Trial) -> list[float]:
    """One Optuna trial: its stored run, intermediate values for the pruner (only when one prunes); the objective
    values. A pruned trial's run is closed with status `pruned` and optuna.TrialPruned raised. A training objective
    trains instead (eilab.cluster.study_train)."""
    if study.trains:
        from eilab.cluster import study_train

        return study_train.run_trial(study, trial)
    t_start = time.perf_counter()
    params = {p.path: p.suggest(trial) for p in study.spec.space}
    cfg, raw = study.load(params)
    run_dir = study.runs_dir / f"trial-{trial.number:05d}"
    for key, value in {"run_dir": str(run_dir.resolve()), "overrides": study.overrides(params),
                       "seed": cfg.run.seed, "git_commit": source_commit(), "host": platform.node()}.items():
        trial.set_user_attr(key, value)
    obj = study.spec.objective
    prunes = study.spec.single and not isinstance(trial.study.pruner, optuna.pruners.NopPruner)
    times = report_times(obj.skip_ms, obj.report_every_ms, cfg.run.t_ms) if prunes else [cfg.run.t_ms]
    with closing(simulate(study, cfg, raw, run_dir, times)) as pieces:
        for piece in pieces:
            timings = {"trial_s": time.perf_counter() - t_start, "simulate_s": piece.simulate_s,
                       "simulate_cpu_s": piece.simulate_cpu_s, "run_s": piece.run_s, "run_cpu_s": piece.run_cpu_s,
                       "worker_cpu_s": time.process_time()}
            if piece.t_ms < cfg.run.t_ms:
                trial.report(scores(study.spec, piece.metrics)[0], step=round(piece.t_ms))
                if trial.should_prune():
                    trial.set_user_attr("metrics", piece.metrics)
                    trial.set_user_attr("timings", timings)
                    raise optuna.TrialPruned(f"pruned at {piece.t_ms:g} ms: {piece.metrics}")
    trial.set_user_attr("metrics", piece.metrics)
    trial.set_user_attr("timings", timings)
    return scores(study.spec, piece.metrics)


@cache
def source_commit() -> str | None:
    """The eilab source commit (eilab.sim.provenance.git_commit), looked up once per worker."""
    from eilab.sim.provenance import git_commit

    return git_commit()


# ---------------------------------------------------------------- the worker loop
class Gate:
    """Admission of trials so that a study ends with exactly `n` complete trials, whatever its workers do.

    Called before a worker asks for a trial (and as an Optuna callback after each one): waits while the
    complete, running and waiting trials already fill `n` (a killed worker's trial is failed when its
    heartbeat is stale, then retried), and stops the study once `n` are complete or the deadline passed."""

    def __init__(self, n: int, deadline: float, poll_s: float) -> None:
        self.n, self.deadline, self.poll_s = n, deadline, poll_s
        self.seen, self.last = n, -1  # active trials and the highest trial number at the last wait

    def wait(self, study: optuna.Study) -> bool:
        """Whether the worker may ask for a trial (False: the study is done or time is up). Stale trials are failed
        (and retried) while it waits; Optuna fails them too before each trial it starts."""
        while time.monotonic() < self.deadline:
            trials = study.get_trials(deepcopy=False)
            states = [t.state for t in trials if t.state in ACTIVE]
            self.seen, self.last = len(states), max((t.number for t in trials), default=-1)
            if states.count(optuna.trial.TrialState.COMPLETE) >= self.n:
                return False
            if len(states) < self.n or optuna.trial.TrialState.WAITING in states:
                return True
            time.sleep(self.poll_s)
            optuna.storages.fail_stale_trials(study)
        return False

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if not self.wait(study):
            study.stop()

    def admitted(self, study: optuna.Study, number: int) -> bool:
        """Whether trial `number` is among the first n active trials (two workers that asked at once: the later
        one is surplus). Without a storage read when the last wait leaves room: at most `number - last - 1` trials
        were created since, so at most that many more are active ahead of this one."""
        if self.seen + max(0, number - self.last - 1) < self.n:
            return True
        ahead = [t for t in study.get_trials(deepcopy=False, states=ACTIVE) if t.number < number]
        return len(ahead) < self.n


def optimize(study: Study, n_trials: int | None = None, timeout_s: float | None = None) -> optuna.Study:
    """One worker: run trials until the study holds n_trials (default: the budget) complete trials, or until
    timeout_s has passed. Trials whose config turns out invalid are failed and the search goes on."""
    n = n_trials or study.spec.budget.trials
    timeout_s = timeout_s or study.spec.budget.timeout_s
    ostudy = open_study(study)
    gate = Gate(n, time.monotonic() + (timeout_s or math.inf), min(1.0, study.spec.workers.heartbeat_s / 2))

    def objective(trial: optuna.Trial) -> list[float]:
        if not gate.admitted(ostudy, trial.number):
            trial.set_user_attr("surplus", f"the study had {n} trials complete, running or waiting; nothing ran")
            raise optuna.TrialPruned("surplus trial")
        return run_trial(study, trial)

    if gate.wait(ostudy):
        ostudy.optimize(objective, timeout=timeout_s, callbacks=[gate], catch=(ConfigError, TrialFailedError),
                        gc_after_trial=False)
    return ostudy


def complete_trials(ostudy: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return ostudy.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
