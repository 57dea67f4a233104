"""`eilab study create|optimize|best|export|report`, `eilab dashboard` and `eilab tune`: registered on the
`eilab` parser by `add_parsers`. Outputs are written to a temporary name and renamed (no half-written file)."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eilab.sim.config import ConfigError

if TYPE_CHECKING:
    import optuna

    from eilab.cluster import study

LOOPBACK = "127.0.0.1"
SEARCH_MODULES = ("optuna", "optuna_dashboard", "sqlalchemy", "ray")  # the search extra


def search_modules() -> None:
    """Import the search extra (optuna, ...) into this module's namespace, or say how to install it."""
    global optuna, study, launch
    try:
        import optuna

        from eilab.cluster import launch, study
    except ImportError as e:
        if (e.name or "").partition(".")[0] not in SEARCH_MODULES:
            raise
        raise ConfigError(f"searches need the search extra ({e.name} is missing): pip install 'eilab[search]'"
                          ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def objective_names(spec: study.StudySpec) -> list[str]:
    """What each objective value is: the summed relative error, or per metric its relative error (with a target)
    or its value."""
    if spec.objective.combine == "sum":
        return ["relative_error"]
    return [f"{m.name}_error" if m.target is not None else m.name for m in spec.objective.metrics]


def loaded(args: argparse.Namespace) -> tuple[study.Study, optuna.Study]:
    """The study config named on the command line and its study in the storage (which must exist)."""
    s = study.load_study(args.config, args.storage)
    storage = study.open_storage(s.storage_url)
    try:
        return s, optuna.load_study(study_name=s.name, storage=storage)
    except KeyError:
        raise ConfigError(f"storage {study.redact(s.storage_url)}: no study {s.name!r} in it yet; run `eilab study "
                          f"create {args.config}` or `eilab study optimize {args.config}` first") from None


def cmd_create(args: argparse.Namespace) -> int:
    search_modules()
    s = study.load_study(args.config, args.storage)
    ostudy = study.open_study(s)
    ostudy.set_metric_names(objective_names(s.spec))
    print(f"study {s.name!r} in {study.redact(s.storage_url)}: {len(ostudy.trials)} trials so far; "
          f"run trials with `eilab study optimize {args.config}`")
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    search_modules()
    s = study.load_study(args.config, args.storage)
    ostudy = study.open_study(s)
    ostudy.set_metric_names(objective_names(s.spec))
    n = args.n_trials or s.spec.budget.trials
    worker = ["study", "optimize", str(s.source), "--storage", s.storage_url, "--n-trials", str(n), "--jobs", "1"]
    others = launch.start_workers(worker + (["--timeout", str(args.timeout)] if args.timeout else []), args.jobs - 1)
    try:
        study.optimize(s, n, args.timeout)  # this process is one of the workers: one process start fewer
    finally:
        code = launch.wait_workers(others)
    done = len(study.complete_trials(ostudy))
    print(f"study {s.name!r}: {done} complete trials of {n} asked ({len(ostudy.trials)} in all, pruned and failed "
          "included)")
    print("\n".join(best_lines(s, ostudy)))
    return code


def best_lines(s: study.Study, ostudy: optuna.Study) -> list[str]:
    """The best trial (one objective) or the Pareto front (several): values, parameters, metrics, run."""
    if not study.complete_trials(ostudy):
        return ["no complete trial yet"]
    best = [ostudy.best_trial] if s.spec.single else ostudy.best_trials
    names = objective_names(s.spec)
    lines = [] if s.spec.single else [f"Pareto front: {len(best)} trials"]
    for t in best:
        values = ", ".join(f"{k} {v:.4g}" for k, v in zip(names, t.values, strict=True))
        lines.append(f"trial {t.number}: {values}")
        lines.append("  params: " + ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                                             for k, v in t.params.items()))
        lines.append("  metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in t.user_attrs.get("metrics", {}).items()))
        lines.append(f"  run: {t.user_attrs.get('run_dir')}")
    return lines


def cmd_best(args: argparse.Namespace) -> int:
    search_modules()
    s, ostudy = loaded(args)
    print("\n".join(best_lines(s, ostudy)))
    return 0


def trial_record(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """One trial as JSON: state, values, parameters, user attributes (run, overrides, metrics, seed, commit)."""
    duration = t.duration.total_seconds() if t.duration else None
    return {"number": t.number, "state": t.state.name, "values": t.values, "params": t.params,
            "user_attrs": t.user_attrs, "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
            "datetime_start": t.datetime_start.isoformat() if t.datetime_start else None,
            "duration_s": duration, "retried_from": t.system_attrs.get("failed_trial")}


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def cmd_export(args: argparse.Namespace) -> int:
    search_modules()
    s, ostudy = loaded(args)
    text = json.dumps({"study": s.name, "directions": s.spec.directions, "objectives": objective_names(s.spec),
                       "trials": [trial_record(t) for t in ostudy.trials]}, indent=1, default=str)
    if args.out:
        write_atomically(Path(args.out), text)
        print(f"{len(ostudy.trials)} trials written to {args.out}")
    else:
        print(text)
    return 0


def write_report(s: study.Study, ostudy: optuna.Study, out: Path) -> list[Path]:
    """Figures of a study into `out`: optimisation history and parameter importances per objective, and the
    Pareto front for two or three objectives (PNG, matplotlib's Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as oplt

    names = objective_names(s.spec)
    plots: dict[str, Any] = {}
    for i, name in enumerate(names):
        suffix = "" if s.spec.single else f"-{name}"
        target = None if s.spec.single else (lambda t, i=i: t.values[i])
        plots[f"history{suffix}.png"] = lambda target=target, name=name: oplt.plot_optimization_history(
            ostudy, target=target, target_name=name)
        if len(study.complete_trials(ostudy)) > 1:
            plots[f"importances{suffix}.png"] = lambda target=target, name=name: oplt.plot_param_importances(
                ostudy, target=target, target_name=name)
    if len(names) in (2, 3):
        plots["pareto.png"] = lambda: oplt.plot_pareto_front(ostudy, target_names=names)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file, plot in plots.items():
        ax = plot()
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        tmp = out / f".{file}.tmp.png"
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        tmp.replace(out / file)
        written.append(out / file)
    return written


def cmd_report(args: argparse.Namespace) -> int:
    search_modules()
    s, ostudy = loaded(args)
    if not study.complete_trials(ostudy):
        raise ConfigError(f"study {s.name!r} has no complete trial yet: nothing to plot")
    out = Path(args.out or s.runs_dir / "report")
    for path in write_report(s, ostudy, out):
        print(f"wrote {path}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    search_modules()
    target = args.storage
    is_config = target.endswith(".toml") or ("://" not in target and not target.startswith("journal:"))
    url = study.load_study(target).storage_url if is_config else target
    launch.serve_dashboard(study.open_storage(url), args.host, args.port)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    search_modules()
    from eilab.cluster import tune

    s = study.load_study(args.config, args.storage)
    result = tune.run_tune(s, args.n_trials or s.spec.budget.trials, address=args.address,
                           cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                           num_cpus=args.num_cpus, resume=args.resume)
    print(f"study {s.name!r}: {result['trials']} Ray Tune trials in {study.redact(s.storage_url)}; best "
          f"{objective_names(s.spec)[0]} {result['best']:.4g} with {result['params']}")
    return 0


def count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: give a whole number of at least 1")
    return value


def positive(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text}: give a positive number")
    return value


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `eilab study ...`, `eilab dashboard` and `eilab tune`."""
    st = sub.add_parser("study", help="Optuna parameter searches of a simulation config (configs/studies/)")
    verbs = st.add_subparsers(dest="verb", required=True)
    for name, func, text in (("create", cmd_create, "create the study in its storage"),
                             ("optimize", cmd_optimize, "run trials until the study has --n-trials complete ones"),
                             ("best", cmd_best, "print the best trial (or the Pareto front)"),
                             ("export", cmd_export, "every trial as JSON (parameters, values, runs, metrics)"),
                             ("report", cmd_report, "figures: optimisation history, importances, Pareto front")):
        p = verbs.add_parser(name, help=text)
        p.add_argument("config", help="study config (.toml), or a bundled one's name, e.g. ring600_rates")
        p.add_argument("--storage", help="Optuna storage instead of the config's: sqlite:///PATH, postgresql://..., "
                       "journal:PATH")
        p.set_defaults(func=func)
        if name == "optimize":
            p.add_argument("--n-trials", type=count, help="complete trials the study ends with (default budget.trials)")
            p.add_argument("--timeout", type=positive, help="stop starting trials after this many seconds")
            p.add_argument("--jobs", type=count, default=1, help="worker processes on this machine (default 1)")
        if name in ("export", "report"):
            p.add_argument("--out", help="output file (export; default stdout) or folder (report; default "
                           "studies/NAME/report)")
    d = sub.add_parser("dashboard", help="serve optuna-dashboard for a storage (URL or study config)")
    d.add_argument("storage", help="sqlite:///PATH, postgresql://..., journal:PATH, or a study config")
    d.add_argument("--host", default=LOOPBACK, help="address to listen on (default loopback only)")
    d.add_argument("--port", type=int, default=8080)
    d.set_defaults(func=cmd_dashboard)
    t = sub.add_parser("tune", help="run a study config's search on Ray Tune (ASHA), results in its Optuna storage")
    t.add_argument("config", help="study config (.toml), or a bundled one's name")
    t.add_argument("--storage", help="Optuna storage instead of the config's")
    t.add_argument("--address", help="join a running Ray cluster (e.g. HOST:6379, or auto); default a local Ray")
    t.add_argument("--n-trials", type=count, help="trials to run (default: budget.trials)")
    t.add_argument("--cpus-per-trial", type=positive, default=1.0)
    t.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPU fraction per trial")
    t.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    t.add_argument("--resume", action="store_true", help="continue the study's last Tune experiment (its driver was "
                   "stopped): unfinished and failed trials go on from their checkpoints")
    t.set_defaults(func=cmd_tune)
