"""Neuron models against closed forms and independent scipy solutions.

Every reference here is computed from the model equations alone (textbook closed forms or
`scipy.integrate.solve_ivp`), never from earlier eilab output. Timing conventions under test:

* a drive spike at time t arrives in step s = round(t / dt) (step s covers [s dt, (s + 1) dt));
  a delta synapse moves V within that step, an exponential synapse jumps at the end of it, so
  its effect on V starts at (s + 1) dt;
* a recurrent spike emitted in step s (stored time (s + 1) dt) with delay d steps arrives in
  step s + d, i.e. a current synapse jumps at t_spike + delay;
* probe sample k is taken after step k, at time (k + 1) dt; V is stored as float32, so the
  end-to-end checks use E_L = 0 (V is then the response itself, with float32's relative
  precision) and a float64 check drives the update kernel directly.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from conftest import CONFIGS
from eilab.sim import models
from eilab.sim.config import Population, load_config
from eilab.sim.engine import run
from eilab.sim.reader import Run, open_run

F32_RTOL = 1.2e-7  # float32 storage: |fl(x) - x| <= 2**-24 |x| ~ 6e-8 |x|, with room for float64 error
NEVER = 1e9        # a threshold the neuron never reaches, mV


# ---------------------------------------------------------------- helpers
def simulate(tmp_path: Path, raw: dict, name: str = "run") -> Run:
    cfg, raw = load_config(raw=raw)
    run(cfg, raw, tmp_path / name, progress=False)
    return open_run(tmp_path / name)


def single(model: str, params: dict, *, t_ms: float, dt: float, drive: list | None = None,
           v_init: float | None = None, probe: bool = True) -> dict:
    """A one-neuron experiment, probed every step."""
    pop = {"name": "N", "n": 1, "type": "E", "model": model, "params": params}
    if v_init is not None:
        pop["v_init"] = v_init
    record: dict = {"counts_bin_ms": 0.0}
    if probe:
        record.update(probes=[{"population": "N", "neurons": [0]}], probe_every_ms=dt)
    return {"run": {"t_ms": t_ms, "dt_ms": dt, "seed": 1, "progress": False},
            "populations": [pop], "drive": drive or [], "record": record}


def pair(pre_type: str, post_model: str, post_params: dict, *, w: float, delay: float, t_fire: float,
         t_ms: float, dt: float) -> dict:
    """A (lif_delta, type E or I) fires once at a drive spike and projects onto B (probed)."""
    return {
        "run": {"t_ms": t_ms, "dt_ms": dt, "seed": 1, "progress": False},
        "populations": [
            {"name": "A", "n": 1, "type": pre_type, "model": "lif_delta"},
            {"name": "B", "n": 1, "type": "E", "model": post_model, "params": post_params},
        ],
        "projections": [{"pre": "A", "post": "B", "rule": "fixed_indegree", "k": 1, "weight": w,
                         "delay_ms": delay}],
        "drive": [{"target": "A", "kind": "spikes", "times_ms": [t_fire], "weight": 100.0}],
        "record": {"counts_bin_ms": 0.0, "probes": [{"population": "B", "neurons": [0]}], "probe_every_ms": dt},
    }


def trace(r: Run, var: str = "v") -> np.ndarray:
    return r.probes()[var][:, 0].astype(np.float64)


def exp_psp(w: float, c_m: float, tau_m: float, tau_s: float, u: np.ndarray) -> np.ndarray:
    """V - E_L after a current w exp(-u / tau_s) (pA) switched on at u = 0 into a resting LIF."""
    u = np.asarray(u, dtype=np.float64)
    if tau_m == tau_s:
        return w / c_m * u * np.exp(-u / tau_m)
    return w * tau_m * tau_s / (c_m * (tau_m - tau_s)) * (np.exp(-u / tau_m) - np.exp(-u / tau_s))


def exp_psp_stable(w: float, c_m: float, tau_m: float, tau_s: float, u: np.ndarray) -> np.ndarray:
    """The same response written without cancellation for tau_s close to tau_m:
    w/C exp(-u/tau_m) (1 - exp(-r u)) / r with r = 1/tau_s - 1/tau_m."""
    u = np.asarray(u, dtype=np.float64)
    r = (tau_m - tau_s) / (tau_m * tau_s)
    x = r * u
    phi = np.where(np.abs(x) < 1e-300, 1.0, -np.expm1(-x) / np.where(x == 0.0, 1.0, x))
    return w / c_m * np.exp(-u / tau_m) * u * phi


def assert_f32_rel(stored: np.ndarray, exact: np.ndarray, rtol: float = F32_RTOL) -> float:
    """Stored float32 values equal the float64 truth up to float32 rounding; returns max rel err."""
    assert np.all(exact != 0.0)
    rel = np.abs(stored / exact - 1.0)
    assert rel.max() <= rtol, f"max relative error {rel.max():.3g} at sample {rel.argmax()}"
    return float(rel.max())


# ---------------------------------------------------------------- lif_exp: exact integration
@pytest.mark.parametrize("tau_s", [2.0, 10.0], ids=["tau_s<tau_m", "tau_s==tau_m"])
def test_lif_exp_psp_matches_closed_form(tmp_path: Path, tau_s: float) -> None:
    dt, w, t_in, c_m, tau_m = 0.1, 100.0, 10.0, 250.0, 10.0
    params = {"tau_m": tau_m, "C_m": c_m, "E_L": 0.0, "V_reset": 0.0, "V_th": NEVER, "tau_syn_ex": tau_s}
    drive = [{"target": "N", "kind": "spikes", "times_ms": [t_in], "weight": w}]
    r = simulate(tmp_path, single("lif_exp", params, t_ms=60.0, dt=dt, drive=drive, v_init=0.0))
    v, ext = trace(r), trace(r, "ext")
    s = round(t_in / dt)
    k = np.arange(v.size)
    np.testing.assert_allclose(r.probes()["time"], (k + 1) * dt, rtol=1e-12)
    u = (k - s) * dt                                  # time since the current switched on, (s + 1) dt
    assert np.all(v[k <= s] == 0.0), "V moved before the synaptic current switched on"
    after = k > s
    assert_f32_rel(v[after], exp_psp(w, c_m, tau_m, tau_s, u[after]))
    # ext probe: (drive current) / C_m in mV/ms, w exp(-u/tau_s) / C_m from the end of step s on
    assert np.all(ext[k < s] == 0.0)
    assert_f32_rel(ext[k >= s], w * np.exp(-u[k >= s] / tau_s) / c_m)
    assert np.all(trace(r, "syn_e") == 0.0) and np.all(trace(r, "syn_i") == 0.0)
    assert r.spikes()[0].size == 0


@pytest.mark.parametrize("receptor", ["ex", "in"])
@pytest.mark.parametrize("tau_s", [2.0, 10.0, 10.0 * (1.0 + 1e-9)], ids=["distinct", "equal", "near-equal"])
def test_lif_exp_kernel_float64_exact(tau_s: float, receptor: str) -> None:
    """The update kernel in float64: the exact-integration PSP to 1e-9 relative at every step."""
    dt, w, c_m, tau_m = 0.1, 100.0, 250.0, 10.0
    params = {"tau_m": tau_m, "C_m": c_m, "E_L": -70.0, "V_reset": -70.0, "V_th": NEVER,
              "tau_syn_ex": 3.0, "tau_syn_in": 3.0, f"tau_syn_{receptor}": tau_s}
    pop = Population(name="N", n=1, type="E", model="lif_exp", params=params)
    p = models.parameter_vector(pop, dt)
    state = np.zeros((models.N_STATE, 1))
    state[models.V, 0] = -70.0
    e, i = (w, 0.0) if receptor == "ex" else (0.0, w)
    models.lif_exp_step(state, 0, p, e, i, 0.0, 0.0)   # arrival: the current jumps at the end of this step
    assert state[models.V, 0] == -70.0
    n = 600
    v = np.empty(n)
    for k in range(n):
        assert not models.lif_exp_step(state, 0, p, 0.0, 0.0, 0.0, 0.0)
        v[k] = state[models.V, 0]
    u = np.arange(1, n + 1) * dt
    sign = 1.0 if receptor == "ex" else -1.0
    exact = sign * (exp_psp_stable(w, c_m, tau_m, tau_s, u) if tau_s != 10.0 else exp_psp(w, c_m, tau_m, tau_s, u))
    if tau_s == 2.0:
        np.testing.assert_allclose(exact, sign * exp_psp(w, c_m, tau_m, tau_s, u), rtol=1e-12)
    rel = np.abs((v + 70.0) / exact - 1.0)
    # (v + 70) loses ~1e-16 * 70 mV absolutely to the offset; the PSP stays above ~1e-3 mV here
    assert np.abs(exact).min() > 1e-3
    assert rel.max() < 1e-9, rel.max()


@pytest.mark.parametrize("tau_x", [None, 3.0])
def test_lif_exp_population_update_is_the_neuron_step(tau_x: float | None) -> None:
    """The vectorised population update (selects for the refractory branch, a loop per variable) gives bit for bit
    what `lif_exp_step` gives neuron by neuron, refractory neurons, spikes and a sub-range of the state included."""
    pop = Population(name="N", n=64, type="E", model="lif_exp", params={"tau_syn_x": tau_x, "t_ref": 0.5})
    p = models.parameter_vector(pop, 0.1)
    rng = np.random.default_rng(2)
    state = np.zeros((models.N_STATE, 64))
    state[models.V] = rng.uniform(-70.0, -55.0, 64)
    one = state.copy()
    fired = np.empty(64, np.int64)
    lo, hi, spikes = 3, 61, 0
    for _ in range(300):
        e, i, x = (w * rng.poisson(0.3, 64) for w in (200.0, 150.0, 100.0))
        cur = rng.uniform(0.0, 400.0)
        n = models.update_population(models.LIF_EXP, state, lo, hi, p, e, i, x, True, cur, fired, np.empty(64))
        each = [j for j in range(lo, hi) if models.lif_exp_step(one, j, p, e[j], i[j], x[j], cur)]
        np.testing.assert_array_equal(state, one)
        assert list(fired[:n]) == each
        spikes += n
    assert spikes > 100


@pytest.mark.parametrize(("pre_type", "tau_key", "sign"), [("E", "tau_syn_ex", 1.0), ("I", "tau_syn_in", -1.0)])
def test_lif_exp_recurrent_psp_and_syn_probes(tmp_path: Path, pre_type: str, tau_key: str, sign: float) -> None:
    """A's spike (E or I receptor) reaches B after the delay; syn_e/syn_i = +-I_syn / C_m in mV/ms."""
    dt, w, delay, t_fire, c_m, tau_m = 0.1, 150.0, 1.5, 3.0, 200.0, 15.0
    params = {"tau_m": tau_m, "C_m": c_m, "E_L": 0.0, "V_reset": 0.0, "V_th": NEVER,
              "tau_syn_ex": 2.0, "tau_syn_in": 5.0}
    r = simulate(tmp_path, pair(pre_type, "lif_exp", params, w=w, delay=delay, t_fire=t_fire, t_ms=60.0, dt=dt))
    times, gids = r.spikes()
    s_emit = round(t_fire / dt)
    np.testing.assert_array_equal(gids, [0])
    np.testing.assert_allclose(times, [(s_emit + 1) * dt], rtol=1e-12)
    assert list(r.probes()["probe"]) == [1]
    a = s_emit + round(delay / dt)                    # arrival step: current jumps at t_spike + delay
    v = trace(r)
    k = np.arange(v.size)
    u = (k - a) * dt
    tau_s = params[tau_key]
    own, other = ("syn_e", "syn_i") if pre_type == "E" else ("syn_i", "syn_e")
    syn = trace(r, own)
    assert np.all(v[k <= a] == 0.0) and np.all(syn[k < a] == 0.0)
    assert_f32_rel(v[k > a], sign * exp_psp(w, c_m, tau_m, tau_s, u[k > a]))
    assert_f32_rel(syn[k >= a], sign * w * np.exp(-u[k >= a] / tau_s) / c_m)
    assert np.all(trace(r, other) == 0.0) and np.all(trace(r, "ext") == 0.0)


