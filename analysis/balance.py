"""Balanced and semi-balanced states: mean-field W and X, -W^-1 X, the LCP, measured cancellation.

Definitions: van Vreeswijk & Sompolinsky (1996, 1998) for the balanced state; Baker, Zhu & Rosenbaum
(2020) for the semi-balanced state. Rates r are in Hz throughout. W is signed: columns of inhibitory presynaptic
populations are negative, and the mean input to population a is [W r + X]_a.

Two representations of the same network (`MeanField`):

- network units: W_ab = K_ab Q_ab * 1e-3 (K = mean in-degree, Q = charge per spike) and
  X_a = sum over Poisson drives of indegree * Q_x * rate * 1e-3 plus constant currents, so that
  W r + X (r in Hz) is the mean input of row a: mV/ms (dV/dt) for lif_delta, pA for the current and
  conductance models. Q is the integral of one postsynaptic event: the weight for delta synapses (mV),
  weight * tau_syn for exponential currents (pA ms), weight * tau_syn * (E_rev - V_mean) for exponential
  conductances at the mean voltage V_mean (nS ms mV = pA ms; default midway between V_reset and V_th).
  Leaving tau_syn out would weigh E and I wrongly whenever tau_syn_ex != tau_syn_in.
- the sqrt(N) convention of van Vreeswijk & Sompolinsky (1998): w = W / sqrt(N), x = X / sqrt(N),
  i.e. w_ab = p_ab j_ab q_b with j_ab = sqrt(N) J_ab, and mean input = sqrt(N) [w r + x].

Both give the same balanced and semi-balanced rates (the LCP is invariant under positive scaling).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.optimize import linprog

from eilab.sim.config import Config, Population, Projection, weight_scale
from eilab.sim.reader import Run
from eilab.sim.weights import weight_moments

PER_MS = 1e-3            # Hz -> 1/ms
ENUMERATION_MAX = 12     # exact support enumeration up to this many populations, Lemke beyond
SINGULAR_COND = 1e12     # condition number above which a (sub)matrix counts as singular
CURRENT_MODELS = ("lif_exp", "eif", "hh")  # exponential current synapses, weights in pA
COND_MODELS = ("lif_cond_exp", "hh_cond_exp_traub")  # exponential conductances, weights in nS
WEIGHT_UNITS = {"lif_delta": "mV", "lif_exp": "pA", "eif": "pA", "hh": "pA", "lif_cond_exp": "nS",
                "hh_cond_exp_traub": "nS", "rate": "input x Hz"}
INPUT_UNITS = {"lif_delta": "mV/ms", "lif_exp": "pA", "eif": "pA", "hh": "pA", "lif_cond_exp": "pA",
               "hh_cond_exp_traub": "pA"}  # of W r + X


# ---------------------------------------------------------------- mean field from the config
@dataclass
class MeanField:
    """Population-level connectivity and drive of a config (see the module docstring).

    K[a, b]: mean in-degree of a neuron of a from b; J[a, b]: signed charge per spike (mV for delta,
    pA ms for current and conductance synapses, K-weighted mean over projections b -> a); W = K J 1e-3
    and X, such that mean input = W r + X in `units[a]` with r in Hz. w, x: the same in the sqrt(N)
    convention. v_mean: the voltage (mV) conductance charges are taken at, per population that has them.
    W_dvdt, X_dvdt: the mean contribution to dV/dt in mV/ms (what the probes record), for
    delta and exponential-current models; None when a population has conductance synapses.
    """

    populations: list[str]
    types: list[str]
    models: list[str]
    n: np.ndarray
    n_total: int
    K: np.ndarray
    J: np.ndarray
    W: np.ndarray
    X: np.ndarray
    units: list[str]
    convention: str
    w: np.ndarray
    x: np.ndarray
    convention_sqrt_n: str
    W_dvdt: np.ndarray | None
    X_dvdt: np.ndarray | None
    notes: list[str] = field(default_factory=list)
    v_mean: dict[str, float] = field(default_factory=dict)

    def index(self, name: str) -> int:
        return self.populations.index(name)


def ring_profile(profile: str, d: np.ndarray, p: float, width: float) -> np.ndarray:
    """Connection probability at ring distance d (fraction of the ring), as sim/network.py draws it."""
    d = np.asarray(d, dtype=np.float64)
    if profile == "box":
        return np.full(d.shape, p)
    if profile == "gaussian":
        return p * np.exp(-0.5 * (d / width) ** 2)
    return p * np.exp(width * (np.cos(2.0 * np.pi * d) - 1.0))


def ring_indegree(n_pre: int, n_post: int, radius: float, profile: str, p: float, width: float,
                  exclude_self: bool) -> float:
    """Exact expected in-degree of the ring rule, averaged over postsynaptic neurons.

    Sums the connection probability over presynaptic positions i / n_pre for post position
    j / n_post with the integer distance arithmetic of sim/network.py. The pattern repeats every
    n_post / gcd(n_pre, n_post) post neurons, so one period is averaged.
    """
    period = n_post // math.gcd(n_pre, n_post)
    span = math.ceil(radius * n_pre) + 1
    full = 2 * span + 1 >= n_pre
    n_cand = n_pre if full else 2 * span + 1
    ring = n_pre * n_post
    cutoff = radius * (1.0 + 1e-9) + 1e-12
    rows = max(1, 4_000_000 // n_cand)
    total = 0.0
    for j0 in range(0, period, rows):
        j = np.arange(j0, min(period, j0 + rows), dtype=np.int64)[:, None]
        if full:
            i = np.broadcast_to(np.arange(n_pre, dtype=np.int64)[None, :], (j.shape[0], n_pre))
        else:
            centre = (j * n_pre) // n_post
            i = (centre - span + np.arange(n_cand, dtype=np.int64)[None, :]) % n_pre
        diff = np.abs(i * n_post - j * n_pre)
        d = np.minimum(diff, ring - diff) / ring
        keep = ~(d > cutoff)
        if exclude_self:
            keep &= i != j
        total += float(np.where(keep, np.minimum(ring_profile(profile, d, p, width), 1.0), 0.0).sum())
    return total / period


def mean_indegree(cfg: Config, proj: Projection) -> float:
    """Mean in-degree of one projection: k, p (n_pre - [no autapses]), or the ring's exact sum."""
    pops = {p.name: p for p in cfg.populations}
    n_pre, n_post = pops[proj.pre].n, pops[proj.post].n
    no_self = proj.pre == proj.post and not proj.autapses
    if proj.rule == "fixed_indegree":
        return float(proj.k)
    if proj.rule == "bernoulli":
        return float(proj.p) * (n_pre - int(no_self))
    return ring_indegree(n_pre, n_post, proj.radius, proj.profile, float(proj.p), proj.width, no_self)


