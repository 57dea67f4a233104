"""Connectivity rules: exact degrees, probabilities, ring masks, Dale's law and partition invariance."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import CONFIGS, small_network
from eilab.sim.config import load_config
from eilab.sim.network import Connectivity, build_connectivity


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
