"""`eilab train CONFIG` and `eilab predict MODEL_DIR RUN_DIR` (issue 22): generate the runs a training
config names (missing ones simulated in worker processes, matching ones reused), train the LSTM beside
its baselines, and write a training directory:

  config.toml    the training config as given (a directory trains one config: resumed, never mixed)
  meta.json      shapes, normalisation (training split), ridge penalty, runs per split, seed, versions, commit
  model.pt       the LSTM's best weights; checkpoint.pt the last epoch's state (resume); ridge.npz the AR
  metrics.json   per split and predictor: next-bin MSE (mean, per output), accuracy beside all zeros;
                 test: MFE onset precision/recall, rollout MSE per horizon (none with neuron or sector
                 inputs and summed outputs: predicted sums cannot be fed back as those counts); training history
  figures/       sums.png (one-step predictions against the true E/I sums), rollout.png, curves.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eilab.sim.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from eilab.sim.reader import Run

MODEL_FORMAT = "eilab-model/1"
CLASSIFIER_FORMAT = "eilab-classifier/1"
OURS = {"config.toml", "meta.json", "model.pt", "checkpoint.pt", "ridge.npz", "metrics.json", "figures", "runs",
        "predictions"}
"""What a training directory holds (and *.tmp files of an interrupted write)."""
FIGURE_BINS = 500
NO_ROLLOUT = ("data.inputs = \"neurons\" or \"sectors\" with data.outputs = \"sums\": a rollout would feed "
              "predicted E/I sums back as the counts of every neuron or sector, which they do not determine; "
              "rollouts are not defined")


def add_parsers(sub: Any) -> None:
    """The `train` and `predict` subcommands."""
    t = sub.add_parser("train", help="train an LSTM predictor and its baselines on runs a training config names")
    t.add_argument("config", help="training config (TOML), e.g. configs/train/lstm_ring600_sums.toml")
    t.add_argument("--out", help="training directory (default runs/train-<config>); an existing one of the same "
                   "config resumes from its last checkpoint")
    t.add_argument("--jobs", type=int, default=1, help="worker processes simulating missing runs (default 1)")
    t.add_argument("--max-epochs", type=int, help="stop after this many epochs in all (resume later)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)
    p = sub.add_parser("predict", help="apply a trained model (and its baselines) to another run")
    p.add_argument("model_dir", help="a training directory written by eilab train")
    p.add_argument("run_dir", help="a run of the network the model was trained on")
    p.add_argument("--out", help="metrics file (default MODEL_DIR/predictions/<run>.json)")
    p.add_argument("--ceiling", type=int, default=0, metavar="BRANCHES",
                   help="also the predictability ceiling of the run at BRANCHES branch points (the training config's "
                   "[ceiling] seeds and horizon_ms) and the fraction of the room the LSTM closes")
    p.set_defaults(func=cmd_predict)


# ---------------------------------------------------------------- runs
RunKey = tuple[float | None, int]
"""A planned run: (factor of the E/I-ratio grid, or None; seed)."""


def run_plan(tc: Any, runs_dir: Path) -> dict[RunKey, tuple[Path, list[str], Config, dict]]:
    """(factor, seed) -> (run directory, overrides, resolved config, raw config) of every run the config names:
    one per seed, and for the classifier one per seed and grid factor (the [vars] of data.grid.scale times it)."""
    from eilab.cluster.cli import resolve_config

    path = resolve_config(tc.data.config)
    base, _ = load_config(path, tc.data.set)
    plan = {}
    for factor in tc.data.grid.factors if tc.task == "ei_ratio" else [None]:
        scaled = [] if factor is None else [f"vars.{v}={factor * var_of(base, v, path)!r}" for v in tc.data.grid.scale]
        tag = "" if factor is None else f"-x{factor:g}"
        for seed in [*tc.data.seeds.train, *tc.data.seeds.validation, *tc.data.seeds.test]:
            drive = ["record.drive_counts=true"] if getattr(tc.data, "external", False) else []
            overrides = [*tc.data.set, *scaled, *drive, f"run.seed={seed}", "run.progress=false"]
            cfg, raw = load_config(path, overrides)
            plan[factor, seed] = (runs_dir / f"{path.stem}{tag}-seed{seed}", overrides, cfg, raw)
    g = tc.data.bin_ms / base.record.counts_bin_ms if base.record.counts_bin_ms > 0 else 0.0
    if g < 1 - 1e-9 or abs(g - round(g)) > 1e-9:
        raise ConfigError(f"data.bin_ms = {tc.data.bin_ms}: must be a whole multiple of {path}'s "
                          f"record.counts_bin_ms ({base.record.counts_bin_ms} ms; 0 records no counts)")
    check_windows_fit(tc, base)
    return plan


def var_of(cfg: Config, name: str, path: Path) -> float:
    if name not in cfg.vars:
        raise ConfigError(f"data.grid.scale: {name!r} is not in the [vars] of {path} ({', '.join(cfg.vars)})")
    return cfg.vars[name]


def check_windows_fit(tc: Any, cfg: Config) -> None:
    """ConfigError unless every split of runs of cfg's length holds a window (k + horizon bins, or window_ms)."""
    from eilab.ml.data import first_bin, split_time

    d = tc.data
    lo, hi = first_bin(d.skip_ms, d.bin_ms), int(cfg.run.t_ms / d.bin_ms + 1e-9)
    if tc.task == "ei_ratio":
        need, what = round(d.window_ms / d.bin_ms), f"data.window_ms = {d.window_ms} ms"
        parts = [(lo, hi)]
    else:
        need, what = d.k + d.horizon, f"data.k + data.horizon = {d.k + d.horizon} bins of {d.bin_ms} ms"
        parts = [(lo, hi)] if d.seeds.validation else list(split_time(lo, hi, d.val_fraction, need))
    if min(b - a for a, b in parts) < need:
        raise ConfigError(f"runs of {cfg.run.t_ms} ms leave a split without a window of {what} after "
                          f"data.skip_ms = {d.skip_ms}: lengthen the runs (data.set run.t_ms=...), add validation "
                          "seeds or shorten the windows")


