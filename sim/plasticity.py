"""Inhibitory STDP (Vogels et al. 2011; Akil et al. 2021) on chosen projections.

A plastic projection keeps one weight per synapse (in its pre-major storage order), float32 by
default or float64 (`precision`: every update then exact to double rounding), and, for
postsynaptic updates, one int32 post-major index (synapses of each local target, by presynaptic
index: the canonical order, the same on every partition): 8 (float64: 12) bytes per plastic
synapse beyond the static connectivity, parameters shared. A synapse's presynaptic index is found from the row
pointers (binary search) when its target spikes. Traces decay exactly between spikes
(value and step of the last update are stored), so every update uses the exact trace at its
spike time, whatever order ranks deliver in.

Each slice, after the exchange, `plastic_slice` walks the slice's spikes in step order: first
the postsynaptic spikes (w += eta x_pre), then the presynaptic ones (w += eta (x_post - alpha),
then the spike is delivered with the new weight), then the traces jump. Static projections are
delivered by `step.deliver`, which skips plastic ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from eilab.sim.config import Config, Plasticity
from eilab.sim.network import Connectivity
from eilab.sim.step import target_blocks


@dataclass
class PlasticProjection:
    """One plastic projection's state on this rank."""

    q: int                    # projection index
    name: str
    rule: Plasticity
    s0: int                   # first synapse of the projection in Connectivity.targets
    w: np.ndarray             # float32 or float64 (rule.precision) (n_syn,), pre-major order
    post_ptr: np.ndarray      # int64 (n_local + 1,)
    post_syn: np.ndarray      # int32 (n_syn,), synapses by target (post-major, canonical order)
    x_pre: np.ndarray         # float64 (n_pre,)
    t_pre: np.ndarray         # int64 (n_pre,), step of the last update of x_pre
    x_post: np.ndarray        # float64 (n_local,)
    t_post: np.ndarray        # int64 (n_local,)

    @property
    def canonical_weights(self) -> np.ndarray:
        """Weights in canonical order: local targets by gid, each target's synapses by presynaptic index."""
        return self.w[self.post_syn]

    @property
    def in_degree(self) -> np.ndarray:
        """Plastic synapses per local neuron (int32)."""
        return np.diff(self.post_ptr).astype(np.int32)

    def set_canonical_weights(self, w: np.ndarray) -> None:
        self.w[self.post_syn] = w


def rule_constants(rule: Plasticity, dt: float) -> tuple[int, float, float, float]:
    """(multiplicative, per-step decay, trace jump, alpha) of a rule at step dt (ms)."""
    decay = math.exp(-dt / rule.tau_ms)
    rho0 = rule.rho0_hz / 1000.0  # per ms
    if rule.rule == "vogels2011":
        return 0, decay, 1.0, 2.0 * rho0 * rule.tau_ms
    return 1, decay, 1.0 / rule.tau_ms, 2.0 * rho0


def build_plastic(cfg: Config, conn: Connectivity, n_local: int) -> list[PlasticProjection]:
    """Weights, indexes and traces of every plastic projection onto this rank's neurons."""
    out = []
    for q, pr in enumerate(cfg.projections):
        if pr.plasticity is None:
            continue
        n_pre = int(conn.pre_n[q])
        rows = conn.rowptr[conn.row0[q] : conn.row0[q] + n_pre + 1]  # a plastic projection's rows are one block
        s0, s1 = int(rows[0]), int(rows[-1])
        tg = conn.local_targets(np.arange(s0, s1)).astype(np.int64)
        order = np.argsort(tg, kind="stable")  # by target, then by presynaptic index (pre-major storage)
        post_ptr = np.zeros(n_local + 1, np.int64)
        np.cumsum(np.bincount(tg, minlength=n_local), out=post_ptr[1:])
        out.append(PlasticProjection(
            q=q, name=pr.name, rule=pr.plasticity, s0=s0,
            w=_initial_weights(conn, q, s0, s1, pr.plasticity),
            post_ptr=post_ptr, post_syn=order.astype(np.int32),
            x_pre=np.zeros(n_pre), t_pre=np.zeros(n_pre, np.int64),
            x_post=np.zeros(n_local), t_post=np.zeros(n_local, np.int64),
        ))
    return out


def _initial_weights(conn: Connectivity, q: int, s0: int, s1: int, rule: Plasticity) -> np.ndarray:
    """A plastic projection's starting weights: its shared weight, or the drawn ones clipped to [w_min, w_max]."""
    dtype = np.dtype(rule.precision)
    if not conn.own_w[q]:
        return np.full(s1 - s0, conn.weight[q], dtype)
    return np.clip(conn.syn_w[s0:s1], rule.w_min, rule.w_max).astype(dtype)


