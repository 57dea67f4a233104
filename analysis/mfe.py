"""Multiple Firing Events (MFEs): detection from E and I spike counts, and their statistics.

The default detector is the one of the ring papers (Xiao & Lin 2022; docs/models.md, section 7):
  1. count all spikes (E + I) in bins of `bin_ms` (1 ms);
  2. mark bins with count >= theta, theta fixed or mean + `n_sd` sd of the counts (3);
  3. an event is a maximal run of marked bins; runs separated by at most `merge_gap` (1)
     unmarked bins merge;
  4. per event: onset, offset (ms), size, E size, I size, and the fractions of distinct E and I
     cells recruited.
Bins before `skip_ms` (100 ms: the transient from the initial state) are left out.
A run recorded without spikes (record.spikes = false) is analysed from its counts (`detect_counts`).
`detect_local` runs it on blocks of `block` adjacent ring positions (31) to find local MFEs.
Statistics compare the events with two nulls at the same threshold: independent Poisson firing at
the measured mean count (`null_expected`, `excess`), and Gaussian fluctuations with the measured
mean and sd (`gaussian_expected`, `tail_excess`: bursts make the upper tail heavy).

MFEs are present (`present`, `mfes_present`) when the events beat both nulls by at least
`PRESENT_MIN_EXCESS` (2x) each, and their number is improbable under the larger null expectation:
P(N >= n_events) < `PRESENT_ALPHA` (1e-3) for N Poisson with that mean (rare threshold crossings of a
stationary record are close to Poisson). Otherwise a run has "few or none". Neither null alone is a
verdict: the Gaussian one underestimates the upper tail of low counts (independent Poisson cells at 25
spikes per bin give tail_excess ~1.8), and the Poisson one ignores any shared rate fluctuation (a
population-count Fano factor of 1.2 already gives excess ~2-5); and a fixed excess is reached by
chance when only a few events are expected. ring600 (3 s, seed 1): 21 events against 3.9 and 5.9
expected, P ~ 1e-6: present. configs/brunel.toml (fast oscillation, 1 s): 7 events against 1.2,
P ~ 3e-4: present (the highest cycles cross the threshold). configs/brunel_ai.toml (asynchronous
irregular, 2 s): 2-7 events against 2-4, P > 0.05 for seeds 1-8: absent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm, poisson

from eilab.analysis.spikes import first_bin
from eilab.sim.reader import Run


@dataclass
class Event:
    onset_ms: float
    offset_ms: float
    size: int
    e_size: int
    i_size: int
    e_fraction: float
    i_fraction: float


@dataclass
class MFEStats:
    n_events: int
    rate_hz: float
    theta: float
    mean_count: float
    null_expected: float
    excess: float
    gaussian_expected: float
    tail_excess: float
    size_mean: float
    size_sd: float
    duration_mean_ms: float
    duration_sd_ms: float
    iei_mean_ms: float
    present: bool
    bin_ms: float


PRESENT_MIN_EXCESS = 2.0
PRESENT_ALPHA = 1e-3


def mfes_present(n_events: int, null_expected: float, gaussian_expected: float,
                 min_excess: float = PRESENT_MIN_EXCESS, alpha: float = PRESENT_ALPHA) -> bool:
    """The module's verdict: n_events >= min_excess x each null, and P(N >= n_events) < alpha for N
    Poisson with the larger null's mean. No variance at all (both nulls 0) means no MFEs."""
    expected = max(null_expected, gaussian_expected)
    if expected <= 0:
        return False
    return n_events >= min_excess * expected and float(poisson.sf(n_events - 1, expected)) < alpha


def marked_runs(counts: np.ndarray, theta: float, merge_gap: int = 1) -> list[tuple[int, int]]:
    """[start, stop) bin ranges of maximal runs of counts >= theta, merging gaps <= merge_gap; bins
    without a spike are never marked (a silent record, where theta is 0, has no event)."""
    idx = np.flatnonzero((counts >= theta) & (counts > 0))
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > merge_gap + 1)
    starts = np.r_[idx[0], idx[breaks + 1]]
    stops = np.r_[idx[breaks], idx[-1]] + 1
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def threshold(counts: np.ndarray, theta: float | None, n_sd: float) -> float:
    return float(theta) if theta is not None else float(counts.mean() + n_sd * counts.std())