@pytest.mark.parametrize(("proj", "pre_type", "jump_mv", "tau_s"), [("EE", "E", 60 * 0.27 / 10, 5.0),
                                                                    ("IE", "I", -20 * 4.5 / 10, 10.0)])
def test_cuba_weights_are_brian2s_voltage_jumps(tmp_path: Path, proj: str, pre_type: str, jump_mv: float,
                                                tau_s: float) -> None:
    """configs/cuba.toml in lif_exp units: one spike over a projection moves V as Brian2's CUBA example,
    dv/dt = (g - v) / tau_m with g jumping by we = 1.62 mV (wi = -9 mV) and decaying with tau_s, i.e.
    v(u) = jump tau_s / (tau_m - tau_s) (exp(-u / tau_m) - exp(-u / tau_s)) (E_L at 0: float32 keeps it exact)."""
    cfg, _ = load_config(CONFIGS / "cuba.toml")
    params = {**cfg.populations[0].params, "E_L": 0.0, "V_reset": -10.0, "V_th": NEVER}
    weight = next(pr.weight for pr in cfg.projections if pr.name == proj)
    dt, delay, t_fire, tau_m = 0.1, 0.1, 3.0, params["tau_m"]
    r = simulate(tmp_path, pair(pre_type, "lif_exp", params, w=weight, delay=delay, t_fire=t_fire, t_ms=80.0, dt=dt))
    a = round(t_fire / dt) + round(delay / dt)
    v = trace(r)
    k = np.arange(v.size)
    u = (k[k > a] - a) * dt
    assert np.all(v[k <= a] == 0.0)
    assert_f32_rel(v[k > a], jump_mv * tau_s / (tau_m - tau_s) * (np.exp(-u / tau_m) - np.exp(-u / tau_s)))


