"""Neuron models: state layout, parameter vectors (propagators) and numba update kernels.

Every model keeps its state in rows of one float64 array ``state[var, neuron]``:

    V      membrane potential, mV
    REF    refractory steps left (precise models: refractory time left, ms)
    SE     excitatory synaptic variable (pA for current models, nS for conductance models)
    SI     inhibitory synaptic variable (magnitude, same unit)
    SX     external (drive) synaptic variable, excitatory receptor (its own time constant tau_syn_x if set)
    GM, GH, GN   Hodgkin-Huxley gates (hh, hh_cond_exp_traub)

A kernel advances one neuron by one step dt given this step's arrivals ``e``, ``i`` (recurrent
excitatory and inhibitory weight sums, magnitudes), ``x`` (external drive arrivals) and the
current ``cur`` (pA), and returns True when the neuron spiked. Arrivals act like NEST's: on V
at once for delta synapses, on the synaptic variable at the end of the step otherwise.
The `probe` kernel gives V and the E, I and external input as contributions to dV/dt in mV/ms.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from eilab.sim.config import InitValue, Normal, Population
from eilab.sim.rng import PURPOSE_INIT, uniforms_for

V, REF, SE, SI, SX, GM, GH, GN = range(8)
N_STATE = 8
N_PARAM = 43
(LIF_DELTA, LIF_EXP, LIF_COND_EXP, EIF, HH, HH_TRAUB, LIF_COND_EULER, HH_TRAUB_RK4, LIF_DELTA_PS, LIF_EXP_PS,
 EIF_PS) = range(11)
# (the precise ones last)
MODEL_IDS = {"lif_delta": LIF_DELTA, "lif_exp": LIF_EXP, "lif_cond_exp": LIF_COND_EXP, "eif": EIF, "hh": HH,
             "hh_cond_exp_traub": HH_TRAUB}
PRECISE_IDS = {"lif_delta": LIF_DELTA_PS, "lif_exp": LIF_EXP_PS, "eif": EIF_PS}  # spike_times = "precise"

# Parameter vector slots shared by all models (model-specific ones follow).
P_PROP_M, P_CUR_GAIN, P_EL, P_VTH, P_VRESET, P_REFSTEPS, P_IE, P_CM, P_DT = range(9)
P_PROP_EX, P_PROP_IN, P_P21EX, P_P21IN = 9, 10, 11, 12          # synaptic decays and V couplings
P_GL, P_EEX, P_EIN, P_AVG_EX, P_AVG_IN = 13, 14, 15, 16, 17      # conductance models / EIF
P_DELTA_T, P_VT = 18, 19                                         # EIF (HH reuses slots, see below)
P_PROP_X, P_P21X, P_AVG_X, P_OWN_X = 20, 21, 22, 23              # the drive's synapse (tau_syn_x), 1 if own
P_TAU_M, P_TAU_E, P_TAU_I, P_TAU_X, P_TREF = 24, 25, 26, 27, 28  # precise spike times: ms
P_GNA, P_GK, P_ENA, P_EK, P_NSUB = 29, 30, 31, 32, 33            # hh_cond_exp_traub (and P_GL, P_EEX, P_EIN, P_VT)
P_SUB_EX, P_SUB_IN, P_SUB_X = 34, 35, 36                         # its conductances' decay over one sub-step
P_HALF_EX, P_HALF_IN, P_HALF_X = 37, 38, 39                      # hh, hh_cond_exp_traub: over half an RK4 sub-step
P_STEP_EX, P_STEP_IN, P_STEP_X = 40, 41, 42                      # hh: decays over the step


def model_id(pop: Population) -> int:
    """The kernel of a population: its model, in the precise-spike-time, forward-Euler or RK4 variant if asked."""
    if pop.model == "lif_cond_exp" and pop.params["integration"] == "euler":
        return LIF_COND_EULER
    if pop.model == "hh_cond_exp_traub" and pop.params["integration"] == "rk4":
        return HH_TRAUB_RK4
    return PRECISE_IDS[pop.model] if pop.spike_times == "precise" else MODEL_IDS[pop.model]


@njit(cache=True)
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
        v[P_OWN_X] = float(p.get("tau_syn_x") is not None)
        v[P_TAU_X] = p["tau_syn_ex"] if p.get("tau_syn_x") is None else p["tau_syn_x"]
        taus = p["tau_syn_ex"], p["tau_syn_in"], v[P_TAU_X]
        hs = dt / v[19]
        v[P_HALF_EX], v[P_HALF_IN], v[P_HALF_X] = (math.exp(-0.5 * hs / t) for t in taus)
        v[P_STEP_EX], v[P_STEP_IN], v[P_STEP_X] = (math.exp(-dt / t) for t in taus)
        return v
    if pop.model == "hh_cond_exp_traub":
        return _traub_vector(v, p, dt)
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
    if pop.model in ("lif_delta", "lif_exp", "eif"):
        v[P_TAU_M], v[P_TREF] = p.get("tau_m", 0.0), p["t_ref"]
    if pop.model != "lif_delta":
        tx = p.get("tau_syn_x")
        v[P_TAU_E], v[P_TAU_I] = p["tau_syn_ex"], p["tau_syn_in"]
        v[P_TAU_X] = p["tau_syn_ex"] if tx is None else tx
        v[P_OWN_X] = float(tx is not None)
        v[P_PROP_X], v[P_AVG_X], v[P_P21X] = v[P_PROP_EX], v[P_AVG_EX], v[P_P21EX]
        if tx is not None:
            v[P_PROP_X], v[P_AVG_X] = math.exp(-dt / tx), tx / dt * -math.expm1(-dt / tx)
            if pop.model == "lif_exp":
                v[P_P21X] = _p21(dt, p["tau_m"], tx, p["C_m"])
    if pop.model in ("lif_cond_exp", "eif"):
        v[P_GL] = p["g_L"]
    if pop.model == "lif_cond_exp":
        v[P_EEX], v[P_EIN] = p["E_ex"], p["E_in"]
        if p["integration"] == "euler":  # V += h / C_m dV/dt; S *= 1 - h / tau_s
            v[P_CUR_GAIN] = dt / p["C_m"]
            v[P_PROP_EX], v[P_PROP_IN] = 1.0 - dt / p["tau_syn_ex"], 1.0 - dt / p["tau_syn_in"]
            v[P_PROP_X] = 1.0 - dt / v[P_TAU_X]
    if pop.model == "eif":
        v[P_DELTA_T], v[P_VT] = p["Delta_T"], p["V_T"]
    return v


def _traub_vector(v: np.ndarray, p: dict, dt: float) -> np.ndarray:
    """hh_cond_exp_traub's constants into v: per sub-step of dt / n_sub the conductances' decays, the factors
    of their exact means over it and their decays over half of it (RK4); over the whole step their decays."""
    hs = dt / p["n_sub"]
    te, ti = p["tau_syn_ex"], p["tau_syn_in"]
    tx = te if p.get("tau_syn_x") is None else p["tau_syn_x"]
    for slot, key in ((P_EL, "E_L"), (P_VTH, "V_spike"), (P_GL, "g_L"), (P_EEX, "E_ex"), (P_EIN, "E_in"),
                      (P_VT, "V_T"), (P_GNA, "g_Na"), (P_GK, "g_K"), (P_ENA, "E_Na"), (P_EK, "E_K"), (P_NSUB, "n_sub")):
        v[slot] = p[key]
    v[P_TAU_E], v[P_TAU_I], v[P_TAU_X] = te, ti, tx
    v[P_OWN_X] = float(p.get("tau_syn_x") is not None)
    v[P_PROP_EX], v[P_PROP_IN], v[P_PROP_X] = math.exp(-dt / te), math.exp(-dt / ti), math.exp(-dt / tx)
    v[P_SUB_EX], v[P_SUB_IN], v[P_SUB_X] = math.exp(-hs / te), math.exp(-hs / ti), math.exp(-hs / tx)
    v[P_AVG_EX], v[P_AVG_IN], v[P_AVG_X] = (t / hs * -math.expm1(-hs / t) for t in (te, ti, tx))
    v[P_HALF_EX], v[P_HALF_IN], v[P_HALF_X] = (math.exp(-0.5 * hs / t) for t in (te, ti, tx))
    return v


def initial_extra_state(pop: Population, v0: np.ndarray) -> dict[int, np.ndarray]:
    """Model state besides V at t=0: HH gates at their steady state for v0."""
    if pop.model == "hh_cond_exp_traub":
        return dict(zip((GM, GH, GN), _traub_steady(v0 - pop.params["V_T"]), strict=True))
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
    """V at t=0 without v_init, mV: E_L (hh: -65 mV, its resting potential)."""
    return -65.0 if pop.model == "hh" else pop.params["E_L"]


# ---------------------------------------------------------------- kernels
LOG2E = 1.4426950408889634
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # ln 2 = HI + LO; k HI exact, |k| < 2048
ROUND_BIAS = 1.5 * 2.0**52  # x + ROUND_BIAS holds round(x) in its low bits (|x| < 2**51)
EXP_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(2, 14))  # 1/2!, ..., 1/13!


@intrinsic
def _f64_from_bits(typingctx, bits):
    """The float64 whose IEEE bits are the int64 `bits`."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _bits_of_f64(typingctx, x):
    """The IEEE bits of the float64 x, as an int64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@njit(cache=True, inline="always", error_model="numpy")
def _exp_vec(x: float) -> float:
    """exp(x) within 1 ulp of libm's, in arithmetic alone so that loops around it vectorise (libm's exp is a
    call numba cannot vectorise): x = k ln 2 + r with |r| <= ln 2 / 2 (Cody & Waite 1980), e^r = 1 + r + r^2 q(r)
    with q the Taylor series to r^11 / 13! (truncation below 2e-17 relative) in Estrin's scheme, 2^k from its
    bits; x is clamped to [-708, 709]."""
    x = min(max(x, -708.0), 709.0)
    biased = x * LOG2E + ROUND_BIAS
    k = biased - ROUND_BIAS
    r = (x - k * LN2_HI) - k * LN2_LO
    c = EXP_TAYLOR
    r2 = r * r
    r4 = r2 * r2
    q = (((c[0] + c[1] * r) + (c[2] + c[3] * r) * r2) + ((c[4] + c[5] * r) + (c[6] + c[7] * r) * r2) * r4
         + ((c[8] + c[9] * r) + (c[10] + c[11] * r) * r2) * (r4 * r4))
    return (1.0 + (r + r2 * q)) * _f64_from_bits((_bits_of_f64(biased) + 1023) << 52)


@njit(cache=True, inline="always")
def _fire(state, j, p) -> bool:
    if state[V, j] >= p[P_VTH]:
        state[V, j] = p[P_VRESET]
        state[REF, j] = p[P_REFSTEPS]
        return True
    return False


@njit(cache=True, inline="always")
def _synapses_step(state, j, p, e, i, x) -> None:
    """Exponential synaptic variables: exact decay over the step, then this step's arrivals."""
    state[SE, j] = state[SE, j] * p[P_PROP_EX] + e
    state[SX, j] = state[SX, j] * p[P_PROP_X] + x
    state[SI, j] = state[SI, j] * p[P_PROP_IN] + i