class WeightStats(NamedTuple):
    """One projection's synapses as the analysis sees them (units of W, scale applied)."""

    k: float     # mean in-degree
    mean: float  # signed mean weight of a synapse, after any zero_row_sum shift
    var: float   # variance of a synapse's weight (weight_dist)


def weight_stats(cfg: Config) -> dict[str, WeightStats]:
    """Per projection name: mean in-degree, signed mean weight and weight variance (sim/weights.py).

    Onto a zero_row_sum population every synapse is shifted by minus the mean of the neuron's signed inputs;
    in expectation J'_ab = J_ab - (sum_c K_ac J_ac) / (sum_c K_ac), so that sum_b K_ab J'_ab = 0 (the
    fluctuation of each neuron's own mean, of order 1/K, is left out).
    """
    stats = {}
    for pr in cfg.projections:
        mean, var = weight_moments(pr)
        scale = weight_scale(cfg, pr)
        stats[pr.name] = WeightStats(mean_indegree(cfg, pr), cfg.sign_of(pr) * mean * scale, var * scale**2)
    for pop in cfg.populations:
        if not pop.zero_row_sum:
            continue
        inputs = [pr.name for pr in cfg.projections if pr.post == pop.name]
        k_total = sum(stats[n].k for n in inputs)
        shift = sum(stats[n].k * stats[n].mean for n in inputs) / k_total if k_total > 0 else 0.0
        for n in inputs:
            stats[n] = stats[n]._replace(mean=stats[n].mean - shift)
    return stats


