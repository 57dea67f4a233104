"""Connectivity: rules generated per postsynaptic neuron, stored pre-major and compact.

Each projection's inputs to a postsynaptic neuron are drawn from the stream
(seed, connect + projection name, post gid; see rng.py), so a rank that owns gids [lo, hi) builds exactly its
own neurons' inputs and the network is the same for any partition (Arbor's recipe idea).
Two passes over the same streams (count, then fill) build the pre-major CSR without a
temporary edge list: 2 bytes per synapse at any rank size, plus one int64 row pointer per presynaptic
neuron and projection; weights and delays are shared per projection. A target is stored as a uint16
offset within its block of 65,536 local neurons: a row lists its targets in ascending order, so they
fall into consecutive runs by block, and on a rank of more than 65,536 neurons the row pointers become
one int64 pointer per row and block, marking where each run starts (the positions and the order of
delivery are those of plain local indices, so every sum is the same).

The static projections leaving one population are interleaved: a presynaptic neuron's rows in
all of them lie next to each other, so delivering its spike reads one contiguous run of targets
(on a rank that holds parts of several target populations, separate blocks per projection cost
about a quarter more delivery time: each short row is a fresh memory stream). A plastic projection keeps
a block of its own, its synapses numbered by position in that block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from eilab.sim.config import Config, Projection, weight_scale
from eilab.sim.rng import PURPOSE_CONNECT, PURPOSE_DELAY, PURPOSE_WEIGHT, below, named_purpose, stream_key, uniform
from eilab.sim.step import Synapses, target_blocks
from eilab.sim.weights import DELAY_DISTS, NEGATIVE, WEIGHT_DISTS, draw_delay, draw_weight

RULE_IDS = {"fixed_indegree": 0, "bernoulli": 1, "ring": 2}
PROFILE_IDS = {"box": 0, "gaussian": 1, "vonmises": 2}
RECEPTOR_E, RECEPTOR_I = 0, 1
TARGET_BLOCK_BITS = 16
"""Target blocks of 65,536 local neurons: uint16 offsets, and a rank of up to 65,536 neurons has one block."""


@dataclass
class Connectivity:
    """Pre-major CSR of all projections onto one rank's neurons.

    For projection q, presynaptic gids pre_gid0[q] .. pre_gid0[q] + pre_n[q] - 1; pre neuron r's
    row is row = row0[q] + r * stride[q] and its targets are targets[rowptr[row] : rowptr[row + 1]]
    (rank-local indices, ascending), each receiving weight[q] on receptor[q] after delay_steps[q].
    Plastic projections have stride 1: their rows form one block. A projection with own_w[q] gives synapse s
    the weight syn_w[s] instead (a weight_dist, or inputs to a zero_row_sum population), one with own_d[q] the
    delay syn_d[s] (delay_steps[q] is then its shortest); syn_w and syn_d are empty when no projection has them.
    With nb = n_blocks target blocks of 2**block_bits neurons, row `row`'s targets in block b are
    (b << block_bits) + targets[blocks[row * nb + b] : blocks[row * nb + b + 1]]; rowptr is blocks[::nb] (a view).
    """

    pre_gid0: np.ndarray     # int64 (n_proj,)
    pre_n: np.ndarray        # int64 (n_proj,)
    row0: np.ndarray         # int64 (n_proj,)
    stride: np.ndarray       # int64 (n_proj,): static projections from one population share rows
    receptor: np.ndarray     # int64 (n_proj,) 0 = E, 1 = I
    delay_steps: np.ndarray  # int64 (n_proj,)
    weight: np.ndarray       # float64 (n_proj,)
    rowptr: np.ndarray       # int64 (rows + 1,): blocks[::n_blocks]
    targets: np.ndarray      # uint16: local target index within its block
    plastic: np.ndarray      # bool (n_proj,): weights per synapse, delivered by the plasticity kernel
    own_w: np.ndarray        # bool (n_proj,): weights per synapse in syn_w
    own_d: np.ndarray        # bool (n_proj,): delays per synapse in syn_d
    syn_w: np.ndarray        # float32 (synapses,) or empty: weight of each synapse (model units, scaled)
    syn_d: np.ndarray        # uint16 (synapses,) or empty: delay of each synapse, steps
    blocks: np.ndarray       # int64 (rows * n_blocks + 1,): start of each row's run of targets in each block
    block_bits: int          # a target block holds 2**block_bits local neurons

    def kernel_args(self) -> Synapses:
        """The arrays the kernels take (step.Synapses)."""
        return Synapses(self.pre_gid0, self.pre_n, self.row0, self.stride, self.receptor, self.delay_steps,
                        self.weight, self.rowptr, self.targets, self.plastic, self.own_w, self.own_d, self.syn_w,
                        self.syn_d, self.blocks, self.block_bits)

    @property
    def n_blocks(self) -> int:
        """Target blocks per row (1 on ranks of at most 2**block_bits neurons)."""
        return target_blocks(self.rowptr, self.blocks)

    def local_targets(self, idx: np.ndarray) -> np.ndarray:
        """Local target index of the synapses at positions `idx` of `targets` (uint16, or int32 when blocked)."""
        if self.n_blocks == 1:
            return self.targets[idx]
        block = (np.searchsorted(self.blocks, idx, side="right") - 1) % self.n_blocks
        return (block.astype(np.int32) << self.block_bits) + self.targets[idx]

    @property
    def n_synapses(self) -> int:
        return int(self.targets.size)

    def rows(self, q: int) -> tuple[np.ndarray, np.ndarray]:
        """Start and end offsets into `targets` of the rows of projection q's pre neurons 0, 1, ..."""
        idx = self.row0[q] + self.stride[q] * np.arange(self.pre_n[q])
        return self.rowptr[idx], self.rowptr[idx + 1]

    def synapse_index(self, q: int) -> tuple[np.ndarray, np.ndarray]:
        """(presynaptic index, position in `targets`) of every synapse of projection q, pre-major."""
        start, end = self.rows(q)
        lens = end - start
        first = np.cumsum(lens) - lens  # position of each row's first synapse in the output
        return np.repeat(np.arange(self.pre_n[q]), lens), np.arange(int(lens.sum())) + np.repeat(start - first, lens)

    def synapses(self, q: int) -> tuple[np.ndarray, np.ndarray]:
        """(presynaptic index, local target) of every synapse of projection q, pre-major."""
        pre, idx = self.synapse_index(q)
        return pre, self.local_targets(idx)

    def weights(self, q: int) -> np.ndarray:
        """Weight magnitude of every synapse of projection q, pre-major (float64, model units)."""
        idx = self.synapse_index(q)[1]
        return self.syn_w[idx].astype(np.float64) if self.own_w[q] else np.full(idx.size, float(self.weight[q]))

    def delays(self, q: int) -> np.ndarray:
        """Delay of every synapse of projection q, pre-major (int64, steps)."""
        idx = self.synapse_index(q)[1]
        return self.syn_d[idx].astype(np.int64) if self.own_d[q] else np.full(idx.size, int(self.delay_steps[q]))

    def out_degree(self, n_total: int) -> np.ndarray:
        """Local targets of every gid (summed over projections), int64 (n_total,)."""
        deg = np.zeros(n_total, np.int64)
        for q in range(self.pre_gid0.size):
            start, end = self.rows(q)
            deg[self.pre_gid0[q] : self.pre_gid0[q] + self.pre_n[q]] += end - start
        return deg

    @property
    def nbytes(self) -> int:
        return int(self.blocks.nbytes + self.targets.nbytes)  # rowptr is blocks, or a view of it