@njit(cache=True, inline="always")
def _lif_exp_consts(p, cur) -> tuple:
    """lif_exp's constants for a step with current cur (pA), read once per population (section 2.2 of
    docs/models.md): E_L, P, G I, the P21 of E, X and I, and whether X has its own time constant."""
    return p[P_EL], p[P_PROP_M], p[P_CUR_GAIN] * cur, p[P_P21EX], p[P_P21X], p[P_P21IN], p[P_OWN_X] != 0.0


@njit(cache=True, inline="always")
def _lif_exp_next(v, se, sx, si, c) -> float:
    """lif_exp's exact V after one step from V = v and synaptic currents se, sx, si (pA); c = _lif_exp_consts."""
    el, prop_m, drive, p21e, p21x, p21i, own_x = c
    syn = p21e * se + p21x * sx if own_x else p21e * (se + sx)
    return el + prop_m * (v - el) + drive + syn - p21i * si


@njit(cache=True, inline="always")
def lif_exp_step(state, j, p, e, i, x, cur) -> bool:
    """One lif_exp neuron (docs/models.md, section 2.2); `lif_exp_update` steps a population."""
    if state[REF, j] > 0:
        state[REF, j] -= 1.0
    else:
        state[V, j] = _lif_exp_next(state[V, j], state[SE, j], state[SX, j], state[SI, j], _lif_exp_consts(p, cur))
    _synapses_step(state, j, p, e, i, x)
    return _fire(state, j, p)


