"""What `eilab analyze` reports about inhibitory plasticity (analysis/plasticity.py): weight statistics
against closed forms, windowed inputs against presynaptic spike counts, and a small Vogels et al. (2011)
network learning towards its target rate with E/I cancellation improving."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from conftest import CONFIGS, eilab, small_network
from eilab.analysis import plasticity as pa
from eilab.sim.config import load_config
from eilab.sim.engine import run
from eilab.sim.network import build_connectivity
from eilab.sim.reader import open_run

N_E, N_I, T_MS, SNAP_MS, RHO0 = 400, 100, 2000.0, 100.0, 3.0
START_MS = 500.0  # the rule turns on here (plasticity.start_ms)


# ---------------------------------------------------------------- closed forms
def test_weight_stats_of_a_known_array() -> None:
    w = np.array([0.0, 0.0, 1.0, 2.0, 3.0, 4.0], np.float32)
    edges = pa.shared_edges([w, np.array([1.0, 2.0], np.float32)], bins=4)
    np.testing.assert_array_equal(edges, [0.0, 1.0, 2.0, 3.0, 4.0])
    s = pa.weight_stats(w, w_min=0.0, w_max=4.0, edges=edges)
    assert s["counts"] == [2, 1, 1, 2]  # [0,1) [1,2) [2,3) [3,4]
    assert s["n"] == 6 and s["mean"] == pytest.approx(10 / 6)
    assert s["sd"] == pytest.approx(np.sqrt(30 / 6 - (10 / 6) ** 2))
    assert s["quantiles"]["q50"] == pytest.approx(1.5) and s["quantiles"]["q25"] == pytest.approx(0.25)
    assert s["frac_at_min"] == pytest.approx(2 / 6) and s["frac_at_max"] == pytest.approx(1 / 6)
    np.testing.assert_allclose(pa.shared_edges([np.full(5, 2.0)], bins=2), [1.0, 2.0, 3.0])  # one value: middle bin
    ws = pa.weight_summary(np.array([0.0, 10.0]), [np.zeros(3, np.float32), w], 0.0, 4.0, bins=4)
    assert ws["histogram"]["counts"] == [[3, 0, 0, 0], [2, 1, 1, 2]]
    assert ws["snapshots"]["frac_at_min"] == [1.0, pytest.approx(2 / 6)] and ws["snapshots"]["mean"][0] == 0.0


def test_learning_windows() -> None:
    times = np.arange(0.0, 2001.0, 100.0)
    assert pa.learning_windows(times, 2000.0, 100.0) == ((50.0, 100.0), (1900.0, 2000.0))
    assert pa.learning_windows(times, 2000.0, 20.0) == ((20.0, 100.0), (1900.0, 2000.0))
    # start and end only: t_ms / 10 at either end
    assert pa.learning_windows(np.array([0.0, 2000.0]), 2000.0, 100.0) == ((100.0, 200.0), (1800.0, 2000.0))


DT = 0.1


@pytest.fixture(scope="module")
def delta_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """conftest's small LIF delta network driven harder, I -> E plastic (akil2021), no spike arrays: counts at every
    step (the counts path of the rate), every E neuron probed at every step (exact window means).
    Snapshots every 40 ms, a multiple of the engine's window unit (min delay 0.8 ms), so they are
    stored at their nominal times."""
    raw = small_network(t_ms=200.0, dt_ms=DT)
    for d in raw["drive"]:
        d["rate_hz"] = 60.0  # 1.5 mV/ms, above threshold, as tests/test_balance.py: an active network
    raw["projections"][2]["plasticity"] = {"rule": "akil2021", "eta": 0.5, "tau_ms": 20.0, "rho0_hz": 5.0,
                                           "w_max": 50.0, "snapshot_every_ms": 40.0}
    raw["record"] = {"spikes": False, "counts_bin_ms": DT, "probe_every_ms": DT,
                     "probes": [{"population": "E", "neurons": list(range(80))}]}
    cfg, raw = load_config(raw=raw)
    out = tmp_path_factory.mktemp("delta") / "r"
    run(cfg, raw, out, progress=False)
    return out


def test_windowed_input_equals_presynaptic_counts(delta_run: Path) -> None:
    """Delta synapses, a probe sample per step: mean E input of neuron j over samples in (a, b] is
    sum_syn J * (spikes of its E inputs emitted in (a - d, b - d]) / (b - a) (as tests/test_balance.py,
    here on the before/after windows); the interval rates are the counts per interval / n / width."""
    r = open_run(delta_run)
    cfg = r.config
    s = pa.summary(r, transient_ms=100.0)
    p = s["projections"]["IE"]
    assert p["rule"] == "akil2021" and p["target_hz"] == 5.0 and p["post_rate"]["source"] == "counts"
    assert p["snapshots"]["time_ms"] == [0.0, 40.0, 80.0, 120.0, 160.0, 200.0]
    counts = r.counts().astype(np.int64)  # (bin, gid), bin k: spikes emitted at step k
    conn = build_connectivity(cfg, 0, cfg.n_total)
    for key, window in (("before", (20.0, 40.0)), ("after", (160.0, 200.0))):
        assert p[key]["window_ms"] == list(window)
        a, b = window
        expected = np.zeros(cfg.n_total)
        for q, proj in enumerate(cfg.projections):
            if conn.receptor[q] != 0:
                continue
            d = proj.delay_ms
            n = counts[round((a - d) / DT) : round((b - d) / DT)].sum(axis=0)
            start, end = conn.rows(q)
            for i in range(conn.pre_n[q]):
                lo, hi = start[i], end[i]
                np.add.at(expected, conn.targets[lo:hi], conn.weight[q] * n[conn.pre_gid0[q] + i])
        inp = p[key]["inputs"]
        assert inp["n_probes"] == 80 and inp["samples_ms"] == pytest.approx([a + DT, b])
        assert inp["E"] == pytest.approx(expected[:80].mean() / (b - a), rel=1e-5) and inp["E"] > 0.05
        assert inp["ratio"] == pytest.approx(abs(inp["E"] + inp["I"] + inp["ext"]) / (inp["E"] + inp["ext"]))
        e_counts = counts[round(a / DT) : round(b / DT), :80].sum()
        assert p[key]["rate_hz"] == pytest.approx(e_counts / 80 / ((b - a) / 1000))
        assert p[key]["rate_error_hz"] == pytest.approx(p[key]["rate_hz"] - 5.0) and e_counts > 0
    per = counts[:, :80].sum(axis=1).reshape(5, -1).sum(axis=1)
    np.testing.assert_allclose(p["post_rate"]["rate_hz"], per / 80 / 0.04)
    t, w = r.weights("IE")
    assert list(t) == p["snapshots"]["time_ms"] and w[0].size == p["n_synapses"] > 0 and np.all(w[0] == 1.0)
    np.testing.assert_allclose(p["snapshots"]["mean"], [x.astype(np.float64).mean() for x in w], rtol=1e-12)
    assert p["snapshots"]["sd"][0] == 0.0 and p["snapshots"]["sd"][-1] > 1e-3  # the rule acted
    assert sum(p["histogram"]["counts"][-1]) == p["n_synapses"]
    # a rule without a target rate: the headline says so instead of failing
    no_target = copy.deepcopy(s)
    no_target["projections"]["IE"]["target_hz"] = None
    assert "no target" in "\n".join(pa.headline_lines(no_target))


# ---------------------------------------------------------------- learning, through the CLI
@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    """configs/vogels2011.toml at 400 E + 100 I, p = 0.1, eta = 0.1 nS, 2 s, snapshots every 100 ms, static
    for the first 500 ms;
    `eilab run` then `eilab analyze` as a user would."""
    tmp = tmp_path_factory.mktemp("vogels")
    raw = load_config(CONFIGS / "vogels2011.toml")[1]
    raw["vars"].update(N_E=N_E, N_I=N_I, p=0.1, eta=0.1, rho0=RHO0)
    raw["run"].update(t_ms=T_MS, progress=False)
    raw["projections"][3]["plasticity"].update(snapshot_every_ms=SNAP_MS, start_ms=START_MS)
    (tmp / "v.toml").write_text(tomli_w.dumps(raw))
    res = eilab("run", str(tmp / "v.toml"), "--out", str(tmp / "v"), "--quiet")
    assert res.returncode == 0, res.stderr
    res = eilab("analyze", str(tmp / "v"), "--no-spectrum")
    assert res.returncode == 0, res.stderr
    return tmp / "v", json.loads((tmp / "v" / "summary.json").read_text()), res.stdout


def test_weights_grow_from_their_initial_value(learned: tuple[Path, dict, str]) -> None:
    path, summary, _ = learned
    p = summary["plasticity"]["projections"]["IE"]
    snaps = p["snapshots"]
    assert snaps["time_ms"] == list(np.arange(0.0, T_MS + 1, SNAP_MS))
    assert p["initial_weight"] == 0.0 and p["weight_unit"] == "nS" and p["target_hz"] == RHO0
    assert snaps["mean"][0] == 0.0 and snaps["frac_at_min"][0] == 1.0 and snaps["sd"][0] == 0.0
    static = int(START_MS // SNAP_MS) + 1  # snapshots up to START_MS: no learning yet
    assert all(m == 0.0 for m in snaps["mean"][:static])
    assert snaps["mean"][-1] > 0.5 and snaps["mean"][-1] > snaps["mean"][static] > 0.0
    assert snaps["frac_at_min"][-1] < 0.5 and snaps["frac_at_max"][-1] == 0.0
    assert snaps["quantiles"]["q95"][-1] > snaps["quantiles"]["q50"][-1] > 0.0
    # about p N_I N_E synapses (Bernoulli, 4 sd); every histogram holds all of them
    n = p["n_synapses"]
    assert abs(n - 0.1 * N_I * N_E) < 4 * np.sqrt(0.1 * 0.9 * N_I * N_E)
    assert all(sum(c) == n for c in p["histogram"]["counts"])
    assert len(p["histogram"]["edges"]) == pa.HIST_BINS + 1
    # the statistics are those of the stored snapshots
    t, w = open_run(path).weights("IE")
    assert list(t) == snaps["time_ms"]
    np.testing.assert_allclose(snaps["mean"], [x.astype(np.float64).mean() for x in w], rtol=1e-9)
    np.testing.assert_allclose(snaps["sd"], [x.astype(np.float64).std() for x in w], rtol=1e-9)


def test_rate_approaches_the_target_and_cancellation_improves(learned: tuple[Path, dict, str]) -> None:
    path, summary, stdout = learned
    p = summary["plasticity"]["projections"]["IE"]
    before, after = p["before"], p["after"]
    assert before["window_ms"] == [50.0, 100.0] and after["window_ms"] == [T_MS - SNAP_MS, T_MS]
    assert before["rate_hz"] > 5 * RHO0 and abs(after["rate_error_hz"]) < abs(before["rate_error_hz"]) / 3
    # the per-interval rates are the stored E spikes per interval
    times, gids = open_run(path).spikes()
    e = times[gids < N_E]
    counts = np.histogram(e - 1e-6, bins=np.arange(0.0, T_MS + 1, SNAP_MS))[0]  # (t_k, t_k+1]
    np.testing.assert_allclose(p["post_rate"]["rate_hz"], counts / N_E / (SNAP_MS / 1000))
    assert p["post_rate"]["source"] == "spikes"
    bi, ai = before["inputs"], after["inputs"]
    assert bi["n_probes"] == ai["n_probes"] == 10
    for inp in (bi, ai):  # I_e / C_m = 200 pA / 200 pF and no Poisson drive: ext is 1 mV/ms exactly
        assert inp["ext"] == pytest.approx(1.0, rel=1e-6)
        assert inp["ratio"] == pytest.approx(abs(inp["E"] + inp["I"] + inp["ext"]) / (inp["E"] + inp["ext"]))
    assert bi["I"] == 0.0 and bi["ratio"] == pytest.approx(1.0)  # before: I -> E weights 0, nothing cancels
    assert ai["I"] < -0.1 and ai["ratio"] < 0.7  # after: inhibition cancels much of the excitatory drive
    assert "plasticity IE (vogels2011" in stdout and "cancellation" in stdout and "target 3 Hz" in stdout
    for name in ("weights", "learning"):
        png = Path(summary["figures"][name])
        assert png.parent == path / "figures" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
