"""Inhibitory STDP: the rule against hand-computed traces, rank invariance, kill and resume, learning."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from conftest import CONFIGS, eilab, mpi_eilab, start_and_kill
from eilab.sim.config import load_config
from eilab.sim.engine import run
from eilab.sim.reader import open_run

DT, TAU = 0.1, 20.0


def pair_protocol(rule: str, pre_ms: list[float], post_ms: list[float], w0: float, eta: float,
                  start_ms: float = 0.0, precision: str = "float32") -> dict:
    """One inhibitory and one excitatory neuron made to fire at given times by strong input kicks."""
    lif = {"tau_m": 10.0, "E_L": 0.0, "V_th": 1.0, "V_reset": 0.0, "t_ref": 0.0}
    return {
        "run": {"t_ms": 50.0, "dt_ms": DT, "progress": False},
        "populations": [{"name": "E", "n": 1, "type": "E", "model": "lif_delta", "params": lif},
                        {"name": "I", "n": 1, "type": "I", "model": "lif_delta", "params": lif}],
        "projections": [{"pre": "I", "post": "E", "rule": "fixed_indegree", "k": 1, "weight": w0, "delay_ms": 0.1,
                         "plasticity": {"rule": rule, "eta": eta, "tau_ms": TAU, "rho0_hz": 3.0, "w_max": 50.0,
                                        "start_ms": start_ms, "precision": precision}}],
        "drive": [{"target": "I", "kind": "spikes", "times_ms": pre_ms, "weight": 5.0},
                  {"target": "E", "kind": "spikes", "times_ms": post_ms, "weight": 100.0}],
    }


def expected_weight(rule: str, pre_ms: list[float], post_ms: list[float], w0: float, eta: float,
                    start_ms: float = 0.0) -> float:
    """The rule of docs/models.md (section 6) evaluated by hand: traces just before each step, post first;
    spikes before start_ms move only the traces."""
    jump = 1.0 if rule == "vogels2011" else 1.0 / TAU
    alpha = 2 * 0.003 * TAU if rule == "vogels2011" else 2 * 0.003
    w, x_pre, x_post, t_last = w0, 0.0, 0.0, 0.0
    for t in sorted(set(pre_ms) | set(post_ms)):
        decay = math.exp(-(t - t_last) / TAU)
        x_pre, x_post, t_last = x_pre * decay, x_post * decay, t
        scale = w if rule == "akil2021" else 1.0
        if t in post_ms and t >= start_ms:
            w = min(max(w + eta * x_pre * scale, 0.0), 50.0)
        scale = w if rule == "akil2021" else 1.0
        if t in pre_ms and t >= start_ms:
            w = min(max(w + eta * (x_post - alpha) * scale, 0.0), 50.0)
        x_pre += jump * (t in pre_ms)
        x_post += jump * (t in post_ms)
    return w


@pytest.mark.parametrize("rule", ["vogels2011", "akil2021"])
def test_pair_protocol_matches_the_rule(tmp_path: Path, rule: str) -> None:
    pre, post = [10.0, 30.0, 40.0, 44.0], [15.0, 31.0, 40.0, 42.0]
    eta = 0.05 if rule == "vogels2011" else 0.5
    cfg, raw = load_config(raw=pair_protocol(rule, pre, post, 1.0, eta))
    run(cfg, raw, tmp_path / "r", progress=False)
    r = open_run(tmp_path / "r")
    times, gids = r.spikes()
    assert sorted(times[gids == 1] - DT) == pytest.approx(pre) and sorted(times[gids == 0] - DT) == pytest.approx(post)
    t, w = r.weights("IE")
    assert list(t) == [0.0, 50.0] and w[0][0] == 1.0
    assert w[1][0] == pytest.approx(expected_weight(rule, pre, post, 1.0, eta), rel=1e-6)
    assert w[1][0] != pytest.approx(1.0, abs=1e-3)


def pair_closed_form(rule: str, pre_first: bool, delta_ms: float, w0: float, eta: float) -> float:
    """One pre and one post spike delta_ms apart (docs/models.md, section 6), rho0 = 3 Hz: the first spike
    sees the other trace at 0, the second sees its jump decayed by e^{-delta/tau}."""
    seen = math.exp(-delta_ms / TAU)
    if rule == "vogels2011":  # jumps 1, alpha = 2 rho0 tau; the pre spike pays alpha either way
        return w0 + eta * (seen - 2 * 0.003 * TAU)
    seen /= TAU  # akil2021: jumps 1/tau, w multiplies every change
    if pre_first:
        return w0 * (1 - eta * 2 * 0.003) * (1 + eta * seen)
    return w0 * (1 + eta * (seen - 2 * 0.003))


@pytest.mark.parametrize("pre_first", [True, False])
@pytest.mark.parametrize("rule", ["vogels2011", "akil2021"])
def test_float64_weights_follow_the_pair_closed_form_to_1e_12(tmp_path: Path, rule: str, pre_first: bool) -> None:
    first, delta = 10.0, 7.3
    pre, post = ([first], [first + delta]) if pre_first else ([first + delta], [first])
    eta = 0.05 if rule == "vogels2011" else 0.5
    expected = pair_closed_form(rule, pre_first, delta, 1.0, eta)
    cfg, raw = load_config(raw=pair_protocol(rule, pre, post, 1.0, eta, precision="float64"))
    run(cfg, raw, tmp_path / "r", progress=False)
    r = open_run(tmp_path / "r")
    times, gids = r.spikes()
    assert list(times[gids == 1] - DT) == pytest.approx(pre) and list(times[gids == 0] - DT) == pytest.approx(post)
    w = r.weights("IE")[1][-1]
    assert w.dtype == np.float64 and abs(w[0] - expected) < 1e-12, (w[0], expected)
    assert abs(expected - 1.0) > 1e-3
    cfg, raw = load_config(raw=pair_protocol(rule, pre, post, 1.0, eta))  # float32 default: one rounding per update
    run(cfg, raw, tmp_path / "f32", progress=False)
    w32 = open_run(tmp_path / "f32").weights("IE")[1][-1]
    assert w32.dtype == np.float32 and w32[0] == pytest.approx(expected, rel=2 * float(np.finfo(np.float32).eps))


def test_no_weight_change_before_start_but_traces_run(tmp_path: Path) -> None:
    pre, post = [10.0, 30.0, 40.0, 44.0], [15.0, 31.0, 40.0, 42.0]
    cfg, raw = load_config(raw=pair_protocol("vogels2011", pre, post, 1.0, 0.05, start_ms=35.0))
    run(cfg, raw, tmp_path / "r", progress=False)
    w = open_run(tmp_path / "r").weights("IE")[1][-1][0]
    assert w == pytest.approx(expected_weight("vogels2011", pre, post, 1.0, 0.05, start_ms=35.0), rel=1e-6)
    assert w != pytest.approx(expected_weight("vogels2011", pre, post, 1.0, 0.05), rel=1e-3)
    late = [t for t in pre if t >= 35.0], [t for t in post if t >= 35.0]  # traces of the early spikes count
    assert w != pytest.approx(expected_weight("vogels2011", *late, 1.0, 0.05), rel=1e-3)


def plastic_network(tmp_path: Path, t_ms: float = 400.0, precision: str = "float32") -> Path:
    raw = load_config(CONFIGS / "vogels2011.toml")[1]
    raw["vars"].update(N_E=400, N_I=100, p=0.1, eta=0.25)
    raw["run"]["t_ms"] = t_ms
    raw["projections"][3]["plasticity"].update(snapshot_every_ms=100.0, start_ms=100.0,  # static for 100 ms
                                               precision=precision)
    path = tmp_path / "plastic.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("plastic")
    cfg = plastic_network(tmp)
    assert eilab("run", str(cfg), "--out", str(tmp / "one"), "--quiet").returncode == 0
    return cfg, tmp / "one"


def assert_same(a: Path, b: Path) -> None:
    ra, rb = open_run(a), open_run(b)
    for x, y in zip(ra.spikes(), rb.spikes(), strict=True):
        np.testing.assert_array_equal(x, y)
    ta, wa = ra.weights("IE")
    tb, wb = rb.weights("IE")
    np.testing.assert_array_equal(ta, tb)
    for x, y in zip(wa, wb, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("ranks", [2, 3])
def test_weights_and_spikes_are_rank_invariant(single: tuple[Path, Path], tmp_path: Path, ranks: int) -> None:
    cfg, reference = single
    res = mpi_eilab(ranks, "run", str(cfg), "--out", str(tmp_path / "r"), "--quiet")
    assert res.returncode == 0, res.stderr
    assert_same(reference, tmp_path / "r")
    t, w = open_run(tmp_path / "r").weights("IE")
    assert list(t) == [0.0, 100.0, 200.0, 300.0, 400.0] and w[-1].mean() > w[0].mean()
    assert np.array_equal(w[1], w[0])  # no learning before start_ms
    t_last, w_last = open_run(tmp_path / "r").weights("IE", last=True)
    assert list(t_last) == [400.0] and len(w_last) == 1 and np.array_equal(w_last[0], w[-1])


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_kill_and_resume_keeps_weights_bitwise(tmp_path: Path, precision: str) -> None:
    """Killed on 2 ranks after its first checkpoint (200 ms, learning on since 100 ms), resumed on 3: bitwise the
    run of one rank (float64 weights included). Three checkpoints and 800 ms of network remain after the first: on
    2 ranks (a spike exchange every 0.1 ms step) seconds for the kill to land mid-run."""
    cfg = plastic_network(tmp_path, t_ms=1000.0, precision=precision)
    settings = ["--set", "run.checkpoint_every_ms=200"]
    assert eilab("run", str(cfg), "--out", str(tmp_path / "ref"), "--quiet", *settings).returncode == 0
    start_and_kill(tmp_path / "run", 2, False, cfg, settings, min_step=2000)
    res = mpi_eilab(3, "resume", str(tmp_path / "run"), "--quiet")
    assert res.returncode == 0, res.stderr
    assert_same(tmp_path / "ref", tmp_path / "run")
    w = open_run(tmp_path / "run").weights("IE")[1][-1]
    assert w.dtype == np.dtype(precision)
    if precision == "float64":  # learned weights off the float32 grid: float64 all the way through
        assert np.any(w.astype(np.float32).astype(np.float64) != w)


def learning_run(tmp_path: Path, plastic: bool, t_ms: float) -> np.ndarray:
    """The test network of the next test; E rate (Hz) per 100 ms."""
    raw = load_config(CONFIGS / "vogels2011.toml")[1]
    raw["vars"].update(N_E=800, N_I=200, p=0.1, g_gaba=1.5, eta=0.25)
    raw["run"].update(t_ms=t_ms, progress=False)
    raw["record"].update(spikes=False, probes=[])
    if not plastic:  # I -> E keeps its initial weight, 0 nS
        del next(pr for pr in raw["projections"] if pr["name"] == "IE")["plasticity"]
    cfg, raw = load_config(raw=raw)
    out = tmp_path / ("plastic" if plastic else "static")
    run(cfg, raw, out, progress=False)
    return open_run(out).counts("E").sum(axis=1).reshape(-1, 10).sum(axis=1) / 800 / 0.1


def stays_at_the_target(rate: np.ndarray, from_s: int) -> bool:
    """The issue's criterion: the E rate of every second from `from_s` on within 20 % of rho0 = 3 Hz."""
    per_s = rate.reshape(-1, 10).mean(axis=1)
    return bool(np.all(np.abs(per_s[from_s:] - 3.0) < 0.2 * 3.0))


