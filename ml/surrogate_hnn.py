"""Training data of the surrogates of hnn-core's cells (issue 19, point 1): the L5 and L2/3 pyramidal and basket
cells of HNN (Jones et al. 2009, J Neurophysiol 102:3554; Neymotin et al. 2020, eLife 9:e51214), built by
hnn-core (`hnn_core.cells_default`) and simulated by NEURON. Needs the `detailed` extra.

The cell's synapses are hnn-core's: one Exp2Syn per section and receptor. A *synapse group* is a location and
a receptor as hnn-core's connections and drives use them (`proximal`/`distal`/`soma` with `ampa`, `nmda`,
`gabaa` or `gabab`): an event of weight w on a group reaches the receptor's synapse on every section of that
location with weight w, as in `hnn_core.network_builder`. Cell c receives k_e excitatory and k_i inhibitory
Poisson trains (rate_e_hz, rate_i_hz per train), each on a group drawn at random among the cell's excitatory
(AMPA/NMDA) or inhibitory (GABA_A/GABA_B) groups, with weight w_e or w_i (nS). Events lie on the step grid:
an event at t = (k + 1) dt is delivered at the start of the step from t and is stored as input[k], which
first changes V after step k + 1, as in the `hh` data (eilab.cluster.surrogate_gen). The groups' summed
weights per step therefore determine the cell's input, and `replay` feeds them back into NEURON
(tests/test_surrogate_hnn.py: the same voltage).

The trial arrays are those of the `hh` data (input (cells, steps, groups) in nS, somatic V after each step in mV,
spike times where soma V crosses hnn-core's threshold of 0 mV), at hnn-core's temperature (37 C); NEURON's
fixed step (backward Euler) of dt_ms.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from eilab.sim.config import ConfigError

if TYPE_CHECKING:
    from eilab.ml.surrogate_data import CellInput

HNN_CELLS = ("L5_pyramidal", "L2_pyramidal", "L5_basket", "L2_basket")
EXTRA = "pip install 'eilab[detailed]'"
CELSIUS = 37.0  # hnn-core's default network temperature
THRESHOLD_MV = 0.0  # hnn-core's default spike threshold (soma V)
PYR_GROUPS = ([("proximal", "ampa"), ("proximal", "nmda"), ("distal", "ampa"), ("distal", "nmda")],
              [("soma", "gabaa"), ("soma", "gabab"), ("distal", "gabaa"), ("distal", "gabab")])
BASKET_GROUPS = ([("soma", "ampa"), ("soma", "nmda")], [("soma", "gabaa")])

Source = tuple[int, np.ndarray, float]
"""Events of one weight on one synapse group: (group index, steps k (events at (k + 1) dt), weight, nS)."""


def sources(group: int, per_step: np.ndarray) -> list[Source]:
    """The events of weights arriving per step (nS) on one group: one Source per distinct weight."""
    return [(group, np.flatnonzero(per_step == w), float(w)) for w in np.unique(per_step[per_step != 0])]


def require_hnn(what: str = "the hnn-core cells") -> None:
    """ConfigError naming the `detailed` extra when hnn-core or NEURON is missing."""
    for module in ("neuron", "hnn_core"):
        try:
            __import__(module)
        except ImportError:
            raise ConfigError(f"{what}: needs {module}; install the detailed extra ({EXTRA})") from None


def groups(cell: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The excitatory and inhibitory synapse groups (location, receptor) of an hnn-core cell."""
    if cell not in HNN_CELLS:
        raise ConfigError(f"cell = {cell!r}: not an hnn-core cell (one of {', '.join(HNN_CELLS)})")
    return PYR_GROUPS if cell.endswith("pyramidal") else BASKET_GROUPS


def input_groups(cell: str) -> list[tuple[str, str]]:
    """All synapse groups (location, receptor) of an hnn-core cell in input order: the excitatory, then the
    inhibitory."""
    e, i = groups(cell)
    return e + i


def group_names(cell: str) -> list[str]:
    return [f"{loc}_{rec}" for loc, rec in input_groups(cell)]


