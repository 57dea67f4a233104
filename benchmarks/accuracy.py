"""Accuracy beside speed: the error of each integration scheme on one neuron under a fixed input.

For each model (lif_exp: the CUBA neuron, lif_cond_exp: the COBA neuron, hh: the squid axon,
hh_cond_exp_traub: the COBAHH neuron; Brette et al. 2007) one neuron gets the same fixed input in
every simulator: a constant current and fixed trains of excitatory and inhibitory input spikes
(times on a 0.1 ms grid, drawn once from a seeded generator). The reference solves the model's
equations with scipy's solve_ivp (DOP853, rtol = atol = 1e-10), piecewise between the input
spikes, with events at the threshold (LIF: reset, then V held for t_ref) or at the spike criterion
(HH: the upward crossing of V_spike and the peak of V). Against it, at dt = 0.1 and 0.01 ms:

    v_rms_mv      RMS error of V over every sample of the run, mV
    v_rms_pre_mv  the same before the first spike of either (the integration error alone)
    spike_*       spike times against the reference's (nearest within 2 ms, one to one):
                  mean |error|, max |error| and mean error (bias), ms; missing and extra spikes

Schemes: eilab's (every model's grid scheme; the precise spike times of lif_exp; hh with RK4 over
sub-steps of 0.01 ms and of dt; hh_cond_exp_traub with 1 and 10 exponential-Euler sub-steps),
NEST 3.10's (iaf_psc_exp: exact integration; iaf_cond_exp, hh_psc_alpha, hh_cond_exp_traub:
adaptive RKF45 from GSL) and Brian2 2.9's (its default state updater: exact for lif_exp, as its
CUBA.py asks, and euler for the others, as its COBA script asks; and exponential_euler, which its
COBAHH.py and HH examples ask for, for the others). NEST's HH models
detect a spike at the peak of V, the others at the upward crossing: each is compared with the
reference's spikes of its own kind. A simulator's time convention for input spikes is checked on
its recorded synaptic variable (it must jump at the input time), so the errors are the schemes'.

The peers run in .venv-peers (benchmarks/peers/README.md) through peers/accuracy_nest.py and
peers/accuracy_brian2.py; without it (or with --only eilab) only eilab's schemes are measured.

    python benchmarks/accuracy.py                 # everything; prints one JSON object
    python benchmarks/accuracy.py --only eilab --models lif_exp hh
    python benchmarks/accuracy.py --markdown      # the table of benchmarks/README.md
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

from eilab.sim import models
from eilab.sim.config import Population

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RTOL = ATOL = 1e-10
MATCH_MS = 2.0          # spikes further apart than this are not the same spike
INPUT_GRID_MS = 0.1     # input spike times lie on this grid (so on every dt tested)
DTS = (0.1, 0.01)


# ---------------------------------------------------------------- the problems
@dataclass(frozen=True)
class Problem:
    """One neuron, its parameters (eilab's names and units: mV, ms, pF, nS, pA), its initial V and
    fixed input: trains of input spikes (ms; each moves the synaptic variable by e_w / i_w)."""

    model: str
    params: dict
    v0: float
    t_ms: float
    e_rate_hz: float = 0.0
    e_w: float = 0.0
    i_rate_hz: float = 0.0
    i_w: float = 0.0
    seed: int = 7
    e_times: tuple[float, ...] = field(init=False)
    i_times: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        object.__setattr__(self, "e_times", _train(rng, self.e_rate_hz, self.t_ms))
        object.__setattr__(self, "i_times", _train(rng, self.i_rate_hz, self.t_ms))

    @property
    def is_lif(self) -> bool:
        return self.model.startswith("lif")

    def spec(self, dt: float, method: str | None = None) -> dict:
        """What a peer script needs to run this problem at step dt (JSON)."""
        return {"model": self.model, "params": full_params(self), "v0": self.v0, "gates": gates0(self),
                "t_ms": self.t_ms, "dt": dt, "e_times": list(self.e_times), "e_w": self.e_w,
                "i_times": list(self.i_times), "i_w": self.i_w, "method": method}


def _train(rng: np.random.Generator, rate_hz: float, t_ms: float) -> tuple[float, ...]:
    """Poisson input times at rate_hz in [1 ms, t_ms), on the INPUT_GRID_MS grid (ms)."""
    n_grid = round(t_ms / INPUT_GRID_MS)
    idx = np.unique(rng.integers(round(1.0 / INPUT_GRID_MS), n_grid, rng.poisson(rate_hz * t_ms / 1000.0)))
    return tuple(float(k) * INPUT_GRID_MS for k in idx)


CUBA = {"C_m": 200.0, "tau_m": 20.0, "E_L": -49.0, "V_th": -50.0, "V_reset": -60.0, "t_ref": 5.0,
        "tau_syn_ex": 5.0, "tau_syn_in": 10.0}
COBA = {"C_m": 200.0, "g_L": 10.0, "E_L": -60.0, "V_th": -50.0, "V_reset": -60.0, "t_ref": 5.0,
        "E_ex": 0.0, "E_in": -80.0, "tau_syn_ex": 5.0, "tau_syn_in": 10.0, "I_e": 120.0}
PROBLEMS = {
    # configs/cuba.toml's neuron (E_L above threshold: it fires on its own), its weights x 3
    "lif_exp": Problem("lif_exp", CUBA, v0=-60.0, t_ms=500.0, e_rate_hz=400.0, e_w=48.6, i_rate_hz=60.0, i_w=90.0),
    # configs/coba.toml's neuron with 120 pA (V_inf = -48 mV) and its weights
    "lif_cond_exp": Problem("lif_cond_exp", COBA, v0=-60.0, t_ms=500.0, e_rate_hz=400.0, e_w=6.0,
                            i_rate_hz=30.0, i_w=67.0),
    # the squid axon under a constant current (NEST has no hh with exponential currents: current only)
    "hh": Problem("hh", {"I_e": 1000.0}, v0=-65.0, t_ms=300.0),
    # configs/cobahh.toml's neuron with its weights and a small current
    "hh_cond_exp_traub": Problem("hh_cond_exp_traub", {"I_e": 20.0}, v0=-65.0, t_ms=300.0, e_rate_hz=400.0,
                                 e_w=6.0, i_rate_hz=30.0, i_w=67.0),
}


def full_params(pb: Problem) -> dict:
    """The problem's parameters with eilab's defaults filled in."""
    return Population(name="N", n=1, type="E", model=pb.model, params=pb.params).params


def gates0(pb: Problem) -> list[float] | None:
    """HH gates m, h, n at t = 0: their steady state at v0 (eilab's initial state)."""
    pop = Population(name="N", n=1, type="E", model=pb.model, params=pb.params)
    extra = models.initial_extra_state(pop, np.array([pb.v0]))
    return [float(extra[g][0]) for g in (models.GM, models.GH, models.GN)] if extra else None


# ---------------------------------------------------------------- the reference
def _squid_rates(v: float) -> tuple[float, ...]:
    """Hodgkin & Huxley (1952) rates (1/ms) at V (mV, rest -65), as docs/models.md writes them."""
    xm, xn = (v + 40.0) / 10.0, (v + 55.0) / 10.0
    am = 1.0 + 0.5 * xm if abs(xm) < 1e-7 else xm / -math.expm1(-xm)
    an = 0.1 * (1.0 + 0.5 * xn if abs(xn) < 1e-7 else xn / -math.expm1(-xn))
    return (am, 4.0 * math.exp(-(v + 65.0) / 18.0), 0.07 * math.exp(-(v + 65.0) / 20.0),
            1.0 / (1.0 + math.exp(-(v + 35.0) / 10.0)), an, 0.125 * math.exp(-(v + 65.0) / 80.0))


def _traub_rates(u: float) -> tuple[float, ...]:
    """Traub & Miles rates (1/ms) at u = V - V_T (mV), Brette et al. (2007) benchmark 3."""
    def ratio(x: float) -> float:  # x / (exp(x) - 1)
        return 1.0 - 0.5 * x if abs(x) < 1e-7 else x / math.expm1(x)

    return (1.28 * ratio((13.0 - u) / 4.0), 1.4 * ratio((u - 40.0) / 5.0), 0.128 * math.exp((17.0 - u) / 18.0),
            4.0 / (1.0 + math.exp((40.0 - u) / 5.0)), 0.16 * ratio((15.0 - u) / 5.0), 0.5 * math.exp((10.0 - u) / 40.0))


def rhs_for(pb: Problem) -> Callable[[float, np.ndarray, bool], list[float]]:
    """The model's right-hand side f(t, y, held) in ms units; y = (V, [m, h, n,] E, I synaptic variable);
    held: V is held (refractory)."""
    p = full_params(pb)
    te, ti, cm, i_e = p["tau_syn_ex"], p["tau_syn_in"], p["C_m"], p["I_e"]

    def gates(rates: tuple[float, ...], m: float, h: float, n: float) -> list[float]:
        am, bm, ah, bh, an, bn = rates
        return [am * (1 - m) - bm * m, ah * (1 - h) - bh * h, an * (1 - n) - bn * n]

    def f(_t: float, y: np.ndarray, held: bool) -> list[float]:
        v, se, si = y[0], y[-2], y[-1]
        syn = [-se / te, -si / ti]
        if pb.model == "lif_exp":
            dv = (p["E_L"] - v) / p["tau_m"] + (se - si + i_e) / cm
        elif pb.model == "lif_cond_exp":
            dv = (p["g_L"] * (p["E_L"] - v) + se * (p["E_ex"] - v) + si * (p["E_in"] - v) + i_e) / cm
        else:
            m, h, n = y[1:4]
            ion = p["g_Na"] * m**3 * h * (v - p["E_Na"]) + p["g_K"] * n**4 * (v - p["E_K"]) + p["g_L"] * (v - p["E_L"])
            if pb.model == "hh":
                dv, rates = (se - si + i_e - ion) / cm, _squid_rates(v)
            else:
                dv = (se * (p["E_ex"] - v) + si * (p["E_in"] - v) + i_e - ion) / cm
                rates = _traub_rates(v - p["V_T"])
            return [dv, *gates(rates, m, h, n), *syn]
        return [0.0 if held else dv, *syn]

    return f


@dataclass
class Reference:
    """The reference solution: V on pieces [starts[k], starts[k + 1]) and the spikes of each kind."""

    starts: list[float]
    pieces: list[Callable]
    crossings: np.ndarray   # LIF: threshold crossings (spikes); HH: upward crossings of V_spike
    peaks: np.ndarray       # HH: maxima of V above the peak criterion (NEST's spikes)

    def v(self, t: np.ndarray) -> np.ndarray:
        """V (mV) at times t (ms), right-continuous at resets."""
        k = np.searchsorted(np.asarray(self.starts), t, side="right") - 1
        out = np.empty(t.size)
        for piece in np.unique(k):
            sel = k == piece
            out[sel] = self.pieces[piece](t[sel])[0]
        return out


def _inputs(pb: Problem) -> dict[int, tuple[float, float]]:
    """Input spikes by grid index: (excitatory, inhibitory) jump."""
    jumps: dict[int, tuple[float, float]] = {}
    for times, w, col in ((pb.e_times, pb.e_w, 0), (pb.i_times, pb.i_w, 1)):
        for t in times:
            k = round(t / INPUT_GRID_MS)
            e, i = jumps.get(k, (0.0, 0.0))
            jumps[k] = (e + w, i) if col == 0 else (e, i + w)
    return jumps


def reference(pb: Problem) -> Reference:
    """Solve the problem with solve_ivp (DOP853, RTOL, ATOL) piece by piece between input spikes, spikes
    and ends of refractoriness."""
    p = full_params(pb)
    f = rhs_for(pb)
    y = np.array([pb.v0, *(gates0(pb) or []), 0.0, 0.0])
    jump_at = {k * INPUT_GRID_MS: jump for k, jump in _inputs(pb).items()}  # the stops below, exactly
    stops = sorted(set(jump_at) | {pb.t_ms})
    v_spike = p.get("V_th", p.get("V_spike"))
    v_peak = 0.0 if pb.model == "hh" else p.get("V_T", 0.0) + 30.0  # NEST: hh_psc_alpha 0 mV, traub V_T + 30 mV

    def cross(_t: float, yy: np.ndarray, *_: bool) -> float:
        return yy[0] - v_spike

    def top(t: float, yy: np.ndarray, *_: bool) -> float:
        return f(t, yy, False)[0] if yy[0] > v_peak else 1.0

    cross.terminal, cross.direction = pb.is_lif, 1.0
    top.direction = -1.0
    starts, pieces, crossings, peaks = [], [], [], []
    t, held_until = 0.0, -1.0
    while t < pb.t_ms:
        held = t < held_until
        t_next = min([s for s in stops if s > t] + ([held_until] if held else []))
        events = [] if held else [cross] + ([] if pb.is_lif else [top])
        sol = solve_ivp(f, (t, t_next), y, method="DOP853", rtol=RTOL, atol=ATOL, dense_output=True,
                        events=events, args=(held,))
        if sol.status != 0 and sol.status != 1:
            raise RuntimeError(f"reference for {pb.model}: solve_ivp failed at t = {t} ms: {sol.message}")
        starts.append(t)
        pieces.append(sol.sol)
        if not held:
            crossings.extend(sol.t_events[0])
            if not pb.is_lif:
                peaks.extend(sol.t_events[1])
        if sol.status == 1:  # LIF threshold: reset, V held for t_ref
            t, y = float(sol.t_events[0][0]), sol.y_events[0][0].copy()
            y[0] = p["V_reset"]
            held_until = t + p["t_ref"]
            continue
        t, y = t_next, sol.y[:, -1].copy()
        e, i = jump_at.get(t, (0.0, 0.0))
        y[-2] += e
        y[-1] += i
    return Reference(starts, pieces, np.asarray(crossings), np.asarray(peaks))


# ---------------------------------------------------------------- eilab
EILAB_SCHEMES: dict[str, list[tuple[str, dict, str]]] = {
    # (label, Population fields, how it is integrated)
    "lif_exp": [("grid", {}, "exact integration, spikes on the grid"),
                ("precise", {"spike_times": "precise"}, "exact integration, spike times inside the step")],
    "lif_cond_exp": [("grid", {}, "exponential Euler on V with the conductances' exact step means")],
    "hh": [("rk4 sub 0.01 ms", {}, "classical RK4, 0.01 ms sub-steps (default)"),
           ("rk4 sub dt", {"params": {"dt_sub": "dt"}}, "classical RK4, one step per dt")],
    "hh_cond_exp_traub": [("exp-euler", {}, "exponential Euler (default: 1 sub-step)"),
                          ("exp-euler x10", {"params": {"n_sub": 10}}, "exponential Euler, 10 sub-steps"),
                          ("rk4", {"params": {"integration": "rk4"}}, "classical RK4, one step per dt"),
                          ("rk4 x2", {"params": {"integration": "rk4", "n_sub": 2}}, "classical RK4, 2 sub-steps"),
                          ("rk4 x3", {"params": {"integration": "rk4", "n_sub": 3}}, "classical RK4, 3 sub-steps"),
                          ("rk4 x4", {"params": {"integration": "rk4", "n_sub": 4}}, "classical RK4, 4 sub-steps")],
}


def run_eilab(pb: Problem, dt: float, fields: dict) -> dict:
    """One neuron through eilab's update kernel (float64 state, no storage): V after every step and the
    spike times. An input spike at T (ms) is given to the step ending at T, so its jump lands at T."""
    params = {**pb.params, **{k: (dt if v == "dt" else v) for k, v in fields.get("params", {}).items()}}
    pop = Population(name="N", n=1, type="E", model=pb.model, params=params,
                     spike_times=fields.get("spike_times", "grid"))
    p = models.parameter_vector(pop, dt)
    mid = models.model_id(pop)
    state = np.zeros((models.N_STATE, 1))
    state[models.V, 0] = pb.v0
    for row, value in models.initial_extra_state(pop, np.array([pb.v0])).items():
        state[row, 0] = value[0]
    n = round(pb.t_ms / dt)
    e, i = np.zeros(n), np.zeros(n)
    for times, w, arr in ((pb.e_times, pb.e_w, e), (pb.i_times, pb.i_w, i)):
        for t in times:
            arr[round(t / dt) - 1] += w
    x, fired, offsets = np.zeros(1), np.zeros(1, np.int64), np.zeros(1)
    v, spikes = np.empty(n), []
    cur = p[models.P_IE]
    for k in range(n):
        if models.update_population(mid, state, 0, 1, p, e[k:k + 1], i[k:k + 1], x, True, cur, fired, offsets):
            spikes.append(k * dt + offsets[0] if mid in models.PRECISE_IDS.values() else (k + 1) * dt)
        v[k] = state[models.V, 0]
    return {"t": np.arange(1, n + 1) * dt, "v": v, "spikes": np.asarray(spikes)}


# ---------------------------------------------------------------- peers
def run_peer(simulator: str, pb: Problem, dt: float, method: str | None, python: Path) -> dict:
    """Run peers/accuracy_<simulator>.py on the problem; returns its samples, spikes and facts."""
    with tempfile.TemporaryDirectory(prefix="eilab-accuracy-") as tmp:
        spec, out = Path(tmp) / "spec.json", Path(tmp) / "out.npz"
        spec.write_text(json.dumps(pb.spec(dt, method)))
        res = subprocess.run([str(python), str(HERE / "peers" / f"accuracy_{simulator}.py"), str(spec), str(out)],
                             capture_output=True, text=True, cwd=ROOT, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"accuracy_{simulator}.py ({pb.model}, dt {dt}) failed:\n{res.stderr[-3000:]}")
        with np.load(out) as z:
            data = {k: z[k] for k in z.files}
    data["info"] = json.loads(str(data["info"]))
    check_input_timing(pb, data, f"{simulator} {pb.model} dt {dt}")
    return data


def check_input_timing(pb: Problem, data: dict, what: str) -> None:
    """The recorded excitatory synaptic variable must be 0 one step before the first input time and
    about e_w at it: the input lands when the reference has it land (else the peer script is wrong)."""
    if not pb.e_times:
        return
    t, syn = data["t"], data["syn"]
    t1 = pb.e_times[0]
    before, at = np.argmin(np.abs(t - (t1 - data["info"]["dt"]))), np.argmin(np.abs(t - t1))
    if not (abs(syn[before]) < 1e-9 * pb.e_w and abs(syn[at] / pb.e_w - 1.0) < 0.05):
        raise RuntimeError(f"{what}: input at {t1} ms not seen at {t1} ms (synaptic variable "
                           f"{syn[before]:g} one step before, {syn[at]:g} at it; expected 0, {pb.e_w})")


PEER_SCHEMES: dict[str, list[tuple[str, str | None]]] = {
    # (simulator, Brian2 method or None: NEST's own, or Brian2's default choice: exact for lif_exp, as
    # Brian2's CUBA.py asks ("linear"); euler for the others, which COBA's script asks for; COBAHH.py and
    # Brian2's HH examples ask for exponential_euler)
    "lif_exp": [("nest", None), ("brian2", None)],
    "lif_cond_exp": [("nest", None), ("brian2", None), ("brian2", "exponential_euler")],
    "hh": [("nest", None), ("brian2", None), ("brian2", "exponential_euler")],
    "hh_cond_exp_traub": [("nest", None), ("brian2", None), ("brian2", "exponential_euler")],
}


# ---------------------------------------------------------------- errors
def spike_errors(ref: np.ndarray, sim: np.ndarray) -> dict:
    """Match each reference spike to the nearest unused simulated one within MATCH_MS; the errors (ms)."""
    used = np.zeros(sim.size, bool)
    diffs = []
    for t in ref:
        if sim.size == 0:
            break
        k = int(np.argmin(np.where(used, np.inf, np.abs(sim - t))))
        if not used[k] and abs(sim[k] - t) <= MATCH_MS:
            used[k] = True
            diffs.append(sim[k] - t)
    d = np.asarray(diffs)
    return {"spikes_ref": int(ref.size), "spikes_matched": int(d.size), "spikes_missing": int(ref.size - d.size),
            "spikes_extra": int(sim.size - d.size),
            "spike_mean_abs_ms": float(np.abs(d).mean()) if d.size else None,
            "spike_max_abs_ms": float(np.abs(d).max()) if d.size else None,
            "spike_bias_ms": float(d.mean()) if d.size else None}


def errors(pb: Problem, ref: Reference, t: np.ndarray, v: np.ndarray, spikes: np.ndarray, peak: bool) -> dict:
    """Voltage and spike-time errors of one simulated trace (samples v at times t) against the reference."""
    keep = (t > 0.0) & (t <= pb.t_ms + 1e-9)
    t, v = t[keep], v[keep]
    diff = v - ref.v(t)
    spikes = spikes[spikes <= pb.t_ms + 1e-9]
    pre = t < min(ref.crossings[:1].tolist() + ref.peaks[:1].tolist() + spikes[:1].tolist() + [math.inf])
    out = {"v_rms_mv": float(np.sqrt(np.mean(diff**2))),
           "v_rms_pre_mv": float(np.sqrt(np.mean(diff[pre]**2))) if pre.any() else None,
           "spike_kind": "peak" if peak else "crossing"}
    if not np.all(np.isfinite(v)):
        out["diverged"] = True
    return out | spike_errors(ref.peaks if peak else ref.crossings, spikes)


# ---------------------------------------------------------------- main
def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2g}"


def markdown(rows: list[dict]) -> str:
    """The rows as the table of benchmarks/README.md."""
    lines = ["| model | simulator: scheme | dt, ms | V RMS, mV (before 1st spike) | spike error mean / max, ms "
             "| missing / extra |", "|---|---|---|---|---|---|"]
    for r in rows:
        v = "diverged" if r.get("diverged") else f"{_fmt(r['v_rms_mv'])} ({_fmt(r['v_rms_pre_mv'])})"
        lines.append(f"| {r['model']} | {r['simulator']}: {r['scheme']} | {r['dt_ms']:g} | {v} "
                     f"| {_fmt(r['spike_mean_abs_ms'])} / {_fmt(r['spike_max_abs_ms'])} "
                     f"| {r['spikes_missing']} / {r['spikes_extra']} of {r['spikes_ref']} |")
    return "\n".join(lines)


def measure(name: str, only: list[str], peers_python: Path) -> list[dict]:
    """Every scheme of every simulator in `only` on problem `name`, at each of DTS."""
    pb = PROBLEMS[name]
    ref = reference(pb)
    rows = []
    for dt in DTS:
        if "eilab" in only:
            for label, fields, how in EILAB_SCHEMES[name]:
                r = run_eilab(pb, dt, fields)
                rows.append({"model": name, "simulator": "eilab", "scheme": label, "how": how, "dt_ms": dt,
                             **errors(pb, ref, r["t"], r["v"], r["spikes"], peak=False)})
        for sim, method in PEER_SCHEMES[name]:
            if sim not in only:
                continue
            r = run_peer(sim, pb, dt, method, peers_python)
            rows.append({"model": name, "simulator": sim, "scheme": r["info"]["scheme"], "how": r["info"]["how"],
                         "dt_ms": dt, **errors(pb, ref, r["t"], r["v"], r["spikes"], peak=r["info"]["peak"])})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    ap.add_argument("--only", nargs="+", choices=["eilab", "nest", "brian2"], default=["eilab", "nest", "brian2"])
    ap.add_argument("--peers-python", type=Path, default=ROOT / ".venv-peers" / "bin" / "python")
    ap.add_argument("--markdown", action="store_true", help="print the table of benchmarks/README.md instead")
    args = ap.parse_args()
    rows = [row for name in args.models for row in measure(name, args.only, args.peers_python)]
    if args.markdown:
        print(markdown(rows))
        return
    problems = {name: {"model": PROBLEMS[name].model, "params": full_params(PROBLEMS[name]), "v0": PROBLEMS[name].v0,
                       "t_ms": PROBLEMS[name].t_ms, "e_inputs": len(PROBLEMS[name].e_times),
                       "e_w": PROBLEMS[name].e_w, "i_inputs": len(PROBLEMS[name].i_times), "i_w": PROBLEMS[name].i_w}
                for name in args.models}
    json.dump({"rtol": RTOL, "atol": ATOL, "problems": problems, "rows": rows}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
