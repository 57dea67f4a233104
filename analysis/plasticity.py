"""What inhibitory plasticity did in a run: weight distributions, learned rate, E/I input before and after.

For every plastic projection (Vogels et al. 2011; Akil et al. 2021; docs/models.md, section 6) of a stored run:

- weights per snapshot (`Run.weights`): time (ms), mean, sd, quantiles, the fractions at w_min and
  w_max and a histogram on bin edges shared by all snapshots (weight unit of the postsynaptic model:
  mV, pA or nS);
- the postsynaptic population's rate (Hz) in every snapshot interval (t_k, t_k+1], from the stored
  spikes (or the counts when spikes were not recorded), beside the rule's target rate rho0;
- "before" and "after" learning: the rate and the probed mean E, I, external and net input (mV/ms,
  `balance.measured_balance`) with the cancellation ratio |net| / (E + ext), in the first snapshot
  interval after a short transient and in the last snapshot interval (`learning_windows`).

`summary` gathers this for `eilab analyze`; `plot_weights` and `plot_learning` draw
figures/weights.png and figures/learning.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from eilab.analysis.balance import WEIGHT_UNITS, measured_balance
from eilab.sim.config import Config, Projection, weight_scale
from eilab.sim.reader import Run

HIST_BINS = 40
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
SINGLE_INTERVAL_FRACTION = 0.1   # windows of t_ms / 10 when only the start and end were stored
TRACE_BINS = 100                 # the rate trace of learning.png: this many bins over the run
EDGE_EPS_MS = 1e-6               # window edges on a time grid: rounding of k * dt never moves a sample


def plastic_projections(cfg: Config) -> list[Projection]:
    """The projections of a config that carry a plasticity rule, in config order."""
    return [p for p in cfg.projections if p.plasticity is not None]


def target_rate_hz(proj: Projection) -> float | None:
    """The rule's target postsynaptic rate rho0 (Hz), or None for a rule without one."""
    rho0 = getattr(proj.plasticity, "rho0_hz", None)
    return None if rho0 is None else float(rho0)


# ---------------------------------------------------------------- weight distributions
def shared_edges(weights: list[np.ndarray], bins: int = HIST_BINS) -> np.ndarray:
    """`bins` + 1 equal-width bin edges spanning every snapshot's weights (weight units).

    When all weights are equal (e.g. only the initial snapshot), the edges span value +- 0.5
    (+- half the value when it is not 0), so the one value falls inside the middle bin.
    """
    values = [np.asarray(w, np.float64) for w in weights if np.size(w)]
    if not values:
        return np.linspace(0.0, 1.0, bins + 1)
    lo = min(float(v.min()) for v in values)
    hi = max(float(v.max()) for v in values)
    if hi <= lo:
        half = 0.5 * abs(lo) if lo != 0 else 0.5
        lo, hi = lo - half, hi + half
    return np.linspace(lo, hi, bins + 1)


def weight_stats(w: np.ndarray, w_min: float, w_max: float, edges: np.ndarray) -> dict[str, Any]:
    """Statistics of one snapshot's weights (weight units): mean, sd (population, ddof 0), quantiles
    (q05 .. q95, numpy's linear interpolation), fraction of synapses at w_min and at w_max (the
    float32 values of the bounds, which clipping stores exactly) and the histogram counts on `edges`
    (numpy convention: bins [e_k, e_k+1), the last one closed). NaN statistics for no synapses."""
    w = np.asarray(w, np.float32)
    n = w.size
    counts = np.histogram(w.astype(np.float64), bins=edges)[0] if n else np.zeros(edges.size - 1, np.int64)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "mean": nan, "sd": nan, "quantiles": {_qkey(q): nan for q in QUANTILES},
                "frac_at_min": nan, "frac_at_max": nan, "counts": counts.tolist()}
    x = w.astype(np.float64)
    qs = np.quantile(x, QUANTILES)
    return {"n": int(n), "mean": float(x.mean()), "sd": float(x.std()),
            "quantiles": {_qkey(q): float(v) for q, v in zip(QUANTILES, qs, strict=True)},
            "frac_at_min": float(np.mean(w <= np.float32(w_min))),
            "frac_at_max": float(np.mean(w >= np.float32(w_max))),
            "counts": counts.tolist()}


def _qkey(q: float) -> str:
    return f"q{round(q * 100):02d}"