@njit(cache=True, inline="always")
def _decay_row(s, lo, hi, prop, arrivals) -> None:
    """s[j] = s[j] prop + arrivals[j] for j in lo..hi-1 (vectorised)."""
    for j in range(np.uint64(lo), np.uint64(hi)):
        s[j] = s[j] * prop + arrivals[j]


@njit(cache=True, inline="always")
def _synapse_rows(state, lo, hi, p, e, i, x, x_on) -> None:
    """`_synapses_step` for neurons lo..hi-1, one loop per variable; the external one only with x_on (without, it is
    zero and stays zero)."""
    _decay_row(state[SE], lo, hi, p[P_PROP_EX], e)
    if x_on:
        _decay_row(state[SX], lo, hi, p[P_PROP_X], x)
    _decay_row(state[SI], lo, hi, p[P_PROP_IN], i)


@njit(cache=True, inline="always")
def _threshold(state, lo, hi, p, fired) -> int:
    """`_fire` for neurons lo..hi-1; returns n, fired[:n] the neurons that spiked."""
    v, ref = state[V], state[REF]
    vth, v_reset, ref_steps = p[P_VTH], p[P_VRESET], p[P_REFSTEPS]
    n = 0
    for j in range(lo, hi):
        if v[j] >= vth:
            v[j], ref[j] = v_reset, ref_steps
            fired[n] = j
            n += 1
    return n


@njit(cache=True, inline="always")
def _hold_refractory(v, ref, j, v_new) -> None:
    """V of neuron j to v_new unless refractory, whose steps left count down: the step's branch as two selects, so
    that numba vectorises the loops around it."""
    r = ref[j]
    v[j] = v_new if r <= 0.0 else v[j]
    ref[j] = r - 1.0 if r > 0.0 else r


@njit(cache=True, inline="always")
def lif_delta_update(state, lo, hi, p, e, i, x, cur, fired) -> int:
    """lif_delta for neurons lo..hi-1 (docs/models.md, section 2.1) in a vectorised loop, then the threshold;
    input arriving while refractory is lost (NEST iaf_psc_delta). Returns n, fired[:n] the neurons that spiked."""
    v, ref = state[V], state[REF]
    el, prop_m, drive = p[P_EL], p[P_PROP_M], p[P_CUR_GAIN] * cur
    for j in range(np.uint64(lo), np.uint64(hi)):
        _hold_refractory(v, ref, j, el + prop_m * (v[j] - el) + drive + (e[j] - i[j] + x[j]))
    return _threshold(state, lo, hi, p, fired)


@njit(cache=True, inline="always")
def lif_exp_update(state, lo, hi, p, e, i, x, x_on, cur, fired) -> int:
    """`lif_exp_step` for neurons lo..hi-1 in vectorised loops (V, the synapses, then the threshold); returns n,
    fired[:n] the neurons that spiked. Loops over neurons run on unsigned indices: numba then drops the
    negative-index wraparound from every access, which keeps LLVM from vectorising."""
    v, ref, se, sx, si = state[V], state[REF], state[SE], state[SX] if x_on else x, state[SI]
    c = _lif_exp_consts(p, cur)
    for j in range(np.uint64(lo), np.uint64(hi)):
        _hold_refractory(v, ref, j, _lif_exp_next(v[j], se[j], sx[j], si[j], c))
    _synapse_rows(state, lo, hi, p, e, i, x, x_on)
    return _threshold(state, lo, hi, p, fired)


@njit(cache=True, inline="always")
def _release(state, j, h) -> float:
    """Precise models: the refractory part of this step (ms, at most h), counted off REF (ms left)."""
    ref = state[REF, j]
    state[REF, j] = max(ref - h, 0.0)
    return min(max(ref, 0.0), h)


@njit(cache=True, inline="always")
def _currents_at(state, j, p, a) -> tuple[float, float, float]:
    """Precise models: the synaptic currents se, sx, si (pA) a ms into the step (where its free part begins)."""
    se, sx, si = state[SE, j], state[SX, j], state[SI, j]
    if a > 0.0:
        se, sx, si = se * math.exp(-a / p[P_TAU_E]), sx * math.exp(-a / p[P_TAU_X]), si * math.exp(-a / p[P_TAU_I])
    return se, sx, si


@njit(cache=True, inline="always")
def _spike_at(state, j, p, offset) -> float:
    """Precise models: reset at `offset` (ms into the step); refractory for t_ref from then on."""
    state[V, j] = p[P_VRESET]
    state[REF, j] = p[P_TREF] - (p[P_DT] - offset)  # >= 0: t_ref >= dt
    return offset


@njit(cache=True, inline="always")
def lif_delta_ps_step(state, j, p, e, i, x, cur) -> float:
    """lif_delta with the threshold crossing placed inside the step: returns the spike's offset into the step
    (ms, in (0, dt]) or -1. Between arrivals V relaxes exactly towards v_inf = E_L + tau_m I / C_m, so the crossing
    of the current alone is at tau_m ln((v_inf - V0) / (v_inf - V_th)) after the free part of the step begins;
    delta arrivals act at the end of the step, as on the grid. Refractoriness ends off the grid."""
    h = p[P_DT]
    a = _release(state, j, h)
    if a >= h:
        return -1.0  # input arriving while refractory is lost (NEST iaf_psc_delta)
    el, tau, vth = p[P_EL], p[P_TAU_M], p[P_VTH]
    v0 = state[V, j]
    vinf = el + tau / p[P_CM] * cur
    if a == 0.0:
        v1 = el + p[P_PROP_M] * (v0 - el) + p[P_CUR_GAIN] * cur
    else:
        v1 = vinf + (v0 - vinf) * math.exp(-(h - a) / tau)
    if v1 >= vth:
        return _spike_at(state, j, p, a + (tau * math.log1p((vth - v0) / (vinf - vth)) if v0 < vth else 0.0))
    v1 += e - i + x
    if v1 >= vth:
        return _spike_at(state, j, p, h)
    state[V, j] = v1
    return -1.0


