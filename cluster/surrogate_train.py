"""`eilab train` for `task = "surrogate"` (issue 19): generate the detailed cell's trials (resumable, chunk by
chunk, in worker processes), train the TCN-LSTM surrogate beside a ridge filter baseline, and score both on
held-out input. The training directory holds:

  config.toml    the training config as given
  meta.json      scaling (training split), spike threshold and ridge penalty (validation split), seed, versions
  model.pt       the surrogate's best weights; checkpoint.pt the last epoch's state (resume); ridge.npz
  metrics.json   per split (validation, test) and predictor: spike precision/recall within 2 ms, coincidence
                 factor, subthreshold V RMSE; the f-I curve and single/paired input-spike responses against
                 the detailed cell; training history
  figures/       traces.png (V, surrogate against detailed), fi.png, curves.png
  runs/          the trials (one trials.zarr per chunk)
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np

from eilab.cluster.surrogate_gen import CellInput, generate, random_cells
from eilab.cluster.train import history_improving, provenance, write_json
from eilab.ml.surrogate_data import SurrogateConfig, Trials
from eilab.sim.config import ConfigError

MODEL_FORMAT = "eilab-surrogate/1"
TOL_MS = 2.0
PSP_TIMES_MS = (100.0, 200.0, 300.0, 400.0, 500.0)
PSP_WINDOW_MS = 5.0
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
FI_BLOCKS = 10
"""Blocks of the f-I trial whose rates give the standard error of the detailed cell's rate."""


def plan(tc: SurrogateConfig, runs: Path) -> dict[str, list[tuple]]:
    """The chunks to generate, by split: random trials per seed; the f-I and input-spike protocols (test)."""
    d = tc.data
    ranges = (d.rate_e_hz, d.w_e_pa, d.rate_i_hz, d.w_i_pa)

    def chunk(name: str, cells: list[CellInput], t_ms: float, seed: int) -> tuple:
        return (str(runs / name), cells, d.k_e, d.k_i, t_ms, d.dt_ms, seed)

    jobs = {split: [chunk(f"chunk-seed{s}", random_cells(d.cells_per_chunk, s, *ranges), d.t_ms, s) for s in seeds]
            for split, seeds in (("train", d.seeds.train), ("validation", d.seeds.validation),
                                 ("test", d.seeds.test))}
    seed = d.seeds.test[0]
    fi = [CellInput(r, d.fi_w_e_pa, d.fi_rate_i_hz, d.fi_w_i_pa) for r in d.fi_rates_hz]
    jobs["fi"] = [chunk(f"fi-seed{seed}", fi, d.fi_t_ms, seed)]
    w = d.psp_total_pa / d.k_e
    psp = [CellInput(0.0, w, 0.0, 0.0, tuple(sorted({t + gap for t in PSP_TIMES_MS for gap in (0.0, interval)})))
           for interval in [0.0, *d.psp_intervals_ms]]
    jobs["psp"] = [chunk(f"psp-seed{seed}", psp, PSP_TIMES_MS[-1] + 100.0, seed)]
    return jobs


def require_extras(cell: str = "hh") -> None:
    """ConfigError naming the extra to install when torch (ml), matplotlib (analysis) or, for an hnn-core cell,
    hnn-core and NEURON (detailed) are missing."""
    if cell != "hh":
        from eilab.ml.surrogate_hnn import require_hnn

        require_hnn(f"eilab train with cell = \"{cell}\"")
    for module, extra in (("torch", "ml"), ("matplotlib", "analysis")):
        try:
            __import__(module)
        except ImportError:
            raise ConfigError(f"eilab train with task = \"surrogate\" needs {module}: install the {extra} extra "
                              f"(pip install 'eilab[{extra}]')") from None