def build_cell(cell: str, gid: int) -> Any:
    """An hnn-core Cell of type `cell`, built in NEURON (hnn-core's mechanisms loaded)."""
    from hnn_core.cells_default import basket, pyramidal
    from hnn_core.network_builder import load_custom_mechanisms

    load_custom_mechanisms(False)
    c = pyramidal(cell, gid=gid) if cell.endswith("pyramidal") else basket(cell, gid=gid)
    c.build()
    return c


def sections_at(c: Any, location: str) -> list[str]:
    """The sections an input at `location` reaches (hnn-core's sect_loc; `soma` is the soma)."""
    return ["soma"] if location == "soma" else list(c.sect_loc[location])


def simulate(cell: str, inputs: list[list[Source]], t_ms: float, dt_ms: float,
             timings: dict[str, float] | None = None,
             dendrites: bool = False) -> tuple[np.ndarray, list, np.ndarray]:
    """Simulate one unconnected cell per entry of `inputs` in one NEURON run of t_ms at fixed step dt_ms:
    (V at the soma centre after each step (cells, steps) mV, per cell its spike times (ms), V at the centre of
    each of `dendrite_sections` after each step (cells, steps, sections) mV, with `dendrites`; else no
    sections). `timings` gets build_s and run_s (wall seconds of building the cells and of the run) and
    run_cpu_s (the run's CPU seconds)."""
    import time

    from neuron import h

    t0 = time.perf_counter()
    steps = round(t_ms / dt_ms)
    pairs = input_groups(cell)
    keep, v_rec, t_rec, d_rec = [], [], [], []
    names = dendrite_sections(cell) if dendrites else []
    for gid, cell_sources in enumerate(inputs):
        c = build_cell(cell, gid)
        soma = c._nrn_sections["soma"]
        v_rec.append(h.Vector().record(soma(0.5)._ref_v))
        d_rec += [h.Vector().record(c._nrn_sections[n](0.5)._ref_v) for n in names]
        t_rec.append(h.Vector())
        detector = h.NetCon(soma(0.5)._ref_v, None, sec=soma)
        detector.threshold = THRESHOLD_MV
        detector.record(t_rec[-1])
        keep += [c, detector]
        for g, ev_steps, w in cell_sources:
            loc, rec = pairs[g]
            times = h.Vector((np.asarray(ev_steps, float) + 1.0) * dt_ms)
            stim = h.VecStim()
            stim.play(times)
            keep += [times, stim]
            keep += [h.NetCon(stim, c._nrn_synapses[f"{sec}_{rec}"], 0.0, 0.0, w * 1e-3)  # nS -> uS
                     for sec in sections_at(c, loc)]
    h.dt, h.celsius = dt_ms, CELSIUS
    pc = h.ParallelContext()
    pc.set_maxstep(10)
    t1, c1 = time.perf_counter(), time.process_time()
    h.finitialize()
    pc.psolve(t_ms)
    if timings is not None:
        timings.update(build_s=t1 - t0, run_s=time.perf_counter() - t1, run_cpu_s=time.process_time() - c1)
    v = np.array([np.asarray(r)[1 : steps + 1] for r in v_rec]).reshape(len(inputs), steps)
    v_d = np.array([np.asarray(r)[1 : steps + 1] for r in d_rec]).reshape(len(inputs), len(names), steps)
    return v, [np.asarray(t) for t in t_rec], v_d.transpose(0, 2, 1)


def dendrite_sections(cell: str) -> list[str]:
    """The sections of an hnn-core cell other than its soma, in hnn-core's order (none for a basket cell)."""
    from hnn_core.cells_default import basket, pyramidal

    c = pyramidal(cell) if cell.endswith("pyramidal") else basket(cell)
    return [n for n in c.sections if n != "soma"]


def replay(cell: str, x: np.ndarray, dt_ms: float, dendrites: bool = False) -> tuple[np.ndarray, list, np.ndarray]:
    """Simulate cells driven by stored inputs x (cells, steps, groups), nS per step: `simulate`'s output."""
    return simulate(cell, [[s for g in range(x.shape[2]) for s in sources(g, x[c, :, g])] for c in range(len(x))],
                    x.shape[1] * dt_ms, dt_ms, dendrites=dendrites)


