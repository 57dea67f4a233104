"""Neuron models: state layout, parameter vectors (propagators) and numba update kernels.

Every model keeps its state in rows of one float64 array ``state[var, neuron]``:

    V      membrane potential, mV
    REF    refractory steps left
    SE     excitatory synaptic variable (pA for current models, nS for conductance models)
    SI     inhibitory synaptic variable (magnitude, same unit)
    SX     external (drive) synaptic variable, excitatory receptor
    GM, GH, GN   Hodgkin-Huxley gates

A kernel advances one neuron by one step dt given this step's arrivals ``e``, ``i`` (recurrent
excitatory and inhibitory weight sums, magnitudes), ``x`` (external drive arrivals) and the
current ``cur`` (pA), and returns True when the neuron spiked. Arrivals act like NEST's: on V
at once for delta synapses, on the synaptic variable at the end of the step otherwise.
The `probe` kernel gives V and the E, I and external input as contributions to dV/dt in mV/ms.
"""

import math

import numpy as np
from numba import njit

from eilab.sim.config import InitValue, Normal, Population
from eilab.sim.rng import PURPOSE_INIT, uniforms_for

V, REF, SE, SI, SX, GM, GH, GN = range(8)
N_STATE = 8
N_PARAM = 20
LIF_DELTA, LIF_EXP, LIF_COND_EXP, EIF, HH = range(5)
MODEL_IDS = {"lif_delta": LIF_DELTA, "lif_exp": LIF_EXP, "lif_cond_exp": LIF_COND_EXP, "eif": EIF, "hh": HH}

# Parameter vector slots shared by all models (model-specific ones follow).
P_PROP_M, P_CUR_GAIN, P_EL, P_VTH, P_VRESET, P_REFSTEPS, P_IE, P_CM, P_DT = range(9)
P_PROP_EX, P_PROP_IN, P_P21EX, P_P21IN = 9, 10, 11, 12          # synaptic decays and V couplings
P_GL, P_EEX, P_EIN, P_AVG_EX, P_AVG_IN = 13, 14, 15, 16, 17      # conductance models / EIF
P_DELTA_T, P_VT = 18, 19                                         # EIF (HH reuses slots, see below)


def _p21(h: float, tau_m: float, tau_s: float, c_m: float) -> float:
    """Exact coupling of an exponential current into V over one step h (NEST's P21), mV/pA."""
    rate = 1.0 / tau_s - 1.0 / tau_m
    x = h * rate
    f = h if abs(x) < 1e-12 else -math.expm1(-x) / rate
    return math.exp(-h / tau_m) * f / c_m


def parameter_vector(pop: Population, dt: float) -> np.ndarray:
    """Propagators and constants of one population for step dt (ms), as the kernels read them."""
    p = pop.params
    v = np.zeros(N_PARAM)
    v[P_DT] = dt
    v[P_IE] = p["I_e"]
    v[P_CM] = p["C_m"]
    v[P_REFSTEPS] = round(p.get("t_ref", 0.0) / dt)
    if pop.model == "hh":
        for slot, key in zip(
            range(9, 20),
            ("g_Na", "g_K", "g_L", "E_Na", "E_K", "E_L", "tau_syn_ex", "tau_syn_in", "V_spike", "dt_sub"),
            strict=False,
        ):
            v[slot] = p[key]
        v[19] = math.ceil(dt / p["dt_sub"] - 1e-9)
        return v
    v[P_EL], v[P_VRESET] = p["E_L"], p["V_reset"]
    v[P_VTH] = p["V_peak"] if pop.model == "eif" else p["V_th"]
    if pop.model in ("lif_delta", "lif_exp"):
        tau = p["tau_m"]
        v[P_PROP_M] = 1.0 - dt / tau if p.get("integration") == "euler" else math.exp(-dt / tau)
        v[P_CUR_GAIN] = dt / p["C_m"] if p.get("integration") == "euler" else tau / p["C_m"] * -math.expm1(-dt / tau)
    if pop.model != "lif_delta":
        te, ti = p["tau_syn_ex"], p["tau_syn_in"]
        v[P_PROP_EX], v[P_PROP_IN] = math.exp(-dt / te), math.exp(-dt / ti)
        v[P_AVG_EX], v[P_AVG_IN] = te / dt * -math.expm1(-dt / te), ti / dt * -math.expm1(-dt / ti)
    if pop.model == "lif_exp":
        v[P_P21EX] = _p21(dt, p["tau_m"], p["tau_syn_ex"], p["C_m"])
        v[P_P21IN] = _p21(dt, p["tau_m"], p["tau_syn_in"], p["C_m"])
    if pop.model in ("lif_cond_exp", "eif"):
        v[P_GL] = p["g_L"]
    if pop.model == "lif_cond_exp":
        v[P_EEX], v[P_EIN] = p["E_ex"], p["E_in"]
    if pop.model == "eif":
        v[P_DELTA_T], v[P_VT] = p["Delta_T"], p["V_T"]
    return v