def population_offsets(cfg: Config) -> dict[str, int]:
    """First gid of every population (gid order: populations in config order)."""
    offsets, start = {}, 0
    for p in cfg.populations:
        offsets[p.name] = start
        start += p.n
    return offsets


def probe_gids(cfg: Config) -> np.ndarray:
    """Sorted gids of every probed neuron."""
    offs = population_offsets(cfg)
    gids = [offs[p.population] + k for p in cfg.record.probes for k in p.neurons]
    return np.unique(np.asarray(gids, dtype=np.int64))


@njit(cache=True, inline="always")
def _ring_prob(profile: int, d: float, p: float, width: float) -> float:
    if profile == 0:
        return p
    if profile == 1:
        return p * math.exp(-0.5 * (d / width) ** 2)
    return p * math.exp(width * (math.cos(2.0 * math.pi * d) - 1.0))


@njit(cache=True)
def _inputs_of(rule, key, j, n_pre, n_post, same_pop, k, p, radius, profile, width,
               autapses, multapses, buf, mark) -> int:
    """Fill buf with the presynaptic indices of post neuron j (index in its population)."""
    cnt = 0
    if rule == 0:  # fixed in-degree: k draws, redrawing autapses and (optionally) repeats
        c = 0
        while cnt < k:
            i = below(key, c, n_pre)
            c += 1
            if same_pop and not autapses and i == j:
                continue
            if not multapses:
                if mark[i]:
                    continue
                mark[i] = True
            buf[cnt] = i
            cnt += 1
        if not multapses:
            for t in range(cnt):
                mark[buf[t]] = False
    elif rule == 1:  # Bernoulli by geometric skipping: exact, O(expected in-degree)
        if p <= 0.0:
            return 0
        i, c = -1, 0
        lq = math.log1p(-p) if p < 1.0 else 0.0
        while True:
            if p >= 1.0:
                i += 1
            else:
                u = uniform(key, c)
                c += 1
                i += 1 + math.floor(math.log1p(-u) / lq)
            if i >= n_pre:
                break
            if same_pop and not autapses and i == j:
                continue
            buf[cnt] = i
            cnt += 1
    else:  # ring: positions i/n_pre and j/n_post on a unit circle, exact integer distances
        span = math.ceil(radius * n_pre) + 1
        full = 2 * span + 1 >= n_pre
        centre = (j * n_pre) // n_post
        ring = n_pre * n_post
        for t in range(n_pre if full else 2 * span + 1):
            i = t if full else (centre - span + t) % n_pre
            diff = abs(i * n_post - j * n_pre)
            circ = min(diff, ring - diff)
            d = circ / ring
            if d > radius * (1.0 + 1e-9) + 1e-12:
                continue
            if same_pop and not autapses and i == j:
                continue
            prob = _ring_prob(profile, d, p, width)
            if prob < 1.0 and uniform(key, i) >= prob:
                continue
            buf[cnt] = i
            cnt += 1
    return cnt