def detect(times: np.ndarray, gids: np.ndarray, e_gids: np.ndarray, i_gids: np.ndarray, t_ms: float,
           bin_ms: float = 1.0, theta: float | None = None, n_sd: float = 3.0, merge_gap: int = 1,
           skip_ms: float = 100.0) -> tuple[list[Event], MFEStats]:
    """MFEs among the cells e_gids (excitatory) and i_gids (inhibitory), spikes in (skip_ms, t_ms]."""
    is_e = np.isin(gids, e_gids)
    is_i = np.isin(gids, i_gids)
    keep = (is_e | is_i) & (times > skip_ms)
    t, g, is_e = times[keep] - skip_ms, gids[keep], is_e[keep]
    n_bins = int(np.ceil((t_ms - skip_ms) / bin_ms - 1e-9))
    b = np.clip(np.ceil(t / bin_ms - 1e-9).astype(np.int64) - 1, 0, n_bins - 1)  # (k bin, (k+1) bin]
    counts = np.bincount(b, minlength=n_bins)
    th = threshold(counts, theta, n_sd)
    events = []
    for a, z in marked_runs(counts, th, merge_gap):
        inside = (b >= a) & (b < z)
        ge, gi = g[inside & is_e], g[inside & ~is_e]
        events.append(Event(skip_ms + a * bin_ms, skip_ms + z * bin_ms, int(inside.sum()), int(ge.size), int(gi.size),
                            np.unique(ge).size / max(1, len(e_gids)), np.unique(gi).size / max(1, len(i_gids))))
    return events, event_stats(events, counts, th, bin_ms, t_ms - skip_ms)


def detect_counts(e_counts: np.ndarray, i_counts: np.ndarray, bin_ms: float, t0_ms: float, t_ms: float,
                  theta: float | None = None, n_sd: float = 3.0, merge_gap: int = 1) -> tuple[list[Event], MFEStats]:
    """MFEs from binned counts (time_bin, cell) of the E and of the I cells, bin k holding the spikes
    in (t0_ms + k bin_ms, t0_ms + (k+1) bin_ms], up to t_ms: the events and statistics `detect`
    gives for the spikes in (t0_ms, t_ms] in bins of bin_ms."""
    counts = e_counts.sum(axis=1) + i_counts.sum(axis=1)
    th = threshold(counts, theta, n_sd)
    events = []
    for a, z in marked_runs(counts, th, merge_gap):
        ce, ci = e_counts[a:z].sum(axis=0), i_counts[a:z].sum(axis=0)
        events.append(Event(t0_ms + a * bin_ms, t0_ms + z * bin_ms, int(ce.sum() + ci.sum()), int(ce.sum()),
                            int(ci.sum()), np.count_nonzero(ce) / max(1, ce.size),
                            np.count_nonzero(ci) / max(1, ci.size)))
    return events, event_stats(events, counts, th, bin_ms, t_ms - t0_ms)


def event_stats(events: list[Event], counts: np.ndarray, th: float, bin_ms: float, duration_ms: float) -> MFEStats:
    """Statistics of the events found at threshold `th` in the population counts, in bins of `bin_ms`, of a
    record `duration_ms` long, with the independent-Poisson and Gaussian nulls (module docstring)."""
    n_bins = counts.size
    lam, sd = counts.mean(), counts.std()
    null = n_bins * float(poisson.sf(np.ceil(th) - 1, lam)) if lam > 0 else 0.0
    gauss = n_bins * float(norm.sf(np.ceil(th) - 0.5, lam, sd)) if sd > 0 else 0.0
    sizes = np.array([e.size for e in events], float)
    durs = np.array([e.offset_ms - e.onset_ms for e in events], float)
    onsets = np.array([e.onset_ms for e in events], float)
    return MFEStats(
        n_events=len(events), rate_hz=len(events) / (duration_ms / 1000.0), theta=th, mean_count=float(lam),
        null_expected=null, excess=_ratio(len(events), null), gaussian_expected=gauss,
        tail_excess=_ratio(len(events), gauss),
        size_mean=_mean(sizes), size_sd=_sd(sizes), duration_mean_ms=_mean(durs), duration_sd_ms=_sd(durs),
        iei_mean_ms=_mean(np.diff(onsets)), present=mfes_present(len(events), null, gauss), bin_ms=bin_ms,
    )