def stored_config_matches(run_dir: Path, cfg: Config) -> bool | None:
    """None when run_dir holds no run; else whether its resolved config is cfg's, both read through today's config
    model (so a run stored before a field with a default existed matches when it has that default). ConfigError
    when the run cannot be read."""
    from eilab.sim.reader import open_run  # zarr: not for the commands that never open a run

    if not (run_dir / "run.zarr").exists():
        return None
    try:
        run = open_run(run_dir, allow_incomplete=True)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{run_dir}: {e}") from None
    try:
        stored = run.config.model_dump(mode="json")
    except ValueError:  # no longer a valid config
        return False
    return json.loads(json.dumps(stored)) == json.loads(json.dumps(cfg.model_dump(mode="json")))


def simulate_one(path: str, overrides: list[str], run_dir: str, force: bool) -> str:
    """Simulate one run (in a worker process); returns its directory."""
    from eilab.cluster.cli import resolve_config
    from eilab.sim.engine import run

    cfg, raw = load_config(resolve_config(path), overrides)
    run(cfg, raw, run_dir, force=force, progress=False)
    return run_dir


def ensure_runs(tc: Any, plan: dict, jobs: int, progress: bool) -> dict[RunKey, Run]:
    """Open every planned run, simulating missing (or unfinished) ones with `jobs` worker processes; a run
    directory holding a run of another config is refused."""
    from tqdm import tqdm

    from eilab.sim.reader import open_run

    todo = []
    for run_dir, overrides, cfg, _ in plan.values():
        same = stored_config_matches(run_dir, cfg)
        if same is False:
            raise ConfigError(f"{run_dir}: holds a run of another config than data.config with data.set and seed "
                              f"{cfg.run.seed} ask for; remove it, or set data.runs_dir to another folder")
        if same is None or open_run(run_dir, allow_incomplete=True).status != "complete":
            todo.append((tc.data.config, overrides, str(run_dir), same is not None))
    if todo:
        bar = tqdm(total=len(todo), desc="simulating runs", unit="run", disable=not progress)
        if jobs <= 1:
            for args in todo:
                simulate_one(*args)
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
                for _ in pool.map(simulate_one, *zip(*todo, strict=True)):
                    bar.update(1)
        bar.close()
    print(f"runs: {len(plan) - len(todo)} reused, {len(todo)} simulated", file=sys.stderr)
    return {key: open_run(run_dir) for key, (run_dir, *_) in plan.items()}


