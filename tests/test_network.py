"""Connectivity rules: exact degrees, probabilities, ring masks, Dale's law and partition invariance."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, assert_same_run, small_network
from eilab.sim import network
from eilab.sim.config import load_config
from eilab.sim.engine import run
from eilab.sim.network import Connectivity, build_connectivity
from eilab.sim.rate import recurrent_input
from eilab.sim.reader import open_run
from eilab.sim.step import deliver


def edges(conn: Connectivity, lo: int = 0) -> np.ndarray:
    """(projection, pre gid, post gid) rows of every synapse, projection by projection, pre-major."""
    rows = []
    for q in range(conn.pre_gid0.size):
        start, end = conn.rows(q)
        for r in range(conn.pre_n[q]):
            for t in conn.targets[start[r] : end[r]]:
                rows.append((q, conn.pre_gid0[q] + r, lo + t))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def in_degrees(e: np.ndarray, q: int, n_total: int) -> np.ndarray:
    return np.bincount(e[e[:, 0] == q, 2], minlength=n_total)


def test_fixed_indegree_exact_and_no_autapses() -> None:
    cfg, _ = load_config(raw=small_network())
    e = edges(build_connectivity(cfg, 0, cfg.n_total))
    deg_ee = in_degrees(e, 0, 100)
    assert np.all(deg_ee[:80] == 8) and np.all(deg_ee[80:] == 0)
    assert np.all(in_degrees(e, 1, 100)[80:] == 8)
    ee = e[e[:, 0] == 0]
    assert not np.any(ee[:, 1] == ee[:, 2]), "autapse in E->E"


def test_fixed_indegree_without_multapses() -> None:
    raw = small_network()
    raw["projections"][0].update(k=79, multapses=False)
    cfg, _ = load_config(raw=raw)
    ee = edges(build_connectivity(cfg, 0, cfg.n_total))
    ee = ee[ee[:, 0] == 0]
    pairs = {(a, b) for _, a, b in ee}
    assert len(pairs) == len(ee) == 80 * 79  # every other E neuron exactly once


def test_bernoulli_degree_distribution() -> None:
    raw = small_network()
    raw["populations"][1]["n"] = 400
    raw["projections"][3].update(p=0.1)
    cfg, _ = load_config(raw=raw)
    e = edges(build_connectivity(cfg, 0, cfg.n_total))
    deg = in_degrees(e, 3, cfg.n_total)[80:]
    n_pre, p = 399, 0.1  # no autapses
    assert abs(deg.mean() - n_pre * p) < 4 * np.sqrt(n_pre * p * (1 - p) / deg.size)
    assert abs(deg.var() / (n_pre * p * (1 - p)) - 1) < 0.25
    ii = e[e[:, 0] == 3]
    assert not np.any(ii[:, 1] == ii[:, 2])


def test_ring600_mask_is_the_published_one() -> None:
    cfg, _ = load_config(CONFIGS / "ring600.toml")
    e = edges(build_connectivity(cfg, 0, cfg.n_total))
    for q, (pre0, post0) in enumerate([(0, 0), (0, 300), (300, 0), (300, 300)]):
        sub = e[e[:, 0] == q]
        p, k = sub[:, 1] - pre0, sub[:, 2] - post0
        d = np.minimum(np.abs(p - k), 300 - np.abs(p - k))
        assert d.max() == 15
        same = pre0 == post0
        assert not same or not np.any(d == 0)
        expected = 30 if same else 31
        assert np.all(np.bincount(k, minlength=300) == expected)
    assert e.shape[0] == 36600


def test_ring_gaussian_profile_follows_distance() -> None:
    raw = small_network()
    raw["populations"][0]["n"] = 2000
    raw["projections"][0] = {"pre": "E", "post": "E", "rule": "ring", "p": 0.8, "profile": "gaussian",
                             "width": 0.05, "radius": 0.5, "weight": 0.1, "delay_ms": 1.0}
    cfg, _ = load_config(raw=raw)
    e = edges(build_connectivity(cfg, 0, cfg.n_total))
    ee = e[e[:, 0] == 0]
    d = np.abs(ee[:, 1] - ee[:, 2])
    d = np.minimum(d, 2000 - d) / 2000
    hist, bins = np.histogram(d, bins=np.linspace(0, 0.2, 9))
    centres = 0.5 * (bins[1:] + bins[:-1])
    expected = 2000 * 2 * 0.025 * 0.8 * np.exp(-0.5 * (centres / 0.05) ** 2)  # pairs per bin / post
    np.testing.assert_allclose(hist / 2000, expected, rtol=0.1, atol=0.5)


@pytest.mark.parametrize("splits", [[50], [13, 77], [1, 2, 99]])
def test_partition_invariance(splits: list[int]) -> None:
    """Any rank split builds exactly the synapses of the whole network, in the same per-target order."""
    cfg, _ = load_config(raw=small_network())
    whole = edges(build_connectivity(cfg, 0, 100))
    bounds = [0, *splits, 100]
    parts = np.vstack([edges(build_connectivity(cfg, a, b), lo=a) for a, b in itertools.pairwise(bounds)])
    key = lambda x: np.lexsort((x[:, 1], x[:, 2], x[:, 0]))  # noqa: E731
    np.testing.assert_array_equal(whole[key(whole)], parts[key(parts)])


def test_sqrt_n_scaling_and_compact_storage() -> None:
    raw = small_network()
    raw["projections"][0]["scale"] = "sqrt_n"
    cfg, _ = load_config(raw=raw)
    conn = build_connectivity(cfg, 0, cfg.n_total)
    assert conn.weight[0] == pytest.approx(0.2 / np.sqrt(100))
    assert conn.targets.dtype == np.uint16  # ranks of <= 65536 neurons: 2 bytes per synapse
    assert list(conn.receptor) == [0, 0, 1, 1]  # E rows excite, I rows inhibit: Dale's law by construction


def test_different_seeds_give_different_networks() -> None:
    a, _ = load_config(raw=small_network())
    b, _ = load_config(raw=small_network(seed=4))
    ea, eb = edges(build_connectivity(a, 0, 100)), edges(build_connectivity(b, 0, 100))
    fa, fb = ea[ea[:, 0] == 0], eb[eb[:, 0] == 0]  # fixed in-degree: same size, other partners
    assert fa.shape == fb.shape and not np.array_equal(fa, fb)


def test_static_rows_of_one_source_are_adjacent_and_plastic_ones_a_block() -> None:
    """A pre neuron's rows in the static projections leaving its population follow each other in
    memory (one contiguous read per spike); a plastic projection's rows form one block."""
    raw = small_network()
    raw["projections"][3]["plasticity"] = {"rule": "vogels2011", "eta": 0.1}
    cfg, _ = load_config(raw=raw)
    conn = build_connectivity(cfg, 0, cfg.n_total)
    (ee_start, ee_end), (ei_start, ei_end) = conn.rows(0), conn.rows(1)
    np.testing.assert_array_equal(ee_end, ei_start)  # E neuron r: E->E row, then its E->I row
    np.testing.assert_array_equal(ei_end[:-1], ee_start[1:])  # then neuron r + 1's E->E row
    ii_start, ii_end = conn.rows(3)
    np.testing.assert_array_equal(ii_end[:-1], ii_start[1:])
    assert list(conn.stride) == [2, 2, 1, 1]
    sizes = [int((e - s).sum()) for s, e in map(conn.rows, range(4))]
    assert sum(sizes) == conn.n_synapses and sizes[0] == 80 * 8 and sizes[1] == 20 * 8
    for q in range(4):  # synapses(q) lists the rows' targets in order
        pre, post = conn.synapses(q)
        start, end = conn.rows(q)
        np.testing.assert_array_equal(np.bincount(pre, minlength=conn.pre_n[q]), end - start)
        rows = [conn.targets[a:b] for a, b in zip(start, end, strict=True)]
        np.testing.assert_array_equal(post, np.concatenate(rows))