def _ratio(observed: int, expected: float) -> float:
    if expected > 0:
        return observed / expected
    return float("inf") if observed else 0.0


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")


def _sd(x: np.ndarray) -> float:
    return float(x.std()) if x.size > 1 else float("nan")


def excitatory_inhibitory_gids(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """All E and all I gids of a run (by population type)."""
    e, i = [], []
    for p in run.populations.values():
        (e if p["type"] == "E" else i).append(np.arange(p["gid0"], p["gid0"] + p["n"]))
    return (np.concatenate(e) if e else np.zeros(0, np.int64)), (np.concatenate(i) if i else np.zeros(0, np.int64))


def detect_run(run: Run, bin_ms: float = 1.0, skip_ms: float = 100.0, **options: float) -> tuple[list[Event],
                                                                                                MFEStats]:
    """Network-wide MFEs of a stored run: from its spikes, or from its counts when it did not record
    spikes (record.spikes = false). The counts come in bins of b ms, so they are summed in groups of
    round(bin_ms / b) (at least 1) bins from the bin that holds skip_ms on: the same events as from
    the spikes when bin_ms and skip_ms are multiples of b."""
    if run.config.record.spikes:
        times, gids = run.spikes()
        e, i = excitatory_inhibitory_gids(run)
        return detect(times, gids, e, i, run.t_ms, bin_ms=bin_ms, skip_ms=skip_ms, **options)
    if not run.bin_ms:
        raise ValueError(f"{run.path}: neither spikes nor counts recorded; no MFEs")
    b = run.bin_ms
    group = max(1, round(bin_ms / b))
    j0 = first_bin(skip_ms, b)
    e_counts, i_counts = (_grouped(_counts_of_type(run, kind, j0), group) for kind in ("E", "I"))
    return detect_counts(e_counts, i_counts, group * b, j0 * b, run.t_ms, **options)


def _counts_of_type(run: Run, kind: str, j0: int) -> np.ndarray:
    """Counts (time_bin, cell) from bin j0 on of the cells of every population of type `kind` (E or I)."""
    cols = [run.counts(name, j0 * run.bin_ms) for name, p in run.populations.items() if p["type"] == kind]
    return np.concatenate(cols, axis=1) if cols else np.zeros((run.root["counts"].shape[0] - j0, 0), np.uint16)


def _grouped(counts: np.ndarray, group: int) -> np.ndarray:
    """Sums of `group` consecutive rows (time bins); the last sum may hold fewer."""
    return np.add.reduceat(counts.astype(np.int64), np.arange(0, counts.shape[0], group), axis=0)


def detect_local(run: Run, block: int = 31, **options: float) -> list[tuple[int, list[Event], MFEStats]]:
    """MFEs in blocks of `block` adjacent ring positions (E and I cell k share position k), for
    networks of one E and one I population of equal size, such as ring600."""
    pops = list(run.populations.values())
    if len(pops) != 2 or {p["type"] for p in pops} != {"E", "I"} or pops[0]["n"] != pops[1]["n"]:
        raise ValueError("local MFE detection needs one E and one I population of equal size on a ring")
    pe, pi = (pops[0], pops[1]) if pops[0]["type"] == "E" else (pops[1], pops[0])
    n = pe["n"]
    times, gids = run.spikes()
    out = []
    for start in range(0, n, block):
        pos = (start + np.arange(block)) % n
        ev, st = detect(times, gids, pe["gid0"] + pos, pi["gid0"] + pos, run.t_ms, **options)
        out.append((start, ev, st))
    return out


def event_rows(events: list[Event]) -> list[dict]:
    return [asdict(e) for e in events]
