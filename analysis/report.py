"""`eilab analyze`: summary.json, figures and the headline table of a stored run.

Figures (PNG, in RUN_DIR/figures/): raster, population rates with MFEs marked, E/I input of the
probed neurons, eigenvalues of the actual connectivity with the predicted circle; with plastic
projections also weights (weight histograms and mean weight against time) and learning
(postsynaptic rate against the target, E/I input before and after learning), see analysis/plasticity.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure  # no pyplot, no backend switch: savefig picks the PNG canvas itself

from eilab.analysis import balance, mfe, siegert, spectra, spikes
from eilab.analysis import plasticity as plasticity_analysis
from eilab.sim.config import Config, ConfigError
from eilab.sim.reader import Run, open_run

RASTER_NEURONS = 300     # per population
RASTER_MS = 500.0
SPECTRUM_DENSE = 4000    # dense eigenvalues up to this size, ARPACK (k largest) beyond
SPECTRUM_K = 30
SKIP_MS = 100.0          # default transient left out, ms, ...
SKIP_FRACTION = 0.2      # ... at most this fraction of the run


def analyze(run_dir: str | Path, skip_ms: float | None = None, spectrum: bool = True) -> dict[str, Any]:
    """Analyse a complete run: write summary.json and figures into the run directory; return the summary.
    The first `skip_ms` ms (default `default_skip_ms`) are left out as the transient."""
    run = open_run(run_dir)
    skip_ms = checked_skip_ms(skip_ms, run.t_ms)
    out = Path(run.path)
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    cfg = run.config
    summary: dict[str, Any] = {"run": str(out), "t_ms": run.t_ms, "skip_ms": skip_ms, "figures": {}, "notes": []}
    spiking = not cfg.is_rate_network
    if spiking:
        spike_summary(run, skip_ms, figs, summary)
        if all(p.model == "lif_delta" for p in cfg.populations) and any(d.kind == "poisson" for d in cfg.drive):
            summary.update(siegert_summary(cfg))
    else:
        summary["populations"] = whole_run_rates(run)
    rows = balance.balance_table(run, skip_ms=min(skip_ms, run.t_ms / 2))
    summary["balance"] = rows
    mf = balance.mean_field(cfg)
    summary["mean_field"] = {"W": mf.W.tolist(), "X": mf.X.tolist(), "units": mf.units, "convention": mf.convention,
                             "notes": mf.notes}
    if run.probes():
        summary["figures"]["inputs"] = str(plot_inputs(run, figs / "inputs.png"))
    if spectrum and (cfg.projections or cfg.matrix is not None):
        summary["spectrum"], path = spectrum_summary(run, figs / "spectrum.png")
        summary["figures"]["spectrum"] = str(path)
    learned = plasticity_analysis.summary(run, transient_ms=skip_ms) if spiking else None
    if learned is not None:
        summary["plasticity"] = learned
        summary["figures"]["weights"] = str(plasticity_analysis.plot_weights(learned, figs / "weights.png"))
        summary["figures"]["learning"] = str(plasticity_analysis.plot_learning(run, learned, figs / "learning.png"))
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=_json_default))
    return summary


def default_skip_ms(t_ms: float) -> float:
    """The transient left out when none is given: SKIP_MS, or SKIP_FRACTION of a shorter run (ms)."""
    return min(SKIP_MS, SKIP_FRACTION * t_ms)


def checked_skip_ms(skip_ms: float | None, t_ms: float) -> float:
    """`skip_ms` (ms) if 0 <= skip_ms < t_ms, the default for None; ConfigError otherwise."""
    if skip_ms is None:
        return default_skip_ms(t_ms)
    if not (math.isfinite(skip_ms) and 0.0 <= skip_ms < t_ms):
        raise ConfigError(f"--skip-ms {skip_ms:g}: the transient left out must be at least 0 ms and shorter than the "
                          f"run ({t_ms:g} ms); e.g. --skip-ms {default_skip_ms(t_ms):g}")
    return float(skip_ms)


def spike_summary(run: Run, skip_ms: float, figs: Path, summary: dict[str, Any]) -> None:
    """Populations, MFEs, raster and rate figures of a spiking run into `summary`: from the spikes;
    from the counts when spikes were not recorded; rates from the run's totals when neither was."""
    recorded, counted = run.config.record.spikes, bool(run.bin_ms)
    if not (recorded or counted):
        summary["populations"] = whole_run_rates(run)
        summary["notes"].append("neither spikes nor counts recorded (record.spikes = false, record.counts_bin_ms = 0):"
                                " rates over the whole run, transient included, from the run's totals; no spike "
                                "statistics, MFEs or raster")
        return
    summary["populations"] = spikes.stats_rows(spikes.population_stats(run, skip_ms))
    events, stats = mfe.detect_run(run, skip_ms=skip_ms)
    summary["mfe"] = {"stats": vars(stats), "events": mfe.event_rows(events)[:1000]}
    if recorded:
        summary["figures"]["raster"] = str(plot_raster(run, figs / "raster.png"))
    else:
        summary["notes"].append(f"spikes not recorded (record.spikes = false): rates, Fano, chi2 and MFEs from the "
                                f"counts from {spikes.first_bin(skip_ms, run.bin_ms) * run.bin_ms:g} ms on; no "
                                "CV ISI, no raster")
    if counted:
        summary["figures"]["rates"] = str(plot_rates(run, events, stats.present, figs / "rates.png"))


