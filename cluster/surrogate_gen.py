"""Training data of the surrogates (issue 19, point 1): eilab's `hh` cell simulated through eilab's engine
(below), or one of hnn-core's cells simulated by NEURON (`cell`; eilab.ml.surrogate_hnn, the same layout
with inputs per location and receptor in nS).

One chunk of trials is one engine run of `cells` unconnected single-neuron `hh` populations. Cell c
receives Poisson spike trains on k_e excitatory and k_i inhibitory synapses: each synapse is a relay
("parrot") neuron, a `lif_delta` unit that fires at every event of its own Poisson drive (rate_e_hz or
rate_i_hz per synapse), projecting onto the cell with weight w_e or w_i (pA) and a delay of one step
(the engine's Poisson drive is excitatory only; an I population carries the inhibitory input). With
`e_times_ms` the excitatory relays fire at those times instead (single and paired input spikes).

The chunk is stored as `trials.zarr` beside its engine run (`run/`), all read back from that run:

  input           (cells, steps, 2) float32  weight arriving at each step, E and I groups, pA (what the
                                             kernel adds to its synaptic currents at the end of that step)
  v               (cells, steps) float32     somatic V after each step, mV (the run's probes)
  spike_times_ms  (spikes,) float64          the cells' spikes (end of the step of the crossing), ms
  spike_cell      (spikes,) int32            the cell of each spike
  attrs           format, cell (model, params), protocol (dt, t, synapses, per-cell rates and weights, seed)

A chunk is written to a temporary store and renamed when whole, so generation resumes chunk by chunk.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from eilab.ml.surrogate_data import DATA_FORMAT, CellInput
from eilab.sim.config import ConfigError, load_config
from eilab.sim.reader import open_run

RELAY = {"tau_m": 10.0, "E_L": 0.0, "V_th": 1.0, "V_reset": 0.0, "t_ref": 0.0}
"""A relay neuron: every input event (10 mV) crosses its threshold, nothing is lost to refractoriness."""
RELAY_KICK_MV = 10.0


def chunk_config(cells: list[CellInput], k_e: int, k_i: int, t_ms: float, dt_ms: float, seed: int,
                 hh_params: dict[str, float] | None = None) -> dict[str, Any]:
    """The raw engine config of one chunk: per cell an `hh` population of one neuron and its E and I relays."""
    pops, drives, projections = [], [], []
    for c, inp in enumerate(cells):
        pops += [{"name": f"cell{c}", "n": 1, "type": "E", "model": "hh", "params": dict(hh_params or {})},
                 {"name": f"exc{c}", "n": k_e, "type": "E", "model": "lif_delta", "params": RELAY},
                 {"name": f"inh{c}", "n": k_i, "type": "I", "model": "lif_delta", "params": RELAY}]
        if inp.e_times_ms:
            drives.append({"target": f"exc{c}", "kind": "spikes", "times_ms": list(inp.e_times_ms),
                           "weight": RELAY_KICK_MV})
        elif inp.rate_e_hz > 0:
            drives.append({"target": f"exc{c}", "kind": "poisson", "rate_hz": inp.rate_e_hz, "weight": RELAY_KICK_MV})
        if inp.rate_i_hz > 0:
            drives.append({"target": f"inh{c}", "kind": "poisson", "rate_hz": inp.rate_i_hz, "weight": RELAY_KICK_MV})
        for group, k, w in (("exc", k_e, inp.w_e_pa), ("inh", k_i, inp.w_i_pa)):
            projections.append({"name": f"{group}{c}", "pre": f"{group}{c}", "post": f"cell{c}",
                                "rule": "fixed_indegree", "k": k, "multapses": False, "weight": w,
                                "delay_ms": dt_ms})
    return {"run": {"name": "surrogate-hh", "t_ms": t_ms, "dt_ms": dt_ms, "seed": seed, "progress": False},
            "populations": pops, "projections": projections, "drive": drives,
            "record": {"spikes": True, "counts_bin_ms": 0.0, "probe_every_ms": dt_ms,
                       "probes": [{"population": f"cell{c}", "neurons": [0]} for c in range(len(cells))]}}


def random_cells(n: int, seed: int, rate_e_hz: tuple[float, float], w_e_pa: tuple[float, float],
                 rate_i_hz: tuple[float, float], w_i_pa: tuple[float, float]) -> list[CellInput]:
    """n cells with rates and weights drawn log-uniformly from the given [low, high] ranges (numpy, `seed`)."""
    rng = np.random.default_rng(seed)

    def draw(lo_hi: tuple[float, float]) -> np.ndarray:
        lo, hi = lo_hi
        return np.exp(rng.uniform(np.log(lo), np.log(hi), n)) if lo > 0 else rng.uniform(lo, hi, n)

    re, we, ri, wi = draw(rate_e_hz), draw(w_e_pa), draw(rate_i_hz), draw(w_i_pa)
    return [CellInput(*map(float, (re[c], we[c], ri[c], wi[c]))) for c in range(n)]


def trials_from_run(run_dir: Path, cells: list[CellInput], k_e: int, k_i: int) -> dict[str, Any]:
    """The trial arrays of a finished chunk run: inputs from its relays' spikes, V and spikes of its cells."""
    run = open_run(run_dir)
    dt, steps = run.dt_ms, round(run.t_ms / run.dt_ms)
    times, gids = run.spikes()
    step_of = np.rint(times / dt).astype(np.int64) - 1  # spikes are stored at the end of their step
    inputs = np.zeros((len(cells), steps, 2), np.float64)
    spike_t, spike_c = [], []
    for c, inp in enumerate(cells):
        for g, (group, w) in enumerate((("exc", inp.w_e_pa), ("inh", inp.w_i_pa))):
            sl = run.gids_of(f"{group}{c}")
            arrive = step_of[(gids >= sl.start) & (gids < sl.stop)] + 1  # delay: one step
            np.add.at(inputs[c, :, g], arrive[arrive < steps], w)
        mine = gids == run.gids_of(f"cell{c}").start
        spike_t.append(times[mine])
        spike_c.append(np.full(int(mine.sum()), c, np.int32))
    probes = run.probes()
    order = np.argsort(probes["probe"])  # probes by gid: cells in order
    return {"input": inputs.astype(np.float32), "v": probes["v"][:, order].T.astype(np.float32),
            "spike_times_ms": np.concatenate(spike_t), "spike_cell": np.concatenate(spike_c),
            "cell": {"model": "hh", "params": run.config.populations[0].params},
            "protocol": {"dt_ms": dt, "t_ms": run.t_ms, "k_e": k_e, "k_i": k_i, "seed": run.config.run.seed,
                         "delay_steps": 1, "groups": ["E", "I"], "cells": [asdict(x) for x in cells]},
            "units": {"input": "pA", "v": "mV", "spike_times_ms": "ms"}}