def default_v_mean(pop: Population) -> float:
    """The voltage (mV) conductance charges are taken at unless given: midway between V_reset and V_th (E_L for
    hh_cond_exp_traub, which has neither)."""
    if pop.model == "hh_cond_exp_traub":
        return pop.params["E_L"]
    return 0.5 * (pop.params["V_reset"] + pop.params["V_th"])


def charge_per_weight(pop: Population, receptor: str, v_mean: float | None = None) -> float:
    """Charge of one event per unit weight onto `pop` through receptor "E", "I" or "X" (the external drive: the
    E receptor with its own tau_syn_x when set; see the module docstring), counted along Dale's sign (positive
    for E, for I the magnitude of the hyperpolarising charge).

    1 for delta synapses and rate units, tau_syn (ms) for exponential currents, tau_syn (E_ex - v_mean)
    and tau_syn (v_mean - E_in) (ms mV) for exponential conductances (v_mean: mV, default (V_reset + V_th) / 2).
    """
    par = pop.params
    tau = par.get("tau_syn_in") if receptor == "I" else par.get("tau_syn_ex")
    if receptor == "X" and par.get("tau_syn_x") is not None:
        tau = par["tau_syn_x"]
    if pop.model in CURRENT_MODELS:
        return tau
    if pop.model in COND_MODELS:
        v = default_v_mean(pop) if v_mean is None else v_mean
        return tau * (v - par["E_in"] if receptor == "I" else par["E_ex"] - v)
    return 1.0


def _dvdt_factor(pop: Population) -> float | None:
    """mV/ms of dV/dt per unit of mean input W r + X: 1 (delta, mV/ms), 1 / C_m (currents, pA); None
    for conductances (their input in mV/ms depends on V)."""
    if pop.model == "lif_delta":
        return 1.0
    if pop.model in CURRENT_MODELS:
        return 1.0 / pop.params["C_m"]
    return None


