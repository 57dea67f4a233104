"""Spike statistics of stored runs: rates, ISI CV, Fano factor, synchrony, population rate, spectra.

All functions take plain arrays (spike times in ms, gids, binned counts) so they work on any
run opened with `eilab.sim.store.open_run`; `population_stats` gathers them per population.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import signal

from eilab.sim.reader import Run


def neuron_rates(times: np.ndarray, gids: np.ndarray, gid0: int, n: int, t0: float, t1: float) -> np.ndarray:
    """Rate (Hz) of each neuron gid0 .. gid0 + n - 1 over spikes with time in (t0, t1] ms."""
    keep = (gids >= gid0) & (gids < gid0 + n) & (times > t0) & (times <= t1)
    return np.bincount(gids[keep] - gid0, minlength=n) / ((t1 - t0) / 1000.0)


def isi_cv(times: np.ndarray, gids: np.ndarray, min_spikes: int = 3) -> np.ndarray:
    """Coefficient of variation of the interspike intervals of every neuron with >= min_spikes spikes."""
    order = np.lexsort((times, gids))
    t, g = times[order], gids[order]
    isi = np.diff(t)
    same = g[1:] == g[:-1]
    isi, owner = isi[same], g[1:][same]
    _, start, count = np.unique(owner, return_index=True, return_counts=True)
    cvs = []
    for s, c in zip(start, count, strict=True):
        if c + 1 >= min_spikes:
            x = isi[s : s + c]
            cvs.append(x.std() / x.mean())
    return np.asarray(cvs)


def fano_factor(counts: np.ndarray, window_bins: int) -> np.ndarray:
    """Fano factor (variance / mean) of each neuron's spike count in windows of `window_bins` bins
    (NaN for all when the counts hold fewer than two windows)."""
    n_win = counts.shape[0] // window_bins
    if n_win < 2:  # a variance needs two windows at least
        return np.full(counts.shape[1], np.nan)
    w = counts[: n_win * window_bins].reshape(n_win, window_bins, -1).sum(axis=1).astype(float)
    mean = w.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, w.var(axis=0) / mean, np.nan)


def synchrony(counts: np.ndarray) -> float:
    """Golomb's chi^2: variance of the population-averaged activity over the mean single-neuron variance
    (1 for full synchrony, about 1/N for independent neurons)."""
    x = counts.astype(float)
    single = x.var(axis=0).mean()
    return float(x.mean(axis=1).var() / single) if single > 0 else float("nan")


def synchrony_index(times: np.ndarray, n: int, dt: float, t_ms: float, window_ms: float = 2.5) -> float:
    """SI = sum_t n(t) sum_{|t'-t| <= W dt} n(t') / (N sum_t n(t)) on the step grid (docs/models.md, section 8);
    for independent Poisson neurons at rate r (per ms) it equals 1/N + (2W + 1) dt r."""
    steps = np.rint(times / dt).astype(np.int64) - 1
    nt = np.bincount(steps, minlength=round(t_ms / dt)).astype(float)
    w = int(np.floor(window_ms / dt + 1e-9))
    around = np.convolve(nt, np.ones(2 * w + 1), mode="same")
    return float((nt * around).sum() / (n * nt.sum())) if nt.sum() else float("nan")


def population_rate(counts: np.ndarray, bin_ms: float) -> np.ndarray:
    """Population-averaged rate (Hz) per bin from (time_bin, neuron) counts."""
    return counts.sum(axis=1) / counts.shape[1] / (bin_ms / 1000.0)


def power_spectrum(rate: np.ndarray, bin_ms: float, segment_ms: float = 500.0) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectral density of a rate signal: (frequency Hz, PSD Hz^2/Hz), mean removed."""
    fs = 1000.0 / bin_ms
    nper = int(min(rate.size, max(8, round(segment_ms / bin_ms))))
    return signal.welch(rate - rate.mean(), fs=fs, nperseg=nper)


@dataclass
class PopulationStats:
    name: str
    n: int
    rate_hz: float
    rate_sd_hz: float
    silent_fraction: float
    cv_isi: float
    fano: float
    synchrony: float
    peak_frequency_hz: float


def first_bin(skip_ms: float, bin_ms: float) -> int:
    """Index of the count bin (k b, (k+1) b] that holds time `skip_ms` (ms): analyses of the counts
    start there."""
    return int(skip_ms / bin_ms)


def population_stats(run: Run, skip_ms: float = 0.0, fano_window_ms: float = 100.0) -> list[PopulationStats]:
    """Per-population statistics of a spiking run after `skip_ms` (ms): rates and ISI CV from the
    spikes; Fano factor, synchrony and spectral peak from the counts. A run recorded with
    `record.spikes = false` gets its rates from the counts, over the bins from `first_bin` on, and
    no ISI CV. Needs the spikes or the counts."""
    spikes_recorded = run.config.record.spikes
    if not spikes_recorded and not run.bin_ms:
        raise ValueError(f"{run.path}: neither spikes nor counts recorded; no spike statistics")
    times, gids = run.spikes() if spikes_recorded else (np.zeros(0), np.zeros(0, np.int64))
    bin_ms = run.bin_ms
    out = []
    for name, p in run.populations.items():
        fano = sync = peak = cv_mean = float("nan")
        if bin_ms:
            j0 = first_bin(skip_ms, bin_ms)
            c = run.counts(name, j0 * bin_ms)  # only the bins from j0 on are read
            fano = _nanmean(fano_factor(c, max(1, round(fano_window_ms / bin_ms))))
            sync = synchrony(c)
            f, psd = power_spectrum(population_rate(c, bin_ms), bin_ms)
            peak = float(f[1:][np.argmax(psd[1:])]) if f.size > 1 else float("nan")
        if spikes_recorded:
            r = neuron_rates(times, gids, p["gid0"], p["n"], skip_ms, run.t_ms)
            mine = (gids >= p["gid0"]) & (gids < p["gid0"] + p["n"]) & (times > skip_ms)
            cv = isi_cv(times[mine], gids[mine])
            cv_mean = float(cv.mean()) if cv.size else float("nan")
        else:
            r = c.sum(axis=0) / ((run.t_ms - j0 * bin_ms) / 1000.0)
        out.append(PopulationStats(name, p["n"], float(r.mean()), float(r.std()), float(np.mean(r == 0)),
                                   cv_mean, fano, sync, peak))
    return out


def _nanmean(x: np.ndarray) -> float:
    """Mean of the finite entries; NaN (without a warning) when there is none."""
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def stats_rows(stats: list[PopulationStats]) -> list[dict]:
    return [asdict(s) for s in stats]