def test_reordering_projections_leaves_every_synapse_in_place() -> None:
    """Connectivity streams are keyed by the projection's name, not its index in the config."""
    raw = small_network()
    cfg, _ = load_config(raw=raw)
    shuffled = {**raw, "projections": [raw["projections"][k] for k in (2, 0, 3, 1)]}
    other, _ = load_config(raw=shuffled)
    a, b = build_connectivity(cfg, 0, cfg.n_total), build_connectivity(other, 0, other.n_total)
    where = {pr.name: q for q, pr in enumerate(other.projections)}
    for q, pr in enumerate(cfg.projections):
        for x, y in zip(a.synapses(q), b.synapses(where[pr.name]), strict=True):
            np.testing.assert_array_equal(x, y)
    renamed = {**raw, "projections": [{**raw["projections"][0], "name": "EE2"}, *raw["projections"][1:]]}
    c = build_connectivity(load_config(raw=renamed)[0], 0, cfg.n_total)
    assert not np.array_equal(a.synapses(0)[1], c.synapses(0)[1])  # another name, another stream


def varied_network(zero_row_sum: bool = False) -> dict:
    """small_network with drawn weights (I->E, I->I) and delays (I->I), optionally a zero_row_sum I population;
    E->E and E->I keep shared weights and delays (the fast path of delivery)."""
    raw = small_network(t_ms=150.0)
    raw["populations"][1]["zero_row_sum"] = zero_row_sum
    raw["projections"][2].update(weight_dist="normal", weight_sd=0.5, negative="clip")
    raw["projections"][3].update(weight_dist="lognormal", weight_sd=0.3, delay_dist="normal", delay_sd_ms=0.4,
                                 delay_max_ms=3.0)
    return raw