def whole_run_rates(run: Run) -> list[dict[str, Any]]:
    """Mean rate (Hz) of each population over the whole run, from the totals the run stored."""
    return [{"name": k, "rate_hz": float(v["rate_hz"])} for k, v in run.attrs["summary"]["populations"].items()]


def _json_default(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, complex):
        return [x.real, x.imag]
    return str(x)


def siegert_summary(cfg: Config) -> dict[str, Any]:
    """Siegert states (rates, predicted ISI CV, stability) of a lif_delta network; siegert_hz / siegert_cv: the
    stable state nearest 10 Hz (`siegert.choose_state`)."""
    found = siegert.network_states(cfg)
    states = [{"rates_hz": dict(zip(found.names, s.rates_hz.tolist(), strict=True)),
               "cv": dict(zip(found.names, s.cv.tolist(), strict=True)), "stable": s.stable,
               "eigenvalues": [complex(v) for v in s.eigenvalues], "residual_hz": s.residual_hz}
              for s in found.states]
    out: dict[str, Any] = {"siegert": {"method": found.method, "complete": found.complete, "states": states}}
    if found.states:
        best = found.states.index(siegert.choose_state(found))
        out["siegert_hz"], out["siegert_cv"] = states[best]["rates_hz"], states[best]["cv"]
    return out


def spectrum_summary(run: Run, path: Path) -> tuple[dict[str, Any], Path]:
    cfg = run.config
    snapshots = {p.name: run.weights(p.name, last=True) for p in plasticity_analysis.plastic_projections(cfg)}
    matrix = run.read("connectivity/W") if cfg.matrix is not None else None  # matrix.file, as the run stored it
    W = spectra.weight_matrix(cfg, {name: w[-1] for name, (_, w) in snapshots.items()}, matrix)  # learned: last
    eig = spectra.eigenvalues(W, dense_limit=SPECTRUM_DENSE, k=SPECTRUM_K)
    pred = spectra.predicted_spectrum(cfg)
    outlier_set = [complex(o) for o in np.atleast_1d(pred.outliers)]
    vals = eig.values
    bulk = [v for v in vals if all(abs(v - o) > 1e-6 * max(1.0, abs(o)) for o in outlier_set)]
    info = {"method": eig.method, "complete": eig.complete, "predicted_radius": pred.radius,
            "predicted_outliers": outlier_set, "largest": complex(vals[0]) if len(vals) else None,
            "largest_bulk_modulus": float(abs(bulk[0])) if bulk else None, "formula": pred.formula,
            "predicted_radius_multapses_flipped": pred.radius_multapses_flipped,
            "multapses": {p.name: p.multapses for p in cfg.projections if p.rule == "fixed_indegree"},
            "learned_weights_ms": {name: float(t[-1]) for name, (t, _) in snapshots.items()}}
    if snapshots:
        info["note"] = "W holds the learned weights; the predicted radius and outliers use the initial ones"
    if matrix is not None:
        info["note"] = "W holds matrix.file; the predicted radius and outliers are those of the projections only"
    if cfg.is_rate_network:
        gains = {p.name: p.params["gain"] for p in cfg.populations}
        if len(set(gains.values())) == 1 and all(p.params["transfer"] != "sigmoid" for p in cfg.populations):
            tau = cfg.populations[0].params["tau_m"]
            modes = spectra.linear_modes(vals * next(iter(gains.values())), tau)
            info["linear_modes"] = {"integrating": int(np.sum(modes.integrating)),
                                    "diverging": int(np.sum(modes.diverging)),
                                    "slowest_decay_ms": float(np.max(modes.decay_ms))}
    return info, spectra.plot_spectrum(eig, pred, path, title=f"{cfg.run.name}: eigenvalues of W")


