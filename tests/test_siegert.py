"""Siegert mean-field states (analysis/siegert.py): every self-consistent root with its stability, and the ISI CV
of Brunel (2000) against its Poisson and deterministic limits and a direct simulation of the neuron."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eilab.analysis.siegert import network_rates, network_states, siegert_cv, siegert_network, siegert_rate
from eilab.sim.config import load_config

NEURON = {"tau_m": 20.0, "E_L": 0.0, "V_th": 20.0, "V_reset": 10.0, "t_ref": 2.0}


def recurrent_e(copies: int = 1, rate_hz: float = 6.0) -> dict:
    """Excitatory population(s), each with recurrent excitation K J = 100 x 0.2 mV and its own Poisson drive
    (100 x 1 mV at rate_hz: mu = 12 mV, sigma = 3.5 mV at 6 Hz): low, middle and high self-consistent states."""
    names = [f"E{c}" for c in range(copies)]
    return {
        "run": {"t_ms": 100.0},
        "populations": [{"name": n, "n": 1000, "type": "E", "model": "lif_delta", "params": NEURON} for n in names],
        "projections": [{"pre": n, "post": n, "rule": "fixed_indegree", "k": 100, "weight": 0.2} for n in names],
        "drive": [{"target": n, "kind": "poisson", "rate_hz": rate_hz, "indegree": 100, "weight": 1.0}
                  for n in names],
    }


def test_three_states_of_a_recurrent_excitatory_population() -> None:
    cfg, _ = load_config(raw=recurrent_e())
    found = network_states(cfg)
    assert found.complete and found.method.startswith("1-D")
    assert len(found.states) == 3
    low, mid, high = found.states
    net = siegert_network(cfg)
    for s in found.states:  # self-consistency nu = Phi(nu) to 1e-9 (relative, Hz)
        nu = s.rates_hz
        assert abs(net.phi(nu)[0] - nu[0]) <= 1e-9 * max(1.0, nu[0])
        # the slope of Phi by its own definition: dPhi/dnu from mu, sigma (mV) moving with nu
        assert s.eigenvalues[0].real == pytest.approx(s.jacobian[0, 0] - 1.0)
    assert low.rates_hz[0] < 1.0 < mid.rates_hz[0] < 30.0 < 200.0 < high.rates_hz[0] < 500.0
    assert low.stable and high.stable and not mid.stable
    assert mid.jacobian[0, 0] > 1.0 > max(low.jacobian[0, 0], high.jacobian[0, 0])
    # the slope against a centred difference of Phi computed here
    h = 1e-3
    slope = (net.phi(mid.rates_hz + h)[0] - net.phi(mid.rates_hz - h)[0]) / (2 * h)
    assert mid.jacobian[0, 0] == pytest.approx(slope, rel=1e-4)
    assert low.cv[0] > 0.95 and high.cv[0] < 0.2  # Poisson-like low state, regular high state


def test_grid_finds_the_product_states_of_two_uncoupled_copies() -> None:
    """Two uncoupled copies: the states are the 3 x 3 pairs of the single-population roots, stable when both are."""
    single = network_states(load_config(raw=recurrent_e())[0]).states
    roots = [s.rates_hz[0] for s in single]
    found = network_states(load_config(raw=recurrent_e(copies=2))[0])
    assert not found.complete and found.method == "grid + hybr"
    key = lambda pair: tuple(np.round(pair, 6))  # noqa: E731
    got = sorted((tuple(s.rates_hz) for s in found.states), key=key)
    expected = sorted(((a, b) for a in roots for b in roots), key=key)
    assert len(got) == 9
    np.testing.assert_allclose(got, expected, rtol=1e-7)
    stable = {tuple(np.round(s.rates_hz, 6)) for s in found.states if s.stable}
    assert stable == {(round(a, 6), round(b, 6)) for a in roots[::2] for b in roots[::2]}


def test_network_rates_picks_the_stable_state_nearest_the_guess() -> None:
    cfg, _ = load_config(raw=recurrent_e())
    low, _, high = network_states(cfg).states
    assert network_rates(cfg)["E0"] == pytest.approx(low.rates_hz[0], rel=1e-12)
    assert network_rates(cfg, guess_hz=300.0)["E0"] == pytest.approx(high.rates_hz[0], rel=1e-12)
    only_high, _ = load_config(raw=recurrent_e(rate_hz=7.0))  # the regular high-rate state alone
    states = network_states(only_high).states
    assert len(states) == 1 and states[0].stable and states[0].rates_hz[0] > 200.0
    assert network_rates(only_high)["E0"] == pytest.approx(states[0].rates_hz[0], rel=1e-12)


# ---------------------------------------------------------------- ISI CV (Brunel 2000)
def test_cv_poisson_limit_far_below_threshold() -> None:
    """Rare threshold crossings from far below: the ISI is exponential (refractoriness negligible), CV -> 1."""
    cv = [siegert_cv(10.0, s, 20.0, 2.0, 20.0, 10.0) for s in (3.0, 2.0, 1.5)]
    assert siegert_rate(10.0, 1.5, 20.0, 2.0, 20.0, 10.0) < 1e-10
    assert abs(cv[-1] - 1.0) < 1e-3 and abs(cv[0] - 1.0) > abs(cv[-1] - 1.0)


def test_cv_deterministic_limit_and_weak_noise_closed_form() -> None:
    """Above threshold, weak noise (tau dV = (mu - V) dt + sigma sqrt(tau) dW): T = tau ln((mu - V_r) / (mu - theta)),
    Var V(T) = sigma^2 / 2 (1 - e^{-2T/tau}), slope (mu - theta) / tau, so CV = sd(V(T)) / slope / (t_ref + T)."""
    tau, t_ref, theta, vr, mu = 20.0, 2.0, 20.0, 10.0, 25.0
    T = tau * math.log((mu - vr) / (mu - theta))
    for sigma in (0.05, 0.02):
        weak = sigma * math.sqrt(0.5 * (1 - math.exp(-2 * T / tau))) / ((mu - theta) / tau) / (t_ref + T)
        assert siegert_cv(mu, sigma, tau, t_ref, theta, vr) == pytest.approx(weak, rel=1e-2)
    assert siegert_cv(mu, 0.0, tau, t_ref, theta, vr) == 0.0


def test_cv_against_a_simulated_first_passage() -> None:
    """Euler-Maruyama first passages from V_r to theta (5000 neurons, dt = 0.01 ms), mu = 18, sigma = 4 mV: the ISI
    mean and CV from direct simulation (sd of the CV estimate about 1 %, discretisation bias below 1 %)."""
    mu, sigma, tau, t_ref, theta, vr = 18.0, 4.0, 20.0, 2.0, 20.0, 10.0
    rng = np.random.default_rng(1)
    dt, n = 0.01, 5000
    v = np.full(n, vr)
    first = np.full(n, np.nan)
    t = 0.0
    alive = np.arange(n)
    while alive.size:
        v[alive] += dt / tau * (mu - v[alive]) + sigma * math.sqrt(dt / tau) * rng.standard_normal(alive.size)
        t += dt
        hit = v[alive] >= theta
        first[alive[hit]] = t
        alive = alive[~hit]
    isi = first + t_ref
    assert isi.mean() == pytest.approx(1000.0 / siegert_rate(mu, sigma, tau, t_ref, theta, vr), rel=0.03)
    assert isi.std() / isi.mean() == pytest.approx(siegert_cv(mu, sigma, tau, t_ref, theta, vr), rel=0.04)