def initial_extra_state(pop: Population, v0: np.ndarray) -> dict[int, np.ndarray]:
    """Model state besides V at t=0: HH gates at their steady state for v0."""
    if pop.model != "hh":
        return {}
    am, bm, ah, bh, an, bn = _hh_rates_np(v0)
    return {GM: am / (am + bm), GH: ah / (ah + bh), GN: an / (an + bn)}


def initial_values(value: InitValue, seed: int, gid0: int, n: int, counter: int) -> np.ndarray | float:
    """Initial values of gids gid0.. from the (seed, init, gid) streams at `counter` (and counter + 1)."""
    if isinstance(value, tuple):
        a, b = value
        return a + (b - a) * uniforms_for(seed, PURPOSE_INIT, gid0, n, counter)
    if isinstance(value, Normal):  # Box-Muller from two uniforms of the same stream
        u1 = uniforms_for(seed, PURPOSE_INIT, gid0, n, counter)
        u2 = uniforms_for(seed, PURPOSE_INIT, gid0, n, counter + 1)
        return value.mean + value.sd * np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
    return value


def default_v0(pop: Population) -> float:
    return -65.0 if pop.model == "hh" else pop.params["E_L"]


# ---------------------------------------------------------------- kernels
@njit(cache=True, inline="always")
def _fire(state, j, p) -> bool:
    if state[V, j] >= p[P_VTH]:
        state[V, j] = p[P_VRESET]
        state[REF, j] = p[P_REFSTEPS]
        return True
    return False


@njit(cache=True, inline="always")
def lif_delta_step(state, j, p, e, i, x, cur) -> bool:
    if state[REF, j] > 0:
        state[REF, j] -= 1.0  # input arriving while refractory is lost (NEST iaf_psc_delta)
        return False
    el = p[P_EL]
    state[V, j] = el + p[P_PROP_M] * (state[V, j] - el) + p[P_CUR_GAIN] * cur + (e - i + x)
    return _fire(state, j, p)


@njit(cache=True, inline="always")
def lif_exp_step(state, j, p, e, i, x, cur) -> bool:
    if state[REF, j] > 0:
        state[REF, j] -= 1.0
    else:
        el = p[P_EL]
        state[V, j] = (el + p[P_PROP_M] * (state[V, j] - el) + p[P_CUR_GAIN] * cur
                       + p[P_P21EX] * (state[SE, j] + state[SX, j]) - p[P_P21IN] * state[SI, j])
    state[SE, j] = state[SE, j] * p[P_PROP_EX] + e
    state[SX, j] = state[SX, j] * p[P_PROP_EX] + x
    state[SI, j] = state[SI, j] * p[P_PROP_IN] + i
    return _fire(state, j, p)


@njit(cache=True, inline="always")
def lif_cond_exp_step(state, j, p, e, i, x, cur) -> bool:
    """Exponential Euler for V with conductances averaged exactly over the step."""
    if state[REF, j] > 0:
        state[REF, j] -= 1.0
    else:
        gex = (state[SE, j] + state[SX, j]) * p[P_AVG_EX]
        gin = state[SI, j] * p[P_AVG_IN]
        gl = p[P_GL]
        gtot = gl + gex + gin
        vinf = (gl * p[P_EL] + gex * p[P_EEX] + gin * p[P_EIN] + cur) / gtot
        state[V, j] = vinf + (state[V, j] - vinf) * math.exp(-p[P_DT] * gtot / p[P_CM])
    state[SE, j] = state[SE, j] * p[P_PROP_EX] + e
    state[SX, j] = state[SX, j] * p[P_PROP_EX] + x
    state[SI, j] = state[SI, j] * p[P_PROP_IN] + i
    return _fire(state, j, p)