def test_inhibitory_plasticity_brings_excitatory_rates_to_the_target(tmp_path: Path) -> None:
    """A smaller, faster version of configs/vogels2011.toml: E rates fall from tens of Hz to 3 Hz and stay.

    The rule's drift vanishes where the postsynaptic rate is 2 rho0 / (c_pre + c_post), c_pre and
    c_post being its two pairing terms relative to independent spike trains. Each inhibitory spike
    delays the next spike of its target (c_post < 1), which puts the fixed point above rho0, the
    more so the stronger the single I -> E synapses. With the config's I -> I weight (3 nS) the
    I rate settles where each E neuron gets few, strong I spikes: c_post ~ 0.6 and E rates settle
    14-28 % above the target whatever the in-degree (eilab and NEST alike, 1000 and 10000 neurons;
    benchmarks/results/vogels_convergence.jsonl). Here the I -> I weight is halved (1.5 nS): I
    neurons fire ~1.5x faster, learned I -> E weights are ~40 % smaller, c_post ~ 0.7 and E rates
    settle 3-5 % above the target (3.12 Hz over 40-60 s; NEST 3.10 Hz). Without plasticity the same
    network stays far above it.
    """
    rate = learning_run(tmp_path, True, 20000.0)
    assert rate[0] > 10.0  # starts far above the target
    assert stays_at_the_target(rate, 2), rate.reshape(-1, 10).mean(axis=1)
    static = learning_run(tmp_path, False, 4000.0)
    assert static.mean() > 10.0 and not stays_at_the_target(static, 2)