@njit(cache=True)
def _build(rule, seed, purpose, post_gid0, j_lo, j_hi, local0, n_pre, n_post, same_pop, k, p,
           radius, profile, width, autapses, multapses, bits, counts, targets, fill, wdraw, ddraw, syn_w, syn_d):
    """Pass 1 (targets empty): count per (target block, pre), counts[block * n_pre + pre]. Pass 2: write the targets
    (offsets within their block of 2**bits) row by row at fill[block * n_pre + pre], with each synapse's weight
    (wdraw = (kind or -1 for none, mean, sd, negative, scale, purpose); weights.draw_weight) and delay
    (ddraw = (kind or -1 for none, mean, sd, lo, hi, purpose) in steps; weights.draw_delay)."""
    size = max(k, n_pre) + 1
    buf = np.empty(size, np.int64)
    mark = np.zeros(n_pre, np.bool_)
    count_only = targets.size == 0
    mask = (1 << bits) - 1
    wkind, wmean, wsd, wneg, wscale, wpurpose = wdraw
    dkind, dmean, dsd, dlo, dhi, dpurpose = ddraw
    for j in range(j_lo, j_hi):
        key = stream_key(seed, purpose, post_gid0 + j)
        cnt = _inputs_of(rule, key, j, n_pre, n_post, same_pop, k, p, radius, profile, width,
                         autapses, multapses, buf, mark)
        wkey = stream_key(seed, wpurpose, post_gid0 + j)
        dkey = stream_key(seed, dpurpose, post_gid0 + j)
        local = local0 + j - j_lo
        block = local >> bits
        cw = cd = 0
        for t in range(cnt):
            i = block * n_pre + buf[t]  # block-major: a block's posts touch one n_pre-long stretch
            if count_only:
                counts[i] += 1
                continue
            s = fill[i]
            targets[s] = local & mask
            if wkind == 0:
                syn_w[s] = wmean * wscale
            elif wkind > 0:
                w, cw = draw_weight(wkind, wmean, wsd, wneg, wkey, cw)
                syn_w[s] = w * wscale
            if dkind > 0:
                d, cd = draw_delay(dkind, dmean, dsd, dlo, dhi, dkey, cd)
                syn_d[s] = d
            fill[i] += 1