def mean_field(cfg: Config, v_mean: dict[str, float] | None = None) -> MeanField:
    """W, X (network units: mean input with r in Hz) and w, x (sqrt(N) convention) of a validated config.

    v_mean: mean voltage (mV) per conductance-based population for its charges (default midway between
    V_reset and V_th).
    """
    pops = cfg.populations
    v_at = {p.name: (v_mean or {}).get(p.name, default_v_mean(p))
            for p in pops if p.model in COND_MODELS}
    names = [p.name for p in pops]
    idx = {name: k for k, name in enumerate(names)}
    P, N = len(pops), cfg.n_total
    K = np.zeros((P, P))
    W = np.zeros((P, P))
    X = np.zeros(P)
    notes: list[str] = []
    dvdt_ok = all(_dvdt_factor(p) is not None for p in pops)
    W_dvdt = np.zeros((P, P)) if dvdt_ok else None
    X_dvdt = np.zeros(P) if dvdt_ok else None
    stats = weight_stats(cfg)
    for proj in cfg.projections:
        a, b = idx[proj.post], idx[proj.pre]
        k, mean, _ = stats[proj.name]
        sign = cfg.sign_of(proj)  # Dale's law, or a rate network's explicit sign: the receptor
        q = charge_per_weight(pops[a], "E" if sign > 0 else "I", v_at.get(pops[a].name))
        wab = k * mean * q * PER_MS
        K[a, b] += k
        W[a, b] += wab
        if W_dvdt is not None:
            W_dvdt[a, b] += wab * _dvdt_factor(pops[a])
    J = np.divide(W, K * PER_MS, out=np.zeros((P, P)), where=K > 0)
    currents = np.array([p.params.get("I_e", 0.0) for p in pops])
    for i, d in enumerate(cfg.drive):
        a = idx[d.target]
        if d.kind == "poisson":
            xa = d.indegree * d.weight * d.rate_hz * PER_MS * charge_per_weight(pops[a], "X", v_at.get(d.target))
            X[a] += xa
            if X_dvdt is not None:
                X_dvdt[a] += xa * _dvdt_factor(pops[a])
            if d.start_ms > 0 or d.stop_ms is not None:
                notes.append(f"drive.{i}: X counts the Poisson drive as always on (start_ms/stop_ms not averaged)")
        elif d.kind == "current":
            currents[a] += d.amplitude
            if d.formula or d.file:
                notes.append(f"drive.{i}: only the constant amplitude is in X (formula/file parts left out)")
            if d.start_ms > 0 or d.stop_ms is not None:
                notes.append(f"drive.{i}: X counts the current as always on (start_ms/stop_ms not averaged)")
        else:
            notes.append(f"drive.{i}: input spikes at given times are transient and left out of X")
    for a, pop in enumerate(pops):
        if currents[a] == 0.0:
            continue
        if X_dvdt is not None:
            X_dvdt[a] += currents[a] / pop.params["C_m"]
        if pop.model == "lif_delta":
            X[a] += currents[a] / pop.params["C_m"]
        elif pop.model == "rate":  # rate units: u = K J r + currents, r in Hz; per ms like W
            X[a] += currents[a] * PER_MS
        else:  # current and conductance models: mean input in pA, like the currents
            X[a] += currents[a]
    if cfg.matrix is not None:
        notes.append(f"matrix.file {cfg.matrix.file!r}: W holds the projections only, not the file's matrix")
    if not dvdt_ok:
        notes.append("W_dvdt/X_dvdt: None (conductance synapses: the input in mV/ms depends on V)")
    notes += [f"{name}: conductance charges at V_mean = {v:g} mV" for name, v in v_at.items()]
    units = [INPUT_UNITS.get(p.model, f"{WEIGHT_UNITS[p.model]}/ms") for p in pops]
    root = math.sqrt(N)
    return MeanField(
        populations=names, types=[p.type for p in pops], models=[p.model for p in pops],
        n=np.array([p.n for p in pops]), n_total=N, K=K, J=J, W=W, X=X, units=units,
        convention="network units: mean input = W r + X (r in Hz), W = K J 1e-3, J = charge per spike "
                   "(weight * scale, times tau_syn for exponential currents, times tau_syn (E_rev - V_mean) "
                   "for conductances)",
        w=W / root, x=X / root,
        convention_sqrt_n="van Vreeswijk & Sompolinsky (1998): mean input = sqrt(N) (w r + x), "
                          "w_ab = p_ab j_ab q_b * 1e-3, j = sqrt(N) J (w = W / sqrt(N), x = X / sqrt(N))",
        W_dvdt=W_dvdt, X_dvdt=X_dvdt, notes=notes, v_mean=v_at,
    )


# ---------------------------------------------------------------- balanced rates
@dataclass
class Balanced:
    """r = -W^-1 X (Hz); admissible when every entry is > 0; NaN when W is singular."""

    r: np.ndarray
    admissible: bool
    singular: bool


def balanced_rates(W: np.ndarray, X: np.ndarray) -> Balanced:
    """The balanced-limit rates -W^-1 X (Hz for W, X from `mean_field`)."""
    W, X = np.asarray(W, float), np.asarray(X, float)
    if np.linalg.cond(W) > SINGULAR_COND:
        return Balanced(np.full(X.shape, np.nan), False, True)
    r = -np.linalg.solve(W, X)
    return Balanced(r, bool(np.all(r > 0)), False)


def balance_condition_2x2(W: np.ndarray, X: np.ndarray) -> bool:
    """The closed form (van Vreeswijk & Sompolinsky 1998) for W = [[w_EE, -|w_EI|], [w_IE, -|w_II|]] with det W > 0:
    r_bal > 0 iff X_E / X_I > |w_EI| / |w_II| > w_EE / w_IE (raises when det W <= 0 or not Dale)."""
    W, X = np.asarray(W, float), np.asarray(X, float)
    if W.shape != (2, 2) or np.any(W[:, 0] < 0) or np.any(W[:, 1] > 0):
        raise ValueError("needs a 2x2 Dale matrix: E column >= 0, I column <= 0")
    if np.linalg.det(W) <= 0:
        raise ValueError("the closed form holds for det W > 0 only")
    w_ee, w_ie = W[0, 0], W[1, 0]
    w_ei, w_ii = -W[0, 1], -W[1, 1]
    return bool(X[0] * w_ii > w_ei * X[1] and w_ei * w_ie > w_ee * w_ii)


