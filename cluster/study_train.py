"""Studies whose objective is a training config (README, "Parameter searches"): every trial writes the training
config with its parameters set (entries such as model.hidden or train.lr), runs `eilab train` on it into its
own training directory and scores the validation metrics of that directory's metrics.json. The test split is
never looked at: only `splits.validation.<predictor>.<score>` metrics are accepted. The simulated runs the
training needs are kept in one folder for the whole study (the training config's data.runs_dir, default
<runs_dir>/data), so trials reuse them.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import optuna
import tomli_w

from eilab.cluster.study import Study, TrialFailedError, scores, source_commit
from eilab.sim.config import ConfigError

VALIDATION_METRIC = re.compile(r"^splits\.validation\.[A-Za-z0-9_]+\.(mse|accuracy)$")
PREDICTORS = ("lstm", "ridge_ar", "train_mean", "persistence", "window_mean")  # eilab train's, metrics.json


def training_dir() -> Path:
    """The bundled training configs (eilab.configs/train)."""
    return Path(__file__).resolve().parent.parent / "configs" / "train"


def resolve_training(name: str, beside: Path) -> Path:
    """A training config: a file (relative to the study file's folder, or as given), else a bundled one."""
    for path in (beside / name, Path(name), training_dir() / f"{name.removesuffix('.toml')}.toml"):
        if path.is_file():
            return path
    bundled = ", ".join(p.stem for p in sorted(training_dir().glob("*.toml")))
    raise ConfigError(f"objective.train {name!r}: no such training config file, nor a bundled one ({bundled})")


def set_entry(raw: dict, path: str, value: Any, where: str) -> None:
    """Set the entry `path` (dotted, e.g. model.hidden) of a raw training config; ConfigError naming `where`
    when it names no entry of the config's tables."""
    *tables, key = path.split(".")
    node = raw
    for name in tables:
        node = node.get(name) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        raise ConfigError(f"{where} {path!r}: no such table in the training config (paths are TABLE.KEY, e.g. "
                          "model.hidden or train.lr)")
    node[key] = value


def parse_set(item: str, where: str) -> tuple[str, Any]:
    """KEY=VALUE of objective.set, VALUE a TOML value."""
    key, _, value = item.partition("=")
    try:
        return key.strip(), tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        raise ConfigError(f"{where} {item!r}: give KEY=VALUE with a TOML value, e.g. train.epochs=5") from None


def training_config(study: Study, params: dict[str, Any]) -> dict:
    """The raw training config of a trial: the study's file, objective.set, the trial's parameters; its runs in
    the study's shared data folder unless the config names one."""
    raw = tomllib.loads(study.config_path.read_text())
    for item in study.spec.objective.set:
        set_entry(raw, *parse_set(item, f"{study.source}: objective.set"), f"{study.source}: objective.set")
    for path, value in params.items():
        set_entry(raw, path, value, f"{study.source}: space.path")
    data = raw.setdefault("data", {})
    if not data.get("runs_dir"):
        data["runs_dir"] = str((study.runs_dir / "data").resolve())
    return raw


def check_objective(study: Study) -> None:
    """Before any trial: the training config loads with objective.set and with every end of the search space
    (and names runs that fit its windows); every metric is a validation score. ConfigError naming the field."""
    from eilab.cluster.train import run_plan
    from eilab.ml.config import TrainConfig, load_train_config

    where = f"{study.source}: objective.metrics"
    for m in study.spec.objective.metrics:
        if not VALIDATION_METRIC.match(m.name):
            raise ConfigError(f"{where}: {m.name!r} is not a validation score of metrics.json; give "
                              "splits.validation.<predictor>.mse or .accuracy (the test split is never searched on)")
        if m.name.split(".")[2] not in PREDICTORS:
            raise ConfigError(f"{where}: {m.name!r}: no predictor {m.name.split('.')[2]!r}; known: "
                              f"{', '.join(PREDICTORS)}")
    points = [{}] + [{p.path: v} for p in study.spec.space for v in p.extremes()]
    with tempfile.TemporaryDirectory(prefix="eilab-study-") as tmp:
        for params in points:
            file = Path(tmp) / "train.toml"
            file.write_text(tomli_w.dumps(training_config(study, params)))
            try:
                tc, _ = load_train_config(file)
                run_plan(tc, Path(tc.data.runs_dir))
            except ConfigError as e:
                what = f"space.path {next(iter(params))!r} = {next(iter(params.values()))!r}" if params \
                    else "objective.train / objective.set"
                raise ConfigError(f"{study.source}: {what} gives an invalid training config: {e}") from None
            if not isinstance(tc, TrainConfig):
                raise ConfigError(f"{study.source}: objective.train: a task = {tc.task!r} config writes no validation "
                                  "scores of next-bin predictors; give an LSTM training config (configs/train)")


def metric_of(metrics: dict, name: str) -> float:
    node: Any = metrics
    for key in name.split("."):
        node = node[key]
    return float(node)


def run_trial(study: Study, trial: optuna.Trial) -> list[float]:
    """One training trial: `eilab train` on the trial's config in a process of its own (the trial's directory
    <runs_dir>/trial-NNNNN), scored by the validation metrics of its metrics.json. TrialFailedError when the training
    fails (the trial is failed with the end of its error output; the search goes on)."""
    t_start = time.perf_counter()
    params = {p.path: p.suggest(trial) for p in study.spec.space}
    raw = training_config(study, params)
    out = study.runs_dir / f"trial-{trial.number:05d}"
    config = study.runs_dir / f"trial-{trial.number:05d}.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(tomli_w.dumps(raw))
    for key, value in {"run_dir": str(out.resolve()), "train_config": str(config.resolve()),
                       "overrides": [f"{k}={v!r}" for k, v in params.items()], "seed": raw.get("train", {}).get("seed"),
                       "git_commit": source_commit(), "host": platform.node()}.items():
        trial.set_user_attr(key, value)
    res = subprocess.run([sys.executable, "-m", "eilab.cluster.cli", "train", str(config), "--out", str(out),
                          "--quiet"], capture_output=True, text=True)
    if res.returncode != 0:
        tail = (res.stderr.strip() or res.stdout.strip())[-500:]
        trial.set_user_attr("error", tail)
        raise TrialFailedError(f"trial {trial.number}: eilab train exited {res.returncode}: {tail}")
    metrics = json.loads((out / "metrics.json").read_text())
    values = {m.name: metric_of(metrics, m.name) for m in study.spec.objective.metrics}
    trial.set_user_attr("metrics", values)
    trial.set_user_attr("timings", {"trial_s": time.perf_counter() - t_start})
    return scores(study.spec, values)
