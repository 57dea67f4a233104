"""hh_cond_exp_traub (Brette et al. 2007, benchmark 3) against tight scipy solutions of its equations, and the
COBAHH network (configs/cobahh.toml). References come from the model equations alone (docs/models.md,
section 2.8), never from earlier eilab output."""

from __future__ import annotations

import math
from functools import cache
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from test_models import simulate, single, trace

from conftest import CONFIGS, eilab
from eilab.sim import models
from eilab.sim.config import Population, load_config
from eilab.sim.engine import run
from eilab.sim.reader import open_run

TRAUB = {"C_m": 200.0, "g_Na": 20000.0, "g_K": 6000.0, "g_L": 10.0, "E_Na": 50.0, "E_K": -90.0, "E_L": -60.0,
         "V_T": -63.0, "E_ex": 0.0, "E_in": -80.0, "tau_syn_ex": 5.0}  # Brian2's COBAHH example, pF nS mV ms


def traub_rates(v: float) -> tuple[float, ...]:
    """The example's rate functions (1/ms) written as it writes them."""
    u = v - TRAUB["V_T"]
    return (0.32 * (13 - u) / (np.exp((13 - u) / 4) - 1), 0.28 * (u - 40) / (np.exp((u - 40) / 5) - 1),
            0.128 * np.exp((17 - u) / 18), 4 / (1 + np.exp((40 - u) / 5)),
            0.032 * (15 - u) / (np.exp((15 - u) / 5) - 1), 0.5 * np.exp((10 - u) / 40))


def traub_solve(i_e: float, t_ms: float, v0: float = TRAUB["E_L"], g_on: float = 0.0, g_w: float = 0.0,
                t_eval: np.ndarray | None = None):
    """LSODA (rtol = atol = 1e-10) of the model from V = v0 (mV), gates at their steady state, under the current i_e
    (pA) and an excitatory conductance g_w exp(-(t - g_on) / tau_syn_ex) (nS) from g_on on."""
    p = TRAUB

    def rhs(t, y):
        v, m, h, n = y
        am, bm, ah, bh, an, bn = traub_rates(v)
        g = g_w * np.exp(-(t - g_on) / p["tau_syn_ex"]) if t >= g_on else 0.0
        i_ion = (p["g_Na"] * m**3 * h * (v - p["E_Na"]) + p["g_K"] * n**4 * (v - p["E_K"])
                 + p["g_L"] * (v - p["E_L"]) + g * (v - p["E_ex"]))
        return [(i_e - i_ion) / p["C_m"], am * (1 - m) - bm * m, ah * (1 - h) - bh * h, an * (1 - n) - bn * n]

    def crossing(_t, y):
        return y[0] + 20.0

    crossing.direction = 1
    am, bm, ah, bh, an, bn = traub_rates(v0)
    y0 = [v0, am / (am + bm), ah / (ah + bh), an / (an + bn)]
    sol = solve_ivp(rhs, (0.0, t_ms), y0, method="LSODA", rtol=1e-10, atol=1e-10, events=crossing, t_eval=t_eval,
                    max_step=0.05 if g_w else np.inf)
    assert sol.status == 0
    return sol


@cache
def reference_spikes(i_e: float, t_ms: float) -> np.ndarray:
    """Upward crossings of -20 mV (ms)."""
    return np.asarray(traub_solve(i_e, t_ms).t_events[0])


def spikes(tmp_path: Path, params: dict, *, t_ms: float, dt: float, name: str) -> np.ndarray:
    r = simulate(tmp_path, single("hh_cond_exp_traub", params, t_ms=t_ms, dt=dt, probe=False), name)
    return r.spikes()[0]


def test_vectorisable_exp_is_within_an_ulp_of_libm() -> None:
    """The exp behind the vectorised loops (models._exp_vec) against libm's over its whole range, and the
    x / (1 - exp(-x)) of the rate functions against the expm1 form, near its removable singularity too."""
    rng = np.random.default_rng(1)
    x = np.concatenate([np.linspace(-708.0, 709.0, 100_001), rng.uniform(-1.0, 1.0, 50_000), [0.0, -0.0]])
    got = np.array([models._exp_vec(v) for v in x])
    ref = np.array([math.exp(v) for v in x])
    assert np.max(np.abs(got - ref) / np.spacing(ref)) <= 1.0
    y = np.concatenate([np.geomspace(1e-12, 50.0, 2001), -np.geomspace(1e-12, 50.0, 2001), [0.0]])
    exact = np.array([v / -math.expm1(-v) if v else 1.0 for v in y])
    np.testing.assert_allclose([models._xexp_vec(v) for v in y], exact, rtol=1e-9)