@njit(cache=True, inline="always")
def _lif_exp_v(s, v0, p, cur, se, sx, si) -> tuple[float, float]:
    """lif_exp: exact (V, dV/dt) s ms after a point where V = v0 and the synaptic currents are se, sx, si (pA)."""
    el, tm, cm = p[P_EL], p[P_TAU_M], p[P_CM]
    te, tx, ti = p[P_TAU_E], p[P_TAU_X], p[P_TAU_I]
    em = math.exp(-s / tm)
    v = (el + em * (v0 - el) + tm / cm * -math.expm1(-s / tm) * cur
         + _p21(s, tm, te, cm) * se + _p21(s, tm, tx, cm) * sx - _p21(s, tm, ti, cm) * si)
    current = cur + se * math.exp(-s / te) + sx * math.exp(-s / tx) - si * math.exp(-s / ti)
    return v, (el - v) / tm + current / cm


@njit(cache=True)
def _lif_exp_crossing(f, v0, v1, p, cur, se, sx, si) -> float:
    """The first s in (0, f] with V(s) = V_th, given V(0) < V_th <= V(f): Newton's method kept inside a
    shrinking bracket (bisection when a step leaves it), to double precision."""
    vth = p[P_VTH]
    lo, hi = 0.0, f
    s = f * (vth - v0) / (v1 - v0)
    for _ in range(100):
        v, dv = _lif_exp_v(s, v0, p, cur, se, sx, si)
        if v >= vth:
            hi = s
        else:
            lo = s
        nxt = s - (v - vth) / dv if dv > 0.0 else 0.5 * (lo + hi)
        if not lo < nxt < hi:
            nxt = 0.5 * (lo + hi)
        if abs(nxt - s) <= 1e-15 * f or hi - lo <= 1e-15 * f:
            return hi if v < vth else s
        s = nxt
    return hi


@njit(cache=True, inline="always")
def _ps_step(free, state, j, p, e, i, x, cur) -> float:
    """The step of a precise model: release refractoriness, the synaptic currents where the free part begins,
    `free(f, a, v0, p, cur, se, sx, si) -> (V at its end, ms to the threshold crossing)` over its f ms, then the
    spike or the new V, then the synapses. Returns the spike's offset into the step (ms, in (0, dt]) or -1."""
    h = p[P_DT]
    a = _release(state, j, h)
    out = -1.0
    if a < h:
        se, sx, si = _currents_at(state, j, p, a)
        v1, s = free(h - a, a, state[V, j], p, cur, se, sx, si)
        if v1 >= p[P_VTH]:
            out = _spike_at(state, j, p, a + s)
        else:
            state[V, j] = v1
    _synapses_step(state, j, p, e, i, x)
    return out


@njit(cache=True, inline="always")
def _lif_exp_free(f, a, v0, p, cur, se, sx, si) -> tuple[float, float]:
    """lif_exp over the free f ms of a step (a ms refractory before it): the exact solution, and the root of
    V = V_th (`_lif_exp_crossing`) when it is crossed."""
    if a == 0.0:
        v1 = _lif_exp_next(v0, se, sx, si, _lif_exp_consts(p, cur))
    else:
        v1 = _lif_exp_v(f, v0, p, cur, se, sx, si)[0]
    if v1 >= p[P_VTH] and v0 < p[P_VTH]:
        return v1, _lif_exp_crossing(f, v0, v1, p, cur, se, sx, si)
    return v1, 0.0


@njit(cache=True, inline="always")
def lif_exp_ps_step(state, j, p, e, i, x, cur) -> float:
    """lif_exp with the threshold crossing placed inside the step (root of the exact solution, `_lif_exp_crossing`):
    returns the offset of the spike into the step (ms, in (0, dt]) or -1. Refractoriness ends off the grid."""
    return _ps_step(_lif_exp_free, state, j, p, e, i, x, cur)


@njit(cache=True, inline="always")
def lif_cond_exp_update(state, lo, hi, p, e, i, x, x_on, cur, fired) -> int:
    """lif_cond_exp for neurons lo..hi-1 (docs/models.md, section 2.3): exponential Euler for V with the
    conductances' exact step means, in vectorised loops (V, with `_exp_vec` for its exp(-h g_tot / C_m): libm's
    would keep the loop scalar and cost half the update; the synapses; the threshold). Returns n, fired[:n] the
    neurons that spiked."""
    v, ref, se, sx, si = state[V], state[REF], state[SE], state[SX] if x_on else x, state[SI]
    gl, el, eex, ein, mdt, cm = p[P_GL], p[P_EL], p[P_EEX], p[P_EIN], -p[P_DT], p[P_CM]
    avg_e, avg_x, avg_i, own_x = p[P_AVG_EX], p[P_AVG_X], p[P_AVG_IN], p[P_OWN_X] != 0.0
    for j in range(np.uint64(lo), np.uint64(hi)):
        gex = se[j] * avg_e + sx[j] * avg_x if own_x else (se[j] + sx[j]) * avg_e
        gin = si[j] * avg_i
        gtot = gl + gex + gin
        v_inf = (gl * el + gex * eex + gin * ein + cur) / gtot
        _hold_refractory(v, ref, j, v_inf + (v[j] - v_inf) * _exp_vec(mdt * gtot / cm))
    _synapse_rows(state, lo, hi, p, e, i, x, x_on)
    return _threshold(state, lo, hi, p, fired)


