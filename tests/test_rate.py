"""Rate networks tau dr/dt = -r + F(W r + X) against closed forms, stored in the run format."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from conftest import small_network
from eilab.sim.config import ConfigError, load_config
from eilab.sim.engine import run
from eilab.sim.rate import EXACT_MAX_UNITS, RateNetwork, expm, zoh_propagator
from eilab.sim.reader import open_run


def rate_net(transfer: str, j: float, x: float, n: int = 50, t_ms: float = 200.0, **params: float) -> dict:
    return {
        "run": {"t_ms": t_ms, "dt_ms": 0.01, "progress": False},
        "populations": [{"name": "A", "n": n, "type": "E", "model": "rate", "v_init": 0.0,
                         "params": {"tau_m": 10.0, "transfer": transfer, **params}}],
        "projections": [{"pre": "A", "post": "A", "rule": "bernoulli", "p": 1.0, "weight": j, "delay_ms": 0.01}],
        "drive": [{"target": "A", "kind": "current", "amplitude": x}],
        "record": {"counts_bin_ms": 0.1, "probes": [{"population": "A", "neurons": [0, n - 1]}], "probe_every_ms": 0.1},
    }


def test_linear_all_to_all_steady_state_and_time_constant(tmp_path: Path) -> None:
    """W = J (11^T - I): uniform mode lambda = J (n - 1); r* = X / (1 - lambda), relaxation tau / (1 - lambda)."""
    n, j, x, tau = 50, 0.01, 20.0, 10.0
    lam = j * (n - 1)
    cfg, raw = load_config(raw=rate_net("linear", j, x, n, t_ms=600.0))
    summary = run(cfg, raw, tmp_path / "r", progress=False)
    r = open_run(tmp_path / "r")
    rates = r.rates()
    assert rates.shape == (6000, n)
    r_star = x / (1 - lam)
    assert rates[-1].mean() == pytest.approx(r_star, rel=1e-6)  # stored as float32
    assert summary.populations["A"]["final_rate_hz"] == pytest.approx(r_star, rel=1e-9)
    t = (np.arange(6000) + 1) * 0.1
    gap = r_star - rates[:, 0]
    keep = gap > 1e-6 * r_star
    slope = np.polyfit(t[keep][:300], np.log(gap[keep][:300]), 1)[0]
    assert -1 / slope == pytest.approx(tau / (1 - lam), rel=0.01)
    pr = r.probes()
    np.testing.assert_allclose(pr["ext"], x)
    np.testing.assert_allclose(pr["syn_e"][-1], j * (n - 1) * pr["v"][-1], rtol=1e-5)


def test_rectified_unit_below_threshold_stays_silent_and_sigmoid_saturates(tmp_path: Path) -> None:
    cfg, raw = load_config(raw=rate_net("rectified", 0.0, 5.0, n=3, t_ms=300.0, threshold=8.0, gain=2.0))
    run(cfg, raw, tmp_path / "a", progress=False)
    assert np.all(open_run(tmp_path / "a").rates() == 0.0)
    cfg, raw = load_config(raw=rate_net("rectified", 0.0, 10.0, n=3, t_ms=300.0, threshold=8.0, gain=2.0))
    run(cfg, raw, tmp_path / "b", progress=False)
    assert open_run(tmp_path / "b").rates()[-1] == pytest.approx(2.0 * (10.0 - 8.0), rel=1e-6)
    cfg, raw = load_config(raw=rate_net("sigmoid", 0.0, 10.0, n=3, t_ms=300.0, threshold=1.0, gain=0.5, r_max=50.0))
    run(cfg, raw, tmp_path / "c", progress=False)
    assert open_run(tmp_path / "c").rates()[-1] == pytest.approx(50.0 / (1 + np.exp(-(0.5 * 10.0 - 1.0))), rel=1e-6)


def test_rate_and_spiking_populations_cannot_mix() -> None:
    raw = rate_net("linear", 0.01, 1.0)
    raw["populations"].append({"name": "S", "n": 2, "type": "I", "model": "lif_delta"})
    with pytest.raises(Exception, match="cannot be mixed"):
        load_config(raw=raw)


# ---------------------------------------------------------------- exact propagation of linear networks
DT = 0.1  # ms: the closed forms below hold to 1e-9 at this step


def units(spec: list[tuple[str, float, float]], projections: list[dict], t_ms: float = 200.0,
          transfer: str = "linear", **params: float) -> dict:
    """Single-unit populations (name, initial rate Hz, constant input) coupled by `projections`."""
    return {
        "run": {"t_ms": t_ms, "dt_ms": DT, "progress": False},
        "populations": [{"name": name, "n": 1, "type": "E", "model": "rate", "v_init": r0,
                         "params": {"tau_m": 10.0, "transfer": transfer, **params}} for name, r0, _ in spec],
        "projections": [{"rule": "bernoulli", "p": 1.0, "delay_ms": DT, **pr} for pr in projections],
        "drive": [{"target": name, "kind": "current", "amplitude": x} for name, _, x in spec],
        "record": {"counts_bin_ms": DT},
    }


def trajectory(raw: dict) -> tuple[np.ndarray, np.ndarray]:
    """Times (ms, end of each step) and r (step, unit) in float64 from the run's own propagator."""
    cfg, _ = load_config(raw=raw)
    net = RateNetwork(cfg)
    assert net.exact, net.scheme
    x = np.concatenate([np.full(p.n, p.params["I_e"] + d.amplitude) for p, d in zip(cfg.populations, cfg.drive,
                                                                                      strict=True)])
    r = np.concatenate([np.full(p.n, p.v_init) for p in cfg.populations])
    out = []
    for _ in range(cfg.steps(cfg.run.t_ms)):
        r = net.step(r, x)
        out.append(r)
    return (np.arange(len(out)) + 1) * DT, np.array(out)


