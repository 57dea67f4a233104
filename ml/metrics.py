"""Scores of predictors on windows (issue 22, point 7), all in counts per bin.

- next-bin MSE per output (the first target bin of every window);
- rollouts: from a window's k inputs, predict one bin, append it to the inputs, drop the oldest, and
  repeat; MSE per horizon step (mean over outputs). Only the predicted channels are fed back: external
  input channels (data.external) of the appended bins are the true future drive;
- MFE onsets: the MFE detector of `eilab.analysis.mfe` (mean + 3 sd threshold, gaps of one bin merged)
  on the one-step predicted and on the true E and I sums of every held-out run, with the true series'
  threshold for both; precision = predicted onsets with a true onset within `tol_ms` (2 ms), recall =
  true onsets with a predicted onset within `tol_ms`;
- "accuracy": the fraction of output-bins where the rounded prediction equals the count, beside the
  accuracy of predicting 0 everywhere (the fraction of zero counts), its natural floor for sparse spikes.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from eilab.analysis.mfe import detect_counts, threshold
from eilab.ml.baselines import Predictor
from eilab.ml.data import TYPES, WindowSet

MFE_TOL_MS = 2.0


def type_sums(values: np.ndarray, windows: WindowSet) -> np.ndarray:
    """E and I sums (bins, 2) of output values (bins, n_out): the outputs themselves when they are sums."""
    series = windows.series[0]
    if series.outputs == "sums":
        return values
    return np.stack([values[:, series.type_of == t].sum(axis=1) for t in range(len(TYPES))], axis=1)


def rollout(predictor: Predictor, x: np.ndarray, steps: int, external: np.ndarray | None = None) -> np.ndarray:
    """Predictions (B, steps, n_out) fed back one bin at a time into the inputs x (B, k, channels); the
    channels after n_out of each appended bin come from `external` (B, >= steps, channels - n_out), the
    true future input."""
    out = []
    for i in range(steps):
        nxt = predictor.predict(x)[:, :1]
        out.append(nxt)
        fed = nxt.astype(x.dtype) if external is None else np.concatenate(
            [nxt.astype(x.dtype), external[:, i : i + 1].astype(x.dtype)], axis=2)
        x = np.concatenate([x[:, 1:], fed], axis=1)
    return np.concatenate(out, axis=1)


def rollout_mse(predictors: dict[str, Predictor], windows: WindowSet, ids: np.ndarray,
                batch: int = 256) -> dict[str, list[float]]:
    """MSE per horizon step (1 .. windows.h bins ahead) of each predictor's rollout, over windows `ids`."""
    sums = {name: np.zeros(windows.h) for name in predictors}
    k, n_out = windows.k, windows.n_out
    for a in range(0, len(ids), batch):
        w = windows.full(ids[a : a + batch])
        x, y, ext = w[:, :k], w[:, k:, :n_out], w[:, k:, n_out:]
        for name, p in predictors.items():
            sums[name] += ((rollout(p, x, windows.h, ext if ext.shape[2] else None) - y) ** 2).sum(axis=(0, 2))
    n = max(1, len(ids) * windows.n_out)
    return {name: (s / n).tolist() for name, s in sums.items()}


def onsets_ms(e: np.ndarray, i: np.ndarray, bin_ms: float, theta: float) -> np.ndarray:
    events, _ = detect_counts(e[:, None], i[:, None], bin_ms, 0.0, len(e) * bin_ms, theta=theta)
    return np.array([ev.onset_ms for ev in events])


def matched(a: np.ndarray, b: np.ndarray, tol_ms: float) -> int:
    """How many of the times a have a time of b within tol_ms."""
    return int(sum(np.any(np.abs(b - t) <= tol_ms + 1e-9) for t in a))


def onset_scores(pred: np.ndarray, true: np.ndarray, bin_ms: float, tol_ms: float = MFE_TOL_MS) -> dict[str, float]:
    """Onset matches of predicted against true E/I sums (bins, 2) of one run (module docstring)."""
    th = threshold(true.sum(axis=1), None, 3.0)
    p, t = onsets_ms(pred[:, 0], pred[:, 1], bin_ms, th), onsets_ms(true[:, 0], true[:, 1], bin_ms, th)
    return {"predicted": len(p), "true": len(t), "precise": matched(p, t, tol_ms), "recalled": matched(t, p, tol_ms)}


def next_bin(predictors: dict[str, Predictor], windows: WindowSet, bin_ms: float, mfe: bool,
             batch: int = 1024) -> dict[str, dict]:
    """Per predictor: next-bin MSE (mean and per output), accuracy; with `mfe`, onset precision and recall
    over the segments' one-step predicted E/I sums. "all_zeros" holds the accuracy of predicting 0."""
    n_out = windows.n_out
    sq = {name: np.zeros(n_out) for name in predictors}
    hits = dict.fromkeys(predictors, 0)
    zeros, n = 0, 0
    series: dict[str, list[np.ndarray]] = {name: [] for name in [*predictors, "truth"]}
    for x, y in windows.batches(batch):
        y0 = y[:, 0]
        for name, p in predictors.items():
            pr = p.predict(x)[:, 0]
            sq[name] += ((pr - y0) ** 2).sum(axis=0)
            hits[name] += int((np.rint(pr) == y0).sum())
            if mfe:
                series[name].append(type_sums(pr, windows))
        if mfe:
            series["truth"].append(type_sums(y0, windows))
        zeros += int((y0 == 0).sum())
        n += len(y0)
    out: dict[str, dict] = {name: {"mse": float(sq[name].sum() / max(1, n * n_out)),
                                   "mse_per_output": (sq[name] / max(1, n)).tolist(),
                                   "accuracy": hits[name] / max(1, n * n_out)} for name in predictors}
    out["all_zeros"] = {"accuracy": zeros / max(1, n * n_out)}
    if mfe and n:
        for name in predictors:
            out[name]["mfe_onsets"] = mfe_scores(series[name], series["truth"], windows, bin_ms)
    return out


def mfe_scores(pred: list[np.ndarray], true: list[np.ndarray], windows: WindowSet,
               bin_ms: float) -> dict[str, float | None]:
    """Onset precision and recall summed over the segments (each a run, detected on its own); None
    where nothing was predicted (precision) or nothing happened (recall)."""
    p, t = np.concatenate(pred), np.concatenate(true)
    edges = windows.offsets
    total = {"predicted": 0, "true": 0, "precise": 0, "recalled": 0}
    for a, b in pairwise(edges):
        for key, v in onset_scores(p[a:b], t[a:b], bin_ms).items():
            total[key] += v
    return {**total, "precision": total["precise"] / total["predicted"] if total["predicted"] else None,
            "recall": total["recalled"] / total["true"] if total["true"] else None}