@njit(cache=True, inline="always")
def lif_cond_euler_update(state, lo, hi, p, e, i, x, x_on, cur, fired) -> int:
    """lif_cond_exp with integration = "euler" for neurons lo..hi-1 (docs/models.md, section 2.3): forward Euler on
    V with the conductances at the step's start, which then decay by 1 - h / tau_s (P_PROP_*) and take the step's
    arrivals, as Brian2's COBA example integrates the model. Returns n, fired[:n] the neurons that spiked."""
    v, ref, se, sx, si = state[V], state[REF], state[SE], state[SX] if x_on else x, state[SI]
    gl, el, eex, ein, gain = p[P_GL], p[P_EL], p[P_EEX], p[P_EIN], p[P_CUR_GAIN]
    for j in range(np.uint64(lo), np.uint64(hi)):
        vj, gex = v[j], se[j] + sx[j]
        _hold_refractory(v, ref, j, vj + gain * (gl * (el - vj) + gex * (eex - vj) + si[j] * (ein - vj) + cur))
    _synapse_rows(state, lo, hi, p, e, i, x, x_on)
    return _threshold(state, lo, hi, p, fired)


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
        ie_mid = (state[SE, j] * half_e + state[SX, j] * math.sqrt(p[P_PROP_X]) if p[P_OWN_X]
                  else ie0 * half_e)
        v = state[V, j]
        k1 = _eif_dvdt(v, p, ie0 - ii0 + cur)
        vm = v + 0.5 * h * k1
        if vm >= p[P_VTH]:
            state[V, j] = vm
        else:
            state[V, j] = v + h * _eif_dvdt(vm, p, ie_mid - ii0 * half_i + cur)
    _synapses_step(state, j, p, e, i, x)
    return _fire(state, j, p)


@njit(cache=True, inline="always")
def _eif_rate(v, t, p, cur, se, sx, si) -> float:
    """eif dV/dt (mV/ms) at V = v, t ms after a point where the synaptic currents were se, sx, si (pA)."""
    isyn = se * math.exp(-t / p[P_TAU_E]) + sx * math.exp(-t / p[P_TAU_X]) - si * math.exp(-t / p[P_TAU_I])
    return _eif_dvdt(v, p, isyn + cur)


@njit(cache=True, inline="always")
def _eif_midpoint(s, v0, p, cur, se, sx, si) -> float:
    """The eif midpoint step of length s (ms) from V = v0 (section 2.4 of docs/models.md)."""
    vm = v0 + 0.5 * s * _eif_rate(v0, 0.0, p, cur, se, sx, si)
    return vm if vm >= p[P_VTH] else v0 + s * _eif_rate(vm, 0.5 * s, p, cur, se, sx, si)


@njit(cache=True)
def _eif_upswing(f, v0, p, cur, se, sx, si) -> tuple[float, float]:
    """The upswing, V rising: t(V) from dt/dV = 1 / (dV/dt), classical RK4 in V with steps of Delta_T / 4 (smooth
    where t(V) is: near V_peak dV/dt explodes, 1 / (dV/dt) vanishes). Returns (V, t): (V_peak, crossing time <= f),
    or (V(f), f) from the cubic Hermite interpolant of t(V) over the last V-step; (nan, 0) if dV/dt <= 0 on the way
    (then the step is taken in time)."""
    vpk, dv = p[P_VTH], 0.25 * p[P_DELTA_T]
    v, t = v0, 0.0
    g = _eif_rate(v, t, p, cur, se, sx, si)
    while v < vpk:
        h = min(dv, vpk - v)
        if g <= 0.0:
            return math.nan, 0.0
        k1 = 1.0 / g
        g2 = _eif_rate(v + 0.5 * h, t + 0.5 * h * k1, p, cur, se, sx, si)
        g3 = _eif_rate(v + 0.5 * h, t + 0.5 * h / g2, p, cur, se, sx, si) if g2 > 0.0 else -1.0
        if g2 <= 0.0 or g3 <= 0.0:
            return math.nan, 0.0
        g4 = _eif_rate(v + h, t + h / g3, p, cur, se, sx, si)
        if g4 <= 0.0:
            return math.nan, 0.0
        t1 = t + h / 6.0 * (k1 + 2.0 / g2 + 2.0 / g3 + 1.0 / g4)
        g1 = _eif_rate(v + h, t1, p, cur, se, sx, si)
        if t1 >= f:  # V(f) within this V-step: invert the Hermite cubic of t over it (monotone) by Newton
            m0, m1 = h * k1, h / g1 if g1 > 0.0 else h / g4
            x = (f - t) / (t1 - t)
            for _ in range(50):
                h00, h10 = 2 * x**3 - 3 * x**2 + 1, x**3 - 2 * x**2 + x
                h01, h11 = -2 * x**3 + 3 * x**2, x**3 - x**2
                val = h00 * t + h10 * m0 + h01 * t1 + h11 * m1 - f
                der = (6 * x**2 - 6 * x) * t + (3 * x**2 - 4 * x + 1) * m0 + (6 * x - 6 * x**2) * t1 \
                    + (3 * x**2 - 2 * x) * m1
                nxt = min(max(x - val / der, 0.0), 1.0) if der > 0.0 else x
                if abs(nxt - x) < 1e-15:
                    break
                x = nxt
            return v + x * h, f
        v, t, g = v + h, t1, g1
    return vpk, t


@njit(cache=True, inline="always")
def _eif_free(f, a, v0, p, cur, se, sx, si) -> tuple[float, float]:
    """eif over the free f ms of a step: on the upswing (V >= V_T, rising) with V as the variable
    (`_eif_upswing`, which places the crossing of V_peak), otherwise a midpoint step in time."""
    if v0 >= p[P_VT]:
        v1, s = _eif_upswing(f, v0, p, cur, se, sx, si)
        if not math.isnan(v1):
            return v1, s
    return _eif_midpoint(f, v0, p, cur, se, sx, si), f


@njit(cache=True, inline="always")
def eif_ps_step(state, j, p, e, i, x, cur) -> float:
    """eif with precise spike times (`_eif_free`). Returns the offset of the spike into the step (ms, in (0, dt])
    or -1; refractoriness ends off the grid."""
    return _ps_step(_eif_free, state, j, p, e, i, x, cur)