# ---------------------------------------------------------------- semi-balanced state (the LCP)
@dataclass
class LcpSolution:
    """One solution of r >= 0, z = W r + X <= 0, r_a z_a = 0 (r in Hz).

    balanced: r_a > 0 (z_a = 0); silenced: r_a = 0, z_a < 0; marginal: r_a = 0 and z_a = 0.
    isolated is False when it is one point of a continuum (singular subsystem on its support).
    """

    r: np.ndarray
    z: np.ndarray
    balanced: list[int]
    silenced: list[int]
    marginal: list[int]
    isolated: bool = True


@dataclass
class SemiBalanced:
    """Every LCP solution found; complete is True when support enumeration guarantees all."""

    solutions: list[LcpSolution]
    method: str
    complete: bool


def _classify(W: np.ndarray, X: np.ndarray, r: np.ndarray, tol: float, isolated: bool) -> LcpSolution:
    z = W @ r + X
    scale = np.abs(W) @ np.abs(r) + np.abs(X)
    r_on = r > tol * max(1.0, float(np.abs(r).max()))
    z_neg = z < -tol * np.maximum(scale, 1e-300)
    return LcpSolution(r=r, z=z,
                       balanced=[int(a) for a in np.flatnonzero(r_on)],
                       silenced=[int(a) for a in np.flatnonzero(~r_on & z_neg)],
                       marginal=[int(a) for a in np.flatnonzero(~r_on & ~z_neg)],
                       isolated=isolated)


def is_lcp_solution(W: np.ndarray, X: np.ndarray, r: np.ndarray, tol: float = 1e-8) -> bool:
    """True when r >= 0, W r + X <= 0 and r_a (W r + X)_a = 0 up to a relative tolerance."""
    W, X, r = np.asarray(W, float), np.asarray(X, float), np.asarray(r, float)
    z = W @ r + X
    scale = np.abs(W) @ np.abs(r) + np.abs(X) + 1e-300
    rs = max(1.0, float(np.abs(r).max()))
    return bool(np.all(r >= -tol * rs) and np.all(z <= tol * scale)
                and np.all(np.minimum(np.abs(r) / rs, np.abs(z) / scale) <= tol))


def _face_point(W: np.ndarray, X: np.ndarray, S: list[int], tol: float) -> np.ndarray | None:
    """A point with r_S > 0 on a singular support S (W_SS r_S = -X_S, z off S <= 0), or None.

    Linear program: maximise t subject to r_S >= t (t <= 1), the equalities and the sign
    conditions off S. The point is one of a continuum; its choice is arbitrary.
    """
    P = X.size
    C = [a for a in range(P) if a not in S]
    m = len(S)
    c = np.zeros(m + 1)
    c[-1] = -1.0
    A_ub = [np.concatenate([-np.eye(m), np.ones((m, 1))], axis=1)]
    b_ub = [np.zeros(m)]
    if C:
        A_ub.append(np.concatenate([W[np.ix_(C, S)], np.zeros((len(C), 1))], axis=1))
        b_ub.append(-X[C])
    A_eq = np.concatenate([W[np.ix_(S, S)], np.zeros((m, 1))], axis=1)
    res = linprog(c, A_ub=np.vstack(A_ub), b_ub=np.concatenate(b_ub), A_eq=A_eq, b_eq=-X[S],
                  bounds=[(0, None)] * m + [(0, 1.0)], method="highs")
    if res.status != 0 or -res.fun <= tol:
        return None
    return res.x[:m]


