"""The numba time loop: update local neurons slice by slice and deliver spikes.

A slice is one minimum delay (m steps): nothing a neuron emits inside a slice can reach any
neuron before the slice ends, so populations advance independently through a slice and spikes
are delivered (after exchange, on several ranks) only at slice ends (NEST's scheme).

Ring buffer ``ring[receptor, slot, neuron]`` holds the weight arriving at step t in slot t % R;
a step reads and clears its slot. Spikes are delivered in (step, gid) order, so each target
sums its inputs in the same order whatever the partition.

The kernels take their arrays in the groups below (named tuples: numba unpacks them at no cost),
the interface that every backend (backend.py) implements.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from eilab.sim.cycles import ticks
from eilab.sim.models import LIF_DELTA_PS, P_IE, SX, probe, update_population
from eilab.sim.rng import TABLE_MAX_MU, poisson, poisson_tabled, poisson_word


class Neurons(NamedTuple):
    """One rank's neurons, population by population."""

    state: np.ndarray      # (N_STATE, n_local) float64: V, synaptic variables, refractory time, model extras
    pop_model: np.ndarray  # (pops,) int64: model id (models.MODEL_IDS)
    pop_lo: np.ndarray     # (pops,) int64: first local index of each population on this rank
    pop_hi: np.ndarray     # (pops,) int64: end of each population's local indices
    pop_gid0: np.ndarray   # (pops,) int64: gid of local index pop_lo
    params: np.ndarray     # (pops, P) float64: per-step model constants (models.parameter_vector)


class PoissonDrive(NamedTuple):
    """Poisson input: per population the mean count per step and the weight of an event, per neuron the
    stream key; tables of the inverse-CDF sampler (rng.poisson_table)."""

    mu: np.ndarray     # (pops,) float64: events per step while on
    w: np.ndarray      # (pops,) float64: weight per event (model units)
    keys: np.ndarray   # (n_local,) uint64: stream (seed, poisson, gid)
    cdf: np.ndarray    # (pops, 64) float64
    guide: np.ndarray  # (pops, 64) int64


class DriveWindow(NamedTuple):
    """The deterministic drive of the current window (drive.DriveTable.window) and any drive drawn ahead."""

    cur: np.ndarray      # (pops, n) float64: current added to I_e, pA
    kick: np.ndarray     # (pops, n) float64: summed weight of input spikes arriving at each step
    on: np.ndarray       # (pops, n) float64: 1 while the Poisson drive is on
    t0: int              # step of column 0
    x_ahead: np.ndarray  # (steps, n_local) float64: external arrivals of the first steps, drawn ahead


class Synapses(NamedTuple):
    """The connectivity (network.Connectivity): per projection q its presynaptic gid range, rows and
    shared weight and delay (or per-synapse ones); rows of targets in CSR form, each row's targets in runs by
    target block: block b of row `row` is (b << block_bits) + targets[blocks[row * nb + b] : blocks[row * nb + b + 1]]
    (`target_blocks` gives nb, 1 on ranks of at most 65,536 neurons; rowptr is blocks[::nb])."""

    pre_gid0: np.ndarray   # (q,) int64
    pre_n: np.ndarray      # (q,) int64
    row0: np.ndarray       # (q,) int64: row of presynaptic index 0
    stride: np.ndarray     # (q,) int64: rows between consecutive presynaptic indices
    receptor: np.ndarray   # (q,) int64: 0 excitatory, 1 inhibitory
    delay: np.ndarray      # (q,) int64: steps
    weight: np.ndarray     # (q,) float64: model units
    rowptr: np.ndarray     # (rows + 1,) int64: blocks[::nb]
    targets: np.ndarray    # (synapses,) uint16: local target index within its block
    plastic: np.ndarray    # (q,) bool: delivered by plasticity.apply_slice instead
    own_w: np.ndarray      # (q,) bool: weights per synapse in syn_w
    own_d: np.ndarray      # (q,) bool: delays per synapse in syn_d
    syn_w: np.ndarray      # (synapses,) float32 or empty
    syn_d: np.ndarray      # (synapses,) uint16 or empty: steps
    blocks: np.ndarray     # (rows * nb + 1,) int64: start of each row's run of targets in each block
    block_bits: int        # a target block holds 2**block_bits local neurons


class Recording(NamedTuple):
    """Where a call of `advance` writes: the spike buffer, counts, probe samples and the phase profile."""

    spk_step: np.ndarray   # (cap,) int64: step of each buffered spike
    spk_gid: np.ndarray    # (cap,) int32: its gid
    spk_off: np.ndarray    # (cap,) float64: its time into the step, ms (precise models), -1 on the grid
    counts: np.ndarray     # (bins, n_local) uint16: counts[t // bin_steps - bin_t0, j]
    drive: np.ndarray      # (bins, n_local) uint32: Poisson drive events, like counts; (0, n_local): not recorded
    bin_steps: int         # 0: no counts
    bin_t0: int
    probe_slot: np.ndarray  # (n_local,) int64: probe column of each local neuron, -1 if not probed
    probe_every: int       # steps between samples; 0: no probes
    probe_k0: int          # sample index of probe_buf row 0
    probe_buf: np.ndarray  # (samples, 4, probes) float32: v, syn_e, syn_i, ext
    prof: np.ndarray       # (5,) int64: ticks in drive, update, bookkeeping, local delivery; events