def check_stored(raw: dict, tmp_path: Path, expected: np.ndarray) -> None:
    """The stored run (float32 rates, float64 final rates in the summary) follows the closed form."""
    cfg, raw = load_config(raw=raw)
    summary = run(cfg, raw, tmp_path / "r", progress=False)
    assert summary.integration.startswith("exact")
    np.testing.assert_allclose(open_run(tmp_path / "r").rates(), expected, rtol=1e-6, atol=1e-6)
    final = [summary.populations[p.name]["final_rate_hz"] for p in cfg.populations]
    ends = np.cumsum([0] + [p.n for p in cfg.populations])
    means = [expected[-1, a:b].mean() for a, b in itertools.pairwise(ends)]
    np.testing.assert_allclose(final, means, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("lam", "sign"), [(0.5, "+"), (0.9, "+"), (-3.0, "-")])
def test_constant_input_along_an_eigenvector_is_amplified_by_one_over_one_minus_lambda(
        tmp_path: Path, lam: float, sign: str) -> None:
    """W = J (11^T - I) on n units: the uniform mode has eigenvalue lambda = J (n - 1); r(0) = 0 and
    input x along it give r(t) = x (1 - e^{-(1 - lambda) t / tau}) / (1 - lambda)."""
    n, x, tau = 20, 4.0, 10.0
    raw = rate_net("linear", abs(lam) / (n - 1), x, n, t_ms=300.0)
    raw["run"]["dt_ms"] = DT
    raw["projections"][0].update(delay_ms=DT, sign=sign)
    raw["record"] = {"counts_bin_ms": DT}
    t, r = trajectory(raw)
    closed = x * -np.expm1(-(1 - lam) * t / tau) / (1 - lam)
    np.testing.assert_allclose(r, np.repeat(closed[:, None], n, axis=1), rtol=1e-9, atol=1e-12)
    check_stored(raw, tmp_path, np.repeat(closed[:, None], n, axis=1))


def test_input_along_an_antisymmetric_eigenvector() -> None:
    """W = [[0, w], [w, 0]]: eigenvector (1, -1) with lambda = -w; input c (1, -1) is divided by 1 + w."""
    w, c, tau = 1.5, 3.0, 10.0
    raw = units([("A", 0.0, c), ("B", 0.0, -c)], [{"pre": "A", "post": "B", "weight": w},
                                                   {"pre": "B", "post": "A", "weight": w}])
    t, r = trajectory(raw)
    closed = c * -np.expm1(-(1 + w) * t / tau) / (1 + w)
    np.testing.assert_allclose(r, np.stack([closed, -closed], axis=1), rtol=1e-9, atol=1e-12)


def test_integrator_mode_grows_linearly(tmp_path: Path) -> None:
    """lambda = 1 (a unit exciting itself with weight 1/gain): A is singular and r(t) = r0 + x t / tau."""
    r0, x, tau = 2.0, 5.0, 10.0
    raw = units([("A", r0, x)], [{"pre": "A", "post": "A", "weight": 0.5, "autapses": True}], gain=2.0)
    raw["drive"][0]["amplitude"] = x / 2.0  # gain 2: x / gain in input units
    t, r = trajectory(raw)
    closed = r0 + x * t / tau
    np.testing.assert_allclose(r[:, 0], closed, rtol=1e-9)
    check_stored(raw, tmp_path, closed[:, None])


