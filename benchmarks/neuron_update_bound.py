"""The neuron update against a bound from memory streaming on this machine (issue 21, item 4).

On n neurons (default 4000, the Brette et al. 2007 networks' size: state and arrivals then sit in L2), per
neuron-step in ns of CPU time (`time.process_time`, so preemption on a loaded machine is not counted) and in
cycle-counter ticks (sim/cycles.py), each the median of --repeats runs of --steps steps:

- stream: a loop that reads and writes the bytes lif_cond_exp's update moves per neuron (the state rows V, REF,
  S_E, S_I, S_X read and written, the arrivals e, i, x read: 104 bytes) with one multiply-add per value; numba
  vectorises it. No update moving those bytes can be faster: the bound.
- exp: one `math.exp` per neuron (libm's, as numba calls it; not vectorised without a vector math library), and
  exp_vec: one `models._exp_vec` per neuron (vectorised), the exponential lif_cond_exp (exp(-dt g_tot / C_m),
  per neuron) and hh_cond_exp_traub use.
- the update kernels (`models.update_population`) of the E populations of the bundled configs coba
  (lif_cond_exp), cuba (lif_exp), alpha_hh (hh) and cobahh (hh_cond_exp_traub), under Poisson arrivals of their
  recurrent weights at 20 Hz per input (the networks' in-degrees at p = 0.02) and random initial V; `spiked` is
  the fraction of neuron-steps with a spike.

    python benchmarks/neuron_update_bound.py [--n 4000] [--steps 2000] [--repeats 5] [--configs coba,cuba]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from numba import njit

from eilab.sim import models
from eilab.sim.config import load_config
from eilab.sim.cycles import ticks

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
STREAM_BYTES = 104  # per neuron: 5 state rows read and written (80), 3 arrival arrays read (24)
INPUT_HZ = 20.0
PATTERNS = 16       # distinct arrival vectors, cycled through


@njit(cache=True)
def stream(state, e, i, x, steps) -> int:
    """The bound's loop: lif_cond_exp's bytes per neuron, one multiply-add per value; returns ticks."""
    n = state.shape[1]
    t0 = ticks()
    for _ in range(steps):
        for j in range(n):
            state[0, j] = state[0, j] * 0.999 + e[j]
            state[1, j] = state[1, j] * 0.999 + i[j]
            state[2, j] = state[2, j] * 0.999 + x[j]
            state[3, j] = state[3, j] * 0.999
            state[4, j] = state[4, j] * 0.999
    return ticks() - t0


@njit(cache=True)
def exps(v, steps) -> int:
    """One math.exp per neuron and step; returns ticks."""
    t0 = ticks()
    for _ in range(steps):
        for j in range(v.size):
            v[j] = 0.5 * v[j] + 0.5 * np.exp(-0.1 * v[j])
    return ticks() - t0


@njit(cache=True)
def exps_vec(v, steps) -> int:
    """One models._exp_vec per neuron and step (vectorised); returns ticks."""
    t0 = ticks()
    for _ in range(steps):
        for j in range(np.uint64(0), np.uint64(v.size)):
            v[j] = 0.5 * v[j] + 0.5 * models._exp_vec(-0.1 * v[j])
    return ticks() - t0


@njit(cache=True)
def updates(model, state, p, e, i, x, steps, fired, offsets) -> tuple[int, int]:
    """`steps` calls of update_population over all neurons, arrivals cycled over e[k], i[k], x[k] (zero: these
    networks have no external drive, so the step skips the external synaptic variable); returns (ticks, spikes)."""
    n = state.shape[1]
    t0 = ticks()
    spikes = 0
    for s in range(steps):
        k = s % e.shape[0]
        spikes += models.update_population(model, state, 0, n, p, e[k], i[k], x[k], False, p[models.P_IE], fired,
                                            offsets)
    return ticks() - t0, spikes


def median_run(fn, repeats: int) -> tuple[float, float]:
    """(median CPU seconds, median ticks) of fn() -> ticks over `repeats` calls (after one warm-up call)."""
    fn()
    cpu, tk = [], []
    for _ in range(repeats):
        c0 = time.process_time()
        tk.append(fn())
        cpu.append(time.process_time() - c0)
    return statistics.median(cpu), statistics.median(tk)


def network_case(name: str, n: int, dt: float, rng: np.random.Generator):
    """(model name, model id, state, parameters, e, i, x) for the first population of a bundled config."""
    cfg, _ = load_config(CONFIGS / f"{name}.toml")
    pop = cfg.populations[0]
    state = np.zeros((models.N_STATE, n))
    lo, hi = (pop.params["V_reset"], pop.params["V_th"]) if "V_th" in pop.params else (-70.0, -60.0)
    state[models.V] = rng.uniform(lo, hi, n)
    for row, values in models.initial_extra_state(pop, state[models.V]).items():
        state[row] = values
    arrivals = []
    for typ in ("E", "I"):
        projs = [pr for pr in cfg.projections if pr.post == pop.name and
                 next(q for q in cfg.populations if q.name == pr.pre).type == typ]
        mean = sum(pr.weight * (pr.k if pr.k is not None else pr.p * next(q.n for q in cfg.populations
                                                                        if q.name == pr.pre)) for pr in projs)
        w = max((pr.weight for pr in projs), default=0.0)
        lam = mean / w * INPUT_HZ * dt * 1e-3 if w else 0.0
        arrivals.append(w * rng.poisson(lam, (PATTERNS, n)).astype(np.float64))
    return pop.model, models.model_id(pop), state, models.parameter_vector(pop, dt), arrivals[0], arrivals[1], \
        np.zeros((PATTERNS, n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--configs", default="coba,cuba,alpha_hh,cobahh", help="bundled configs whose update is timed")
    args = ap.parse_args()
    n, steps, reps = args.n, args.steps, args.repeats
    rng = np.random.default_rng(1)
    per = n * steps
    out: dict = {"n": n, "steps": steps, "repeats": reps, "stream_bytes_per_neuron": STREAM_BYTES,
                 "load_avg": [round(a, 2) for a in os.getloadavg()]}

    def record(key: str, cpu: float, tk: float, **extra) -> None:
        out[key] = {"ns_per_neuron_step": 1e9 * cpu / per, "ticks_per_neuron_step": tk / per, **extra}

    state = rng.uniform(-1, 1, (models.N_STATE, n))
    e, i, x = (rng.uniform(0, 1e-3, n) for _ in range(3))
    cpu, tk = median_run(lambda: stream(state, e, i, x, steps), reps)
    record("stream", cpu, tk, gb_per_s=STREAM_BYTES * per / cpu / 1e9)
    v = rng.uniform(-1, 1, n)
    record("exp", *median_run(lambda: exps(v, steps), reps))
    record("exp_vec", *median_run(lambda: exps_vec(v, steps), reps))
    fired, offsets = np.empty(n, np.int64), np.empty(n)
    for name in args.configs.split(","):
        kind, model, st, p, ea, ia, xa = network_case(name, n, 0.1, rng)
        hh_steps = max(1, steps // 20) if name == "alpha_hh" else steps  # hh: 40 RK4 stages per step
        spikes = []

        def call(model=model, st=st, p=p, ea=ea, ia=ia, xa=xa, k=hh_steps, spikes=spikes) -> int:
            tk, s = updates(model, st, p, ea, ia, xa, k, fired, offsets)
            spikes.append(s)
            return tk

        cpu, tk = median_run(call, reps)
        scale = per / (n * hh_steps)
        record(f"{name}_{kind}", cpu * scale, tk * scale,
               spiked=sum(spikes) / (len(spikes) * n * hh_steps))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