def _hh_rates_np(v: np.ndarray):
    xm, xn = (v + 40.0) / 10.0, (v + 55.0) / 10.0
    am = np.where(np.abs(xm) < 1e-7, 1.0 + 0.5 * xm, xm / -np.expm1(-xm))
    an = 0.1 * np.where(np.abs(xn) < 1e-7, 1.0 + 0.5 * xn, xn / -np.expm1(-xn))
    return (am, 4.0 * np.exp(-(v + 65.0) / 18.0), 0.07 * np.exp(-(v + 65.0) / 20.0),
            1.0 / (1.0 + np.exp(-(v + 35.0) / 10.0)), an, 0.125 * np.exp(-(v + 65.0) / 80.0))


@njit(cache=True, inline="always")
def _hh_consts(p) -> tuple:
    """hh's constants for `_hh_rhs`, read once per population step (loads from p inside the neuron loop keep it
    from vectorising): g_Na, g_K, g_L, E_Na, E_K, E_L, C_m."""
    return p[9], p[10], p[11], p[12], p[13], p[14], p[P_CM]


@njit(cache=True, inline="always")
def _hh_rhs(v, m, h, n, c, isyn) -> tuple[float, float, float, float]:
    """hh's dV/dt (mV/ms) and gate derivatives (1/ms) at (v, m, h, n) under the synaptic and external current
    isyn (pA); c = `_hh_consts`."""
    gna, gk, gl, ena, ek, el, cm = c
    am = _xexp_vec((v + 40.0) / 10.0)
    bm = 4.0 * _exp_vec(-(v + 65.0) / 18.0)
    ah = 0.07 * _exp_vec(-(v + 65.0) / 20.0)
    bh = 1.0 / (1.0 + _exp_vec(-(v + 35.0) / 10.0))
    an = 0.1 * _xexp_vec((v + 55.0) / 10.0)
    bn = 0.125 * _exp_vec(-(v + 65.0) / 80.0)
    i_ion = gna * (m * m * m) * h * (v - ena) + gk * ((n * n) * (n * n)) * (v - ek) + gl * (v - el)
    return (isyn - i_ion) / cm, am * (1.0 - m) - bm * m, ah * (1.0 - h) - bh * h, an * (1.0 - n) - bn * n


@njit(cache=True, inline="always")
def _rk4_hh(rhs, v, m, h, n, c, inputs, hs) -> tuple[float, float, float, float]:
    """One classical RK4 sub-step of hs ms of an HH point neuron's (V, m, h, n): derivatives rhs(v, m, h, n, c,
    input) with constants c and the synaptic input at the sub-step's start, middle and end (inputs[0:3])."""
    half = 0.5 * hs
    a_v, a_m, a_h, a_n = rhs(v, m, h, n, c, inputs[0])
    b_v, b_m, b_h, b_n = rhs(v + half * a_v, m + half * a_m, h + half * a_h, n + half * a_n, c, inputs[1])
    c_v, c_m, c_h, c_n = rhs(v + half * b_v, m + half * b_m, h + half * b_h, n + half * b_n, c, inputs[1])
    d_v, d_m, d_h, d_n = rhs(v + hs * c_v, m + hs * c_m, h + hs * c_h, n + hs * c_n, c, inputs[2])
    w = hs / 6.0
    return (v + w * (a_v + 2.0 * b_v + 2.0 * c_v + d_v), m + w * (a_m + 2.0 * b_m + 2.0 * c_m + d_m),
            h + w * (a_h + 2.0 * b_h + 2.0 * c_h + d_h), n + w * (a_n + 2.0 * b_n + 2.0 * c_n + d_n))


@njit(cache=True, inline="always")
def hh_update(state, lo, hi, p, e, i, x, x_on, cur, fired) -> int:
    """hh for neurons lo..hi-1 (docs/models.md, section 2.5): classical RK4 on (V, m, h, n) over p[19] sub-steps,
    the synaptic currents decaying exactly (the drive's with its own tau_syn_x when set, else with the excitatory
    one), one vectorised loop per sub-step; then the currents take the step's arrivals. A spike: an upward crossing
    of V_spike within the step. Returns n, fired[:n] the neurons that spiked."""
    v, m, h, n, se, si = state[V], state[GM], state[GH], state[GN], state[SE], state[SI]
    sx = state[SX] if x_on else x
    nsub = int(p[19])
    hs, c, own_x = p[P_DT] / nsub, _hh_consts(p), p[P_OWN_X] > 0.0
    u_lo, u_hi = np.uint64(lo), np.uint64(hi)
    v_start = v[lo:hi].copy()
    half_e, half_i, half_x = p[P_HALF_EX], p[P_HALF_IN], p[P_HALF_X]
    # the currents' decay from the step's start to a sub-step's start, middle and end
    de, di, dx = (1.0, half_e, half_e * half_e), (1.0, half_i, half_i * half_i), (1.0, half_x, half_x * half_x)
    for _ in range(nsub):
        for j in range(u_lo, u_hi):
            ie = se[j] if own_x else se[j] + sx[j]
            ix = sx[j] if own_x else 0.0
            s = (ie * de[0] + ix * dx[0] - si[j] * di[0] + cur, ie * de[1] + ix * dx[1] - si[j] * di[1] + cur,
                 ie * de[2] + ix * dx[2] - si[j] * di[2] + cur)
            v[j], m[j], h[j], n[j] = _rk4_hh(_hh_rhs, v[j], m[j], h[j], n[j], c, s, hs)
        de = (de[2], de[2] * half_e, de[2] * half_e * half_e)
        di = (di[2], di[2] * half_i, di[2] * half_i * half_i)
        dx = (dx[2], dx[2] * half_x, dx[2] * half_x * half_x)
    _decay_row(se, lo, hi, p[P_STEP_EX], e)
    _decay_row(si, lo, hi, p[P_STEP_IN], i)
    if x_on:
        _decay_row(sx, lo, hi, p[P_STEP_X], x)
    count = 0
    v_spike = p[17]
    for j in range(lo, hi):
        if v_start[j - lo] < v_spike <= v[j]:
            fired[count] = j
            count += 1
    return count


@njit(cache=True, inline="always", error_model="numpy")
def _xexp_vec(x: float) -> float:
    """x / (1 - exp(-x)), continuous at 0 (1 + x / 2 for |x| < 1e-7), without a branch or libm call."""
    series, ratio = 1.0 + 0.5 * x, x / (1.0 - _exp_vec(-x))
    return series if abs(x) < 1e-7 else ratio