def test_lif_exp_refractory_clamps_v_but_keeps_current(tmp_path: Path) -> None:
    """iaf_psc_exp: V is held at V_reset for t_ref while the synaptic current keeps integrating
    (input arriving during the refractory period is not lost); afterwards V follows the exact
    response to the remaining current."""
    dt, c_m, tau_m, tau_s, t_ref = 0.1, 250.0, 10.0, 2.0, 2.0
    w1, t1, w2 = 5000.0, 1.0, 300.0
    params = {"tau_m": tau_m, "C_m": c_m, "E_L": 0.0, "V_reset": 0.0, "V_th": 10.0, "t_ref": t_ref,
              "tau_syn_ex": tau_s}
    s1 = round(t1 / dt)
    # the spike: first step whose end value of the exact PSP reaches V_th
    k = np.arange(s1 + 1, s1 + 200)
    psp = exp_psp(w1, c_m, tau_m, tau_s, (k - s1) * dt)
    s_f = int(k[np.argmax(psp >= 10.0)])
    assert np.min(np.abs(psp - 10.0)) > 1e-6, "threshold crossing too close to a grid point for this check"
    ref_steps = round(t_ref / dt)
    s2 = s_f + 5                                      # arrives while refractory
    drive = [{"target": "N", "kind": "spikes", "times_ms": [t1], "weight": w1},
             {"target": "N", "kind": "spikes", "times_ms": [s2 * dt], "weight": w2}]
    r = simulate(tmp_path, single("lif_exp", params, t_ms=30.0, dt=dt, drive=drive, v_init=0.0))
    np.testing.assert_allclose(r.spikes()[0], [(s_f + 1) * dt], rtol=1e-12)
    v = trace(r)
    k = np.arange(v.size)
    held = (k >= s_f) & (k <= s_f + ref_steps)        # reset in step s_f, then t_ref / dt clamped steps
    assert np.all(v[held] == 0.0)
    last = s_f + ref_steps                            # the current at the end of this step drives V next
    i0 = w1 * math.exp(-(last - s1) * dt / tau_s) + w2 * math.exp(-(last - s2) * dt / tau_s)
    after = k > last
    assert_f32_rel(v[after], exp_psp(i0, c_m, tau_m, tau_s, (k[after] - last) * dt))
    ext = trace(r, "ext")
    sx = np.where(k >= s1, w1 * np.exp(-(k - s1) * dt / tau_s), 0.0) + np.where(
        k >= s2, w2 * np.exp(-(k - s2) * dt / tau_s), 0.0)
    assert_f32_rel(ext[k >= s1], sx[k >= s1] / c_m)


