"""`eilab train` for `task = "surrogate_net"` (issue 19, points 5 and 6): wire trained `hh` surrogates as the
network an engine config describes, move its population rhythm into a target band with Adam on the connection
strengths (eilab.ml.surrogate_net), write the optimised network as an engine config, and run both networks in
the engine. The training directory holds:

  config.toml    the training config as given
  metrics.json   peak frequency and band powers before/after, in the surrogate network and in the engine; the
                 weights before/after; the trajectory (per Adam step: loss, peak, band powers, weights)
  figures/       spectra.png (surrogate and engine, before and after), raster.png (engine, before and after),
                 trajectory.png (peak frequency and band powers per step)
  runs/          optimised.toml (the optimised network, runnable with eilab run), before/ and after/ (engine runs)
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from eilab.cluster.surrogate_train import require_extras
from eilab.cluster.train import provenance, write_json
from eilab.ml.surrogate_net_config import SurrogateNetConfig
from eilab.sim.config import ConfigError, load_config
from eilab.sim.reader import open_run


def check(tc: SurrogateNetConfig) -> tuple[Any, dict, dict]:
    """(engine config, its raw dict, surrogate per population) after checking what the config names."""
    from eilab.ml.surrogate_net import load_surrogate

    cfg, raw = load_config(tc.network)
    names = [p.name for p in cfg.populations]
    default = load_surrogate(tc.surrogate)
    loaded = {tc.surrogate: default}
    for pop, path in tc.surrogates.items():
        if pop not in names:
            raise ConfigError(f"surrogates.{pop}: no population {pop!r} in {tc.network} (it has {names})")
        loaded.setdefault(path, load_surrogate(path))
    per_pop = {p: loaded[tc.surrogates.get(p, tc.surrogate)] for p in names}
    one_bin(per_pop)
    projections = [p.name for p in cfg.projections]
    for name in tc.train:
        if name not in projections:
            raise ConfigError(f"train: no projection {name!r} in {tc.network} (it has {projections})")
    if tc.objective.population not in names:
        raise ConfigError(f"objective.population = {tc.objective.population!r}: not in {tc.network} (it has {names})")
    if not cfg.record.counts_bin_ms:
        raise ConfigError(f"{tc.network}: record.counts_bin_ms = 0; the engine's spectra need spike counts (give 1.0)")
    return cfg, raw, per_pop


def one_bin(surrogates: dict[str, Any]) -> float:
    """The bin (ms) all the surrogates were trained on; ConfigError if they differ."""
    bins = {s.bin_ms for s in surrogates.values()}
    if len(bins) != 1:
        raise ConfigError("surrogates: trained on different bins; give surrogates of one bin_ms")
    return bins.pop()


def engine_run(config: str, run_dir: str) -> str:
    """Run an engine config (in a worker process) into run_dir."""
    from eilab.sim.engine import run

    cfg, raw = load_config(config)
    run(cfg, raw, Path(run_dir), force=True, progress=False)
    return run_dir


def engine_spectrum(run_dir: Path, population: str, skip_ms: float, segment_ms: float) -> tuple[np.ndarray, ...]:
    """(f Hz, PSD Hz^2/Hz) of a run's population rate after skip_ms (eilab.analysis.spikes)."""
    from eilab.analysis.spikes import population_rate, power_spectrum

    run = open_run(run_dir)
    return power_spectrum(population_rate(run.counts(population, skip_ms), run.bin_ms), run.bin_ms, segment_ms)