def write_trials(trials: dict[str, Any], path: Path) -> None:
    """trials.zarr, written whole to a temporary store and renamed."""
    tmp = path.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    root = zarr.open_group(tmp, mode="w")
    for name in ("input", "v", "v_dendrites", "spike_times_ms", "spike_cell"):
        if name in trials:
            root.create_array(name, data=trials[name])
    root.attrs.update({"format": DATA_FORMAT, "cell": trials["cell"], "protocol": trials["protocol"],
                       "units": trials["units"]})
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def differences(store: Path, cells: list[CellInput], k_e: int, k_i: int, t_ms: float, dt_ms: float,
                seed: int, dendrites: bool = False) -> list[str]:
    """The protocol fields (t_ms, dt_ms, k_e, k_i, seed, cells) in which the stored chunk differs from these;
    `dendrites` when they are asked for and the chunk has none (a chunk with them serves a config without)."""
    p = dict(zarr.open_group(store, mode="r").attrs["protocol"])
    asked = json.loads(json.dumps([asdict(c) for c in cells]))  # as the attrs hold them (JSON)
    # a stored cell may carry more than the asked fields (hnn-core chunks add its train_groups)
    stored = p.get("cells", [])
    p["cells"] = ([{k: c.get(k) for k in a} for c, a in zip(stored, asked, strict=True)]
                  if len(stored) == len(asked) else None)
    want = {"t_ms": t_ms, "dt_ms": dt_ms, "k_e": k_e, "k_i": k_i, "seed": seed, "cells": asked}
    return [k for k, v in want.items() if p.get(k) != v] + (["dendrites"] if dendrites and not p.get("dendrites")
                                                           else [])


def generate_chunk(folder: str, cells: list[CellInput], k_e: int, k_i: int, t_ms: float, dt_ms: float,
                   seed: int, cell: str = "hh", keep_run: bool = False, dendrites: bool = False) -> str:
    """Simulate one chunk (reused when its trials.zarr is there with the same protocol; ConfigError naming the
    fields when it holds another) and store its trials; returns the store path.
    `cell` "hh": eilab's engine, whose run (`run/`) is removed afterwards unless `keep_run`; an hnn-core cell
    (eilab.ml.surrogate_hnn, weights in nS): NEURON, with `seed` drawing the trains, and with `dendrites` V of
    its dendritic sections too."""
    from eilab.sim.engine import run

    out = Path(folder)
    store = out / "trials.zarr"
    if (store / "zarr.json").exists():
        stale = differences(store, cells, k_e, k_i, t_ms, dt_ms, seed, dendrites)
        if stale:
            raise ConfigError(f"{store}: an existing chunk with another {', '.join(stale)} than the config asks for; "
                              "delete it or set data.runs_dir to a fresh folder")
        return str(store)
    if cell != "hh":
        from eilab.ml.surrogate_hnn import chunk_trials

        out.mkdir(parents=True, exist_ok=True)
        write_trials(chunk_trials(cell, cells, k_e, k_i, t_ms, dt_ms, seed, dendrites), store)
        return str(store)
    cfg, raw = load_config(raw=chunk_config(cells, k_e, k_i, t_ms, dt_ms, seed))
    out.mkdir(parents=True, exist_ok=True)
    run(cfg, raw, out / "run", force=True, progress=False)
    write_trials(trials_from_run(out / "run", cells, k_e, k_i), store)
    if not keep_run:
        shutil.rmtree(out / "run")  # the trials hold what the surrogate needs; the run is large
    return str(store)


def generate(jobs: list[tuple[str, list[CellInput], int, int, float, float, int]], workers: int,
             cell: str = "hh", dendrites: bool = False) -> list[str]:
    """Every chunk of `jobs` (generate_chunk's arguments up to the seed) of `cell`, in `workers` processes;
    finished chunks are kept."""
    if workers <= 1:
        return [generate_chunk(*j, cell, False, dendrites) for j in jobs]
    n = len(jobs)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(generate_chunk, *zip(*jobs, strict=True), [cell] * n, [False] * n, [dendrites] * n))