@pytest.mark.parametrize("i_e", [400.0, 1000.0])
def test_traub_isi_converges_at_first_order_to_solve_ivp(tmp_path: Path, i_e: float) -> None:
    """Exponential Euler is first order in the sub-step h_s: the relative error of the mean ISI shrinks tenfold per
    tenfold smaller h_s (0.1, 0.01, 0.001 ms), to about 1e-3 at h_s = 0.001 ms, where every spike is found."""
    t_ms = 300.0
    ref = reference_spikes(i_e, t_ms)
    isi_ref = np.diff(ref).mean()
    errors = []
    for dt, n_sub in ((0.1, 1), (0.1, 10), (0.01, 10)):
        times = spikes(tmp_path, {"I_e": i_e, "n_sub": n_sub}, t_ms=t_ms, dt=dt, name=f"{dt}-{n_sub}")
        errors.append(abs(np.diff(times).mean() / isi_ref - 1.0))
    assert ref.size > 20
    assert times.size == ref.size
    assert errors[2] < 2e-3, errors
    for coarse, fine in pairwise(errors):
        assert 7.0 < coarse / fine < 13.0, errors


def test_traub_refractory_period_drops_spikes_within_it(tmp_path: Path) -> None:
    """t_ref 10 ms under a current firing every ~7.5 ms: of the reference spikes, those counted are each the first
    at least t_ref after the last counted one (V is not reset, so the skipped action potentials still happen)."""
    i_e, t_ms, t_ref, dt = 1000.0, 200.0, 10.0, 0.01
    ref = reference_spikes(i_e, t_ms)
    kept = [ref[0]]
    for t in ref[1:]:
        if t >= kept[-1] + t_ref:
            kept.append(t)
    times = spikes(tmp_path, {"I_e": i_e, "n_sub": 10, "t_ref": t_ref}, t_ms=t_ms, dt=dt, name="ref")
    assert 0.4 * ref.size < len(kept) < 0.6 * ref.size
    assert times.size == len(kept)
    np.testing.assert_allclose(times, kept, atol=0.3)  # the h_s = 0.001 ms drift over 200 ms, and one step


@pytest.mark.parametrize(("dt", "n_sub", "tol_mv"), [(0.1, 1, 3e-3), (0.1, 10, 3e-4), (0.01, 10, 4e-5)])
def test_traub_conductance_psp_matches_solve_ivp(tmp_path: Path, dt: float, n_sub: int, tol_mv: float) -> None:
    """Held below its spontaneous firing by -100 pA, the cell gets a drive spike of 5 nS at 30 ms: V against LSODA
    of the equations with the conductance switched on at the end of its step; the error of the first-order scheme
    shrinks with h_s. The ext probe is (g (E_ex - V) + I_e) / C_m."""
    w, t_in, t_ms, i_e, v0 = 5.0, 30.0, 80.0, -100.0, -65.0
    drive = [{"target": "N", "kind": "spikes", "times_ms": [t_in], "weight": w}]
    r = simulate(tmp_path, single("hh_cond_exp_traub", {"n_sub": n_sub, "I_e": i_e}, t_ms=t_ms, dt=dt, drive=drive,
                                  v_init=v0))
    v = trace(r)
    t = (np.arange(v.size) + 1) * dt
    t_on = (round(t_in / dt) + 1) * dt
    ref = traub_solve(i_e, t[-1], v0, t_on, w, t_eval=t).y[0]
    after = t >= t_on
    assert r.spikes()[0].size == 0
    assert ref[after].max() - ref[~after][-1] > 3.0  # a PSP of some mV
    err = np.abs(v - ref).max()
    assert err < tol_mv, err
    g = w * np.exp(-(t[after] - t_on) / TRAUB["tau_syn_ex"])
    np.testing.assert_allclose(trace(r, "ext")[after], (g * (TRAUB["E_ex"] - v[after]) + i_e) / TRAUB["C_m"],
                               rtol=1e-6, atol=1e-6)  # V and the probe in float32: ~6e-8 relative