@pytest.mark.parametrize("sign", ["+", "-"])
def test_non_normal_feedforward_transient(tmp_path: Path, sign: str) -> None:
    """W = [[0, w], [0, 0]], r(0) = (0, 1), no input: r_2 = e^{-t/tau}, r_1 = +-w (t/tau) e^{-t/tau}
    (a transient growth to w/e at t = tau although both eigenvalues are 0)."""
    w, tau = 8.0, 10.0
    raw = units([("A", 0.0, 0.0), ("B", 1.0, 0.0)], [{"pre": "B", "post": "A", "weight": w, "sign": sign}])
    t, r = trajectory(raw)
    s = 1.0 if sign == "+" else -1.0
    closed = np.stack([s * w * t / tau * np.exp(-t / tau), np.exp(-t / tau)], axis=1)
    np.testing.assert_allclose(r, closed, rtol=1e-9, atol=1e-12)
    check_stored(raw, tmp_path, closed)


def test_expm_against_closed_forms() -> None:
    """Rotation generator, nilpotent and widely spread diagonal (which needs scaling and squaring)."""
    th = 7.0
    np.testing.assert_allclose(expm(np.array([[0.0, -th], [th, 0.0]])),
                               [[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]], rtol=0, atol=1e-13)
    np.testing.assert_allclose(expm(np.array([[0.0, 3.0], [0.0, 0.0]])), [[1.0, 3.0], [0.0, 1.0]], atol=1e-15)
    np.testing.assert_allclose(np.diag(expm(np.diag([-40.0, 0.0, 3.0]))), np.exp([-40.0, 0.0, 3.0]), rtol=1e-13)
    phi, gamma = zoh_propagator(np.zeros((2, 2)), 0.3)
    np.testing.assert_allclose(phi, np.eye(2), rtol=0, atol=1e-15)
    np.testing.assert_allclose(gamma, 0.3 * np.eye(2), rtol=1e-15)


def test_nonlinear_scheme_is_second_order() -> None:
    """ETD2RK on a sigmoid unit with self-excitation: the error at 20 ms against a tight-tolerance
    reference falls 4-fold per halving of dt (the old exponential Euler: 2-fold)."""
    params = {"gain": 0.5, "threshold": 2.0, "r_max": 40.0}
    w, x, tau, t_end = 0.3, 3.0, 10.0, 20.0

    def f(r: float) -> float:
        return params["r_max"] / (1 + np.exp(-(params["gain"] * (w * r + x) - params["threshold"])))

    ref = solve_ivp(lambda _t, r: (-r + f(r)) / tau, (0.0, t_end), [1.0], method="DOP853",
                    rtol=1e-13, atol=1e-13).y[0, -1]
    errors = []
    for dt in (0.8, 0.4, 0.2, 0.1):
        raw = units([("A", 1.0, x)], [{"pre": "A", "post": "A", "weight": w, "autapses": True, "delay_ms": dt}],
                    t_ms=t_end, transfer="sigmoid", **params)
        raw["run"]["dt_ms"] = dt
        raw["record"]["counts_bin_ms"] = dt
        cfg, _ = load_config(raw=raw)
        net = RateNetwork(cfg)
        assert not net.exact and "order 2" in net.scheme
        r = np.array([1.0])
        for _ in range(cfg.steps(t_end)):
            r = net.step(r, np.array([x]))
        errors.append(abs(r[0] - ref))
    ratios = np.array(errors[:-1]) / errors[1:]
    assert np.all((ratios > 3.7) & (ratios < 4.3)), (errors, ratios)


def test_large_linear_network_falls_back_with_a_statement() -> None:
    n = EXACT_MAX_UNITS + 1
    raw = rate_net("linear", 0.1, 1.0, n)
    raw["projections"][0].update(rule="fixed_indegree", k=1)
    del raw["projections"][0]["p"]
    cfg, _ = load_config(raw=raw)
    with pytest.warns(UserWarning, match=f"limited to {EXACT_MAX_UNITS} units"):
        net = RateNetwork(cfg)
    assert not net.exact and "ETD2RK" in net.scheme and str(EXACT_MAX_UNITS) in net.scheme


def test_sign_is_for_rate_networks_only() -> None:
    raw = small_network()
    raw["projections"][0]["sign"] = "-"
    with pytest.raises(ConfigError, match=r"projections\.0\.sign.*Dale"):
        load_config(raw=raw)
    raw = rate_net("linear", 0.01, 1.0)
    raw["projections"][0]["sign"] = "x"
    with pytest.raises(ConfigError, match="sign"):
        load_config(raw=raw)