def weight_summary(times_ms: np.ndarray, weights: list[np.ndarray], w_min: float, w_max: float,
                   bins: int = HIST_BINS) -> dict[str, Any]:
    """Per snapshot statistics (lists over snapshots, `weight_stats`) and histograms on shared edges.

    Returns {"snapshots": {time_ms, n, mean, sd, quantiles: {q05: [...], ...}, frac_at_min,
    frac_at_max}, "histogram": {"edges": [...], "counts": [[...] per snapshot]}}.
    """
    edges = shared_edges(weights, bins)
    rows = [weight_stats(w, w_min, w_max, edges) for w in weights]
    snaps: dict[str, Any] = {"time_ms": [float(t) for t in times_ms]}
    for key in ("n", "mean", "sd", "frac_at_min", "frac_at_max"):
        snaps[key] = [r[key] for r in rows]
    snaps["quantiles"] = {_qkey(q): [r["quantiles"][_qkey(q)] for r in rows] for q in QUANTILES}
    return {"snapshots": snaps, "histogram": {"edges": edges.tolist(), "counts": [r["counts"] for r in rows]}}


# ---------------------------------------------------------------- postsynaptic rate
def interval_rates(run: Run, population: str, edges_ms: np.ndarray) -> tuple[np.ndarray, str]:
    """Mean rate (Hz per neuron) of a population in each interval (e_k, e_k+1] (ms), and its source.

    From the stored spikes when the run recorded them ("spikes", exact); otherwise from the counts
    ("counts"), each bin (k b, (k+1) b] going to the interval that holds its end (exact when the
    edges are multiples of the bin width b).
    """
    edges = np.asarray(edges_ms, np.float64)
    widths_s = np.diff(edges) / 1000.0
    n = run.populations[population]["n"]
    if run.config.record.spikes:
        times, gids = run.spikes()
        sl = run.gids_of(population)
        t = times[(gids >= sl.start) & (gids < sl.stop)]
        source = "spikes"
        weights = None
    elif run.bin_ms:
        counts = run.counts(population).sum(axis=1)
        t = (np.arange(counts.size) + 1) * run.bin_ms
        weights = counts.astype(np.float64)
        source = "counts"
    else:
        return np.full(edges.size - 1, np.nan), "none"
    k = np.searchsorted(edges + EDGE_EPS_MS, t, side="left") - 1  # (e_k, e_k+1] -> k
    ok = (k >= 0) & (k < edges.size - 1)
    per = np.bincount(k[ok], weights=None if weights is None else weights[ok], minlength=edges.size - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return per / n / widths_s, source


# ---------------------------------------------------------------- before and after learning
def learning_windows(times_ms: np.ndarray, t_ms: float, transient_ms: float) -> tuple[tuple[float, float],
                                                                                      tuple[float, float]]:
    """The "before" and "after" windows (ms, left-open): the first snapshot interval after a
    transient of min(transient_ms, half that interval), and the last snapshot interval.

    With snapshots only at the start and the end (snapshot_every_ms = 0), intervals of t_ms / 10
    at the start and at the end stand in for them.
    """
    t = np.asarray(times_ms, np.float64)
    if t.size >= 3:
        first, last = (float(t[0]), float(t[1])), (float(t[-2]), float(t[-1]))
    else:
        span = SINGLE_INTERVAL_FRACTION * t_ms
        first, last = (0.0, span), (t_ms - span, t_ms)
    skip = min(transient_ms, 0.5 * (first[1] - first[0]))
    return (first[0] + skip, first[1]), last


def window_inputs(run: Run, population: str, window_ms: tuple[float, float]) -> dict[str, Any] | None:
    """Mean probed E, I, ext, net input (mV/ms) of a population's probed neurons in a window and the
    cancellation ratio |net| / (E + ext) (`balance.measured_balance`); None when none is probed or no
    probe sample falls in the window."""
    if not run.probes():
        return None
    try:
        mb = measured_balance(run, skip_ms=window_ms[0] + EDGE_EPS_MS, stop_ms=window_ms[1] + EDGE_EPS_MS)
    except ValueError:
        return None
    row = mb.by_population.get(population)
    return None if row is None else {**row, "samples_ms": list(mb.window_ms)}


def phase(run: Run, population: str, window_ms: tuple[float, float], target_hz: float | None) -> dict[str, Any]:
    """Rate (Hz), its distance to the target (Hz) and the probed inputs of a population in one window."""
    rate = float(interval_rates(run, population, np.array(window_ms))[0][0])
    return {"window_ms": [float(window_ms[0]), float(window_ms[1])], "rate_hz": rate,
            "rate_error_hz": None if target_hz is None else rate - target_hz,
            "inputs": window_inputs(run, population, window_ms)}


def projection_summary(run: Run, proj: Projection, transient_ms: float, bins: int = HIST_BINS) -> dict[str, Any]:
    """Everything `summary` reports for one plastic projection (see the module docstring)."""
    cfg = run.config
    rule = proj.plasticity
    post_model = next(p.model for p in cfg.populations if p.name == proj.post)
    times, weights = run.weights(proj.name)
    target = target_rate_hz(proj)
    out: dict[str, Any] = {
        "name": proj.name, "pre": proj.pre, "post": proj.post, "rule": rule.rule, "eta": rule.eta,
        "tau_ms": rule.tau_ms, "target_hz": target, "w_min": rule.w_min, "w_max": rule.w_max,
        "initial_weight": proj.weight * weight_scale(cfg, proj), "weight_unit": WEIGHT_UNITS[post_model],
        "n_synapses": int(weights[0].size) if weights else 0,
    }
    out.update(weight_summary(times, weights, rule.w_min, rule.w_max, bins))
    rates, source = interval_rates(run, proj.post, times)
    out["post_rate"] = {"t0_ms": times[:-1].tolist(), "t1_ms": times[1:].tolist(), "rate_hz": rates.tolist(),
                        "source": source}
    before, after = learning_windows(times, run.t_ms, transient_ms)
    out["before"] = phase(run, proj.post, before, target)
    out["after"] = phase(run, proj.post, after, target)
    return out


def summary(run: Run, transient_ms: float = 100.0, bins: int = HIST_BINS) -> dict[str, Any] | None:
    """summary["plasticity"] of `eilab analyze`: {"transient_ms", "projections": {name: ...}}, or
    None when the run has no plastic projection."""
    plastic = plastic_projections(run.config)
    if not plastic:
        return None
    return {"transient_ms": transient_ms,
            "projections": {p.name: projection_summary(run, p, transient_ms, bins) for p in plastic}}


# ---------------------------------------------------------------- figures
def plot_weights(plasticity: dict[str, Any], path: Path) -> Path:
    """Weight histograms at the first, middle and last snapshot, and mean weight (+- sd, q05-q95)
    against time: one row per plastic projection."""
    projs = list(plasticity["projections"].values())
    fig = Figure(figsize=(11, 3.6 * len(projs)))
    axes = fig.subplots(len(projs), 2, squeeze=False)
    for (ax_h, ax_m), p in zip(axes, projs, strict=True):
        snaps, hist = p["snapshots"], p["histogram"]
        t = np.asarray(snaps["time_ms"])
        edges = np.asarray(hist["edges"])
        picks = sorted({0, (t.size - 1) // 2, t.size - 1})
        for k, colour in zip(picks, ("tab:gray", "tab:orange", "tab:blue"), strict=False):
            ax_h.stairs(np.asarray(hist["counts"][k]), edges, color=colour, lw=1.2, label=f"{t[k]:g} ms")
        ax_h.set_yscale("symlog", linthresh=1.0)
        ax_h.set(xlabel=f"weight ({p['weight_unit']})", ylabel="synapses",
                 title=f"{p['name']} ({p['pre']} -> {p['post']}, {p['rule']}): weight histograms")
        ax_h.legend(loc="upper right", fontsize=8)
        mean, sd = np.asarray(snaps["mean"]), np.asarray(snaps["sd"])
        q = snaps["quantiles"]
        ax_m.fill_between(t, q["q05"], q["q95"], color="tab:blue", alpha=0.15, lw=0, label="q05-q95")
        ax_m.fill_between(t, mean - sd, mean + sd, color="tab:blue", alpha=0.3, lw=0, label="mean +- sd")
        ax_m.plot(t, mean, "o-", color="tab:blue", ms=3, label="mean")
        ax_m.set(xlabel="time (ms)", ylabel=f"weight ({p['weight_unit']})", title=f"{p['name']}: mean weight")
        ax_m.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_learning(run: Run, plasticity: dict[str, Any], path: Path) -> Path:
    """Postsynaptic rate against time (fine trace and per snapshot interval) with the target line,
    and mean E, I, ext and net input before and after learning: one row per plastic projection."""
    projs = list(plasticity["projections"].values())
    fig = Figure(figsize=(11, 3.6 * len(projs)))
    axes = fig.subplots(len(projs), 2, squeeze=False)
    fine = np.linspace(0.0, run.t_ms, TRACE_BINS + 1)
    for (ax_r, ax_i), p in zip(axes, projs, strict=True):
        trace, _ = interval_rates(run, p["post"], fine)
        ax_r.stairs(trace, fine, baseline=None, color="tab:red", alpha=0.5, lw=0.8,
                    label=f"{run.t_ms / TRACE_BINS:g} ms bins")
        pr = p["post_rate"]
        if pr["rate_hz"]:
            ax_r.stairs(pr["rate_hz"], [*pr["t0_ms"], pr["t1_ms"][-1]], baseline=None, color="tab:red", lw=1.8,
                        label="per snapshot interval")
        if p["target_hz"] is not None:
            ax_r.axhline(p["target_hz"], color="k", ls="--", lw=1, label=f"target {p['target_hz']:g} Hz")
        for key, colour in (("before", "tab:gray"), ("after", "tab:green")):
            ax_r.axvspan(*p[key]["window_ms"], color=colour, alpha=0.15, lw=0, label=f"'{key}' window")
        ax_r.set_ylim(bottom=0.0)
        ax_r.set(xlabel="time (ms)", ylabel="rate (Hz)", title=f"{p['post']} rate ({p['name']} plastic)")
        ax_r.legend(loc="upper right", fontsize=8)
        labels = ("E", "I", "ext", "net")
        x = np.arange(len(labels))
        shown = False
        for off, key, colour in ((-0.2, "before", "tab:gray"), (0.2, "after", "tab:green")):
            inp = p[key]["inputs"]
            if inp is None:
                continue
            shown = True
            ax_i.bar(x + off, [inp[k] for k in labels], width=0.4, color=colour,
                     label=f"{key} {p[key]['window_ms'][0]:g}-{p[key]['window_ms'][1]:g} ms, "
                           f"|net|/(E+ext) {inp['ratio']:.3g}")
        ax_i.axhline(0.0, color="k", lw=0.6)
        ax_i.set_xticks(x, labels)
        ax_i.set(ylabel="mean input (mV/ms)", title=f"{p['post']} input before and after learning"
                 + ("" if shown else " (not probed)"))
        if shown:
            ax_i.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


# ---------------------------------------------------------------- headline
def headline_lines(plasticity: dict[str, Any]) -> list[str]:
    """Lines for `eilab analyze`'s table: weights first -> last, rate before -> after against the
    target, cancellation |net|/(E+ext) and I input before -> after."""
    lines = []
    for p in plasticity["projections"].values():
        s, b, a = p["snapshots"], p["before"], p["after"]
        unit = p["weight_unit"]
        target = "no target" if p["target_hz"] is None else f"target {p['target_hz']:g} Hz"
        lines.append(f"plasticity {p['name']} ({p['rule']}, {p['pre']} -> {p['post']}, {p['n_synapses']} synapses): "
                     f"mean w {_g(s['mean'][0])} -> {_g(s['mean'][-1])} {unit} (sd {_g(s['sd'][-1])}, "
                     f"{100 * s['frac_at_min'][-1]:.3g} % at w_min, {100 * s['frac_at_max'][-1]:.3g} % at w_max)")
        text = (f"  learned: {p['post']} rate {_g(b['rate_hz'])} -> {_g(a['rate_hz'])} Hz ({target}) in "
                f"{_win(b)} -> {_win(a)} ms")
        bi, ai = b["inputs"], a["inputs"]
        if bi is not None and ai is not None:
            text += (f"; E/I cancellation |net|/(E+ext) {_g(bi['ratio'])} -> {_g(ai['ratio'])}, "
                     f"I input {_g(bi['I'])} -> {_g(ai['I'])} mV/ms")
        lines.append(text)
    return lines


def _g(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.3g}"


def _win(phase_row: dict[str, Any]) -> str:
    a, b = phase_row["window_ms"]
    return f"({a:g}, {b:g}]"