def plot_raster(run: Run, path: Path) -> Path:
    times, gids = run.spikes()
    t1 = run.t_ms
    t0 = max(0.0, t1 - RASTER_MS)
    fig = Figure(figsize=(10, 5))
    ax = fig.add_subplot()
    row = 0
    for name, p in run.populations.items():
        keep = (gids >= p["gid0"]) & (gids < p["gid0"] + min(p["n"], RASTER_NEURONS)) & (times > t0)
        ax.scatter(times[keep], gids[keep] - p["gid0"] + row, s=0.5, color="tab:red" if p["type"] == "E" else
                   "tab:blue", label=f"{name} ({p['type']})", rasterized=True)
        row += min(p["n"], RASTER_NEURONS)
    ax.set(xlabel="time (ms)", ylabel="neuron", xlim=(t0, t1), title=f"{run.config.run.name}: raster")
    ax.legend(loc="upper right", markerscale=10)
    fig.savefig(path, dpi=100)
    return path


def plot_rates(run: Run, events: list[mfe.Event], present: bool, path: Path) -> Path:
    bin_ms = run.bin_ms
    fig = Figure(figsize=(10, 4))
    ax = fig.add_subplot()
    for name, p in run.populations.items():
        rate = spikes.population_rate(run.counts(name), bin_ms)
        ax.plot(np.arange(rate.size) * bin_ms, rate, lw=0.8, label=name,
                color="tab:red" if p["type"] == "E" else "tab:blue")
    for e in events:
        ax.axvspan(e.onset_ms, e.offset_ms, color="gold", alpha=0.4, lw=0)
    ax.set(xlabel="time (ms)", ylabel="population rate (Hz)",
           title=f"population rates, {len(events)} threshold crossings marked (bin {bin_ms} ms): MFEs "
                 + ("present" if present else "few or none"))
    ax.legend(loc="upper right")
    fig.savefig(path, dpi=100)
    return path


def plot_inputs(run: Run, path: Path) -> Path:
    pr = run.probes()
    fig = Figure(figsize=(10, 4))
    ax = fig.add_subplot()
    t = pr["time"]
    cols = {"syn_e": "tab:red", "syn_i": "tab:blue", "ext": "tab:green"}
    for var, colour in cols.items():
        ax.plot(t, pr[var].mean(axis=1), lw=0.6, color=colour, label=f"{var} (mean of {pr['probe'].size} probes)")
    net = pr["syn_e"] + pr["syn_i"] + pr["ext"]
    ax.plot(t, net.mean(axis=1), lw=0.8, color="k", label="net")
    ax.set(xlabel="time (ms)", ylabel="input (mV/ms, or rate-network input units)", title="E and I input")
    ax.legend(loc="upper right", fontsize=8)
    fig.savefig(path, dpi=100)
    return path