def _enumerate(W: np.ndarray, X: np.ndarray, tol: float) -> list[LcpSolution]:
    """All LCP solutions by support enumeration (2^P linear systems)."""
    P = X.size
    found: list[LcpSolution] = []
    for size in range(P + 1):
        for S in map(list, itertools.combinations(range(P), size)):
            r = np.zeros(P)
            isolated = True
            if S:
                A = W[np.ix_(S, S)]
                if np.linalg.cond(A) > SINGULAR_COND:
                    rS = _face_point(W, X, S, tol)
                    if rS is None:
                        continue
                    isolated = False
                else:
                    rS = np.linalg.solve(A, -X[S])
                if np.any(rS <= tol * max(1.0, float(np.abs(rS).max()))):
                    continue  # not strictly on S: found (if at all) with a smaller support
                r[S] = rS
            if not is_lcp_solution(W, X, r, tol=max(tol, 1e-9) * 10):
                continue
            if not any(np.allclose(r, s.r, rtol=1e-7, atol=1e-12) for s in found):
                found.append(_classify(W, X, r, tol, isolated))
    return found


def lemke(M: np.ndarray, q: np.ndarray, d: np.ndarray | None = None, max_iter: int | None = None,
          tol: float = 1e-12) -> np.ndarray | None:
    """Lemke's complementary pivoting for w = M z + q >= 0, z >= 0, z.w = 0; None on ray termination.

    Covering vector d (default all ones), lexicographic minimum-ratio rule against cycling.
    For the semi-balanced state use M = -W, q = -X (then z = r and w = -(W r + X)).
    """
    M, q = np.asarray(M, float), np.asarray(q, float)
    n = q.size
    if np.all(q >= 0):
        return np.zeros(n)
    d = np.ones(n) if d is None else np.asarray(d, float)
    z0 = 2 * n
    T = np.hstack([np.eye(n), -M, -d[:, None], q[:, None]])
    basis = list(range(n))  # w_i: column i, z_i: column n + i, z0: column 2n

    def pivot(row: int, col: int) -> None:
        T[row] /= T[row, col]
        for i in range(n):
            if i != row and T[i, col] != 0.0:
                T[i] -= T[i, col] * T[row]

    row = int(np.argmin(q / d))
    pivot(row, z0)
    leaving, basis[row] = basis[row], z0
    for _ in range(max_iter or 50 * n * n + 100):
        entering = leaving + n if leaving < n else leaving - n
        col = T[:, entering]
        pos = np.flatnonzero(col > tol)
        if pos.size == 0:
            return None
        ratios = T[pos, -1] / col[pos]
        cand = pos[ratios <= ratios.min() + tol * max(1.0, abs(ratios.min()))]
        if any(basis[i] == z0 for i in cand):
            row = next(int(i) for i in cand if basis[i] == z0)
        else:
            for k in range(n):  # lexicographic: rows of B^-1 (the w columns) divided by the pivot column
                if cand.size == 1:
                    break
                v = T[cand, k] / col[cand]
                cand = cand[v <= v.min() + tol]
            row = int(cand[0])
        pivot(row, entering)
        leaving, basis[row] = basis[row], entering
        if leaving == z0:
            z = np.zeros(n)
            for i, b in enumerate(basis):
                if n <= b < 2 * n:
                    z[b - n] = max(T[i, -1], 0.0)
            return z
    return None


def semi_balanced(W: np.ndarray, X: np.ndarray, method: str = "auto", tol: float = 1e-9,
                  lemke_tries: int = 8, seed: int = 0) -> SemiBalanced:
    """Solutions of r >= 0, z = W r + X <= 0, r_a z_a = 0 (the semi-balanced state of Baker, Zhu & Rosenbaum 2020).

    method "enumerate" (every solution, exact; P <= 12 under "auto"), or "lemke": Lemke's method
    from the all-ones covering vector and `lemke_tries - 1` random positive ones, distinct
    solutions kept (not guaranteed to be all). Solutions come isolated first, most balanced
    populations first.
    """
    W, X = np.asarray(W, float), np.asarray(X, float)
    if method == "auto":
        method = "enumerate" if X.size <= ENUMERATION_MAX else "lemke"
    if method == "enumerate":
        sols = _enumerate(W, X, tol)
    elif method == "lemke":
        rng = np.random.default_rng(seed)
        sols = []
        for t in range(lemke_tries):
            d = np.ones(X.size) if t == 0 else rng.uniform(0.1, 1.0, X.size)
            r = lemke(-W, -X, d)
            if r is None or not is_lcp_solution(W, X, r, tol=1e-7):
                continue
            if not any(np.allclose(r, s.r, rtol=1e-7, atol=1e-12) for s in sols):
                sols.append(_classify(W, X, r, tol, True))
    else:
        raise ValueError(f"method must be 'auto', 'enumerate' or 'lemke', not {method!r}")
    sols.sort(key=lambda s: (not s.isolated, -len(s.balanced), tuple(-s.r)))
    return SemiBalanced(sols, method, method == "enumerate")