@njit(cache=True, inline="always")
def target_blocks(rowptr, blocks) -> int:
    """Target blocks per row of a connectivity (step.Synapses)."""
    return (blocks.size - 1) // max(1, rowptr.size - 1)


@njit(cache=True)
def deliver(spk_step, spk_gid, a, b, ring, syn) -> int:
    """Scatter-add spikes a..b-1 into the ring buffer of their targets over the static projections of
    `syn` (Synapses; plastic ones deliver in `plasticity.apply_slice`); returns the events (synapses hit).
    A row is delivered block by block in storage order, which is ascending target order."""
    (pre_gid0, pre_n, row0, stride, receptor, delay, weight, rowptr, targets, plastic, own_w, own_d, syn_w, syn_d,
     blocks, bits) = syn
    r_len = ring.shape[1]
    nb = target_blocks(rowptr, blocks)
    events = 0
    for s in range(a, b):
        g = spk_gid[s]
        for q in range(pre_gid0.size):
            r = g - pre_gid0[q]
            if r < 0 or r >= pre_n[q] or plastic[q]:
                continue
            row = row0[q] + r * stride[q]
            events += rowptr[row + 1] - rowptr[row]
            slot = (spk_step[s] + delay[q]) % r_len
            w = weight[q]
            for blk in range(row * nb, (row + 1) * nb):
                base = (blk - row * nb) << bits
                if own_w[q] or own_d[q]:
                    _deliver_own(spk_step[s], blocks[blk], blocks[blk + 1], base, ring[receptor[q]], w, delay[q],
                                 own_w[q], own_d[q], syn_w, syn_d, targets)
                    continue
                buf = ring[receptor[q], slot, base:]
                for k in range(blocks[blk], blocks[blk + 1]):
                    buf[targets[k]] += w
    return events


@njit(cache=True)
def _deliver_own(step, k0, k1, base, ring_r, weight, delay, own_w, own_d, syn_w, syn_d, targets) -> None:
    """Synapses k0..k1-1 (of one row and target block, first target base) of a projection with per-synapse
    weights or delays into ring_r[slot, target]."""
    r_len = ring_r.shape[0]
    for k in range(k0, k1):
        d = syn_d[k] if own_d else delay
        ring_r[(step + d) % r_len, base + targets[k]] += syn_w[k] if own_w else weight


@njit(cache=True)
def sort_keys(keys, slice_start, n_total):
    """A slice's gathered spike keys ((step - slice_start) * n_total + gid, any order) as (steps, gids)
    in (step, gid) order, the order every rank delivers in."""
    keys = np.sort(keys)
    return keys // n_total + slice_start, keys % n_total


@njit(cache=True)
def _draw_drive(lo, hi, kick, mu, w, pois_keys, cdf, guide, t, x) -> None:
    """External arrivals of step t: the current-like kick plus w times a Poisson count of mean mu."""
    if mu <= 0.0:
        x[lo:hi] = kick
    elif mu < TABLE_MAX_MU:
        word = poisson_word(t)
        for j in range(lo, hi):
            x[j] = kick + w * poisson_tabled(pois_keys[j], word, cdf, guide)
    else:
        for j in range(lo, hi):
            x[j] = kick + w * poisson(pois_keys[j], t, mu)


@njit(cache=True)
def _count_events(lo, hi, x, kick, w, row) -> None:
    """Add this step's Poisson drive events (x = kick + w n, so n = round((x - kick) / w)) to a drive_counts row."""
    for j in range(lo, hi):
        row[j] += round((x[j] - kick) / w)


@njit(cache=True)
def draw_slice_drive(neurons, pois, win, t0, x_out) -> None:
    """Draw the external arrivals of the x_out.shape[0] steps from t0 ahead of time, x_out[t - t0, neuron]
    (the same numbers `advance` draws itself): ranks fill an exchange wait with this work."""
    pop_lo, pop_hi = neurons.pop_lo, neurons.pop_hi
    pois_mu, pois_w, pois_keys, pois_cdf, pois_guide = pois
    kick_win, pois_on, win_t0 = win.kick, win.on, win.t0
    for t in range(t0, t0 + x_out.shape[0]):
        for pi in range(pop_lo.size):
            _draw_drive(pop_lo[pi], pop_hi[pi], kick_win[pi, t - win_t0], pois_mu[pi] * pois_on[pi, t - win_t0],
                        pois_w[pi], pois_keys, pois_cdf[pi], pois_guide[pi], t, x_out[t - t0])