@njit(cache=True, inline="always")
def _eif_dvdt(v, p, isyn) -> float:
    gl = p[P_GL]
    dt_ = p[P_DELTA_T]
    arg = min((v - p[P_VT]) / dt_, 50.0)
    return (-gl * (v - p[P_EL]) + gl * dt_ * math.exp(arg) + isyn) / p[P_CM]


@njit(cache=True, inline="always")
def eif_step(state, j, p, e, i, x, cur) -> bool:
    """Midpoint (RK2) step for V; synaptic currents decay exactly within the step."""
    h = p[P_DT]
    if state[REF, j] > 0:
        state[REF, j] -= 1.0
    else:
        ie0 = state[SE, j] + state[SX, j]
        ii0 = state[SI, j]
        half_e = math.sqrt(p[P_PROP_EX])
        half_i = math.sqrt(p[P_PROP_IN])
        v = state[V, j]
        k1 = _eif_dvdt(v, p, ie0 - ii0 + cur)
        vm = v + 0.5 * h * k1
        if vm >= p[P_VTH]:
            state[V, j] = vm
        else:
            state[V, j] = v + h * _eif_dvdt(vm, p, ie0 * half_e - ii0 * half_i + cur)
    state[SE, j] = state[SE, j] * p[P_PROP_EX] + e
    state[SX, j] = state[SX, j] * p[P_PROP_EX] + x
    state[SI, j] = state[SI, j] * p[P_PROP_IN] + i
    return _fire(state, j, p)


@njit(cache=True, inline="always")
def _xexp(x: float) -> float:
    """x / (1 - exp(-x)), continuous at 0."""
    if abs(x) < 1e-7:
        return 1.0 + 0.5 * x
    return x / -math.expm1(-x)


@njit(cache=True, inline="always")
def _hh_deriv(v, m, h, n, p, isyn):
    am = _xexp((v + 40.0) / 10.0)
    bm = 4.0 * math.exp(-(v + 65.0) / 18.0)
    ah = 0.07 * math.exp(-(v + 65.0) / 20.0)
    bh = 1.0 / (1.0 + math.exp(-(v + 35.0) / 10.0))
    an = 0.1 * _xexp((v + 55.0) / 10.0)
    bn = 0.125 * math.exp(-(v + 65.0) / 80.0)
    i_na = p[9] * m * m * m * h * (v - p[12])
    i_k = p[10] * n * n * n * n * (v - p[13])
    i_l = p[11] * (v - p[14])
    dv = (isyn - i_na - i_k - i_l) / p[P_CM]
    return dv, am * (1.0 - m) - bm * m, ah * (1.0 - h) - bh * h, an * (1.0 - n) - bn * n


def _hh_rates_np(v: np.ndarray):
    xm, xn = (v + 40.0) / 10.0, (v + 55.0) / 10.0
    am = np.where(np.abs(xm) < 1e-7, 1.0 + 0.5 * xm, xm / -np.expm1(-xm))
    an = 0.1 * np.where(np.abs(xn) < 1e-7, 1.0 + 0.5 * xn, xn / -np.expm1(-xn))
    return (am, 4.0 * np.exp(-(v + 65.0) / 18.0), 0.07 * np.exp(-(v + 65.0) / 20.0),
            1.0 / (1.0 + np.exp(-(v + 35.0) / 10.0)), an, 0.125 * np.exp(-(v + 65.0) / 80.0))


