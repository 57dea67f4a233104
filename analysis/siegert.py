"""Mean-field (Siegert) rates of LIF networks with delta synapses in the asynchronous state.

Brunel (2000), J Comput Neurosci 8:183, eqs. 4-5 (and Amit & Brunel 1997): with mean input
mu_a = tau_a (sum_b K_ab J_ab nu_b + K_ax J_ax nu_x) and variance
sigma_a^2 = tau_a (sum_b K_ab J_ab^2 nu_b + K_ax J_ax^2 nu_x) (J signed, mV; nu in 1/ms),

    1 / nu_a = t_ref + tau_a sqrt(pi) * integral_{(V_r - mu)/sigma}^{(theta - mu)/sigma} e^{u^2} (1 + erf u) du

solved self-consistently for all populations (measured from E_L).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, optimize, special

from eilab.analysis.balance import mean_indegree
from eilab.sim.config import Config


def siegert_rate(mu: float, sigma: float, tau_ms: float, t_ref_ms: float, theta: float, v_reset: float) -> float:
    """Stationary firing rate (Hz) of a LIF neuron driven by white noise (mean mu, sd sigma, mV)."""
    lo, hi = (v_reset - mu) / sigma, (theta - mu) / sigma
    # e^{u^2} (1 + erf u) = erfcx(-u): stable for large |u|
    value, _ = integrate.quad(lambda u: special.erfcx(-u), lo, hi, limit=200)
    return 1000.0 / (t_ref_ms + tau_ms * math.sqrt(math.pi) * value)


def network_rates(cfg: Config, guess_hz: float = 10.0) -> dict[str, float]:
    """Self-consistent Siegert rates (Hz) of every population of a lif_delta network with Poisson drive."""
    pops = cfg.populations
    if any(p.model != "lif_delta" for p in pops):
        raise ValueError("the Siegert prediction here is for lif_delta (delta synapse) networks")
    index = {p.name: k for k, p in enumerate(pops)}
    n = len(pops)
    K = np.zeros((n, n))
    J = np.zeros((n, n))
    J2 = np.zeros((n, n))
    for pr in cfg.projections:
        a, b = index[pr.post], index[pr.pre]
        k = mean_indegree(cfg, pr)
        sign = 1.0 if pops[b].type == "E" else -1.0
        w = sign * pr.weight * (1.0 / math.sqrt(cfg.n_total) if pr.scale == "sqrt_n" else 1.0)
        K[a, b] += k
        J[a, b] += k * w
        J2[a, b] += k * w * w
    mu_x, var_x = np.zeros(n), np.zeros(n)
    for d in cfg.drive:
        if d.kind == "poisson":
            a = index[d.target]
            lam = d.rate_hz * d.indegree / 1000.0  # events per ms
            mu_x[a] += lam * d.weight
            var_x[a] += lam * d.weight**2
    tau = np.array([p.params["tau_m"] for p in pops])
    el = np.array([p.params["E_L"] for p in pops])

    def rates(nu_hz: np.ndarray) -> np.ndarray:
        nu = np.maximum(nu_hz, 0.0) / 1000.0
        mu = tau * (J @ nu + mu_x)
        sigma = np.sqrt(tau * (J2 @ nu + var_x))
        return np.array([siegert_rate(mu[a], sigma[a], tau[a], pops[a].params["t_ref"],
                                      pops[a].params["V_th"] - el[a], pops[a].params["V_reset"] - el[a])
                         for a in range(n)])

    sol = optimize.root(lambda nu: rates(nu) - nu, np.full(n, guess_hz), method="hybr")
    if not sol.success:
        raise RuntimeError(f"no self-consistent rate found: {sol.message}")
    return {p.name: float(sol.x[k]) for k, p in enumerate(pops)}
