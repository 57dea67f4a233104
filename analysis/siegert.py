"""Mean-field (Siegert) rates of LIF networks with delta synapses in the asynchronous state.

Brunel (2000), J Comput Neurosci 8:183, eqs. 4-5 (and Amit & Brunel 1997): with mean input
mu_a = tau_a (sum_b K_ab J_ab nu_b + K_ax J_ax nu_x) and variance
sigma_a^2 = tau_a (sum_b K_ab J_ab^2 nu_b + K_ax J_ax^2 nu_x) (J signed, mV; nu in 1/ms),

    1 / nu_a = t_ref + tau_a sqrt(pi) * integral_{(V_r - mu)/sigma}^{(theta - mu)/sigma} e^{u^2} (1 + erf u) du

solved self-consistently for all populations (measured from E_L). Every self-consistent state in
[0, 1/t_ref) is searched for (Brunel 2000 finds several in some regions), with its linear stability
under tau dnu/dt = -nu + Phi(nu) and the ISI CV of Brunel (2000) in the diffusion approximation:

    CV^2 = 2 pi (nu tau)^2 int_{y_r}^{y_th} e^{x^2} dx int_{-inf}^{x} e^{y^2} (1 + erf y)^2 dy
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate, optimize, special

from eilab.analysis.balance import weight_stats
from eilab.sim.config import Config

QUAD = {"limit": 200, "epsabs": 0.0, "epsrel": 1e-12}
SCAN_POINTS = 400      # 1-D scan: grid points in [0, 1/t_ref)
GRID_STARTS = 256      # general case: at most this many starting points for the root finder
NO_REFRACTORY_HZ = 1e4  # upper end of the scan when t_ref = 0


def _scaled_erfcx(u: float, s: float) -> float:
    """e^{u^2 - s} (1 + erf u), without overflow for either sign of u."""
    return special.erfcx(-u) * math.exp(-s) if u < 0 else math.exp(u * u - s) * special.erfc(-u)


def _bounds(mu: float, sigma: float, theta: float, v_reset: float) -> tuple[float, float, float]:
    """(y_r, y_th, s): the integration limits and the exponent shift s = max(y_th, 0)^2."""
    lo, hi = (v_reset - mu) / sigma, (theta - mu) / sigma
    return lo, hi, max(hi, 0.0) ** 2


def siegert_rate(mu: float, sigma: float, tau_ms: float, t_ref_ms: float, theta: float, v_reset: float) -> float:
    """Stationary firing rate (Hz) of a LIF neuron driven by white noise (mean mu, sd sigma, mV).

    sigma = 0: the deterministic rate 1 / (t_ref + tau ln((mu - V_r) / (mu - theta))), 0 below threshold.
    """
    if sigma <= 0.0:
        if mu <= theta:
            return 0.0
        return 1000.0 / (t_ref_ms + tau_ms * math.log((mu - v_reset) / (mu - theta)))
    lo, hi, s = _bounds(mu, sigma, theta, v_reset)
    value, _ = integrate.quad(_scaled_erfcx, lo, hi, args=(s,), **QUAD)  # integral * e^{-s}
    return 1000.0 / (t_ref_ms + tau_ms * math.sqrt(math.pi) * value * math.exp(s))


def _cv_inner(x: float, s: float) -> float:
    """e^{x^2 - 2s} int_{-inf}^{x} e^{y^2} (1 + erf y)^2 dy, each integrand factor kept finite."""
    def f(y: float) -> float:
        if y < 0:
            return math.exp(x * x - y * y - 2.0 * s) * special.erfcx(-y) ** 2
        return math.exp(x * x + y * y - 2.0 * s) * special.erfc(-y) ** 2
    split = min(x, 0.0)
    value, _ = integrate.quad(f, -np.inf, split, **QUAD)
    if x > 0.0:
        value += integrate.quad(f, 0.0, x, **QUAD)[0]
    return value


def siegert_cv(mu: float, sigma: float, tau_ms: float, t_ref_ms: float, theta: float, v_reset: float) -> float:
    """Coefficient of variation of the interspike intervals of the same neuron (Brunel 2000, diffusion approximation).

    CV^2 = 2 pi (nu tau)^2 D with D the double integral of the module docstring; both D and 1/nu^2 grow as
    e^{2 y_th^2}, so CV^2 = 2 pi D e^{-2s} / (t_ref e^{-s} / tau + sqrt(pi) A e^{-s})^2 (A: the rate's integral).
    Tends to 1 far below threshold (Poisson) and to 0 for sigma -> 0 above threshold (regular firing).
    """
    if sigma <= 0.0:
        return 0.0 if mu > theta else math.nan
    lo, hi, s = _bounds(mu, sigma, theta, v_reset)
    area, _ = integrate.quad(_scaled_erfcx, lo, hi, args=(s,), **QUAD)
    double, _ = integrate.quad(_cv_inner, lo, hi, args=(s,), **QUAD)
    denom = t_ref_ms / tau_ms * math.exp(-s) + math.sqrt(math.pi) * area
    return math.sqrt(2.0 * math.pi * double) / denom


# ---------------------------------------------------------------- the network map Phi
@dataclass
class SiegertNetwork:
    """Population-level input statistics of a lif_delta network (J signed, mV; rates per ms inside)."""

    names: list[str]
    J: np.ndarray      # sum over synapses of J (K J), mV
    J2: np.ndarray     # K J^2, mV^2
    mu_x: np.ndarray   # external mean drive, mV/ms
    var_x: np.ndarray  # external variance drive, mV^2/ms
    tau: np.ndarray    # ms
    t_ref: np.ndarray  # ms
    theta: np.ndarray  # threshold above E_L, mV
    v_reset: np.ndarray  # reset above E_L, mV

    def moments(self, nu_hz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) in mV at rates nu (Hz; negative rates count as 0)."""
        nu = np.maximum(np.asarray(nu_hz, float), 0.0) / 1000.0
        return self.tau * (self.J @ nu + self.mu_x), np.sqrt(self.tau * np.maximum(self.J2 @ nu + self.var_x, 0.0))

    def phi(self, nu_hz: np.ndarray) -> np.ndarray:
        """The Siegert map: output rates (Hz) at input rates nu (Hz)."""
        mu, sigma = self.moments(nu_hz)
        return np.array([siegert_rate(mu[a], sigma[a], self.tau[a], self.t_ref[a], self.theta[a], self.v_reset[a])
                         for a in range(len(self.names))])

    def cv(self, nu_hz: np.ndarray) -> np.ndarray:
        """Predicted ISI CV of each population at rates nu (Hz)."""
        mu, sigma = self.moments(nu_hz)
        return np.array([siegert_cv(mu[a], sigma[a], self.tau[a], self.t_ref[a], self.theta[a], self.v_reset[a])
                         for a in range(len(self.names))])

    def max_rate_hz(self) -> float:
        """Upper bound of every rate Phi can return: 1 / min t_ref."""
        t = float(self.t_ref.min())
        return 1000.0 / t if t > 0 else NO_REFRACTORY_HZ

    def identical(self) -> bool:
        """True when every population has the same input statistics and neuron: fixed points have equal rates."""
        rows = np.column_stack([self.J, self.J2, self.mu_x, self.var_x, self.tau, self.t_ref, self.theta,
                                self.v_reset])
        return bool(np.allclose(rows, rows[:1], rtol=1e-12, atol=0.0))


def siegert_network(cfg: Config) -> SiegertNetwork:
    """Input statistics of a lif_delta network with Poisson drive (raises ValueError for other models)."""
    pops = cfg.populations
    if any(p.model != "lif_delta" for p in pops):
        raise ValueError("the Siegert prediction here is for lif_delta (delta synapse) networks")
    index = {p.name: k for k, p in enumerate(pops)}
    n = len(pops)
    J = np.zeros((n, n))
    J2 = np.zeros((n, n))
    for pr in cfg.projections:
        a, b = index[pr.post], index[pr.pre]
        k, w, var = weight_stats(cfg)[pr.name]
        J[a, b] += k * w
        J2[a, b] += k * (w * w + var)
    mu_x, var_x = np.zeros(n), np.zeros(n)
    for d in cfg.drive:
        if d.kind == "poisson":
            a = index[d.target]
            lam = d.rate_hz * d.indegree / 1000.0  # events per ms
            mu_x[a] += lam * d.weight
            var_x[a] += lam * d.weight**2
    par = [p.params for p in pops]
    el = np.array([p["E_L"] for p in par])
    return SiegertNetwork([p.name for p in pops], J, J2, mu_x, var_x, np.array([p["tau_m"] for p in par]),
                          np.array([p["t_ref"] for p in par]), np.array([p["V_th"] for p in par]) - el,
                          np.array([p["V_reset"] for p in par]) - el)


# ---------------------------------------------------------------- all self-consistent states
@dataclass
class SiegertState:
    """One self-consistent state nu = Phi(nu) (Hz), its predicted ISI CVs and linear stability.

    jacobian: dPhi_a / dnu_b (central differences); eigenvalues: of jacobian - I (dimensionless);
    stable: every eigenvalue of diag(1/tau_m) (jacobian - I) has a negative real part, i.e. the state
    attracts tau dnu/dt = -nu + Phi(nu) (the same test as for jacobian - I when all tau_m are equal).
    """

    rates_hz: np.ndarray
    cv: np.ndarray
    jacobian: np.ndarray
    eigenvalues: np.ndarray
    stable: bool
    residual_hz: float


@dataclass
class SiegertStates:
    """Every state found, by increasing mean rate; complete: the 1-D scan (equal populations) found all
    sign changes on its grid; False for the grid of starting points of the general case."""

    names: list[str]
    states: list[SiegertState]
    method: str
    complete: bool


def _jacobian(net: SiegertNetwork, nu: np.ndarray) -> np.ndarray:
    n = nu.size
    jac = np.zeros((n, n))
    for b in range(n):
        h = 1e-4 * max(nu[b], 1.0)
        lo = nu.copy()
        lo[b] = max(nu[b] - h, 0.0)
        hi = nu.copy()
        hi[b] = nu[b] + h
        jac[:, b] = (net.phi(hi) - net.phi(lo)) / (hi[b] - lo[b])
    return jac


def _state(net: SiegertNetwork, nu: np.ndarray) -> SiegertState:
    jac = _jacobian(net, nu)
    one = np.eye(nu.size)
    dyn = np.linalg.eigvals((jac - one) / net.tau[:, None])
    return SiegertState(nu, net.cv(nu), jac, np.linalg.eigvals(jac - one), bool(np.all(dyn.real < 0)),
                        float(np.abs(net.phi(nu) - nu).max()))


def _scan_1d(net: SiegertNetwork) -> list[np.ndarray]:
    """Roots of phi(nu) - nu with equal rates: sign changes on a grid over [0, 1/t_ref), then Brent."""
    n = len(net.names)
    top = net.max_rate_hz()
    grid = np.concatenate([[0.0], np.geomspace(1e-4, top, SCAN_POINTS)])

    def f(x: float) -> float:
        return float(net.phi(np.full(n, x))[0]) - x

    vals = np.array([f(x) for x in grid])
    roots = [np.full(n, grid[i]) for i in np.flatnonzero(vals == 0.0)]
    for i in np.flatnonzero(vals[:-1] * vals[1:] < 0):
        roots.append(np.full(n, optimize.brentq(f, grid[i], grid[i + 1], xtol=1e-14, rtol=4 * np.finfo(float).eps,
                                                maxiter=200)))
    return roots


def _scan_grid(net: SiegertNetwork) -> list[np.ndarray]:
    """Roots of Phi(nu) - nu from a log-spaced grid of starting points (Powell's hybrid method)."""
    n = len(net.names)
    per_axis = max(3, int(GRID_STARTS ** (1.0 / n)))
    axis = np.geomspace(0.1, 0.9 * net.max_rate_hz(), per_axis)
    roots: list[np.ndarray] = []
    for start in itertools.product(axis, repeat=n):
        sol = optimize.root(lambda nu: net.phi(nu) - nu, np.array(start), method="hybr", options={"xtol": 1e-13})
        nu = sol.x
        if np.any(nu < 0) or np.abs(net.phi(nu) - nu).max() > 1e-8 * max(1.0, float(nu.max())):
            continue
        if not any(np.allclose(nu, r, rtol=1e-6, atol=1e-9) for r in roots):
            roots.append(nu)
    return roots


def network_states(cfg: Config) -> SiegertStates:
    """Every self-consistent Siegert state of a lif_delta network with Poisson drive, with stability and CV.

    Populations with identical input statistics (Brunel's model A and B: E and I alike) have equal rates at
    every fixed point, so phi(nu) - nu is scanned in one dimension; otherwise a grid of starting points is
    refined with Powell's method (states may be missed: complete is False).
    """
    net = siegert_network(cfg)
    one_d = net.identical()
    roots = _scan_1d(net) if one_d else _scan_grid(net)
    states = sorted((_state(net, r) for r in roots), key=lambda s: float(s.rates_hz.mean()))
    return SiegertStates(net.names, states, "1-D scan, equal populations" if one_d else "grid + hybr", one_d)


def choose_state(found: SiegertStates, guess_hz: float = 10.0) -> SiegertState:
    """Of the stable states (all states if none is stable), the one whose rates are closest to guess_hz
    (raises RuntimeError when there is none)."""
    pool = [s for s in found.states if s.stable] or found.states
    if not pool:
        raise RuntimeError("no self-consistent rate found in [0, 1/t_ref)")
    return min(pool, key=lambda s: float(np.abs(s.rates_hz - guess_hz).max()))


def network_rates(cfg: Config, guess_hz: float = 10.0) -> dict[str, float]:
    """Self-consistent Siegert rates (Hz) of the state `choose_state` picks from `network_states`."""
    found = network_states(cfg)
    best = choose_state(found, guess_hz)
    return {name: float(best.rates_hz[k]) for k, name in enumerate(found.names)}