def _row_layout(cfg: Config, plastic: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(row0, stride, total rows): the static projections from one population interleave their
    rows (groups in order of first appearance), each plastic projection has a block of its own."""
    groups: dict[str | int, list[int]] = {}
    for q, pr in enumerate(cfg.projections):
        groups.setdefault(q if plastic[q] else pr.pre, []).append(q)
    sizes = {p.name: p.n for p in cfg.populations}
    row0 = np.zeros(len(cfg.projections), np.int64)
    stride = np.zeros(len(cfg.projections), np.int64)
    total = 0
    for members in groups.values():
        for j, q in enumerate(members):
            row0[q], stride[q] = total + j, len(members)
        total += sizes[cfg.projections[members[0]].pre] * len(members)
    return row0, stride, total


def build_connectivity(cfg: Config, lo: int, hi: int, block_bits: int | None = None) -> Connectivity:
    """All projections onto the neurons with gids [lo, hi) (one rank's share), targets in blocks of
    2**block_bits local neurons (at most 2**16; default TARGET_BLOCK_BITS)."""
    bits = TARGET_BLOCK_BITS if block_bits is None else block_bits
    if not 0 <= bits <= 16:
        raise ValueError(f"block_bits must be in 0..16 (uint16 offsets), not {bits}")
    nb = max(1, -(-(hi - lo) >> bits))  # target blocks per row
    offs = population_offsets(cfg)
    pops = {p.name: p for p in cfg.populations}
    n_proj = len(cfg.projections)
    pre_gid0 = np.zeros(n_proj, np.int64)
    pre_n = np.zeros(n_proj, np.int64)
    receptor = np.zeros(n_proj, np.int64)
    delay = np.zeros(n_proj, np.int64)
    weight = np.zeros(n_proj, np.float64)
    plastic = np.array([pr.plasticity is not None for pr in cfg.projections], np.bool_)
    own_w = np.array([cfg.own_weights(pr) for pr in cfg.projections], np.bool_)
    own_d = np.array([pr.delay_dist != "fixed" for pr in cfg.projections], np.bool_)
    row0, stride, total_rows = _row_layout(cfg, plastic)
    run_len = np.zeros(total_rows * nb, np.int64)  # synapses of each (row, block)
    plans = []
    for q, pr in enumerate(cfg.projections):
        pre, post = pops[pr.pre], pops[pr.post]
        pre_gid0[q], pre_n[q] = offs[pr.pre], pre.n
        receptor[q] = RECEPTOR_E if pre.type == "E" else RECEPTOR_I
        delay[q] = cfg.delay_range(pr)[0]
        weight[q] = pr.weight * weight_scale(cfg, pr)
        post0 = offs[pr.post]
        j_lo, j_hi = max(lo, post0) - post0, min(hi, post0 + post.n) - post0
        args = (
            RULE_IDS[pr.rule], cfg.run.seed, named_purpose(PURPOSE_CONNECT, pr.name), post0, max(j_lo, 0),
            max(j_hi, 0), post0 + max(j_lo, 0) - lo, pre.n, post.n, pr.pre == pr.post,
            pr.k or 0, float(pr.p or 0.0), pr.radius, PROFILE_IDS[pr.profile], pr.width,
            pr.autapses, pr.multapses, bits,
        )
        counts = np.zeros(pre.n * nb, np.int64)
        _build(*args, counts, EMPTY_T, counts, *_draws(cfg, pr, own_w[q]), EMPTY_W, EMPTY_D)
        run_len[_runs(row0[q], stride[q], pre.n, nb)] = counts
        plans.append(args)
    blocks = np.zeros(total_rows * nb + 1, np.int64)
    np.cumsum(run_len, out=blocks[1:])
    del run_len
    rowptr = blocks[::nb]  # a view: row r spans blocks[r * nb] .. blocks[(r + 1) * nb]
    n_syn = int(blocks[-1])
    targets = np.empty(n_syn, np.uint16)
    syn_w = np.zeros(n_syn if own_w.any() else 0, np.float32)
    syn_d = np.zeros(n_syn if own_d.any() else 0, np.uint16)
    for q, args in enumerate(plans):
        fill = blocks[_runs(row0[q], stride[q], pre_n[q], nb)]
        _build(*args, EMPTY_C, targets, fill, *_draws(cfg, cfg.projections[q], own_w[q]), syn_w, syn_d)
    conn = Connectivity(pre_gid0, pre_n, row0, stride, receptor, delay, weight, rowptr, targets, plastic,
                        own_w, own_d, syn_w, syn_d, blocks, bits)
    _zero_row_sums(cfg, conn, hi - lo)
    return conn


def _runs(row0: int, stride: int, n_pre: int, nb: int) -> np.ndarray:
    """Index into the (row, block) runs of pre neurons 0 .. n_pre - 1 of one projection, (block, pre) order."""
    rows = row0 + stride * np.arange(n_pre)
    return (rows[None, :] * nb + np.arange(nb)[:, None]).ravel()


EMPTY_W, EMPTY_D = np.zeros(0, np.float32), np.zeros(0, np.uint16)
EMPTY_T, EMPTY_C = np.zeros(0, np.uint16), np.zeros(0, np.int64)  # no targets (pass 1), no counts (pass 2)


def _draws(cfg: Config, pr: Projection, own_w: bool) -> tuple[tuple, tuple]:
    """The weight and delay draw plans of `_build` for one projection."""
    wkind = WEIGHT_DISTS[pr.weight_dist] if own_w else -1
    wdraw = (wkind, pr.weight, pr.weight_sd, NEGATIVE[pr.negative], weight_scale(cfg, pr),
             named_purpose(PURPOSE_WEIGHT, pr.name))
    lo, hi = cfg.delay_range(pr)
    dt = cfg.run.dt_ms
    ddraw = (DELAY_DISTS[pr.delay_dist] or -1, pr.delay_ms / dt, pr.delay_sd_ms / dt, lo, hi,
             named_purpose(PURPOSE_DELAY, pr.name))
    return wdraw, ddraw


def _zero_row_sums(cfg: Config, conn: Connectivity, n_local: int) -> None:
    """Subtract from every input weight of a zero_row_sum neuron the mean of its signed inputs, so that they
    sum to zero (to float32 rounding). Sums run in storage order: the same on every partition."""
    pops = {p.name: p for p in cfg.populations}
    members = [q for q, pr in enumerate(cfg.projections) if pops[pr.post].zero_row_sum]
    if not members:
        return
    total, count = np.zeros(n_local), np.zeros(n_local)
    parts = []
    for q in members:
        idx = conn.synapse_index(q)[1]
        tg = conn.local_targets(idx).astype(np.int64)
        sign = cfg.sign_of(cfg.projections[q])
        total += np.bincount(tg, weights=sign * conn.syn_w[idx].astype(np.float64), minlength=n_local)
        count += np.bincount(tg, minlength=n_local)
        parts.append((idx, tg, sign))
    shift = total / np.maximum(count, 1.0)
    for idx, tg, sign in parts:
        conn.syn_w[idx] = (conn.syn_w[idx].astype(np.float64) - sign * shift[tg]).astype(np.float32)