# ---------------------------------------------------------------- training directory
def check_out_dir(out: Path, text: str) -> None:
    """An empty or new directory, or one holding a training of this very config (resumed)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    others = sorted(p.name for p in out.iterdir() if p.name not in OURS and p.suffix != ".tmp")
    if others:
        raise ConfigError(f"--out {out}: holds other files ({', '.join(others[:5])}); choose a new directory")
    given = out / "config.toml"
    if given.exists() and given.read_text() != text:
        raise ConfigError(f"--out {out}: holds a training of another config (its config.toml differs); choose "
                          "another --out, or remove that directory to start over")


def write_json(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def provenance(seed: int) -> dict[str, Any]:
    from eilab.sim.provenance import git_commit

    versions = {}
    for name in ("eilab", "torch", "numpy", "zarr"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"seed": seed, "versions": versions, "git_commit": git_commit()}


def populations_of(run: Run) -> list[dict[str, Any]]:
    return [{k: p[k] for k in ("name", "type", "n", "gid0")} for p in run.populations.values()]


def cmd_train(args: argparse.Namespace) -> int:
    from eilab.ml.config import load_train_config

    tc, text = load_train_config(args.config)
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: give at least 1 worker process")
    out = Path(args.out) if args.out else Path("runs") / f"train-{Path(args.config).stem}"
    check_out_dir(out, text)
    if tc.task == "surrogate":  # issue 19: the surrogate of a detailed cell
        from eilab.cluster.surrogate_train import train_surrogate

        return train_surrogate(tc, text, out, args.jobs, args.max_epochs, not args.quiet)
    if tc.task == "surrogate_net":  # issue 19: connectivity of a surrogate network by gradient descent
        if tc.hnn is not None:
            from eilab.cluster.surrogate_hnn_train import train_hnn_net

            return train_hnn_net(tc, text, out, args.jobs, not args.quiet)
        from eilab.cluster.surrogate_net_train import train_surrogate_net

        return train_surrogate_net(tc, text, out, args.jobs, not args.quiet)
    plan = run_plan(tc, Path(tc.data.runs_dir) if tc.data.runs_dir else out / "runs")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(text)
    runs = ensure_runs(tc, plan, args.jobs, not args.quiet)
    if tc.task == "ei_ratio":
        from eilab.cluster.classify_cli import classify_and_report

        return classify_and_report(tc, runs, out, args.max_epochs, not args.quiet)
    return train_and_report(tc, {seed: run for (_, seed), run in runs.items()}, out, args.max_epochs, not args.quiet)


def train_and_report(tc: Any, runs: dict[int, Run], out: Path, max_epochs: int | None, progress: bool) -> int:
    import torch

    from eilab.ml.baselines import RidgeAR
    from eilab.ml.data import BlockCache, first_bin, make_splits, open_series
    from eilab.ml.lstm import LSTMNet, LSTMPredictor, make_deterministic, resolve_device, train

    d, s = tc.data, tc.train
    split_seeds = {"train": d.seeds.train, "validation": d.seeds.validation, "test": d.seeds.test}
    order = [seed for seeds in split_seeds.values() for seed in seeds]
    series = open_series([runs[seed] for seed in order], d.bin_ms, d.outputs, BlockCache(d.cache_mib << 20),
                         external=d.external, inputs=d.inputs, sectors=d.sectors)
    n_tr, n_va = len(d.seeds.train), len(d.seeds.validation)
    splits = make_splits(series[:n_tr], series[n_tr : n_tr + n_va], series[n_tr + n_va :], d.k, d.horizon,
                         first_bin(d.skip_ms, d.bin_ms), d.val_fraction)
    norm = splits.train.normaliser()
    n_in, n_out = series[0].n_channels, splits.train.n_out
    meta = {"format": MODEL_FORMAT, "n_in": n_in, "n_out": n_out, "k": d.k, "horizon": d.horizon,
            "bin_ms": d.bin_ms, "outputs": d.outputs, "inputs": d.inputs, "sectors": d.sectors, "external": d.external,
            "skip_ms": d.skip_ms,
            "populations": populations_of(series[0].run), "normaliser": norm.to_json(),
            "model": tc.model.model_dump(), "device": s.device, "rollout_bins": tc.rollout_bins,
            "rollout_windows": d.rollout_windows,
            "runs": {name: [str(runs[x].path) for x in seeds] for name, seeds in split_seeds.items()},
            **provenance(s.seed)}
    make_deterministic(s.seed, s.threads)
    device = resolve_device(s.device)
    if tc.model.kind == "neuron":
        lstm, meta["neuron_normaliser"], history = train_neuron_model(tc, series, splits, norm, out, max_epochs,
                                                                      progress)
    else:
        net = LSTMNet(n_in, n_out, d.horizon, tc.model.hidden, tc.model.layers)
        history = train(net, splits.train, splits.validation, norm, s, out, max_epochs, progress)
        lstm = LSTMPredictor(net, norm, device)
    if len(history) < s.epochs and history_improving(history, s.patience):  # stopped by max_epochs
        print(f"stopped after epoch {len(history)} (--max-epochs); run the same command without it to resume",
              file=sys.stderr)
        return 0
    ridge = RidgeAR.fit(splits.train, splits.validation)
    np.savez(out / "ridge.npz", w=ridge.w)
    meta["ridge_alpha"] = ridge.alpha
    write_json(meta, out / "meta.json")
    predictors = {"lstm": lstm, **baselines(norm, n_out, d.horizon, series[0].summed), "ridge_ar": ridge}
    metrics = evaluate(predictors, splits.items(), tc.rollout_bins, d.rollout_windows, d.bin_ms)
    if tc.ceiling.branches:
        metrics["ceiling"] = test_ceiling(tc, [runs[seed] for seed in d.seeds.test], metrics, progress)
    windows_per_s = float(np.mean([e["windows_per_s"] for e in history])) if history else None
    metrics["training"] = {"history": history, "epochs": len(history), "windows_per_s": windows_per_s,
                           "device": str(device), "torch_threads": torch.get_num_threads()}
    metrics["setup"] = {k: meta[k] for k in ("k", "horizon", "bin_ms", "outputs", "inputs", "sectors", "external",
                                             "skip_ms", "ridge_alpha", "runs", "seed", "versions", "git_commit")}
    write_json(metrics, out / "metrics.json")
    draw_figures(predictors, splits.test, metrics, history, d.bin_ms, out / "figures")
    print(table(metrics, "test"))
    print(f"training directory: {out}")
    return 0


def train_neuron_model(tc: Any, series: list, splits: Any, norm: Any, out: Path, max_epochs: int | None,
                       progress: bool) -> tuple[Any, dict[str, Any], list[dict]]:
    """model.kind = "neuron" (eilab.ml.neuronwise): the predictor, its input normalisation and, with
    model.next_drive, the drive's level probabilities (meta.json's neuron_normaliser) and the training history."""
    from eilab.ml import neuronwise as nw
    from eilab.ml.lstm import resolve_device

    d, s = tc.data, tc.train
    per_neuron = nw.per_neuron(series)
    mean, sd = nw.input_stats(nw.NeuronInputs(d.external), per_neuron, splits.train.segments)
    stats: dict[str, Any] = {"mean": mean.tolist(), "sd": sd.tolist()}
    if tc.model.next_drive:
        try:
            stats["drive_levels"] = nw.drive_levels(per_neuron, splits.train.segments).tolist()
        except ValueError as e:
            raise ConfigError(str(e)) from None
    streamer = nw.make_streamer(tc.model.model_dump(), series[0], d.external, mean, sd, resolve_device(s.device),
                                stats.get("drive_levels"))
    history = nw.train(streamer, per_neuron, splits.train, splits.validation, norm.outputs(splits.train.n_out)[1],
                       tc.model.streams, s, out, max_epochs, progress)
    return nw.NeuronPredictor(streamer), stats, history


def history_improving(history: list[dict], patience: int) -> bool:
    """Whether early stopping would let the training go on after this history."""
    best = int(np.argmin([e["val_loss"] for e in history]))
    return len(history) - 1 - best < patience


def baselines(norm: Any, n_out: int, h: int, summed: np.ndarray | None) -> dict[str, Any]:
    """The constant, persistence and window-mean predictors; `summed`: the inputs' map to the outputs or None."""
    from eilab.ml.baselines import Persistence, TrainMean, WindowMean

    return {"train_mean": TrainMean(norm.outputs(n_out)[0], h), "persistence": Persistence(n_out, h, summed),
            "window_mean": WindowMean(n_out, h, summed)}