# ---------------------------------------------------------------- lif_delta
def test_lif_delta_constant_current_charging_curve(tmp_path: Path) -> None:
    dt, tau_m, c_m, i_e = 0.1, 12.0, 300.0, 250.0
    params = {"tau_m": tau_m, "C_m": c_m, "E_L": 0.0, "V_reset": 0.0, "V_th": NEVER, "I_e": i_e}
    r = simulate(tmp_path, single("lif_delta", params, t_ms=80.0, dt=dt, v_init=0.0))
    v = trace(r)
    t = (np.arange(v.size) + 1) * dt
    assert_f32_rel(v, tau_m / c_m * i_e * -np.expm1(-t / tau_m))
    assert_f32_rel(trace(r, "ext"), np.full(v.size, i_e / c_m))


@pytest.mark.parametrize("i_e", [500.0, 400.0])
def test_lif_delta_isi_matches_closed_form(tmp_path: Path, i_e: float) -> None:
    dt, tau_m, c_m, e_l, v_th, v_reset, t_ref = 0.1, 10.0, 250.0, -70.0, -55.0, -70.0, 2.0
    params = {"tau_m": tau_m, "C_m": c_m, "E_L": e_l, "V_th": v_th, "V_reset": v_reset, "t_ref": t_ref, "I_e": i_e}
    t_end = 200.0
    r = simulate(tmp_path, single("lif_delta", params, t_ms=t_end, dt=dt, probe=False))
    times, _ = r.spikes()
    v_inf = e_l + tau_m / c_m * i_e
    charge = tau_m * math.log((v_inf - v_reset) / (v_inf - v_th))   # from V_reset (= E_L = v_init) to V_th
    isi_exact = t_ref + charge
    steps = charge / dt
    assert abs(steps - round(steps)) > 1e-6, "threshold crossing too close to a grid point for this check"
    n_charge = math.ceil(steps)                       # first step whose end value reaches V_th
    expected = []
    t = n_charge * dt
    while t <= t_end + 1e-9:
        expected.append(t)
        t += t_ref + n_charge * dt
    np.testing.assert_allclose(times, expected, rtol=0, atol=1e-9)
    isi = np.diff(times)
    assert np.all(np.abs(isi - isi_exact) <= dt + 1e-9)
    assert np.all(isi >= isi_exact - 1e-9)