@pytest.mark.parametrize("i_e", [400.0, 1000.0])
def test_traub_rk4_finds_every_spike_within_its_step(tmp_path: Path, i_e: float) -> None:
    """integration = "rk4" with 2 sub-steps at dt 0.1 ms: every spike of the solve_ivp reference over 300 ms, each
    stamped at the end of the step it falls in (0 to 0.1 ms late, to the scheme's drift of under 0.02 ms), where
    exponential Euler misses about half."""
    ref = reference_spikes(i_e, 300.0)
    times = spikes(tmp_path, {"I_e": i_e, "integration": "rk4", "n_sub": 2}, t_ms=300.0, dt=0.1, name="rk4")
    assert ref.size > 20 and times.size == ref.size
    lag = times - ref
    assert lag.min() > -0.02 and lag.max() < 0.12, (lag.min(), lag.max())


def kernel_trace(params: dict, t_ms: float, dt: float) -> np.ndarray:
    """V (mV, float64) after every step of one hh_cond_exp_traub neuron from V = E_L, stepped by the update kernel
    itself (the stored probes are float32, too coarse to see a fourth-order error shrink)."""
    pop = Population(name="N", n=1, type="E", model="hh_cond_exp_traub", params=params)
    p, mid = models.parameter_vector(pop, dt), models.model_id(pop)
    state = np.zeros((models.N_STATE, 1))
    state[models.V] = TRAUB["E_L"]
    for row, value in models.initial_extra_state(pop, state[models.V]).items():
        state[row] = value
    zero, fired, offsets = np.zeros(1), np.zeros(1, np.int64), np.zeros(1)
    v = np.empty(round(t_ms / dt))
    for k in range(v.size):
        models.update_population(mid, state, 0, 1, p, zero, zero, zero, False, p[models.P_IE], fired, offsets)
        v[k] = state[models.V, 0]
    return v


def test_traub_rk4_converges_at_fourth_order() -> None:
    """Firing under 1000 pA for 50 ms (6 spikes), V after every 0.1 ms step against LSODA: the RMS error of RK4
    falls about sixteenfold from 8 to 16 sub-steps (a scheme of order q: 2^q; 13.6 here, as h_s shrinks the ratio
    nears 16), and with 4 sub-steps it is a thousandth of exponential Euler's with 10 (0.02 against 24 mV)."""
    t_ms, dt, i_e = 50.0, 0.1, 1000.0
    t = (np.arange(round(t_ms / dt)) + 1) * dt
    ref = traub_solve(i_e, t_ms, t_eval=t).y[0]
    rms = {(scheme, n_sub): np.sqrt(np.mean((kernel_trace({"I_e": i_e, "integration": scheme, "n_sub": n_sub},
                                                           t_ms, dt) - ref) ** 2))
           for scheme, n_sub in (("rk4", 4), ("rk4", 8), ("rk4", 16), ("exponential_euler", 10))}
    assert 10.0 < rms["rk4", 8] / rms["rk4", 16] < 20.0, rms
    assert rms["rk4", 4] < 1e-3 * rms["exponential_euler", 10], rms


def test_bad_sub_step_count_exits_2_naming_it(tmp_path: Path) -> None:
    res = eilab("run", "cobahh", "--out", str(tmp_path / "run"), "--set", "populations.0.params.n_sub=0")
    assert res.returncode == 2, res.stderr
    assert "n_sub" in res.stderr and "greater than or equal to 1" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "run").exists()


def test_cobahh_network_sustains_asynchronous_firing(tmp_path: Path) -> None:
    """configs/cobahh.toml over 300 ms: self-sustained activity from its random initial conductances, E and I
    firing at rates of a few to tens of Hz to the end (Brette et al. 2007, benchmark 3: self-sustained activity)."""
    cfg, raw = load_config(CONFIGS / "cobahh.toml", ["run.t_ms=300", "run.progress=false"])
    run(cfg, raw, tmp_path / "net", progress=False)
    r = open_run(tmp_path / "net")
    times, gids = r.spikes()
    late = times >= 200.0
    for name, lo, hi in (("E", 0, 3200), ("I", 3200, 4000)):
        mine = (gids >= lo) & (gids < hi)
        rate = mine.sum() / (hi - lo) / 0.3
        late_rate = (mine & late).sum() / (hi - lo) / 0.1
        assert 1.0 < rate < 100.0 and 1.0 < late_rate < 100.0, (name, rate, late_rate)