def draw_trains(inp: CellInput, k_e: int, k_i: int, n_e: int, n_i: int, steps: int, dt_ms: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The trains of one cell: (group of each train (k_e + k_i,), weight arriving per step and train
    (k_e + k_i, steps) nS). E trains on a random one of the n_e E groups, I trains on one of the n_i I groups
    (numbered after the E groups); Poisson counts per step, or with `inp.e_times_ms` one E event per train one
    step after each of those times (ms, rounded to the step), as the `hh` data's relays deliver them."""
    group = np.concatenate([rng.integers(0, n_e, k_e), n_e + rng.integers(0, n_i, k_i)])
    counts = np.concatenate([rng.poisson(inp.rate_e_hz * dt_ms / 1e3, (k_e, steps)),
                             rng.poisson(inp.rate_i_hz * dt_ms / 1e3, (k_i, steps))]).astype(np.float64)
    if inp.e_times_ms:
        counts[:k_e] = 0.0
        at = np.rint(np.asarray(inp.e_times_ms) / dt_ms).astype(np.int64)
        np.add.at(counts[:k_e], (slice(None), at[(at >= 0) & (at < steps)]), 1.0)
    counts[:k_e] *= exact_weight(inp.w_e_pa)
    counts[k_e:] *= exact_weight(inp.w_i_pa)
    return group, counts


def exact_weight(w_ns: float) -> float:
    """w rounded to a multiple of 2**-12 nS: its sums over coincident events are exact in float32, so the stored
    inputs are the weights the cell received, to the bit."""
    return round(w_ns * 4096) / 4096


def cell_inputs(cell: str, cells: list[CellInput], k_e: int, k_i: int, t_ms: float, dt_ms: float,
                seed: int) -> tuple[np.ndarray, list[list[Source]], list[np.ndarray]]:
    """The trains of `cells` (numpy, `seed`): (inputs per step and group (cells, steps, groups) nS, the Sources
    per cell for `simulate`, the group of each train per cell)."""
    e, i = groups(cell)
    steps = round(t_ms / dt_ms)
    rng = np.random.default_rng(seed)
    trains = [draw_trains(inp, k_e, k_i, len(e), len(i), steps, dt_ms, rng) for inp in cells]
    x = np.zeros((len(cells), steps, len(e) + len(i)))
    for c, (group, per_step) in enumerate(trains):
        np.add.at(x[c].T, group, per_step)
    return x, [[s for g, w in zip(*tr, strict=True) for s in sources(int(g), w)] for tr in trains], \
        [tr[0] for tr in trains]


def chunk_trials(cell: str, cells: list[CellInput], k_e: int, k_i: int, t_ms: float, dt_ms: float,
                 seed: int, dendrites: bool = False) -> dict[str, Any]:
    """The trial arrays of one chunk (eilab.cluster.surrogate_gen.write_trials' layout), simulated in NEURON.
    The weights of `cells` (w_e_pa, w_i_pa) are taken in nS. With `dendrites` the chunk also holds V at the
    centre of every dendritic section after each step (`v_dendrites`, (cells, steps, sections) mV)."""
    x, srcs, train_groups = cell_inputs(cell, cells, k_e, k_i, t_ms, dt_ms, seed)
    v, spikes, v_d = simulate(cell, srcs, t_ms, dt_ms, dendrites=dendrites)
    import hnn_core
    import neuron

    return {"input": x.astype(np.float32), "v": v.astype(np.float32),
            **({"v_dendrites": v_d.astype(np.float32)} if dendrites else {}),
            "spike_times_ms": np.concatenate(spikes) if spikes else np.zeros(0),
            "spike_cell": np.concatenate([np.full(len(t), c, np.int32) for c, t in enumerate(spikes)]),
            "cell": {"model": cell, "simulator": "hnn-core + NEURON", "hnn_core": hnn_core.__version__,
                     "neuron": neuron.__version__, "celsius": CELSIUS, "threshold_mv": THRESHOLD_MV},
            "protocol": {"dt_ms": dt_ms, "t_ms": t_ms, "k_e": k_e, "k_i": k_i, "seed": seed, "delay_steps": 1,
                         "dendrites": dendrite_sections(cell) if dendrites else [],
                         "groups": group_names(cell), "weight_unit": "nS",
                         "cells": [{**asdict(inp), "train_groups": g.tolist()}
                                   for inp, g in zip(cells, train_groups, strict=True)]},
            "units": {"input": "nS", "v": "mV", "v_dendrites": "mV", "spike_times_ms": "ms"}}