def test_lif_delta_euler_decay(tmp_path: Path) -> None:
    dt, tau_m, v0 = 0.1, 10.0, 12.5
    params = {"tau_m": tau_m, "E_L": 0.0, "V_reset": 0.0, "V_th": NEVER, "integration": "euler"}
    r = simulate(tmp_path, single("lif_delta", params, t_ms=50.0, dt=dt, v_init=v0))
    v = trace(r)
    assert_f32_rel(v, v0 * (1.0 - dt / tau_m) ** (np.arange(v.size) + 1.0))
    # the default exact propagator exp(-dt/tau) gives a visibly different trace
    r2 = simulate(tmp_path, single("lif_delta", {**params, "integration": "exact"}, t_ms=50.0, dt=dt, v_init=v0),
                  name="exact")
    assert_f32_rel(trace(r2), v0 * np.exp(-(np.arange(v.size) + 1.0) * dt / tau_m))
    assert np.abs(trace(r2) - v).max() > 1e-2


def test_lif_delta_refractory_input_is_lost(tmp_path: Path) -> None:
    dt, e_l, t_ref, tau_m = 0.1, -70.0, 2.0, 10.0
    params = {"tau_m": tau_m, "E_L": e_l, "V_th": -55.0, "V_reset": e_l, "t_ref": t_ref}
    # step 50 fires (V jumps by 30 mV); 55 and 70 lie inside the 20 refractory steps 51..70;
    # step 71 is the first integrating step again.
    drive = [{"target": "N", "kind": "spikes", "times_ms": [5.0], "weight": 30.0},
             {"target": "N", "kind": "spikes", "times_ms": [5.5, 7.0, 7.1], "weight": 5.0}]
    r = simulate(tmp_path, single("lif_delta", params, t_ms=30.0, dt=dt, drive=drive))
    times, _ = r.spikes()
    np.testing.assert_allclose(times, [5.1], rtol=1e-12)
    v = trace(r)
    k = np.arange(v.size)
    assert np.all(v[k < 50] == e_l)
    assert np.all(v[(k >= 50) & (k <= 70)] == e_l), "V left V_reset during the refractory period"
    assert v[71] == np.float32(e_l + 5.0)
    np.testing.assert_allclose(v[k >= 71], e_l + 5.0 * np.exp(-(k[k >= 71] - 71) * dt / tau_m), rtol=0, atol=2e-5)


# ---------------------------------------------------------------- Hodgkin-Huxley
def _hh_rates(v):
    am = 0.1 * (v + 40.0) / (1.0 - np.exp(-(v + 40.0) / 10.0))
    bm = 4.0 * np.exp(-(v + 65.0) / 18.0)
    ah = 0.07 * np.exp(-(v + 65.0) / 20.0)
    bh = 1.0 / (1.0 + np.exp(-(v + 35.0) / 10.0))
    an = 0.01 * (v + 55.0) / (1.0 - np.exp(-(v + 55.0) / 10.0))
    bn = 0.125 * np.exp(-(v + 65.0) / 80.0)
    return am, bm, ah, bh, an, bn


@cache
def hh_reference(i_e: float, t_ms: float) -> np.ndarray:
    """Spike times (upward 0 mV crossings) of the textbook HH equations, LSODA rtol = atol = 1e-8."""
    g_na, g_k, g_l, e_na, e_k, e_l, c_m = 12000.0, 3600.0, 30.0, 50.0, -77.0, -54.402, 100.0

    def rhs(_t, y):
        v, m, h, n = y
        am, bm, ah, bh, an, bn = _hh_rates(v)
        i_ion = g_na * m**3 * h * (v - e_na) + g_k * n**4 * (v - e_k) + g_l * (v - e_l)
        return [(i_e - i_ion) / c_m, am * (1 - m) - bm * m, ah * (1 - h) - bh * h, an * (1 - n) - bn * n]

    def crossing(_t, y):
        return y[0]

    crossing.direction = 1
    am, bm, ah, bh, an, bn = _hh_rates(-65.0)
    y0 = [-65.0, am / (am + bm), ah / (ah + bh), an / (an + bn)]
    sol = solve_ivp(rhs, (0.0, t_ms), y0, method="LSODA", rtol=1e-8, atol=1e-8, events=crossing)
    assert sol.status == 0
    return np.asarray(sol.t_events[0])