def surrogate_spectrum(model: Any, t_ms: float, skip_ms: float, seed: int, population: str,
                       segment_ms: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(f, PSD, spikes (bins, N)) of the surrogate network over t_ms, analysed as the engine's runs."""
    import torch

    from eilab.analysis.spikes import population_rate, power_spectrum

    b = model.spec.bin_ms
    with torch.no_grad():
        spikes = model(round(t_ms / b), seed).numpy()
    counts = spikes[round(skip_ms / b):, model.spec.cells(population)]
    f, psd = power_spectrum(population_rate(counts, b), b, segment_ms)
    return f, psd, spikes


def train_surrogate_net(tc: SurrogateNetConfig, text: str, out: Path, jobs: int, progress: bool) -> int:
    """Optimise, write the optimised network, run both in the engine, compare and write `out`."""
    require_extras()
    import torch

    from eilab.ml.surrogate_net import SurrogateNetwork, network_spec, optimise, summary, toml_text, with_weights

    cfg, raw, per_pop = check(tc)
    o, s = tc.objective, tc.optimise
    bin_ms = one_bin(per_pop)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(text)
    (out / "runs").mkdir(exist_ok=True)
    torch.manual_seed(s.seed)
    torch.set_num_threads(s.threads)
    spec = network_spec(cfg, tc.network, bin_ms, s.seed)
    model = SurrogateNetwork(spec, per_pop, tc.train or [p.name for p in spec.projections], s.spikes, s.dampening)
    weights_before = model.named_weights()
    sur_before = surrogate_spectrum(model, s.eval_t_ms, s.skip_ms, s.eval_seed, o.population, o.report_segment_ms)

    def log(e: dict) -> None:
        if progress:
            weights = "  ".join(f"{k} {v:.0f}" for k, v in e["weights_pa"].items())
            print(f"step {e['step']:>3}  loss {e['loss']:.3f}  peak {e['peak_hz']:5.1f} "
                  f"({e['fundamental_hz']:.1f}) Hz  rate {e['rate_hz']:5.1f} Hz  {weights} pA  {e.get('stopped', '')}",
                  file=sys.stderr)

    trajectory = optimise(model, o, s, (s.min_weight_pa, s.max_weight_pa), log)
    weights_after = trajectory[-1]["weights_pa"]
    sur_after = surrogate_spectrum(model, s.eval_t_ms, s.skip_ms, s.eval_seed, o.population, o.report_segment_ms)
    optimised = out / "runs" / "optimised.toml"
    optimised.write_text(toml_text(with_weights(raw, weights_after), f"{Path(tc.network).name} with the weights "
                                   f"Adam found on its surrogate network (eilab train, task = \"surrogate_net\")"))
    dirs = [str(out / "runs" / "before"), str(out / "runs" / "after")]
    configs = [str(tc.network), str(optimised)]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
            list(pool.map(engine_run, configs, dirs))
    else:
        for c, d in zip(configs, dirs, strict=True):
            engine_run(c, d)
    eng = [engine_spectrum(Path(d), o.population, s.skip_ms, o.report_segment_ms) for d in dirs]
    metrics: dict[str, Any] = {
        "surrogate": {"before": summary(*sur_before[:2], o), "after": summary(*sur_after[:2], o)},
        "engine": {"before": summary(*eng[0], o), "after": summary(*eng[1], o)},
        "weights_pa": {"before": weights_before, "after": weights_after},
        "bands_hz": {"from": o.band_from_hz, "to": o.band_to_hz, "total": o.total_hz},
        "trajectory": trajectory, "optimised_config": str(optimised.relative_to(out)),
        "surrogates": {p: sg.path for p, sg in per_pop.items()}, **provenance(s.seed)}
    write_json(metrics, out / "metrics.json")
    (out / "figures").mkdir(exist_ok=True)
    spectra_figure(sur_before, sur_after, eng, o, out / "figures" / "spectra.png", "engine (hh)")
    raster_figure([open_run(d).spikes() for d in dirs], [sur_before[2], sur_after[2]], spec.bin_ms, s.skip_ms,
                  out / "figures" / "raster.png", "engine")
    trajectory_figure(trajectory, o, out / "figures" / "trajectory.png")
    print(table(metrics))
    print(f"training directory: {out}")
    return 0


def table(metrics: dict, simulator: str = "engine") -> str:
    rows = [f"{'':<22}{'peak Hz':>9}{'fund. Hz':>10}{'P from':>10}{'P to':>10}{'P to / total':>14}"]
    for where in ("surrogate", simulator):
        for when in ("before", "after"):
            m = metrics[where][when]
            rows.append(f"{where + ' ' + when:<22}{m['peak_hz']:>9.1f}{m['fundamental_hz']:>10.1f}"
                        f"{m['power_from']:>10.3g}{m['power_to']:>10.3g}"
                        f"{m['power_to'] / max(m['power_total'], 1e-30):>14.3f}")
    return "\n".join(rows)


def spectra_figure(sur_before: tuple, sur_after: tuple, sim: list, o: Any, path: Path, simulator: str) -> None:
    """The population rate spectra before and after: the surrogate network's and the simulator's (`sim`)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    for col, (title, before, after) in enumerate((("surrogate network", sur_before, sur_after),
                                                   (simulator, sim[0], sim[1]))):
        ax = fig.add_subplot(1, 2, col + 1)
        for band, colour in ((o.band_from_hz, "tab:blue"), (o.band_to_hz, "tab:orange")):
            ax.axvspan(*band, color=colour, alpha=0.12)
        ax.semilogy(before[0], before[1] + 1e-6, color="tab:blue", label="before")
        ax.semilogy(after[0], after[1] + 1e-6, color="tab:orange", label="after")
        ax.set(xlim=(0, o.total_hz[1]), xlabel="frequency (Hz)", ylabel=f"{o.population} rate PSD (Hz$^2$/Hz)",
               title=title)
        ax.legend()
    fig.savefig(path, dpi=110)


def raster_figure(sim_spikes: list[tuple[np.ndarray, np.ndarray]], sur_spikes: list[np.ndarray], bin_ms: float,
                  skip_ms: float, path: Path, simulator: str) -> None:
    """500 ms after skip_ms: the simulator's spikes ((times ms, cell) before and after) and the surrogate
    network's ((bins, N) before and after)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 7), layout="constrained")
    window = (skip_ms, skip_ms + 500.0)
    for col, ((times, gids), sp) in enumerate(zip(sim_spikes, sur_spikes, strict=True)):
        keep = (times >= window[0]) & (times < window[1])
        ax = fig.add_subplot(2, 2, col + 1)
        ax.plot(times[keep], gids[keep], "k.", ms=1.5)
        ax.set(title=f"{simulator}, {('before', 'after')[col]}", xlim=window, ylabel="neuron")
        bins, cells = np.nonzero(sp)
        t = (bins + 0.5) * bin_ms
        keep = (t >= window[0]) & (t < window[1])
        ax = fig.add_subplot(2, 2, col + 3)
        ax.plot(t[keep], cells[keep], "k.", ms=1.5)
        ax.set(title=f"surrogate network, {('before', 'after')[col]}", xlim=window, xlabel="time (ms)",
               ylabel="neuron")
    fig.savefig(path, dpi=110)


def trajectory_figure(trajectory: list[dict], o: Any, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5), layout="constrained")
    steps = [e["step"] for e in trajectory]
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(steps, [e["fundamental_hz"] for e in trajectory], "-o", ms=3, label="fundamental (smoothed peak)")
    ax.plot(steps, [e["peak_hz"] for e in trajectory], ":", color="grey", label="raw peak")
    ax.legend(fontsize=7)
    for band, colour in ((o.band_from_hz, "tab:blue"), (o.band_to_hz, "tab:orange")):
        ax.axhspan(*band, color=colour, alpha=0.12)
    ax.set(xlabel="Adam step", ylabel="peak frequency (Hz)")
    ax = fig.add_subplot(1, 2, 2)
    ax.semilogy(steps, [e["power_from"] for e in trajectory], label=f"{o.band_from_hz[0]:g}-{o.band_from_hz[1]:g} Hz")
    ax.semilogy(steps, [e["power_to"] for e in trajectory], label=f"{o.band_to_hz[0]:g}-{o.band_to_hz[1]:g} Hz")
    ax.set(xlabel="Adam step", ylabel="band power (Hz$^2$)")
    ax.legend()
    fig.savefig(path, dpi=110)
