"""Scores of predictors on windows (issue 22, point 7), all in counts per bin.

- next-bin MSE per output (the first target bin of every window);
- rollouts: from a window's k inputs, predict one bin, append it to the inputs, drop the oldest, and
  repeat; MSE per horizon step (mean over outputs). Only the predicted channels are fed back: external
  input channels (data.external) of the appended bins are the true future drive;
- MFE onsets: the MFE detector of `eilab.analysis.mfe` (gaps of one bin merged) on the true E and I sums of
  every held-out run, with its own threshold (mean + 3 sd of that run's E + I sum), and on each predictor's
  one-step predicted sums with a threshold chosen per predictor on the validation split, never the test
  split (`mfe_thresholds`: of 100 levels, the quantiles 0.5 .. 0.999 of the predictor's validation E + I
  sum, the one with the best onset F1 against the validation runs' true onsets). A one-step prediction is a
  smoothed conditional mean: it rarely reaches the true series' threshold (with it, LSTM and ridge AR found
  no onset on ring600), so scoring it there would measure its scale, not its timing. precision = predicted
  onsets with a true onset within `tol_ms` (2 ms), recall = true onsets with a predicted onset within
  `tol_ms`. Within 2 ms either way, a copy of the truth one bin late (persistence) scores 1 and 1 at 1 ms
  bins: it reacts, it does not predict. `no_lag` therefore repeats the scores counting a predicted onset
  only up to `tol_ms` before its true onset or at it, never after;
- "accuracy": the fraction of output-bins where the rounded prediction equals the count, beside the
  accuracy of predicting 0 everywhere (the fraction of zero counts), its natural floor for sparse spikes.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from typing import Any

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
            pred = p.rollout_windows(windows, ids[a : a + batch]) if hasattr(p, "rollout_windows") else \
                rollout(p, x, windows.h, ext if ext.shape[2] else None)  # a predictor that reads its runs itself
            sums[name] += ((pred - y) ** 2).sum(axis=(0, 2))
    n = max(1, len(ids) * windows.n_out)
    return {name: (s / n).tolist() for name, s in sums.items()}


def onsets_ms(e: np.ndarray, i: np.ndarray, bin_ms: float, theta: float) -> np.ndarray:
    events, _ = detect_counts(e[:, None], i[:, None], bin_ms, 0.0, len(e) * bin_ms, theta=theta)
    return np.array([ev.onset_ms for ev in events])


def matched(a: np.ndarray, b: np.ndarray, lo_ms: float, hi_ms: float) -> int:
    """How many of the times a have a time of b in [a + lo_ms, a + hi_ms]."""
    return int(sum(np.any((b - t >= lo_ms - 1e-9) & (b - t <= hi_ms + 1e-9)) for t in a))


def onset_scores(pred: np.ndarray, true: np.ndarray, bin_ms: float, tol_ms: float = MFE_TOL_MS,
                 theta: float | None = None, no_lag: bool = False) -> dict[str, float]:
    """Onset matches of predicted against true E/I sums (bins, 2) of one run: true onsets at the true series'
    threshold, predicted ones at `theta` (counts per bin of the predicted E + I sum; None: the true series'
    threshold); a match lies within tol_ms either way, or with `no_lag` up to tol_ms before, never after."""
    th = threshold(true.sum(axis=1), None, 3.0)
    p = onsets_ms(pred[:, 0], pred[:, 1], bin_ms, th if theta is None else theta)
    t = onsets_ms(true[:, 0], true[:, 1], bin_ms, th)
    late = 0.0 if no_lag else tol_ms
    return {"predicted": len(p), "true": len(t), "precise": matched(p, t, -late, tol_ms),
            "recalled": matched(t, p, -tol_ms, late)}


def predictions(p: Predictor, windows: WindowSet, ids: np.ndarray, x: np.ndarray) -> np.ndarray:
    """p's predictions (B, h, n_out) of windows `ids` with inputs x; a streaming predictor (one with
    `predict_windows`, eilab.ml.neuronwise) reads the windows' runs itself."""
    return p.predict_windows(windows, ids) if hasattr(p, "predict_windows") else p.predict(x)