@pytest.mark.parametrize("dt", [0.1, 0.01])
@pytest.mark.parametrize("i_e", [1000.0, 700.0])
def test_hh_spike_times_match_solve_ivp(tmp_path: Path, i_e: float, dt: float) -> None:
    t_ms = 500.0
    ref = hh_reference(i_e, t_ms)
    r = simulate(tmp_path, single("hh", {"I_e": i_e}, t_ms=t_ms, dt=dt, probe=False))
    times, _ = r.spikes()
    assert ref.size > 20
    assert times.size == ref.size                     # equal rates (stricter than within 1%)
    # a crossing inside step [t - dt, t) is reported at the step's end t
    lag = times - ref
    assert lag.min() > -2e-3 and lag.max() < dt + 2e-3, (lag.min(), lag.max())
    isi_sim = (times[-1] - times[0]) / (times.size - 1)
    isi_ref = (ref[-1] - ref[0]) / (ref.size - 1)
    assert abs(isi_sim / isi_ref - 1.0) < 1e-3


def test_hh_drive_has_its_own_time_constant(tmp_path: Path) -> None:
    """tau_syn_x on hh: a drive spike of w pA at t_in gives the current w exp(-(t - t_on) / tau_syn_x) from the end
    of its step on; V against the textbook equations with that current (LSODA, rtol 1e-10)."""
    dt, w, t_in, tau_x = 0.1, 500.0, 5.0, 3.0
    drive = [{"target": "N", "kind": "spikes", "times_ms": [t_in], "weight": w}]
    r = simulate(tmp_path, single("hh", {"tau_syn_x": tau_x}, t_ms=30.0, dt=dt, drive=drive))
    v = trace(r)
    t_on = (round(t_in / dt) + 1) * dt
    g_na, g_k, g_l, e_na, e_k, e_l, c_m = 12000.0, 3600.0, 30.0, 50.0, -77.0, -54.402, 100.0

    def rhs(t, y):
        vv, m, h, n = y
        am, bm, ah, bh, an, bn = _hh_rates(vv)
        i_ion = g_na * m**3 * h * (vv - e_na) + g_k * n**4 * (vv - e_k) + g_l * (vv - e_l)
        i_syn = w * math.exp(-(t - t_on) / tau_x) if t >= t_on else 0.0
        return [(i_syn - i_ion) / c_m, am * (1 - m) - bm * m, ah * (1 - h) - bh * h, an * (1 - n) - bn * n]

    am, bm, ah, bh, an, bn = _hh_rates(-65.0)
    y0 = [-65.0, am / (am + bm), ah / (ah + bh), an / (an + bn)]
    t = (np.arange(v.size) + 1) * dt
    sol = solve_ivp(rhs, (0.0, t[-1]), y0, method="LSODA", rtol=1e-10, atol=1e-10, t_eval=t, max_step=dt / 4)
    assert v.max() - v.min() > 2.0  # a PSP of some mV, no spike
    assert np.abs(v - sol.y[0]).max() < 1e-3


# ---------------------------------------------------------------- EIF
EIF = {"C_m": 281.0, "g_L": 30.0, "E_L": -70.6, "V_T": -50.4, "Delta_T": 2.0, "V_peak": 0.0, "V_reset": -60.0,
       "t_ref": 2.0}


def eif_reference(i_e: float, t_ms: float, t_eval: np.ndarray | None = None) -> np.ndarray:
    """Spike times: integrate to V_peak (event), reset, hold V_reset for t_ref, repeat.
    With t_eval: V(t_eval) from E_L at t = 0 (for currents that never reach V_peak)."""
    c_m, g_l, e_l, v_t, d_t = EIF["C_m"], EIF["g_L"], EIF["E_L"], EIF["V_T"], EIF["Delta_T"]

    def rhs(_t, y):
        return [(-g_l * (y[0] - e_l) + g_l * d_t * np.exp((y[0] - v_t) / d_t) + i_e) / c_m]

    def peak(_t, y):
        return y[0] - EIF["V_peak"]

    peak.terminal, peak.direction = True, 1
    if t_eval is not None:
        return solve_ivp(rhs, (0.0, t_eval[-1]), [e_l], method="LSODA", rtol=1e-11, atol=1e-11, t_eval=t_eval).y[0]
    t0, v0, spikes = 0.0, e_l, []
    while t0 < t_ms:
        sol = solve_ivp(rhs, (t0, t_ms), [v0], method="LSODA", rtol=1e-10, atol=1e-10, events=peak)
        if sol.status != 1:
            break
        spikes.append(sol.t_events[0][0])
        t0, v0 = spikes[-1] + EIF["t_ref"], EIF["V_reset"]
    return np.asarray(spikes)