@pytest.mark.parametrize("bits", [0, 3, 5])
def test_blocked_targets_hold_the_same_synapses_in_the_same_places(bits: int) -> None:
    """Targets as uint16 offsets in blocks of 2**bits neurons: every synapse at the position it has in the plain
    layout (same rows, weights, delays), decoded to the same local index; on ranks [lo, hi) too."""
    cfg, _ = load_config(raw=varied_network(zero_row_sum=True))
    for lo, hi in [(0, 100), (13, 77)]:
        plain, blocked = build_connectivity(cfg, lo, hi), build_connectivity(cfg, lo, hi, block_bits=bits)
        nb = -(-(hi - lo) // (1 << bits))
        assert plain.n_blocks == 1 and blocked.n_blocks == nb > 1
        assert blocked.targets.dtype == np.uint16 and blocked.targets.max() < 1 << bits
        np.testing.assert_array_equal(blocked.rowptr, plain.rowptr)
        np.testing.assert_array_equal(blocked.blocks[::nb], plain.rowptr)
        everything = np.arange(plain.n_synapses)
        np.testing.assert_array_equal(blocked.local_targets(everything), plain.targets)
        for name in ("syn_w", "syn_d"):
            np.testing.assert_array_equal(getattr(blocked, name), getattr(plain, name))
        for q in range(plain.pre_gid0.size):
            for x, y in zip(plain.synapses(q), blocked.synapses(q), strict=True):
                np.testing.assert_array_equal(x, y)
        rows = plain.rowptr.size - 1
        assert blocked.nbytes - plain.nbytes == 8 * rows * (nb - 1)  # 2 bytes per synapse either way


def test_blocked_delivery_adds_in_the_same_order() -> None:
    """step.deliver into a ring buffer: bitwise the same sums with targets in blocks of 8 as in one block, on
    shared (E->E, E->I) and on drawn weights and delays (I->E, I->I)."""
    cfg, _ = load_config(raw=varied_network())
    rng = np.random.default_rng(0)
    spk_gid = np.sort(rng.integers(0, 100, 400)).astype(np.int32)
    spk_step = np.repeat(np.arange(40), 10)
    rings = []
    for bits in (16, 3):
        conn = build_connectivity(cfg, 0, 100, block_bits=bits)
        assert list(conn.own_w | conn.own_d) == [False, False, True, True]
        ring = np.zeros((2, cfg.max_delay_steps + 1, 100))
        ring[:] = rng.random(ring.shape) if not rings else rings[0][1]  # the same non-zero start in both
        start = ring.copy()
        events = deliver(spk_step, spk_gid, 0, spk_gid.size, ring, conn.kernel_args())
        rings.append((ring, start))
    assert events == sum(build_connectivity(cfg, 0, 100).out_degree(100)[spk_gid])
    np.testing.assert_array_equal(rings[0][0], rings[1][0])
    assert not np.array_equal(rings[0][0], rings[0][1])


def test_blocked_layout_gives_bitwise_the_same_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole run (drawn weights and delays, a plastic I -> E projection) with targets in blocks of 8 neurons:
    the spikes, counts, probes and learned weights of the run with one block."""
    raw = varied_network()
    raw["projections"][2].update(plasticity={"rule": "vogels2011", "eta": 0.05, "snapshot_every_ms": 50.0})
    cfg, raw = load_config(raw=raw)
    plain = run(cfg, raw, tmp_path / "plain", progress=False)
    monkeypatch.setattr(network, "TARGET_BLOCK_BITS", 3)
    blocked = run(cfg, raw, tmp_path / "blocked", progress=False)
    assert blocked.connectivity_bytes == plain.connectivity_bytes + 8 * 200 * 12  # 200 rows in 13 blocks, not 1
    assert_same_run(tmp_path / "plain", tmp_path / "blocked")
    (ta, wa), (tb, wb) = open_run(tmp_path / "plain").weights("IE"), open_run(tmp_path / "blocked").weights("IE")
    np.testing.assert_array_equal(ta, tb)
    np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(wa[0], wa[-1])  # the weights did learn


def test_blocked_rate_input_is_the_plain_one() -> None:
    """The rate networks' W r over the CSR (rate.recurrent_input) is bitwise the same with blocked targets."""
    cfg, _ = load_config(raw=varied_network())
    r = np.random.default_rng(1).random(100)
    out = []
    for bits in (16, 2):
        u_e, u_i = np.zeros(100), np.zeros(100)
        recurrent_input(r, build_connectivity(cfg, 0, 100, block_bits=bits).kernel_args(), u_e, u_i)
        out.append(np.concatenate([u_e, u_i]))
    np.testing.assert_array_equal(out[0], out[1])
    assert np.count_nonzero(out[0]) > 150