def id_batches(windows: WindowSet, size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(ids, inputs, targets) of consecutive groups of `size` windows, in order."""
    for a in range(0, len(windows), size):
        ids = np.arange(a, min(len(windows), a + size))
        yield ids, *windows.batch(ids)


def one_step_sums(predictors: dict[str, Predictor], windows: WindowSet,
                  batch: int = 1024) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each predictor's one-step predicted E/I sums (windows, 2) of every window in order, and the true ones."""
    pred: dict[str, list[np.ndarray]] = {name: [] for name in predictors}
    true = []
    for ids, x, y in id_batches(windows, batch):
        for name, p in predictors.items():
            pred[name].append(type_sums(predictions(p, windows, ids, x)[:, 0], windows))
        true.append(type_sums(y[:, 0], windows))
    return {name: np.concatenate(v) for name, v in pred.items()}, np.concatenate(true)


def mfe_thresholds(predictors: dict[str, Predictor], validation: WindowSet | None, bin_ms: float,
                   levels: int = 100) -> dict[str, float]:
    """Per predictor, the detection threshold (counts per bin of its predicted E + I sum) of best onset F1 on
    the validation windows (module docstring); {} without validation windows."""
    if validation is None or len(validation) == 0:
        return {}
    pred, true = one_step_sums(predictors, validation)
    out = {}
    for name, p in pred.items():
        candidates = np.unique(np.quantile(p.sum(axis=1), np.linspace(0.5, 0.999, levels)))
        f1 = [onset_f1(mfe_scores(p, true, validation.offsets, bin_ms, th)) for th in candidates]
        out[name] = float(candidates[int(np.argmax(f1))])
    return out


def onset_f1(scores: dict[str, float | None]) -> float:
    p, r = scores["precision"] or 0.0, scores["recall"] or 0.0
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def next_bin(predictors: dict[str, Predictor], windows: WindowSet, bin_ms: float,
             mfe: dict[str, float] | None = None, batch: int = 1024) -> dict[str, dict]:
    """Per predictor: next-bin MSE (mean and per output), accuracy; for the predictors named in `mfe` (their
    detection thresholds, `mfe_thresholds`), onset precision and recall over the segments' one-step predicted
    E/I sums. "all_zeros" holds the accuracy of predicting 0."""
    n_out = windows.n_out
    sq = {name: np.zeros(n_out) for name in predictors}
    hits = dict.fromkeys(predictors, 0)
    zeros, n = 0, 0
    for ids, x, y in id_batches(windows, batch):
        y0 = y[:, 0]
        for name, p in predictors.items():
            pr = predictions(p, windows, ids, x)[:, 0]
            sq[name] += ((pr - y0) ** 2).sum(axis=0)
            hits[name] += int((np.rint(pr) == y0).sum())
        zeros += int((y0 == 0).sum())
        n += len(y0)
    out: dict[str, dict] = {name: {"mse": float(sq[name].sum() / max(1, n * n_out)),
                                   "mse_per_output": (sq[name] / max(1, n)).tolist(),
                                   "accuracy": hits[name] / max(1, n * n_out)} for name in predictors}
    out["all_zeros"] = {"accuracy": zeros / max(1, n * n_out)}
    if mfe and n:
        named = {name: p for name, p in predictors.items() if name in mfe}
        pred, true = one_step_sums(named, windows, batch)
        for name, p in pred.items():
            out[name]["mfe_onsets"] = mfe_scores(p, true, windows.offsets, bin_ms, mfe[name])
    return out


def mfe_scores(pred: np.ndarray, true: np.ndarray, offsets: np.ndarray, bin_ms: float,
               theta: float | None = None) -> dict[str, Any]:
    """Onset precision and recall summed over the segments (windows offsets[j] .. offsets[j+1] of the one-step
    sums pred and true, each segment a run or part of one, detected on its own), predicted onsets at `theta`;
    None where nothing was predicted (precision) or nothing happened (recall). `no_lag` holds the same scores
    counting only predicted onsets at or before the true one (module docstring)."""
    out: dict[str, Any] = {"theta": theta}
    for no_lag in (False, True):
        total = {"predicted": 0, "true": 0, "precise": 0, "recalled": 0}
        for a, b in pairwise(offsets):
            for key, v in onset_scores(pred[a:b], true[a:b], bin_ms, theta=theta, no_lag=no_lag).items():
                total[key] += v
        scores = {**total, "precision": total["precise"] / total["predicted"] if total["predicted"] else None,
                  "recall": total["recalled"] / total["true"] if total["true"] else None}
        out.update({"no_lag": scores} if no_lag else scores)
    return out