def train_surrogate(tc: SurrogateConfig, text: str, out: Path, jobs: int, max_epochs: int | None,
                    progress: bool) -> int:
    """Generate, train, score and write the training directory `out` (config.toml: `text`)."""
    require_extras(tc.data.cell)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(text)
    import torch

    from eilab.ml.figures import curves_figure
    from eilab.ml.lstm import make_deterministic
    from eilab.ml.surrogate import RidgeFilter, SurrogateNet, predict, train
    from eilab.ml.surrogate_data import Scaling, binned, binned_dendrites, open_trials, segments

    d, s = tc.data, tc.train
    chunks = plan(tc, Path(d.runs_dir) if d.runs_dir else out / "runs")
    stores = dict(zip(chunks, _split(generate([j for js in chunks.values() for j in js], jobs, d.cell, d.dendrites),
                                     [len(js) for js in chunks.values()]), strict=True))
    print(f"trials: {sum(len(v) for v in stores.values())} chunks ready", file=sys.stderr)
    # dendritic V: a target of the training and validation losses only
    trials = {name: open_trials(paths, d.dendrites and name in ("train", "validation"))
              for name, paths in stores.items()}
    bins = {name: binned(tr, d.bin_ms) for name, tr in trials.items()}
    dend = {name: binned_dendrites(tr, d.bin_ms) for name, tr in trials.items()}
    scaling = Scaling.fit(bins["train"][0], bins["train"][1], d.v_clip_mv, dend["train"])
    seqs = {name: _sequences(b, scaling, dend[name]) for name, b in bins.items()}
    first, length = round(d.skip_ms / d.bin_ms), round(d.segment_ms / d.bin_ms)
    warm = round(d.warmup_ms / d.bin_ms)
    seg = {name: segments(len(q.x), q.x.shape[1], length, first) for name, q in seqs.items()}
    make_deterministic(s.seed, s.threads)
    n_dendrites = 0 if dend["train"] is None else dend["train"].shape[2]
    net = SurrogateNet(trials["train"].input.shape[2], tc.model, n_dendrites)
    history = train(net, seqs["train"], seg["train"], seqs["validation"], seg["validation"], length, warm, tc.model,
                    s, out, max_epochs, progress)
    if len(history) < s.epochs and history_improving(history, s.patience):  # stopped by max_epochs
        print(f"stopped after epoch {len(history)} (--max-epochs); run the same command without it to resume",
              file=sys.stderr)
        return 0
    lags = 1 + (tc.model.kernel - 1) * sum(tc.model.dilations)
    ridge = RidgeFilter.fit(seqs["train"], seqs["validation"], lags, first)
    np.savez(out / "ridge.npz", w=ridge.w)
    outputs = {"surrogate": {k: predict(net, q.x) for k, q in seqs.items() if k != "train"},
               "ridge": {k: ridge.predict(q.x) for k, q in seqs.items() if k != "train"}}
    thresholds = {name: _best_threshold(o["validation"][1], trials["validation"], d.bin_ms, first)
                  for name, o in outputs.items()}
    metrics: dict[str, Any] = {"tolerance_ms": TOL_MS, "thresholds": thresholds, "splits": {}}
    for split in ("validation", "test"):
        metrics["splits"][split] = {name: scores(o[split], thresholds[name], trials[split], bins[split], scaling,
                                                 d.bin_ms, first) for name, o in outputs.items()}
    metrics["fi"] = fi_curve(outputs, thresholds, trials["fi"], d, first)
    metrics["psp"] = psp_responses(outputs, trials["psp"], bins["psp"][1], scaling, d)
    metrics["training"] = {"history": history, "epochs": len(history), "torch_threads": torch.get_num_threads()}
    meta = {"format": MODEL_FORMAT, "cell": d.cell, "n_in": trials["train"].input.shape[2],
            "n_dendrites": n_dendrites, "bin_ms": d.bin_ms,
            "scaling": scaling.to_json(),
            "model": tc.model.model_dump(), "thresholds": thresholds, "ridge_alpha": ridge.alpha,
            "ridge_lags": lags, "chunks": stores, **provenance(s.seed)}
    write_json(meta, out / "meta.json")
    metrics["setup"] = {k: meta[k] for k in ("bin_ms", "ridge_alpha", "ridge_lags", "seed", "versions", "git_commit")}
    write_json(metrics, out / "metrics.json")
    (out / "figures").mkdir(exist_ok=True)
    traces_figure(trials["test"], outputs, thresholds, scaling, d.bin_ms, d.cell, out / "figures" / "traces.png")
    fi_figure(metrics["fi"], d.cell, out / "figures" / "fi.png")
    if history:
        curves_figure(history, out / "figures" / "curves.png")
    print(table(metrics))
    print(f"training directory: {out}")
    return 0


def _split(items: list[str], sizes: list[int]) -> list[list[str]]:
    edges = np.cumsum([0, *sizes])
    return [items[a:b] for a, b in itertools.pairwise(edges)]


def _sequences(b: tuple[np.ndarray, np.ndarray, np.ndarray], scaling: Any, dendrites: np.ndarray | None) -> Any:
    from eilab.ml.surrogate import Sequences

    return Sequences(scaling.inputs(b[0]), scaling.target(b[1]), b[2], scaling.dendrites(dendrites))


