"""The HNN circuit as a network of surrogates (eilab.ml.surrogate_hnn_net) against the network hnn-core builds in
NEURON: every pair's weight and delay, the drive input and the recurrent input per bin, from hnn-core's own
NetCons; optimised weights written back into them."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("hnn_core")
pytest.importorskip("neuron")
torch = pytest.importorskip("torch")

from eilab.ml.surrogate import SurrogateNet  # noqa: E402
from eilab.ml.surrogate_data import SurrogateModel  # noqa: E402
from eilab.ml.surrogate_hnn import input_groups  # noqa: E402
from eilab.ml.surrogate_hnn_net import (  # noqa: E402
    Delivery,
    HnnSurrogateNetwork,
    hnn_wiring,
    with_hnn_weights,
)
from eilab.ml.surrogate_net import Surrogate  # noqa: E402

BIN_MS = 0.5
T_MS = 300.0


def circuit():
    """hnn-core's Jones 2009 circuit (neymotin_2020_model, its current name) on a 3 x 3 grid with a proximal and
    a distal 10 Hz bursty drive."""
    from hnn_core import neymotin_2020_model

    net = neymotin_2020_model(mesh_shape=(3, 3))
    common = dict(tstart=20.0, burst_rate=10.0, burst_std=5.0, numspikes=2, spike_isi=10.0, n_drive_cells=4)
    net.add_bursty_drive("prox", location="proximal", weights_ampa={"L2_pyramidal": 5e-4, "L5_pyramidal": 7e-4,
                                                                    "L2_basket": 2e-4, "L5_basket": 3e-4},
                         synaptic_delays={"L2_pyramidal": 0.1, "L5_pyramidal": 1.0, "L2_basket": 0.1,
                                          "L5_basket": 1.0}, event_seed=5, **common)
    net.add_bursty_drive("dist", location="distal", weights_ampa={"L2_pyramidal": 4e-4, "L5_pyramidal": 4e-4,
                                                                  "L2_basket": 2e-4},
                         weights_nmda={"L2_pyramidal": 1e-4, "L5_pyramidal": 1e-4}, event_seed=9, **common)
    return net


def netcons(net):
    """Per NetCon hnn-core builds: (source gid, target gid, location, receptor, weight nS, delay ms), one per
    pair (a pair reaches every section of its location with the same weight and delay)."""
    from hnn_core.network_builder import NetworkBuilder

    net._instantiate_drives(tstop=T_MS, n_trials=1)
    builder = NetworkBuilder(net)
    owner = {}
    for cell in builder._cells:
        by_sec = {s: loc for loc, secs in cell.sect_loc.items() for s in secs}
        for key, syn in cell._nrn_synapses.items():
            sec, rec = key.rsplit("_", 1)
            owner[syn.hname()] = (cell.gid, "soma" if sec == "soma" else by_sec.get(sec, sec), rec)
    out = set()
    for ncs in builder.ncs.values():
        for nc in ncs:
            gid, loc, rec = owner[nc.syn().hname()]
            out.add((int(nc.srcgid()), gid, loc, rec, round(nc.weight[0] * 1e3, 12), round(nc.delay, 9)))
    return out


def channel(cell_type: str, loc: str, rec: str) -> int:
    pairs = input_groups(cell_type)
    return pairs.index(("soma" if cell_type.endswith("basket") else loc, rec))


@pytest.fixture(scope="module")
def built():
    net = circuit()
    return net, hnn_wiring(net, BIN_MS), netcons(circuit())


def gid_type(net, gid):
    return next(t for t, r in net.gid_ranges.items() if gid in r)


def test_every_pair_has_the_weight_and_delay_hnn_core_gives_its_netcon(built):
    net, w, ncs = built
    cell_gids = [g for t in net.cell_types for g in net.gid_ranges[t]]
    p = w.cells_pairs
    ours = {(cell_gids[a], cell_gids[b], int(c), round(x, 12), round(d, 9))
            for a, b, c, x, d in zip(p.pre, p.post, p.channel, p.weight_ns, p.delay_ms, strict=True)}
    theirs = {(s, t, channel(gid_type(net, t), loc, rec), x, d) for s, t, loc, rec, x, d in ncs
              if gid_type(net, s) in net.cell_types}
    assert len(ours) == len(p.pre) > 100
    assert ours == theirs
    q = w.drive_pairs
    ours = {(w.drive_gids[a], cell_gids[b], int(c), round(x, 12), round(d, 9))
            for a, b, c, x, d in zip(q.pre, q.post, q.channel, q.weight_ns, q.delay_ms, strict=True)}
    theirs = {(s, t, channel(gid_type(net, t), loc, rec), x, d) for s, t, loc, rec, x, d in ncs
              if gid_type(net, s) not in net.cell_types}
    assert ours == theirs and len(ours) > 20


def test_drive_input_per_bin_is_what_the_netcons_deliver(built):
    net, w, ncs = built
    bins = round(T_MS / BIN_MS)
    x = w.external(bins, 0)
    events = {g: np.asarray(net.external_drives[name]["events"][0][k])
              for name in net.external_drives for k, g in enumerate(net.gid_ranges[name])}
    cell_gids = [g for t in net.cell_types for g in net.gid_ranges[t]]
    expected = np.zeros_like(x)
    for s, t, loc, rec, weight, delay in ncs:
        if s in events:
            step = np.rint((events[s] + delay) / 0.025).astype(int) - 1  # delivered in the step ending after it
            b = step // round(BIN_MS / 0.025)
            np.add.at(expected, (b[b < bins], cell_gids.index(t), channel(gid_type(net, t), loc, rec)), weight)
    assert expected.sum() > 0
    np.testing.assert_allclose(x, expected, rtol=1e-9, atol=1e-12)  # netcons() rounds to 1e-12 nS
    assert not np.array_equal(w.external(bins, 1), x)  # another seed: other draws


def test_recurrent_input_per_bin_is_what_the_netcons_deliver(built):
    net, w, ncs = built
    bins = 400
    raster = (np.random.default_rng(0).random((bins, w.n)) < 0.05).astype(np.float32)
    delivery = Delivery(w, bins, torch.tensor(w.weight_ns, dtype=torch.float32))
    got = []
    for t in range(bins):
        got.append(delivery.arriving(torch.zeros(w.n * w.channels)).reshape(w.n, w.channels).numpy())
        delivery.push(torch.from_numpy(raster[t]))
    cell_gids = [g for t in net.cell_types for g in net.gid_ranges[t]]
    expected = np.zeros((bins, w.n, w.channels))
    for s, t, loc, rec, weight, delay in ncs:
        if s in cell_gids:
            d = max(round(delay / BIN_MS), 1)
            if d < bins:
                expected[d:, cell_gids.index(t), channel(gid_type(net, t), loc, rec)] += \
                    weight * raster[: bins - d, cell_gids.index(s)]
    assert expected.sum() > 0
    np.testing.assert_allclose(np.array(got), expected, rtol=1e-5, atol=1e-7)


def test_weights_written_back_reach_neuron(built):
    net, w, _ = built
    name = "L5_basket->L5_pyramidal/soma_gabaa"
    scaled = with_hnn_weights(circuit(), {name: 3.0 * w.weight_ns[w.names.index(name)]})
    before = {(s, t, rec): x for s, t, loc, rec, x, _ in netcons(circuit())
              if gid_type(net, s) == "L5_basket" and gid_type(net, t) == "L5_pyramidal"}
    after = {(s, t, rec): x for s, t, loc, rec, x, _ in netcons(scaled)
             if gid_type(net, s) == "L5_basket" and gid_type(net, t) == "L5_pyramidal"}
    assert set(before) == set(after)
    for k, x in before.items():
        assert after[k] == pytest.approx(3.0 * x if k[2] == "gabaa" else x, rel=1e-9)


def test_gradient_reaches_the_trained_connections(built):
    _, w, _ = built
    model = SurrogateModel(channels=4, kernel=3, dilations=[1, 2], hidden=8, layers=1)
    torch.manual_seed(0)

    def tiny(n_in: int) -> Surrogate:
        return Surrogate(SurrogateNet(n_in, model), torch.ones(n_in), BIN_MS, 0.5, "")

    pyr, basket = tiny(8), tiny(3)
    sur = {"L2_pyramidal": pyr, "L5_pyramidal": pyr, "L2_basket": basket, "L5_basket": basket}
    trained = ["L2_pyramidal->L5_pyramidal/proximal_ampa", "L5_basket->L5_pyramidal/soma_gabaa"]
    net = HnnSurrogateNetwork(w, sur, trained, spikes="probability")
    out = net(120, 0)
    assert out.shape == (120, w.n)
    out[:, w.cells("L5_pyramidal")].sum().backward()
    assert torch.isfinite(net.theta.grad).all() and (net.theta.grad != 0).all()
    assert net.named_weights()[trained[0]] == pytest.approx(w.weight_ns[w.names.index(trained[0])], rel=1e-6)


# ---------------------------------------------------------------- eilab train
def hnn_train_config(tmp_path, pyramidal_cell: str = "L5_pyramidal"):
    from tests.test_surrogate_net import tiny_surrogate

    pyr = tiny_surrogate(tmp_path / "pyr", 0.3, pyramidal_cell, (2.0,) * 8)
    l2 = tiny_surrogate(tmp_path / "l2", 0.3, "L2_pyramidal", (2.0,) * 8)
    basket = tiny_surrogate(tmp_path / "basket", 0.3, "L5_basket", (2.0,) * 3)
    lines = ['task = "surrogate_net"', f'surrogate = "{basket}"', 'train = ["L5_basket->L5_pyramidal/soma_gabaa"]',
             "[surrogates]", f'L5_pyramidal = "{pyr}"', f'L2_pyramidal = "{l2}"',
             "[hnn]", "mesh_shape = [3, 3]",
             "[[hnn.drives]]", 'name = "bg"', 'kind = "poisson"', 'location = "proximal"', "rate_hz = 40.0",
             'weights_ampa_ns = { L5_pyramidal = 2.0, L2_pyramidal = 1.0, L5_basket = 0.5 }',
             "[objective]", 'population = "L5_pyramidal"', "segment_ms = 50.0", "report_segment_ms = 100.0",
             "[optimise]", "steps = 2", 'spikes = "probability"', "t_ms = 100.0", "eval_t_ms = 150.0", "skip_ms = 20.0"]
    cfg = tmp_path / "train.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def test_eilab_train_hnn_surrogate_net_end_to_end(tmp_path):
    """Adam on one connection of the HNN circuit of (tiny, untrained) surrogates; the optimised strength written
    into hnn-core's network configuration; both circuits simulated by NEURON and their spectra compared."""
    from hnn_core import read_network_configuration

    from tests.conftest import eilab

    out = tmp_path / "out"
    res = eilab("train", str(hnn_train_config(tmp_path)), "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    m = __import__("json").loads((out / "metrics.json").read_text())
    assert len(m["trajectory"]) == 3 and m["n_cells"] == 24
    for where in ("surrogate", "hnn_core"):
        for when in ("before", "after"):
            assert {"peak_hz", "power_from", "power_to", "power_total"} <= set(m[where][when])
    name = "L5_basket->L5_pyramidal/soma_gabaa"
    after = m["weights_ns"]["after"]
    assert after[name] != m["weights_ns"]["before"][name]
    assert {k: v for k, v in after.items() if k != name} == {k: v for k, v in m["weights_ns"]["before"].items()
                                                              if k != name}
    net = read_network_configuration(str(out / "runs" / "optimised.json"))
    conn = next(c for c in net.connectivity if c["src_type"] == "L5_basket" and c["target_type"] == "L5_pyramidal"
                and c["receptor"] == "gabaa")
    assert conn["nc_dict"]["A_weight"] * conn["nc_dict"]["gain"] * 1e3 == pytest.approx(after[name], rel=1e-9)
    for run in ("before", "after"):
        r = np.load(out / "runs" / f"{run}.npz")
        assert r["dipole_agg"].size == round(150.0 / 0.025) + 1 and r["spike_times_ms"].size > 0
    assert {p.name for p in (out / "figures").iterdir()} == {"spectra.png", "raster.png", "trajectory.png"}


def test_a_surrogate_of_another_cell_type_exits_2(tmp_path):
    from tests.conftest import eilab

    res = eilab("train", str(hnn_train_config(tmp_path, "L2_pyramidal")), "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and "surrogates.L5_pyramidal" in res.stderr and "not 'L5_pyramidal'" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "out").exists()