def headline(summary: dict[str, Any]) -> str:
    """The table `eilab analyze` prints."""
    lines = []
    if summary.get("populations") and "cv_isi" in summary["populations"][0]:
        lines.append(f"{'pop':<6}{'n':>7}{'rate Hz':>9}{'CV ISI':>8}{'Fano':>7}{'chi2':>8}{'peak Hz':>9}")
        for p in summary["populations"]:
            lines.append(f"{p['name']:<6}{p['n']:>7}{p['rate_hz']:>9.2f}{_f(p['cv_isi'])}{_f(p['fano'], 7)}"
                         f"{_f(p['synchrony'])}{_f(p['peak_frequency_hz'], 9)}")
    lines.extend(f"note: {n}" for n in summary.get("notes", []))
    if "mfe" in summary:
        s = summary["mfe"]["stats"]
        verdict = "present" if s["present"] else "few or none (threshold crossings as expected by chance)"
        lines.append(f"MFEs {verdict}: {s['n_events']} ({s['rate_hz']:.2f}/s), threshold {s['theta']:.1f} "
                     f"spikes per {s['bin_ms']:g} ms bin, {_x(s['excess'])} independent Poisson, "
                     f"{_x(s['tail_excess'])} Gaussian tail")
    if "siegert" in summary:
        lines.extend(siegert_lines(summary["siegert"]))
    lines.append(balance.format_table(summary["balance"]))
    if "spectrum" in summary:
        sp = summary["spectrum"]
        out = sp["predicted_outliers"]
        shown = ", ".join(_c(o) for o in out[:4]) + (f" (+{len(out) - 4} more)" if len(out) > 4 else "")
        lines.append(f"spectrum ({sp['method']}): predicted bulk radius {sp['predicted_radius']:.4g}, largest bulk "
                     f"|lambda| {_g(sp['largest_bulk_modulus'])}, predicted outliers {shown or '-'}")
        if sp.get("multapses"):
            lines.append(multapse_line(sp["multapses"], sp["predicted_radius_multapses_flipped"]))
    if "plasticity" in summary:
        lines.extend(plasticity_analysis.headline_lines(summary["plasticity"]))
    lines.append("figures: " + ", ".join(summary["figures"].values()))
    return "\n".join(lines)


def siegert_lines(info: dict[str, Any]) -> list[str]:
    """One headline line per Siegert state: rates with the predicted ISI CV (Brunel 2000), stability."""
    n = len(info["states"])
    head = f"Siegert (mean-field) states: {n} ({info['method']}" + ("" if info["complete"] else ", may miss some") + ")"
    lines = [head]
    for s in info["states"]:
        rates = ", ".join(f"{k} {v:.2f} Hz (CV {_g(s['cv'][k])})" for k, v in s["rates_hz"].items())
        lines.append(f"  {rates}: {'stable' if s['stable'] else 'unstable'}")
    return lines


def multapse_line(multapses: dict[str, bool], flipped: float | None) -> str:
    """How the multapses setting of the fixed_indegree projections enters the predicted bulk radius."""
    on = [name for name, m in multapses.items() if m]
    off = [name for name, m in multapses.items() if not m]
    parts = [f"{', '.join(on)} with multapses: entries w Binomial(k, 1/n), variance k (1 - 1/n) w^2 per row"] * bool(on)
    parts += [f"{', '.join(off)} without: k distinct partners, k (1 - k/n) w^2 per row"] * bool(off)
    return f"  fixed_indegree: {'; '.join(parts)}; the other setting would give radius {_g(flipped)}"


def _f(x: float, width: int = 8) -> str:
    return f"{x:>{width}.3f}" if x is not None and not math.isnan(x) else f"{'-':>{width}}"


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _x(ratio: float) -> str:
    """An events-over-null ratio; infinite when the null expects (numerically) no event."""
    return f"{ratio:.3g}x" if math.isfinite(ratio) else "far above (null expects ~0 events)"


def _c(z: complex) -> str:
    return f"{z.real:.4g}" if abs(z.imag) < 1e-12 else f"{z.real:.4g}{z.imag:+.4g}i"