def predicted_spikes(prob: np.ndarray, threshold: float, bin_ms: float, first: int) -> list[np.ndarray]:
    """Per cell the predicted spike times (ms) from bin `first` on."""
    from eilab.ml.surrogate_metrics import spike_times

    return [t[t >= first * bin_ms] for t in (spike_times(p, threshold, bin_ms) for p in prob)]


def true_spikes(tr: Trials, bin_ms: float, first: int) -> list[np.ndarray]:
    return [t[t >= first * bin_ms] for t in tr.spikes]


def _best_threshold(prob: np.ndarray, tr: Trials, bin_ms: float, first: int) -> float:
    """The spike threshold with the best F1 (precision and recall within TOL_MS) on the validation split."""
    from eilab.ml.surrogate_metrics import precision_recall

    truth = true_spikes(tr, bin_ms, first)
    f1 = [precision_recall(predicted_spikes(prob, th, bin_ms, first), truth, TOL_MS)["f1"] for th in THRESHOLDS]
    return float(THRESHOLDS[int(np.argmax(f1))])


def scores(out: tuple[np.ndarray, np.ndarray], threshold: float, tr: Trials, b: tuple, scaling: Any, bin_ms: float,
           first: int) -> dict[str, Any]:
    """Spike precision/recall within TOL_MS, mean coincidence factor over cells with spikes, subthreshold V RMSE."""
    from eilab.ml.surrogate_metrics import coincidence_factor, precision_recall, subthreshold_rmse

    pred, truth = predicted_spikes(out[1], threshold, bin_ms, first), true_spikes(tr, bin_ms, first)
    duration = tr.t_ms - first * bin_ms
    gammas = [coincidence_factor(p, t, TOL_MS, duration) for p, t in zip(pred, truth, strict=True) if len(t)]
    v_true, s_true = b[1][:, first:], b[2][:, first:]
    v_pred = scaling.volts(out[0][:, first:])
    rmse = subthreshold_rmse(v_pred.ravel(), v_true.ravel(), s_true.ravel(), scaling.v_clip, round(2.0 / bin_ms),
                             round(10.0 / bin_ms))
    return {**precision_recall(pred, truth, TOL_MS), "coincidence_factor": float(np.mean(gammas)) if gammas else None,
            "v_rmse_subthreshold_mv": rmse, "cells": len(truth)}


def fi_curve(outputs: dict, thresholds: dict, tr: Trials, d: Any, first: int) -> dict[str, Any]:
    """Output rate (Hz) against the E rate per synapse: the detailed cell (with the standard error of its rate
    from FI_BLOCKS blocks of the trial, a check that the protocol is long enough) and every predictor (its
    relative error per point, null where the detailed cell is silent; the summary of fi_error)."""
    from eilab.ml.surrogate_metrics import block_rate_sem, fi_error, relative_errors

    t0 = first * d.bin_ms
    seconds = (tr.t_ms - t0) / 1000.0
    truth = true_spikes(tr, d.bin_ms, first)
    true = np.array([len(t) for t in truth]) / seconds
    out: dict[str, Any] = {"rate_e_hz": d.fi_rates_hz, "detailed_hz": true.tolist(),
                           "detailed_sem_hz": [block_rate_sem(t, t0, tr.t_ms, FI_BLOCKS) for t in truth]}
    for name, o in outputs.items():
        rate = np.array([len(t) for t in predicted_spikes(o["fi"][1], thresholds[name], d.bin_ms, first)]) / seconds
        rel = [None if np.isnan(e) else float(e) for e in relative_errors(rate, true)]
        out[name] = {"rate_hz": rate.tolist(), "rel_error": rel, **fi_error(rate, true)}
    return out