@njit(cache=True, inline="always")
def _traub_rates(u):
    """Traub & Miles (1991) rates (1/ms) at u = V - V_T (mV), as in Brette et al. (2007) benchmark 3:
    alpha_m, beta_m, alpha_h, beta_h, alpha_n, beta_n."""
    return (1.28 * _xexp_vec((u - 13.0) / 4.0), 1.4 * _xexp_vec((40.0 - u) / 5.0),
            0.128 * _exp_vec((17.0 - u) / 18.0), 4.0 / (1.0 + _exp_vec((40.0 - u) / 5.0)),
            0.16 * _xexp_vec((u - 15.0) / 5.0), 0.5 * _exp_vec((10.0 - u) / 40.0))


@njit(cache=True, error_model="numpy")
def _traub_steady(u: np.ndarray) -> np.ndarray:
    """Steady-state gates (3, len(u)): m, h, n at u = V - V_T (mV)."""
    out = np.empty((3, u.size))
    for k in range(u.size):
        am, bm, ah, bh, an, bn = _traub_rates(u[k])
        out[0, k], out[1, k], out[2, k] = am / (am + bm), ah / (ah + bh), an / (an + bn)
    return out


@njit(cache=True, inline="always")
def _gate(x, a, b, h):
    """Exponential Euler for dx/dt = a (1 - x) - b x over h ms (exact for constant rates a, b)."""
    s = a + b
    x_inf = a / s
    return x_inf + (x - x_inf) * _exp_vec(-h * s)


@njit(cache=True, inline="always")
def _traub_v(v, m, h, n, gex, gin, p, cur, hs) -> float:
    """hh_cond_exp_traub: V after an exponential-Euler sub-step of hs ms with the gates and the conductances
    gex, gin (nS) held."""
    gl, gna, gk = p[P_GL], p[P_GNA] * m * m * m * h, p[P_GK] * (n * n) * (n * n)
    gtot = gl + gex + gin + gna + gk
    vinf = (gl * p[P_EL] + gex * p[P_EEX] + gin * p[P_EIN] + gna * p[P_ENA] + gk * p[P_EK] + cur) / gtot
    return vinf + (v - vinf) * _exp_vec(-hs * gtot / p[P_CM])


@njit(cache=True, inline="always")
def hh_traub_update(state, lo, hi, p, e, i, x, x_on, cur, fired) -> int:
    """hh_cond_exp_traub for neurons lo..hi-1 (docs/models.md, section 2.8): exponential Euler (Brian2's
    `exponential_euler`, first order) on V, m, h, n over p[P_NSUB] sub-steps, each variable linear in itself with
    the others held at the sub-step's start; the conductances enter as their exact means over the sub-step, then
    decay exactly and take the step's arrivals. A spike: V > V_spike while not refractory (no reset). Per sub-step
    two vectorised loops (V into a scratch row, the gates from the old V), `_exp_vec` for every exponential.
    Returns n, fired[:n] the neurons that spiked."""
    v, m, h, n = state[V], state[GM], state[GH], state[GN]
    se, sx, si = state[SE], state[SX] if x_on else x, state[SI]
    nsub = int(p[P_NSUB])
    hs, vt = p[P_DT] / nsub, p[P_VT]
    u_lo, u_hi = np.uint64(lo), np.uint64(hi)
    v_new = np.empty(hi - lo)
    avg_e, avg_x, avg_i = p[P_AVG_EX], p[P_AVG_X], p[P_AVG_IN]  # times the decay since the step's start
    for _ in range(nsub):
        for j in range(u_lo, u_hi):
            v_new[j - u_lo] = _traub_v(v[j], m[j], h[j], n[j], se[j] * avg_e + sx[j] * avg_x, si[j] * avg_i, p,
                                       cur, hs)
        for j in range(u_lo, u_hi):
            am, bm, ah, bh, an, bn = _traub_rates(v[j] - vt)
            m[j], h[j], n[j] = _gate(m[j], am, bm, hs), _gate(h[j], ah, bh, hs), _gate(n[j], an, bn, hs)
        for j in range(u_lo, u_hi):
            v[j] = v_new[j - u_lo]
        avg_e, avg_x, avg_i = avg_e * p[P_SUB_EX], avg_x * p[P_SUB_X], avg_i * p[P_SUB_IN]
    _synapse_rows(state, lo, hi, p, e, i, x, x_on)
    return _traub_spikes(state, lo, hi, p, fired)


@njit(cache=True, inline="always")
def _traub_spikes(state, lo, hi, p, fired) -> int:
    """hh_cond_exp_traub's spikes after a step: V > V_spike while not refractory, which then starts; returns n,
    fired[:n] the neurons that spiked."""
    v, ref = state[V], state[REF]
    v_spike, ref_steps = p[P_VTH], p[P_REFSTEPS]
    count = 0
    for j in range(lo, hi):
        r = ref[j] - 1.0 if ref[j] > 0 else ref[j]
        if v[j] > v_spike and r <= 0:
            r = ref_steps
            fired[count] = j
            count += 1
        ref[j] = r
    return count


@njit(cache=True, inline="always")
def _traub_consts(p, cur) -> tuple:
    """hh_cond_exp_traub's constants for `_traub_rhs`, read once per population step (loads from p inside the
    neuron loop keep it from vectorising): g_L, E_L, E_ex, E_in, g_Na, E_Na, g_K, E_K, C_m, V_T and the current
    cur (pA)."""
    return (p[P_GL], p[P_EL], p[P_EEX], p[P_EIN], p[P_GNA], p[P_ENA], p[P_GK], p[P_EK], p[P_CM], p[P_VT], cur)


@njit(cache=True, inline="always")
def _traub_rhs(v, m, h, n, c, g) -> tuple[float, float, float, float]:
    """hh_cond_exp_traub's dV/dt (mV/ms) and dm/dt, dh/dt, dn/dt (1/ms) at (v, m, h, n) with conductances
    g = (g_E, g_I) (nS); c = `_traub_consts`."""
    gl, el, eex, ein, gna, ena, gk, ek, cm, vt, cur = c
    ge, gi = g
    am, bm, ah, bh, an, bn = _traub_rates(v - vt)
    i_ion = (gl * (el - v) + ge * (eex - v) + gi * (ein - v) + gna * (m * m * m) * h * (ena - v)
             + gk * ((n * n) * (n * n)) * (ek - v))
    return (i_ion + cur) / cm, am * (1.0 - m) - bm * m, ah * (1.0 - h) - bh * h, an * (1.0 - n) - bn * n