@njit(cache=True, inline="always")
def hh_step(state, j, p, e, i, x, cur) -> bool:
    """Classical RK4 on (V, m, h, n) with `p[19]` sub-steps; synaptic currents decay exactly."""
    nsub = int(p[19])
    hs = p[P_DT] / nsub
    te, ti = p[15], p[16]
    v, m, h, n = state[V, j], state[GM, j], state[GH, j], state[GN, j]
    v_start = v
    ie = state[SE, j] + state[SX, j]
    ii = state[SI, j]
    de_half, di_half = math.exp(-0.5 * hs / te), math.exp(-0.5 * hs / ti)
    for _ in range(nsub):
        s0 = ie - ii + cur
        ie_h, ii_h = ie * de_half, ii * di_half
        s1 = ie_h - ii_h + cur
        ie_1, ii_1 = ie_h * de_half, ii_h * di_half
        s2 = ie_1 - ii_1 + cur
        k1 = _hh_deriv(v, m, h, n, p, s0)
        k2 = _hh_deriv(v + 0.5 * hs * k1[0], m + 0.5 * hs * k1[1], h + 0.5 * hs * k1[2], n + 0.5 * hs * k1[3], p, s1)
        k3 = _hh_deriv(v + 0.5 * hs * k2[0], m + 0.5 * hs * k2[1], h + 0.5 * hs * k2[2], n + 0.5 * hs * k2[3], p, s1)
        k4 = _hh_deriv(v + hs * k3[0], m + hs * k3[1], h + hs * k3[2], n + hs * k3[3], p, s2)
        w = hs / 6.0
        v += w * (k1[0] + 2.0 * k2[0] + 2.0 * k3[0] + k4[0])
        m += w * (k1[1] + 2.0 * k2[1] + 2.0 * k3[1] + k4[1])
        h += w * (k1[2] + 2.0 * k2[2] + 2.0 * k3[2] + k4[2])
        n += w * (k1[3] + 2.0 * k2[3] + 2.0 * k3[3] + k4[3])
        ie, ii = ie_1, ii_1
    state[V, j], state[GM, j], state[GH, j], state[GN, j] = v, m, h, n
    state[SE, j] = state[SE, j] * math.exp(-p[P_DT] / te) + e
    state[SX, j] = state[SX, j] * math.exp(-p[P_DT] / te) + x
    state[SI, j] = state[SI, j] * math.exp(-p[P_DT] / ti) + i
    return v_start < p[17] <= v


@njit(cache=True)
def update_population(model, state, lo, hi, p, e, i, x, cur, fired) -> int:
    """Step neurons lo..hi-1 of one population; returns n, with fired[:n] the neurons that spiked.

    One tight loop per model: the model test stays outside the loop, so each loop inlines its
    kernel (a per-neuron dispatch, or a store per neuron, costs several times the update itself).
    """
    n = 0
    if model == LIF_DELTA:
        for j in range(lo, hi):
            if lif_delta_step(state, j, p, e[j], i[j], x[j], cur):
                fired[n] = j
                n += 1
    elif model == LIF_EXP:
        for j in range(lo, hi):
            if lif_exp_step(state, j, p, e[j], i[j], x[j], cur):
                fired[n] = j
                n += 1
    elif model == LIF_COND_EXP:
        for j in range(lo, hi):
            if lif_cond_exp_step(state, j, p, e[j], i[j], x[j], cur):
                fired[n] = j
                n += 1
    elif model == EIF:
        for j in range(lo, hi):
            if eif_step(state, j, p, e[j], i[j], x[j], cur):
                fired[n] = j
                n += 1
    else:
        for j in range(lo, hi):
            if hh_step(state, j, p, e[j], i[j], x[j], cur):
                fired[n] = j
                n += 1
    return n


@njit(cache=True)
def probe(model, state, j, p, e, i, x, cur, out) -> None:
    """Write V (mV) and E, I, external input (mV/ms) of neuron j after its step into out[0:4]."""
    out[0] = state[V, j]
    cm = p[P_CM]
    if model == LIF_DELTA:
        dt = p[P_DT]
        out[1], out[2], out[3] = e / dt, -i / dt, x / dt + cur / cm
    elif model == LIF_COND_EXP:
        v = state[V, j]
        out[1] = state[SE, j] * (p[P_EEX] - v) / cm
        out[2] = state[SI, j] * (p[P_EIN] - v) / cm
        out[3] = (state[SX, j] * (p[P_EEX] - v) + cur) / cm
    else:
        out[1], out[2], out[3] = state[SE, j] / cm, -state[SI, j] / cm, (state[SX, j] + cur) / cm
