"""`eilab train` for `task = "surrogate_net"` with `[hnn]` (issue 19, points 5 and 6): hnn-core's Jones 2009 circuit
of trained surrogates (eilab.ml.surrogate_hnn_net), its connection strengths moved by Adam towards a target band of
one cell type's rate, the optimised strengths written back as hnn-core connectivity, and the circuit simulated by
NEURON before and after. The training directory holds what the engine variant's does (cluster/surrogate_net_train),
with hnn-core in place of the engine:

  metrics.json   peak frequency and band powers before/after in the surrogate network and in hnn-core (rate
                 spectrum of the objective's cell type, and the aggregate dipole's peak), the weights (A_weight *
                 gain, nS) before/after, the trajectory, the optimised circuit's path within the directory
  figures/       spectra.png, raster.png, trajectory.png
  runs/          optimised.json (the optimised circuit, hnn-core's network configuration: read it with
                 hnn_core.read_network_configuration), before.npz and after.npz (spikes and dipoles of hnn-core)
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from eilab.cluster.surrogate_net_train import (
    one_bin,
    raster_figure,
    spectra_figure,
    surrogate_spectrum,
    table,
    trajectory_figure,
)
from eilab.cluster.surrogate_train import require_extras
from eilab.cluster.train import provenance, write_json
from eilab.ml.surrogate_net_config import HNN_TYPES, HnnCircuit, SurrogateNetConfig
from eilab.sim.config import ConfigError


def surrogates_of(tc: SurrogateNetConfig) -> dict[str, Any]:
    """The surrogate of each cell type, checked against the cell it was trained on (hnn-core builds its two
    basket cells from one soma: a basket surrogate stands for either)."""
    from eilab.ml.surrogate_net import load_surrogate

    loaded: dict[str, Any] = {}
    out = {}
    for t in HNN_TYPES:
        path = tc.surrogates.get(t, tc.surrogate)
        s = loaded.setdefault(path, load_surrogate(path))
        same = s.cell == t or (s.cell.endswith("basket") and t.endswith("basket"))
        if not same:
            where = f"surrogates.{t}" if t in tc.surrogates else "surrogate"
            raise ConfigError(f"{where} = {path!r}: trained on cell = {s.cell!r}, not {t!r}; give a surrogate of {t}")
        out[t] = s
    for t in tc.surrogates:
        if t not in HNN_TYPES:
            raise ConfigError(f"surrogates.{t}: not a cell type of the HNN circuit ({', '.join(HNN_TYPES)})")
    one_bin(out)
    return out


def hnn_run(circuit: dict, weights: dict[str, float], t_ms: float, seed: int, path: str) -> str:
    """Simulate the circuit with the given strengths in NEURON (in a worker process) and store it at path (npz)."""
    from eilab.ml.surrogate_hnn_net import build_circuit, simulate_circuit, with_hnn_weights

    c = HnnCircuit.model_validate(circuit)
    net = with_hnn_weights(build_circuit(c), weights)
    np.savez(path, **simulate_circuit(net, t_ms, c.dt_ms, seed), **gid_ranges(net))
    return path


def gid_ranges(net: Any) -> dict[str, np.ndarray]:
    return {f"gids_{t}": np.array([net.gid_ranges[t].start, net.gid_ranges[t].stop]) for t in net.cell_types}


def hnn_spectrum(path: Path, cell_type: str, bin_ms: float, skip_ms: float,
                 segment_ms: float) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray], float]:
    """(f Hz, PSD Hz^2/Hz) of the cell type's population rate after skip_ms (eilab.analysis.spikes), its spikes
    (times ms, cell index within the circuit) and the aggregate dipole's spectral peak (Hz, 2-100 Hz)."""
    from scipy import signal

    from eilab.analysis.spikes import population_rate, power_spectrum

    r = np.load(path)
    lo, hi = r[f"gids_{cell_type}"]
    t, g = r["spike_times_ms"], r["spike_gids"]
    mine = (g >= lo) & (g < hi) & (t >= skip_ms)
    end = float(r["dipole_t_ms"][-1])
    bins = int((end - skip_ms) // bin_ms)
    counts = np.zeros((bins, hi - lo))
    b = ((t[mine] - skip_ms) // bin_ms).astype(np.int64)
    np.add.at(counts, (b[b < bins], g[mine][b < bins] - lo), 1.0)
    f, psd = power_spectrum(population_rate(counts, bin_ms), bin_ms, segment_ms)
    dt = float(r["dipole_t_ms"][1] - r["dipole_t_ms"][0])
    d = r["dipole_agg"][r["dipole_t_ms"] >= skip_ms]
    fd, pd = signal.welch(d - d.mean(), fs=1000.0 / dt, nperseg=min(d.size, round(segment_ms / dt)))
    band = (fd >= 2.0) & (fd <= 100.0)
    return f, psd, (t, g), float(fd[band][np.argmax(pd[band])])


def train_hnn_net(tc: SurrogateNetConfig, text: str, out: Path, jobs: int, progress: bool) -> int:
    """Optimise the HNN circuit of surrogates, write the optimised circuit, simulate both in NEURON, compare."""
    require_extras("L5_pyramidal")
    import torch
    from hnn_core.hnn_io import write_network_configuration

    from eilab.ml.surrogate_hnn_net import HnnSurrogateNetwork, build_circuit, hnn_wiring, with_hnn_weights
    from eilab.ml.surrogate_net import optimise, summary

    assert tc.hnn is not None
    per_type = surrogates_of(tc)
    o, s = tc.objective, tc.optimise
    if o.population not in HNN_TYPES:
        raise ConfigError(f"objective.population = {o.population!r}: give a cell type of the HNN circuit "
                          f"({', '.join(HNN_TYPES)})")
    bin_ms = one_bin(per_type)
    net = build_circuit(tc.hnn)
    wiring = hnn_wiring(net, bin_ms)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(text)
    (out / "runs").mkdir(exist_ok=True)
    torch.manual_seed(s.seed)
    torch.set_num_threads(s.threads)
    model = HnnSurrogateNetwork(wiring, per_type, tc.train or wiring.names, s.spikes, s.dampening)
    weights_before = model.named_weights()
    sur_before = surrogate_spectrum(model, s.eval_t_ms, s.skip_ms, s.eval_seed, o.population, o.report_segment_ms)

    def log(e: dict) -> None:
        if progress:
            moved = "  ".join(f"{k} {e['weights_ns'][k]:.3g}" for k in model.trained)
            print(f"step {e['step']:>3}  loss {e['loss']:.3f}  peak {e['peak_hz']:5.1f} ({e['fundamental_hz']:.1f}) Hz"
                  f"  rate {e['rate_hz']:5.1f} Hz  {moved} nS  {e.get('stopped', '')}", file=sys.stderr)

    trajectory = optimise(model, o, s, (tc.hnn.min_weight_ns, tc.hnn.max_weight_ns), log)
    weights_after = trajectory[-1]["weights_ns"]
    sur_after = surrogate_spectrum(model, s.eval_t_ms, s.skip_ms, s.eval_seed, o.population, o.report_segment_ms)
    optimised = out / "runs" / "optimised.json"
    write_network_configuration(with_hnn_weights(net, weights_after), str(optimised))
    paths = [str(out / "runs" / "before.npz"), str(out / "runs" / "after.npz")]
    args = ([tc.hnn.model_dump()] * 2, [weights_before, weights_after], [s.eval_t_ms] * 2, [s.eval_seed] * 2, paths)
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
            list(pool.map(hnn_run, *args))
    else:
        for a in zip(*args, strict=True):
            hnn_run(*a)
    sims = [hnn_spectrum(Path(p), o.population, bin_ms, s.skip_ms, o.report_segment_ms) for p in paths]
    metrics: dict[str, Any] = {
        "surrogate": {"before": summary(*sur_before[:2], o), "after": summary(*sur_after[:2], o)},
        "hnn_core": {when: {**summary(*sim[:2], o), "dipole_peak_hz": sim[3]}
                     for when, sim in zip(("before", "after"), sims, strict=True)},
        "weights_ns": {"before": weights_before, "after": weights_after},
        "bands_hz": {"from": o.band_from_hz, "to": o.band_to_hz, "total": o.total_hz},
        "trajectory": trajectory, "optimised_config": str(optimised.relative_to(out)),
        "surrogates": {t: sg.path for t, sg in per_type.items()}, "n_cells": wiring.n, **provenance(s.seed)}
    write_json(metrics, out / "metrics.json")
    (out / "figures").mkdir(exist_ok=True)
    spectra_figure(sur_before, sur_after, [sim[:2] for sim in sims], o, out / "figures" / "spectra.png",
                   "hnn-core (NEURON)")
    raster_figure([sim[2] for sim in sims], [sur_before[2], sur_after[2]], bin_ms, s.skip_ms,
                  out / "figures" / "raster.png", "hnn-core")
    trajectory_figure(trajectory, o, out / "figures" / "trajectory.png")
    print(table(metrics, "hnn_core"))
    print(json.dumps({"dipole_peak_hz": {w: metrics["hnn_core"][w]["dipole_peak_hz"] for w in ("before", "after")}}))
    print(f"training directory: {out}")
    return 0