@njit(cache=True, inline="always")
def _clip(w, lo, hi):
    return min(max(w, lo), hi)


@njit(cache=True)
def plastic_slice(steps, gids, lsteps, lgids, lo, pre_gid0, n_pre, row0, rowptr, targets, s0, w, post_ptr,
                  post_syn, x_pre, t_pre, x_post, t_post, mult, decay, jump, alpha, eta, w_min, w_max,
                  start, ring, receptor, delay, own_d, syn_d, blocks, bits) -> int:
    """Apply the rule to one slice's spikes and deliver the projection's spikes; returns events.

    steps, gids: every spike of the slice, sorted by (step, gid); lsteps, lgids: this rank's own.
    Spikes at steps before `start` change no weight. With own_d, synapse k's delay is syn_d[k].
    Targets are stored in blocks (blocks, bits: step.Synapses).
    """
    r_len = ring.shape[1]
    n_local = post_ptr.size - 1
    rows = rowptr[row0 : row0 + n_pre + 1]  # the projection's rows: synapse s0 + syn lies in one of them
    nb = target_blocks(rowptr, blocks)
    i, j, events = 0, 0, 0
    while i < steps.size or j < lsteps.size:
        s = steps[i] if j >= lsteps.size or (i < steps.size and steps[i] <= lsteps[j]) else lsteps[j]
        jj = j
        learn = s >= start
        while jj < lsteps.size and lsteps[jj] == s:  # postsynaptic spikes: w += eta x_pre (times w)
            p = lgids[jj] - lo
            for idx in range(post_ptr[p], post_ptr[p + 1] if learn else post_ptr[p]):
                syn = post_syn[idx]
                r = np.searchsorted(rows, s0 + syn, side="right") - 1  # its presynaptic index
                xp = x_pre[r] * decay ** (s - t_pre[r])
                dw = eta * xp * (w[syn] if mult else 1.0)
                w[syn] = _clip(w[syn] + dw, w_min, w_max)
            jj += 1
        ii = i
        while ii < steps.size and steps[ii] == s:  # presynaptic spikes: w += eta (x_post - alpha), deliver
            r = gids[ii] - pre_gid0
            if 0 <= r < n_pre:
                buf = ring[receptor]
                slot = (s + delay) % r_len
                row = row0 + r
                blk = row * nb  # the (row, target block) run that synapse k lies in
                for k in range(rowptr[row], rowptr[row + 1]):
                    while k >= blocks[blk + 1]:
                        blk += 1
                    syn = k - s0
                    p = ((blk - row * nb) << bits) + targets[k]
                    if learn:
                        xq = x_post[p] * decay ** (s - t_post[p])
                        dw = eta * (xq - alpha) * (w[syn] if mult else 1.0)
                        w[syn] = _clip(w[syn] + dw, w_min, w_max)
                    buf[(s + syn_d[k]) % r_len if own_d else slot, p] += w[syn]
                events += rowptr[row + 1] - rowptr[row]
            ii += 1
        for k in range(j, jj):  # traces jump after this step's updates
            p = lgids[k] - lo
            if 0 <= p < n_local:
                x_post[p] = x_post[p] * decay ** (s - t_post[p]) + jump
                t_post[p] = s
        for k in range(i, ii):
            r = gids[k] - pre_gid0
            if 0 <= r < n_pre:
                x_pre[r] = x_pre[r] * decay ** (s - t_pre[r]) + jump
                t_pre[r] = s
        i, j = ii, jj
    return events


def apply_slice(pp: PlasticProjection, conn: Connectivity, dt: float, steps: np.ndarray, gids: np.ndarray,
                lsteps: np.ndarray, lgids: np.ndarray, lo: int, ring: np.ndarray) -> int:
    q = pp.q
    mult, decay, jump, alpha = rule_constants(pp.rule, dt)
    return plastic_slice(steps, gids, lsteps, lgids, lo, conn.pre_gid0[q], conn.pre_n[q], conn.row0[q], conn.rowptr,
                         conn.targets, pp.s0, pp.w, pp.post_ptr, pp.post_syn, pp.x_pre, pp.t_pre,
                         pp.x_post, pp.t_post, mult, decay, jump, alpha, pp.rule.eta, pp.rule.w_min,
                         pp.rule.w_max, round(pp.rule.start_ms / dt), ring, conn.receptor[q],
                         conn.delay_steps[q], conn.own_d[q], conn.syn_d, conn.blocks, conn.block_bits)