@njit(cache=True)
def advance(neurons, pois, win, syn, rec, ring, t0, n_slices, m, deliver_local, n_spk):
    """Advance up to n_slices slices of m steps from step t0 (Neurons, PoissonDrive, DriveWindow,
    Synapses, Recording; ring the delay buffer; deliver_local: one rank delivers its own spikes).

    With x_ahead non-empty, its rows are the drive of steps t0, t0 + 1, ... (`draw_slice_drive`).
    Stops early, at a slice end, when the spike buffer could overflow; returns
    (slices done, spikes now in the buffer). counts[(t // bin_steps) - bin_t0, j] counts spikes
    of local neuron j; probe_buf[k - probe_k0, var, probe_slot[j]] samples neuron j after every
    step t with (t + 1) % probe_every == 0, k = (t + 1) // probe_every - 1. prof[0:4] gathers
    cycle-counter ticks spent on drawing the drive, neuron updates, spike bookkeeping (buffer,
    counts, probes, clearing the ring slot) and local delivery; prof[4] counts the synaptic events
    delivered. The update reads the step's arrivals straight from its ring slot; a population
    without external drive (and with its external synaptic variable at zero) skips that variable.
    """
    state, pop_model, pop_lo, pop_hi, pop_gid0, params = neurons
    pois_mu, pois_w, pois_keys, pois_cdf, pois_guide = pois
    cur_win, kick_win, pois_on, win_t0, x_ahead = win
    (spk_step, spk_gid, spk_off, counts, drive, bin_steps, bin_t0, probe_slot, probe_every, probe_k0, probe_buf,
     prof) = rec
    r_len = ring.shape[1]
    n_local = state.shape[1]
    cap = spk_step.size
    x_in = np.empty(n_local)
    no_x = np.zeros(n_local)  # the drive of a step without any: never written
    x_idle = np.empty(pop_model.size, np.bool_)  # per population: state[SX] all zero, and zero while no drive comes
    for pi in range(pop_model.size):
        x_idle[pi] = not np.any(state[SX, pop_lo[pi]:pop_hi[pi]])
    fired = np.empty(n_local, np.int64)
    offsets = np.empty(n_local)
    probe_local = np.flatnonzero(probe_slot >= 0)
    ahead = x_ahead.shape[0]
    done = 0
    for sl in range(n_slices):
        if cap - n_spk < n_local * m:
            break
        first = n_spk
        for t in range(t0 + sl * m, t0 + (sl + 1) * m):
            slot = t % r_len
            ring_e = ring[0, slot]
            ring_i = ring[1, slot]
            sample = probe_every > 0 and (t + 1) % probe_every == 0
            for pi in range(pop_model.size):
                model = pop_model[pi]
                p = params[pi]
                cur = p[P_IE] + cur_win[pi, t - win_t0]
                lo, hi = pop_lo[pi], pop_hi[pi]
                mu = pois_mu[pi] * pois_on[pi, t - win_t0]
                kick = kick_win[pi, t - win_t0]
                t_a = ticks()
                no_drive = t - t0 >= ahead and mu <= 0.0 and kick == 0.0
                x_idle[pi] = x_idle[pi] and no_drive
                if no_drive:
                    x = no_x
                elif t - t0 < ahead:
                    x = x_ahead[t - t0]
                else:
                    x = x_in
                    _draw_drive(lo, hi, kick, mu, pois_w[pi], pois_keys, pois_cdf[pi], pois_guide[pi], t, x)
                if drive.shape[0] > 0 and mu > 0.0:
                    _count_events(lo, hi, x, kick, pois_w[pi], drive[t // bin_steps - bin_t0])
                t_b = ticks()
                n_fired = update_population(model, state, lo, hi, p, ring_e, ring_i, x, not x_idle[pi], cur,
                                            fired, offsets)
                t_c = ticks()
                precise = model >= LIF_DELTA_PS
                for f in range(n_fired):
                    j = fired[f]
                    spk_step[n_spk] = t
                    spk_gid[n_spk] = pop_gid0[pi] + j - lo
                    spk_off[n_spk] = offsets[f] if precise else -1.0
                    n_spk += 1
                    if bin_steps > 0:
                        counts[t // bin_steps - bin_t0, j] += 1
                if sample:
                    k = (t + 1) // probe_every - 1 - probe_k0
                    for j in probe_local:
                        if lo <= j < hi:
                            probe(model, state, j, p, ring_e[j], ring_i[j], x[j], cur, probe_buf[k, :, probe_slot[j]])
                ring_e[lo:hi] = 0.0  # the step's arrivals are taken: its slot is free for step t + r_len
                ring_i[lo:hi] = 0.0
                t_d = ticks()
                prof[0] += t_b - t_a
                prof[1] += t_c - t_b
                prof[2] += t_d - t_c
        if deliver_local:
            t_e = ticks()
            prof[4] += deliver(spk_step, spk_gid, first, n_spk, ring, syn)
            prof[3] += ticks() - t_e
        done += 1
    return done, n_spk