def evaluate(predictors: dict[str, Any], splits: list[tuple[str, Any]], rollout_bins: int, rollout_windows: int,
             bin_ms: float, thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    """metrics.json's scores: next bin per split (MFE onsets on the test split, at detection thresholds chosen on
    the validation split unless given), rollouts on the test split where defined (not: NO_ROLLOUT)."""
    from eilab.ml.data import WindowSet
    from eilab.ml.lstm import validation_ids
    from eilab.ml.metrics import mfe_thresholds, next_bin, rollout_mse

    if thresholds is None:
        thresholds = mfe_thresholds(predictors, dict(splits).get("validation"), bin_ms)
    out: dict[str, Any] = {"splits": {name: next_bin(predictors, ws, bin_ms, mfe=thresholds if name == "test" else None)
                                      for name, ws in splits}, "mfe_thresholds": thresholds}
    test = dict(splits)["test"]
    if test.summed is not None:
        out["rollout"] = {"bin_ms": bin_ms, "windows": 0, "mse": {}, "not_defined": NO_ROLLOUT}
        return out
    long = WindowSet(test.series, test.segments, test.k, rollout_bins)
    ids = validation_ids(len(long), rollout_windows)
    out["rollout"] = {"bin_ms": bin_ms, "windows": len(ids), "mse": rollout_mse(predictors, long, ids)}
    return out


def load_predictor(model_dir: Path, meta: dict, like: Any) -> Any:
    """The trained LSTM of a training directory (either kind) as a predictor of series like `like`, on the
    training's device setting, one thread."""
    import torch

    from eilab.ml.data import Normaliser
    from eilab.ml.lstm import WEIGHTS, LSTMPredictor, load_net, resolve_device
    from eilab.ml.neuronwise import NeuronPredictor, make_streamer

    device = resolve_device(meta["device"])
    torch.set_num_threads(1)
    if meta["model"].get("kind") == "neuron":
        stats = meta["neuron_normaliser"]
        streamer = make_streamer(meta["model"], like, meta.get("external", False), np.asarray(stats["mean"]),
                                 np.asarray(stats["sd"]), device, stats.get("drive_levels"))
        streamer.net.load_state_dict(torch.load(model_dir / WEIGHTS, map_location=device, weights_only=True))
        return NeuronPredictor(streamer)
    net = load_net(model_dir, meta["n_in"], meta["n_out"], meta["horizon"], meta["model"]["hidden"],
                   meta["model"]["layers"], device)
    return LSTMPredictor(net, Normaliser.from_json(meta["normaliser"]), device)


def test_ceiling(tc: Any, test_runs: list[Run], metrics: dict, progress: bool) -> dict[str, Any]:
    """metrics.json's `ceiling` on the held-out runs (eilab.ml.ceiling; branch points where windows' targets
    start), with the fraction of the room between ridge AR and the ceiling that the LSTM closes: next bin,
    and rollout at the ceiling's last step."""
    from eilab.ml.ceiling import ceiling, room_closed
    from eilab.ml.data import first_bin

    d, h = tc.data, tc.ceiling_bins
    t0 = time.perf_counter()
    c = ceiling(test_runs, d.bin_ms, d.outputs, first_bin(d.skip_ms, d.bin_ms) + d.k, h, tc.ceiling.branches,
                tc.ceiling.seeds, progress).to_json()
    test, roll = metrics["splits"]["test"], metrics["rollout"]["mse"]
    c["horizon_ms"] = h * d.bin_ms
    c["lstm_room_closed"] = {"next_bin": room_closed(test["lstm"]["mse"], test["ridge_ar"]["mse"], c["mse"]),
                             "rollout": room_closed(roll["lstm"][h - 1], roll["ridge_ar"][h - 1],
                                                    c["rollout_mse"][h - 1]) if roll else None}
    c["seconds"] = time.perf_counter() - t0
    return c


def draw_figures(predictors: dict[str, Any], test: Any, metrics: dict, history: list[dict], bin_ms: float,
                 folder: Path) -> None:
    from eilab.ml.figures import curves_figure, rollout_figure, sums_figure
    from eilab.ml.metrics import predictions, type_sums

    folder.mkdir(exist_ok=True)
    ids = np.arange(min(FIGURE_BINS, int(test.offsets[1])))
    x, y = test.batch(ids)
    shown = {name: type_sums(predictions(predictors[name], test, ids, x)[:, 0], test) for name in ("lstm", "ridge_ar")}
    sums_figure(type_sums(y[:, 0], test), shown, bin_ms, folder / "sums.png")
    if metrics["rollout"]["mse"]:
        rollout_figure(metrics["rollout"]["mse"], bin_ms, folder / "rollout.png")
    if history:
        curves_figure(history, folder / "curves.png")


def table(metrics: dict, split: str) -> str:
    """The predictors' scores on one split: next-bin MSE, last rollout step MSE, accuracy, MFE onsets; on the
    test split with a ceiling, also the rollout MSE at the ceiling's last step, the ceiling's row and the room
    between ridge AR and the ceiling that the LSTM closes."""
    ceil = metrics.get("ceiling") if split == "test" else None
    at, w = (f"@{ceil['horizon_ms']:g} ms", 11) if ceil else ("", 0)
    rows = [f"{'predictor':<13}{'next-bin MSE':>14}{'rollout MSE':>13}{at:>{w}}{'accuracy':>10}{'MFE P':>8}"
            f"{'MFE R':>8}"]
    scores = metrics["splits"][split]
    rollout = metrics.get("rollout", {}).get("mse", {})
    for name, sc in scores.items():
        if name == "all_zeros":
            continue
        mfe = sc.get("mfe_onsets", {})
        last = f"{rollout[name][-1]:.4g}" if name in rollout else "-"
        mid = (f"{rollout[name][len(ceil['rollout_mse']) - 1]:.4g}" if name in rollout else "-") if ceil else ""
        rows.append(f"{name:<13}{sc['mse']:>14.4g}{last:>13}{mid:>{w}}{sc['accuracy']:>10.3f}"
                    f"{fmt(mfe.get('precision')):>8}{fmt(mfe.get('recall')):>8}")
    rows.append(f"{'all_zeros':<13}{'':>14}{'':>13}{'':>{w}}{scores['all_zeros']['accuracy']:>10.3f}")
    if ceil:
        closed = ceil["lstm_room_closed"]
        rows.append(f"{'ceiling':<13}{ceil['mse']:>14.4g}{'-':>13}{ceil['rollout_mse'][-1]:>11.4g}   "
                    f"({ceil['branches']} branch points x {ceil['seeds']} drive seeds)")
        rows.append(f"LSTM closes {pct(closed['next_bin'])} of the room between ridge AR and the ceiling (next bin), "
                    f"{pct(closed['rollout']) if rollout else '- (no rollouts)'} {at}")
    return f"{split} split (counts per bin):\n" + "\n".join(rows)


def pct(x: float | None) -> str:
    return "- (no room)" if x is None else f"{100 * x:.1f} %"


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


# ---------------------------------------------------------------- predict
def read_meta(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ConfigError(f"{model_dir}: not a finished training directory (no readable meta.json); train one with "
                          "eilab train CONFIG --out DIR") from None
    if meta.get("format") not in (MODEL_FORMAT, CLASSIFIER_FORMAT):
        raise ConfigError(f"{path}: unknown model format {meta.get('format')!r} (expected {MODEL_FORMAT} or "
                          f"{CLASSIFIER_FORMAT})")
    return meta


def check_shape(meta: dict[str, Any], run: Run) -> None:
    """ConfigError unless the run's populations (names, types, sizes) are those the model was trained on."""
    got, want = populations_of(run), meta["populations"]
    if got != want:
        def says(pops: list[dict]) -> str:
            return ", ".join(f"{p['name']} ({p['type']}, {p['n']})" for p in pops)

        raise ConfigError(f"{run.path}: populations {says(got)} do not match the model's {says(want)}; apply the "
                          "model to runs of the network it was trained on")


def cmd_predict(args: argparse.Namespace) -> int:
    model_dir, run_dir = Path(args.model_dir), Path(args.run_dir)
    meta = read_meta(model_dir)
    from eilab.sim.reader import open_run

    try:
        run = open_run(run_dir)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from None
    check_shape(meta, run)
    if args.ceiling < 0 or (args.ceiling and meta["format"] == CLASSIFIER_FORMAT):
        raise ConfigError(f"--ceiling {args.ceiling}: give a positive number of branch points, for a predictor "
                          "of counts (not the E/I-ratio classifier)")
    if meta["format"] == CLASSIFIER_FORMAT:
        from eilab.cluster.classify_cli import predict_classifier

        return predict_classifier(meta, model_dir, run, args.out)
    from eilab.ml.data import Normaliser, Segment, WindowSet, first_bin, open_series

    series = open_series([run], meta["bin_ms"], meta["outputs"], external=meta.get("external", False),
                         inputs=meta.get("inputs", "outputs"), sectors=meta.get("sectors", 10))
    ws = WindowSet(series, [Segment(0, first_bin(meta["skip_ms"], meta["bin_ms"]), series[0].n_bins)], meta["k"],
                   meta["horizon"])
    if len(ws) == 0:
        raise ConfigError(f"{run_dir}: too short for one window of {meta['k']} + {meta['horizon']} bins after "
                          f"{meta['skip_ms']} ms")
    from eilab.ml.baselines import RidgeAR

    norm = Normaliser.from_json(meta["normaliser"])
    lstm = load_predictor(model_dir, meta, series[0])
    ridge = RidgeAR(np.load(model_dir / "ridge.npz")["w"], meta["horizon"], meta["n_out"], meta["ridge_alpha"])
    predictors = {"lstm": lstm, **baselines(norm, meta["n_out"], meta["horizon"], series[0].summed),
                  "ridge_ar": ridge}
    trained = model_dir / "metrics.json"  # the MFE thresholds chosen on the training's validation split
    thresholds = json.loads(trained.read_text()).get("mfe_thresholds", {}) if trained.exists() else {}
    metrics = evaluate(predictors, [("test", ws)], meta["rollout_bins"], meta["rollout_windows"], meta["bin_ms"],
                       thresholds)
    if args.ceiling:
        from eilab.ml.config import load_train_config

        tc, _ = load_train_config(model_dir / "config.toml")
        tc.ceiling.branches = args.ceiling
        metrics["ceiling"] = test_ceiling(tc, [run], metrics, progress=False)
    metrics["run"] = str(run.path)
    out = Path(args.out) if args.out else model_dir / "predictions" / f"{run.path.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(metrics, out)
    print(table(metrics, "test"))
    print(f"metrics written to {out}")
    return 0