@pytest.mark.parametrize("i_e", [700.0, 1000.0])
def test_eif_isi_matches_solve_ivp(tmp_path: Path, i_e: float) -> None:
    dt, t_ms = 0.01, 300.0
    ref = eif_reference(i_e, t_ms)
    r = simulate(tmp_path, single("eif", {**EIF, "I_e": i_e}, t_ms=t_ms, dt=dt, probe=False))
    times, _ = r.spikes()
    assert ref.size >= 10
    assert abs(times.size - ref.size) <= 1
    isi_sim, isi_ref = np.diff(times).mean(), np.diff(ref).mean()
    assert abs(isi_sim / isi_ref - 1.0) < 0.01, (isi_sim, isi_ref)
    # tighter: the step-end report adds up to dt, the explicit step near the upswing ~1 dt more
    assert -dt / 2 < isi_sim - isi_ref < 3 * dt, (isi_sim, isi_ref)
    assert -dt / 2 < times[0] - ref[0] < 3 * dt, (times[0], ref[0])


@pytest.mark.parametrize(("dt", "tol_mv"), [(0.01, 2e-5), (0.1, 3e-4)])
def test_eif_subthreshold_trajectory_matches_solve_ivp(tmp_path: Path, dt: float, tol_mv: float) -> None:
    """Below rheobase (g_L (V_T - E_L - Delta_T) = 546 pA) V creeps up into the exponential
    region and settles; the RK2 step follows solve_ivp to O(dt^2)."""
    i_e, t_ms = 540.0, 100.0
    r = simulate(tmp_path, single("eif", {**EIF, "I_e": i_e}, t_ms=t_ms, dt=dt))
    v = trace(r)
    t = (np.arange(v.size) + 1) * dt
    ref = eif_reference(i_e, t_ms, t_eval=t)
    assert ref[-1] > EIF["V_T"] - 1.5 and r.spikes()[0].size == 0   # it gets close to V_T
    err = np.abs(v - ref).max()
    assert err < tol_mv, err
    assert_f32_rel(trace(r, "ext"), np.full(v.size, i_e / EIF["C_m"]))


# ---------------------------------------------------------------- lif_cond_exp
COND = {"C_m": 250.0, "g_L": 16.6667, "E_L": -70.0, "E_ex": 0.0, "E_in": -85.0, "tau_syn_ex": 0.2,
        "tau_syn_in": 2.0, "V_th": NEVER}


def cond_reference(p: dict, w: float, e_rev: float, tau: float, t_on: float, t_eval: np.ndarray) -> np.ndarray:
    """V of C dV/dt = -g_L (V - E_L) - g(t) (V - E_rev), g = w exp(-(t - t_on)/tau), V(t_on) = E_L."""
    c_m, g_l, e_l = p["C_m"], p["g_L"], p["E_L"]

    def rhs(t, y):
        return [(-g_l * (y[0] - e_l) - w * np.exp(-(t - t_on) / tau) * (y[0] - e_rev)) / c_m]

    sol = solve_ivp(rhs, (t_on, t_eval[-1]), [e_l], method="LSODA", rtol=1e-11, atol=1e-11, t_eval=t_eval)
    assert sol.status == 0
    return sol.y[0]


@pytest.mark.parametrize("tau_x", [5.0, 0.5])
def test_lif_exp_drive_has_its_own_time_constant(tmp_path: Path, tau_x: float) -> None:
    """tau_syn_x: the drive's current decays with it (closed-form PSP), the recurrent one keeps tau_syn_ex."""
    dt, w, t_in, c_m, tau_m = 0.1, 100.0, 10.0, 250.0, 10.0
    params = {"tau_m": tau_m, "C_m": c_m, "E_L": 0.0, "V_reset": 0.0, "V_th": NEVER, "tau_syn_ex": 2.0,
              "tau_syn_x": tau_x}
    drive = [{"target": "N", "kind": "spikes", "times_ms": [t_in], "weight": w}]
    r = simulate(tmp_path, single("lif_exp", params, t_ms=40.0, dt=dt, drive=drive, v_init=0.0))
    v, k, s = trace(r), np.arange(400), round(t_in / dt)
    after = k > s
    assert_f32_rel(v[after], exp_psp(w, c_m, tau_m, tau_x, (k[after] - s) * dt))
    assert_f32_rel(trace(r, "ext")[k >= s], w * np.exp(-(k[k >= s] - s) * dt / tau_x) / c_m)