def psp_responses(outputs: dict, tr: Trials, v_true: np.ndarray, scaling: Any, d: Any) -> dict[str, Any]:
    """Peak depolarisation (mV above V before the first volley) within PSP_WINDOW_MS of the last volley of a single
    input or a pair (temporal summation), mean over repeats: the detailed cell and every predictor."""
    from eilab.ml.surrogate_data import bin_steps
    from eilab.ml.surrogate_metrics import peak_depolarisation

    g = bin_steps(d.bin_ms, d.dt_ms)
    onsets = np.array([(round(t / d.dt_ms) + 1) // g for t in PSP_TIMES_MS])  # relays fire, arrive a step later
    delays = [0, *(round(x / d.bin_ms) for x in d.psp_intervals_ms)]
    length = round(PSP_WINDOW_MS / d.bin_ms)

    def peaks(v: np.ndarray) -> list[float]:
        return [float(peak_depolarisation(vc, onsets, delay, length).mean()) for vc, delay in zip(v, delays,
                                                                                                strict=True)]

    out: dict[str, Any] = {"labels": ["single", *[f"pair {x:g} ms" for x in d.psp_intervals_ms]],
                           "detailed_mv": peaks(v_true)}
    for name, o in outputs.items():
        got = peaks(scaling.volts(o["psp"][0]))
        rel = np.abs(np.array(got) - out["detailed_mv"]) / np.abs(out["detailed_mv"])
        out[name] = {"peak_mv": got, "max_rel": float(rel.max())}
    return out


def traces_figure(tr: Trials, outputs: dict, thresholds: dict, scaling: Any, bin_ms: float, cell: str,
                  path: Path) -> None:
    """V of three test cells (the median, upper-quartile and highest spike counts) over 500 ms: detailed (full
    step) against the predictors (clipped, per bin), and the spikes of each as ticks above the traces."""
    from matplotlib.figure import Figure

    from eilab.ml.surrogate_metrics import spike_times

    fig = Figure(figsize=(10, 7), layout="constrained")
    by_count = np.argsort([len(t) for t in tr.spikes])
    for row, q in enumerate((0.5, 0.75, 1.0)):
        c = by_count[min(len(by_count) - 1, int(q * len(by_count)))]
        ax = fig.add_subplot(3, 1, row + 1)
        n = min(round(500.0 / tr.dt_ms), tr.v.shape[1])
        ax.plot(np.arange(n) * tr.dt_ms, tr.v[c, :n], color="k", lw=0.8, label=f"detailed {cell}")
        t_end = n * tr.dt_ms
        ax.plot(tr.spikes[c][tr.spikes[c] < t_end], np.full(np.sum(tr.spikes[c] < t_end), 60.0), "k|", ms=8)
        nb = round(t_end / bin_ms)
        for k, (name, o) in enumerate(outputs.items()):
            line, = ax.plot(np.arange(nb) * bin_ms, scaling.volts(o["test"][0][c, :nb]), lw=0.8, label=name)
            t = spike_times(o["test"][1][c, :nb], thresholds[name], bin_ms)
            ax.plot(t, np.full(t.size, 70.0 + 10.0 * k), "|", color=line.get_color(), ms=8)
        ax.set_ylabel("V (mV)")
        ax.set_title(f"test cell {c}: {len(tr.spikes[c])} spikes; ticks: spikes (detailed at 60 mV)", fontsize=8)
        ax.legend(loc="upper right", fontsize=7)
    ax.set_xlabel("time (ms)")
    fig.savefig(path, dpi=110)


def fi_figure(fi: dict, cell: str, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(fi["rate_e_hz"], fi["detailed_hz"], "k-o", label=f"detailed {cell}")
    for name in ("surrogate", "ridge"):
        ax.plot(fi["rate_e_hz"], fi[name]["rate_hz"], "-o", label=name)
    ax.set(xlabel="E input rate per synapse (Hz)", ylabel="output rate (Hz)", title="f-I curve (held out)")
    ax.legend()
    fig.savefig(path, dpi=110)


def table(metrics: dict) -> str:
    rows = [f"{'predictor':<11}{'P':>7}{'R':>7}{'Gamma':>8}{'V RMSE':>9}{'f-I max rel':>13}{'PSP max rel':>13}"]
    for name, sc in metrics["splits"]["test"].items():
        gamma = sc["coincidence_factor"]
        rows.append(f"{name:<11}{sc['precision']:>7.3f}{sc['recall']:>7.3f}{gamma if gamma is not None else 0:>8.3f}"
                    f"{sc['v_rmse_subthreshold_mv']:>9.3f}{metrics['fi'][name]['max_rel']:>13.3f}"
                    f"{metrics['psp'][name]['max_rel']:>13.3f}")
    fi, names = metrics["fi"], list(metrics["splits"]["test"])
    rows.append(f"f-I, Hz: {'E rate':>8}{'detailed':>10}{'+-sem':>7}" + "".join(f"{n:>11}" for n in names))
    for k, rate in enumerate(fi["rate_e_hz"]):
        rows.append(f"{'':<9}{rate:>8.1f}{fi['detailed_hz'][k]:>10.2f}{fi['detailed_sem_hz'][k]:>7.2f}"
                    + "".join(f"{fi[n]['rate_hz'][k]:>11.2f}" for n in names))
    return f"test split (spikes within {TOL_MS:g} ms, V RMSE in mV below the clip):\n" + "\n".join(rows)