# ---------------------------------------------------------------- Baker et al.'s theorem
def baker_counterexample(W: np.ndarray, delta: float = 0.1) -> np.ndarray:
    """An X > 0 with a negative entry in -W^-1 X, for a Dale W (Baker et al. 2020).

    Construction: pick r* with one small negative entry and the rest positive (small on E
    populations, 1 on I; the negative entry on an E population when there is one) and set
    X = -W r*, so -W^-1 X = r*. A row without inhibition makes every X > 0 a counterexample.
    """
    W = np.asarray(W, float)
    P = W.shape[0]
    exc = np.all(W >= 0, axis=0) & np.any(W > 0, axis=0)
    if not np.all(exc | np.all(W <= 0, axis=0)):
        raise ValueError("W breaks Dale's law: every column must be >= 0 (E) or <= 0 (I)")
    if np.linalg.cond(W) > SINGULAR_COND:
        raise ValueError("W is singular: -W^-1 X is not defined")
    if np.any(np.all(W >= 0, axis=1)):
        X = np.ones(P)
        if np.any(-np.linalg.solve(W, X) < 0):
            return X
    neg = int(np.flatnonzero(exc)[0]) if np.any(exc) else 0
    eps = 1.0
    for _ in range(60):
        r = np.where(exc, eps, 1.0)
        r[neg] = -delta * r[neg]
        X = -W @ r
        if np.all(X > 0) and np.any(-np.linalg.solve(W, X) < 0):
            return X
        eps, delta = 0.5 * eps, 0.5 * delta
    raise ValueError("no counterexample found (does every population receive inhibition?)")


# ---------------------------------------------------------------- measured balance (probes)
@dataclass
class MeasuredBalance:
    """Time-averaged inputs of the probed neurons (mV/ms, contributions to dV/dt) over the samples in
    window_ms (first and last sample time, ms; those after skip_ms, up to the window's end when given).

    Per neuron arrays (ordered like `gid`); by_population: means over its probed neurons of E, I,
    ext, net and the ratio |net| / (E + ext) of those means, with n_probes. For delta synapses a
    probe holds one step's arrivals / dt (also those a refractory neuron drops), so the average is
    exact only with probe_every_ms = dt; coarser sampling is unbiased but noisier.
    """

    gid: np.ndarray
    population: list[str]
    E: np.ndarray
    I: np.ndarray  # noqa: E741
    ext: np.ndarray
    net: np.ndarray
    ratio: np.ndarray
    by_population: dict[str, dict[str, float]]
    skip_ms: float
    window_ms: tuple[float, float]


def cancellation_ratio(E: np.ndarray | float, I: np.ndarray | float, ext: np.ndarray | float) -> np.ndarray:  # noqa: E741
    """|E + I + ext| / (E + ext): 0 for perfect cancellation, 1 with no inhibition."""
    E, I, ext = np.asarray(E, float), np.asarray(I, float), np.asarray(ext, float)  # noqa: E741
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(E + I + ext) / (E + ext)