def test_lif_cond_exp_drive_has_its_own_time_constant(tmp_path: Path) -> None:
    params, w, t_in, dt = {**COND, "tau_syn_x": 3.0}, 20.0, 5.0, 0.01
    drive = [{"target": "N", "kind": "spikes", "times_ms": [t_in], "weight": w}]
    r = simulate(tmp_path, single("lif_cond_exp", params, t_ms=30.0, dt=dt, drive=drive))
    v, s = trace(r), round(t_in / dt)
    t = (np.arange(v.size) + 1) * dt
    on = np.arange(v.size) >= s
    ref = cond_reference(COND, w, COND["E_ex"], 3.0, (s + 1) * dt, t[on])
    assert np.abs(v[on] - ref).max() < 5e-5


@pytest.mark.parametrize(("dt", "tol_mv"), [(0.01, 5e-5), (0.1, 1e-3)])
def test_lif_cond_exp_psp_matches_solve_ivp(tmp_path: Path, dt: float, tol_mv: float) -> None:
    w, t_in, t_ms = 20.0, 5.0, 40.0
    drive = [{"target": "N", "kind": "spikes", "times_ms": [t_in], "weight": w}]
    r = simulate(tmp_path, single("lif_cond_exp", COND, t_ms=t_ms, dt=dt, drive=drive))
    v = trace(r)
    s = round(t_in / dt)
    k = np.arange(v.size)
    t = (k + 1) * dt
    on = k >= s                                       # the conductance switches on at (s + 1) dt
    assert np.all(v[~on] == np.float32(COND["E_L"]))
    ref = cond_reference(COND, w, COND["E_ex"], COND["tau_syn_ex"], (s + 1) * dt, t[on])
    assert ref.max() - COND["E_L"] > 0.5               # a PSP of about 1 mV
    err = np.abs(v[on] - ref).max()
    assert err < tol_mv, err
    # ext probe: g (E_ex - V) / C_m in mV/ms
    g = w * np.exp(-(t[on] - (s + 1) * dt) / COND["tau_syn_ex"])
    np.testing.assert_allclose(trace(r, "ext")[on], g * (COND["E_ex"] - v[on]) / COND["C_m"], rtol=1e-6,
                               atol=1e-30)  # float32 underflow of the fast-decaying tail


def test_lif_cond_exp_forward_euler_is_first_order(tmp_path: Path) -> None:
    """integration = "euler" (Brian2's COBA scheme: forward Euler on V and the conductances): the PSP's error
    against solve_ivp shrinks tenfold per tenfold smaller dt; the default scheme (second order) is closer at 0.1 ms."""
    w, t_in, t_ms, tau = 20.0, 5.0, 40.0, 5.0
    drive = [{"target": "N", "kind": "spikes", "times_ms": [t_in], "weight": w}]
    errors = {}
    for scheme, dt in (("euler", 0.1), ("euler", 0.01), ("exponential_euler", 0.1)):
        params = {**COND, "tau_syn_ex": tau, "integration": scheme}
        v = trace(simulate(tmp_path, single("lif_cond_exp", params, t_ms=t_ms, dt=dt, drive=drive), f"{scheme}{dt}"))
        k = np.arange(v.size)
        on, s = k >= round(t_in / dt), round(t_in / dt)
        ref = cond_reference(COND, w, COND["E_ex"], tau, (s + 1) * dt, ((k + 1) * dt)[on])
        assert ref.max() - COND["E_L"] > 3.0
        errors[scheme, dt] = np.abs(v[on] - ref).max()
    assert 8.0 < errors["euler", 0.1] / errors["euler", 0.01] < 12.0, errors
    assert errors["exponential_euler", 0.1] < errors["euler", 0.1] / 10.0, errors


def test_lif_cond_exp_inhibitory_psp_matches_solve_ivp(tmp_path: Path) -> None:
    dt, w, delay, t_fire = 0.01, 10.0, 1.0, 2.0
    params = {**COND, "E_L": -60.0, "V_reset": -60.0}
    r = simulate(tmp_path, pair("I", "lif_cond_exp", params, w=w, delay=delay, t_fire=t_fire, t_ms=30.0, dt=dt))
    a = round(t_fire / dt) + round(delay / dt)
    v = trace(r)
    k = np.arange(v.size)
    t = (k + 1) * dt
    on = k >= a
    assert np.all(v[~on] == np.float32(-60.0))
    ref = cond_reference(params, w, params["E_in"], params["tau_syn_in"], (a + 1) * dt, t[on])
    assert params["E_L"] - ref.min() > 0.5              # an IPSP of about 1 mV
    assert np.abs(v[on] - ref).max() < 5e-5
    g = w * np.exp(-(t[on] - (a + 1) * dt) / params["tau_syn_in"])
    np.testing.assert_allclose(trace(r, "syn_i")[on], g * (params["E_in"] - v[on]) / params["C_m"], rtol=1e-6)
