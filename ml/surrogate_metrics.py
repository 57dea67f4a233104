"""Scores of a surrogate against its detailed cell (issue 19, point 3), on held-out input: subthreshold V
RMSE, spike precision and recall within a tolerance, the coincidence factor (Kistler et al. 1997), the
f-I curve and the response to single and paired input spikes."""

from __future__ import annotations

import numpy as np


def matches(pred_ms: np.ndarray, true_ms: np.ndarray, tol_ms: float) -> int:
    """Pairs of a predicted and a true spike within tol_ms of each other, each spike in one pair at most
    (greedy in time order, optimal for 1-D intervals)."""
    pred, true = np.sort(np.asarray(pred_ms, float)), np.sort(np.asarray(true_ms, float))
    i = j = n = 0
    while i < pred.size and j < true.size:
        if abs(pred[i] - true[j]) <= tol_ms:
            n, i, j = n + 1, i + 1, j + 1
        elif pred[i] < true[j]:
            i += 1
        else:
            j += 1
    return n


def precision_recall(pred: list[np.ndarray], true: list[np.ndarray], tol_ms: float = 2.0) -> dict[str, float]:
    """Over all cells: precision = matched / predicted spikes, recall = matched / true spikes (1.0 when
    there is nothing to find, resp. nothing predicted), F1 their harmonic mean, and the counts."""
    m = sum(matches(p, t, tol_ms) for p, t in zip(pred, true, strict=True))
    n_pred, n_true = sum(len(p) for p in pred), sum(len(t) for t in true)
    precision = m / n_pred if n_pred else 1.0
    recall = m / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "matched": m, "predicted": n_pred, "true": n_true}


def coincidence_factor(pred_ms: np.ndarray, true_ms: np.ndarray, delta_ms: float, duration_ms: float) -> float:
    """Gamma of Kistler et al. (1997): (N_coinc - <N_coinc>) / (0.5 (N_true + N_pred)) / (1 - 2 nu delta), with
    <N_coinc> = 2 nu delta N_true the coincidences of a Poisson train of the prediction's rate nu; 1 for identical
    trains, about 0 for independent ones. nan without spikes."""
    n_pred, n_true = len(pred_ms), len(true_ms)
    if n_pred + n_true == 0:
        return float("nan")
    nu = n_pred / duration_ms
    expected = 2 * nu * delta_ms * n_true
    return (matches(pred_ms, true_ms, delta_ms) - expected) / (0.5 * (n_true + n_pred)) / (1 - 2 * nu * delta_ms)


def subthreshold_rmse(v_pred: np.ndarray, v_true: np.ndarray, spike_bins: np.ndarray, v_clip: float,
                      before: int, after: int) -> float:
    """RMSE (mV) of V over the samples where the detailed V is below v_clip and no detailed spike lies within
    `before` samples after or `after` samples before (the spike and its after-potential are left out)."""
    keep = v_true < v_clip
    for b in np.flatnonzero(spike_bins):
        keep[max(0, b - before) : b + after + 1] = False
    return float(np.sqrt(np.mean((v_pred[keep] - v_true[keep]) ** 2))) if keep.any() else float("nan")


def spike_times(prob: np.ndarray, threshold: float, bin_ms: float) -> np.ndarray:
    """One spike per run of bins with probability >= threshold, at the middle of its most probable bin, ms."""
    above = np.concatenate([[False], prob >= threshold, [False]])
    starts, ends = np.flatnonzero(~above[:-1] & above[1:]), np.flatnonzero(above[:-1] & ~above[1:])
    peaks = [a + int(np.argmax(prob[a:b])) for a, b in zip(starts, ends, strict=True)]
    return (np.asarray(peaks, float) + 0.5) * bin_ms


def relative_errors(rate_pred: np.ndarray, rate_true: np.ndarray) -> np.ndarray:
    """Per point |f_pred - f_true| / f_true; nan where the detailed cell is silent (f_true = 0)."""
    rate_pred, rate_true = np.asarray(rate_pred, float), np.asarray(rate_true, float)
    on = rate_true > 0
    return np.where(on, np.abs(rate_pred - rate_true) / np.where(on, rate_true, 1.0), np.nan)


def fi_error(rate_pred: np.ndarray, rate_true: np.ndarray) -> dict[str, float]:
    """f-I curve error: max and mean of |f_pred - f_true| / f_true over the points where the detailed cell fires,
    and the largest absolute difference (Hz) over all points."""
    rate_pred, rate_true = np.asarray(rate_pred, float), np.asarray(rate_true, float)
    on = rate_true > 0
    rel = relative_errors(rate_pred, rate_true)[on]
    return {"max_rel": float(rel.max()) if on.any() else float("nan"),
            "mean_rel": float(rel.mean()) if on.any() else float("nan"),
            "max_abs_hz": float(np.max(np.abs(rate_pred - rate_true)))}


def block_rate_sem(times_ms: np.ndarray, t0_ms: float, t1_ms: float, blocks: int) -> float:
    """Standard error (Hz) of the mean rate over [t0, t1) from the rates in `blocks` equal blocks of it:
    their sample standard deviation / sqrt(blocks); small when the rate is stationary and well sampled."""
    counts = np.histogram(np.asarray(times_ms, float), bins=np.linspace(t0_ms, t1_ms, blocks + 1))[0]
    rates = counts / ((t1_ms - t0_ms) / blocks / 1000.0)
    return float(rates.std(ddof=1) / np.sqrt(blocks))


def peak_depolarisation(v: np.ndarray, onsets: np.ndarray, delay: int, length: int) -> np.ndarray:
    """Per onset bin o: the largest V in bins [o + delay, o + delay + length) minus V in the bin before o, mV
    (delay 0: the response to a volley at o; delay = the interval: the summed response to a second volley)."""
    return np.array([v[o + delay : o + delay + length].max() - v[o - 1] for o in onsets])