def measured_balance(run: Run, skip_ms: float = 50.0, stop_ms: float | None = None) -> MeasuredBalance:
    """Mean E, I (negative), external input and their sum per probed neuron and population, mV/ms,
    over the probe samples with time in (skip_ms, stop_ms] (stop_ms None: to the end of the run)."""
    pr = run.probes()
    if not pr:
        raise ValueError(f"{run.path}: the run recorded no probes (add record.probes to the config)")
    keep = pr["time"] > skip_ms
    if stop_ms is not None:
        keep &= pr["time"] <= stop_ms
    if not np.any(keep):
        raise ValueError(f"no probe samples in ({skip_ms}, {run.t_ms if stop_ms is None else stop_ms}] ms "
                         f"(run length {run.t_ms} ms)")
    mean = {v: np.nanmean(pr[v][keep].astype(np.float64), axis=0) for v in ("syn_e", "syn_i", "ext")}
    E, I, ext = mean["syn_e"], mean["syn_i"], mean["ext"]  # noqa: E741
    net = E + I + ext
    gids = np.asarray(pr["probe"], dtype=np.int64)
    names = []
    for g in gids:
        names.append(next(name for name, p in run.populations.items() if p["gid0"] <= g < p["gid0"] + p["n"]))
    by_pop: dict[str, dict[str, float]] = {}
    for name in run.populations:
        sel = np.array([n == name for n in names], dtype=bool)
        if not np.any(sel):
            continue
        row = {"E": float(E[sel].mean()), "I": float(I[sel].mean()), "ext": float(ext[sel].mean())}
        row["net"] = row["E"] + row["I"] + row["ext"]
        row["ratio"] = float(cancellation_ratio(row["E"], row["I"], row["ext"]))
        row["n_probes"] = int(sel.sum())
        by_pop[name] = row
    t = pr["time"][keep]
    return MeasuredBalance(gids, names, E, I, ext, net, cancellation_ratio(E, I, ext), by_pop, skip_ms,
                           (float(t[0]), float(t[-1])))


# ---------------------------------------------------------------- the table for `eilab analyze`
def balance_table(run: Run, skip_ms: float = 50.0) -> list[dict]:
    """One row per population: measured rate, balanced and semi-balanced predictions (Hz), measured
    mean E, I, external and net input (mV/ms; None when not probed) and the cancellation ratio."""
    mf = mean_field(run.config)
    bal = balanced_rates(mf.W, mf.X)
    semi = semi_balanced(mf.W, mf.X)
    meas = measured_balance(run, skip_ms).by_population if run.probes() else {}
    summary = run.attrs.get("summary", {}).get("populations", {})
    first = semi.solutions[0] if semi.solutions else None
    notes = []
    if bal.singular:
        notes.append("W singular")
    elif not bal.admissible:
        notes.append("r_bal inadmissible")
    n_sol = len(semi.solutions)
    if n_sol != 1:
        notes.append(f"{n_sol} LCP solutions" + ("" if semi.complete else " found (Lemke)"))
    if first is not None and not first.isolated:
        notes.append("continuum")
    rows = []
    for a, name in enumerate(mf.populations):
        m = meas.get(name, {})
        state = ""
        if first is not None:
            state = "balanced" if a in first.balanced else "silenced" if a in first.silenced else "marginal"
        rows.append({
            "population": name,
            "rate_hz": summary.get(name, {}).get("rate_hz"),
            "balanced_hz": None if bal.singular else float(bal.r[a]),
            "semi_balanced_hz": None if first is None else float(first.r[a]),
            "state": state,
            "E": m.get("E"), "I": m.get("I"), "ext": m.get("ext"), "net": m.get("net"),
            "ratio": m.get("ratio"),
            "note": "; ".join(notes),
        })
    return rows


COLUMNS = (("population", "pop"), ("rate_hz", "rate Hz"), ("balanced_hz", "bal Hz"),
           ("semi_balanced_hz", "semi Hz"), ("state", "state"), ("E", "E mV/ms"), ("I", "I mV/ms"),
           ("ext", "ext mV/ms"), ("net", "net mV/ms"), ("ratio", "|net|/(E+ext)"), ("note", "note"))


def format_table(rows: list[dict]) -> str:
    """Fixed-width text of `balance_table` rows ('-' for missing values)."""
    def cell(v: object) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        return f"{v + 0.0:.4g}" if isinstance(v, float) else str(v)

    cells = [[label for _, label in COLUMNS]] + [[cell(r.get(key)) for key, _ in COLUMNS] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells)