@njit(cache=True, inline="always")
def hh_traub_rk4_update(state, lo, hi, p, e, i, x, x_on, cur, fired) -> int:
    """hh_cond_exp_traub with integration = "rk4" for neurons lo..hi-1 (docs/models.md, section 2.8): classical
    RK4 on (V, m, h, n) over p[P_NSUB] sub-steps, the conductances decaying exactly within each; then they take
    the step's arrivals, and the spikes as `hh_traub_update`. One vectorised loop per sub-step."""
    v, m, h, n = state[V], state[GM], state[GH], state[GN]
    se, sx, si = state[SE], state[SX] if x_on else x, state[SI]
    nsub = int(p[P_NSUB])
    hs, c = p[P_DT] / nsub, _traub_consts(p, cur)
    # the conductances' decay from the step's start to a sub-step's start, middle and end
    de, dx, di = (1.0, p[P_HALF_EX], p[P_SUB_EX]), (1.0, p[P_HALF_X], p[P_SUB_X]), (1.0, p[P_HALF_IN], p[P_SUB_IN])
    for _ in range(nsub):
        for j in range(np.uint64(lo), np.uint64(hi)):
            g = ((se[j] * de[0] + sx[j] * dx[0], si[j] * di[0]), (se[j] * de[1] + sx[j] * dx[1], si[j] * di[1]),
                 (se[j] * de[2] + sx[j] * dx[2], si[j] * di[2]))
            v[j], m[j], h[j], n[j] = _rk4_hh(_traub_rhs, v[j], m[j], h[j], n[j], c, g, hs)
        de = (de[2], de[2] * p[P_HALF_EX], de[2] * p[P_SUB_EX])
        dx = (dx[2], dx[2] * p[P_HALF_X], dx[2] * p[P_SUB_X])
        di = (di[2], di[2] * p[P_HALF_IN], di[2] * p[P_SUB_IN])
    _synapse_rows(state, lo, hi, p, e, i, x, x_on)
    return _traub_spikes(state, lo, hi, p, fired)


@njit(cache=True, error_model="numpy")
def update_population(model, state, lo, hi, p, e, i, x, x_on, cur, fired, offsets) -> int:
    """Step neurons lo..hi-1 of one population; returns n, with fired[:n] the neurons that spiked (and, for the
    precise models, offsets[:n] their spike times into the step, ms). x_on false: the external synaptic variable
    (state[SX]) and its input x are all zero, so the vectorised updates skip it (x then stands in for state[SX]).

    One tight loop per model: the model test stays outside the loop, so each loop inlines its
    kernel (a per-neuron dispatch, or a store per neuron, costs several times the update itself).
    lif_delta, lif_exp, lif_cond_exp, hh and hh_cond_exp_traub update in loops numba vectorises (`*_update`).
    Divisions follow IEEE (numpy's error model: no zero test per division, which would keep loops scalar);
    no divisor here can be zero for a valid config.
    """
    n = 0
    if model == LIF_DELTA:
        n = lif_delta_update(state, lo, hi, p, e, i, x, cur, fired)
    elif model == LIF_EXP:
        n = lif_exp_update(state, lo, hi, p, e, i, x, x_on, cur, fired)
    elif model == LIF_COND_EXP:
        n = lif_cond_exp_update(state, lo, hi, p, e, i, x, x_on, cur, fired)
    elif model == LIF_COND_EULER:
        n = lif_cond_euler_update(state, lo, hi, p, e, i, x, x_on, cur, fired)
    elif model == EIF:
        for j in range(lo, hi):
            if eif_step(state, j, p, e[j], i[j], x[j], cur):
                fired[n] = j
                n += 1
    elif model == HH:
        n = hh_update(state, lo, hi, p, e, i, x, x_on, cur, fired)
    elif model == HH_TRAUB:
        n = hh_traub_update(state, lo, hi, p, e, i, x, x_on, cur, fired)
    elif model == HH_TRAUB_RK4:
        n = hh_traub_rk4_update(state, lo, hi, p, e, i, x, x_on, cur, fired)
    elif model == LIF_DELTA_PS:
        for j in range(lo, hi):
            o = lif_delta_ps_step(state, j, p, e[j], i[j], x[j], cur)
            if o >= 0.0:
                fired[n], offsets[n] = j, o
                n += 1
    elif model == LIF_EXP_PS:
        for j in range(lo, hi):
            o = lif_exp_ps_step(state, j, p, e[j], i[j], x[j], cur)
            if o >= 0.0:
                fired[n], offsets[n] = j, o
                n += 1
    else:
        for j in range(lo, hi):
            o = eif_ps_step(state, j, p, e[j], i[j], x[j], cur)
            if o >= 0.0:
                fired[n], offsets[n] = j, o
                n += 1
    return n


@njit(cache=True)
def probe(model, state, j, p, e, i, x, cur, out) -> None:
    """Write V (mV) and E, I, external input (mV/ms) of neuron j after its step into out[0:4]."""
    out[0] = state[V, j]
    cm = p[P_CM]
    if model in (LIF_DELTA, LIF_DELTA_PS):
        dt = p[P_DT]
        out[1], out[2], out[3] = e / dt, -i / dt, x / dt + cur / cm
    elif model in (LIF_COND_EXP, LIF_COND_EULER, HH_TRAUB, HH_TRAUB_RK4):
        v = state[V, j]
        out[1] = state[SE, j] * (p[P_EEX] - v) / cm
        out[2] = state[SI, j] * (p[P_EIN] - v) / cm
        out[3] = (state[SX, j] * (p[P_EEX] - v) + cur) / cm
    else:
        out[1], out[2], out[3] = state[SE, j] / cm, -state[SI, j] / cm, (state[SX, j] + cur) / cm
