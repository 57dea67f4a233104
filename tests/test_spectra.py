"""Connectivity spectra against closed forms: row sums, Rajan-Abbott radius and outlier, ring Fourier modes,
linear rate modes against direct integration, the figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.integrate import solve_ivp
from scipy.optimize import linear_sum_assignment

from conftest import CONFIGS
from eilab.analysis.spectra import (
    Eigenvalues,
    SingularSteadyStateError,
    SpectrumPrediction,
    eigenvalues,
    linear_modes,
    plot_spectrum,
    predicted_spectrum,
    rajan_abbott,
    steady_state,
    weight_matrix,
)
from eilab.sim.config import Config, load_config
from eilab.sim.network import build_connectivity

BRUNEL = CONFIGS / "brunel.toml"
Brunel = tuple[Config, sp.csr_matrix, Eigenvalues, SpectrumPrediction]


def tiny_config(J: float = 0.125, g: float = 5.0, kE: int = 8, kI: int = 2) -> dict:
    """Brunel-like E/I network, fixed in-degree with multapses, weights exact in binary."""
    pop = {"model": "lif_delta", "params": {"E_L": 0.0, "V_th": 20.0, "V_reset": 10.0}}
    proj = lambda pre, post, k, w: {"pre": pre, "post": post, "rule": "fixed_indegree", "k": k,  # noqa: E731
                                    "weight": w, "delay_ms": 1.5}
    return {
        "run": {"t_ms": 10.0, "seed": 7, "progress": False},
        "populations": [{"name": "E", "n": 40, "type": "E", **pop}, {"name": "I", "n": 10, "type": "I", **pop}],
        "projections": [proj("E", "E", kE, J), proj("E", "I", kE, J), proj("I", "E", kI, g * J),
                        proj("I", "I", kI, g * J)],
    }


def reference_matrix(cfg: Config) -> np.ndarray:
    """W[post, pre] by a plain loop over every synapse of the stored CSR."""
    conn = build_connectivity(cfg, 0, cfg.n_total)
    W = np.zeros((cfg.n_total, cfg.n_total))
    for q in range(conn.pre_gid0.size):
        w = -conn.weight[q] if conn.receptor[q] == 1 else conn.weight[q]
        start, end = conn.rows(q)
        for r in range(conn.pre_n[q]):
            for t in conn.targets[start[r] : end[r]]:
                W[t, conn.pre_gid0[q] + r] += w
    return W


def brunel_overrides(order: int = 500, bernoulli: float | None = None, g: float | None = None) -> list[str]:
    over = [f"vars.order={order}"] + ([f"vars.g={g}"] if g is not None else [])
    if bernoulli is not None:
        for q in ("EE", "EI", "IE", "II"):
            over += [f'projections.{q}.rule="bernoulli"', f"projections.{q}.p={bernoulli}"]
    return over


# ---------------------------------------------------------------- the matrix
def test_weight_matrix_tiny_fixed_indegree() -> None:
    cfg, _ = load_config(raw=tiny_config())
    W = weight_matrix(cfg)
    assert isinstance(W, sp.csr_matrix) and W.shape == (50, 50) and W.has_canonical_format
    # every row: k_E J - k_I g J = 8 * 0.125 - 2 * 0.625, exactly (all terms are binary fractions)
    assert np.array_equal(np.asarray(W.sum(axis=1)).ravel(), np.full(50, -0.25))
    D = W.toarray()
    np.testing.assert_array_equal(D, reference_matrix(cfg))
    assert np.all(D[:, :40] >= 0) and np.all(D[:, 40:] <= 0)  # Dale's law: E columns excite, I inhibit
    np.testing.assert_array_equal(D[:, :40].sum(axis=1) / 0.125, 8)  # in-degrees, multapses counted
    np.testing.assert_array_equal(D[:, 40:].sum(axis=1) / -0.625, 2)
    assert np.all(np.diag(D) == 0)  # no autapses
    n_syn = build_connectivity(cfg, 0, 50).n_synapses
    assert n_syn == 50 * 10
    assert W.nnz == np.count_nonzero(D) < n_syn  # multapses merged into one entry ...
    assert D[:, :40].max() >= 2 * 0.125  # ... whose weights add


def test_weight_matrix_takes_learned_weights_in_canonical_order() -> None:
    """A plastic projection's stored weights (targets by gid, then presynaptic index) land on their synapses."""
    raw = tiny_config()
    raw["projections"][2]["plasticity"] = {"rule": "vogels2011", "eta": 0.1}
    raw["projections"][2]["name"] = "IE"
    cfg, _ = load_config(raw=raw)
    conn = build_connectivity(cfg, 0, 50)
    start, end = conn.rows(2)
    pairs = sorted((int(t), 40 + r) for r in range(10) for t in conn.targets[start[r] : end[r]])
    learned = np.arange(1.0, len(pairs) + 1)
    expected = reference_matrix(cfg)
    expected[:40, 40:] = 0.0
    for (post, pre), w in zip(pairs, learned, strict=True):
        expected[post, pre] -= w
    np.testing.assert_array_equal(weight_matrix(cfg, {"IE": learned}).toarray(), expected)


# ---------------------------------------------------------------- Brunel, fixed in-degree: dense spectrum
@pytest.fixture(scope="module")
def brunel() -> Brunel:
    cfg, _ = load_config(BRUNEL, brunel_overrides(500))
    W = weight_matrix(cfg)
    return cfg, W, eigenvalues(W), predicted_spectrum(cfg)


def test_brunel_row_sums_and_outlier_exact(brunel: Brunel) -> None:
    cfg, W, ev, pred = brunel
    J, g, C_E, C_I = (cfg.vars[k] for k in ("J", "g", "C_E", "C_I"))
    expected = J * (C_E - g * C_I)  # 0.1 (200 - 5 * 50) = -5
    assert cfg.n_total == 2500 and W.shape == (2500, 2500)
    np.testing.assert_allclose(np.asarray(W.sum(axis=1)).ravel(), expected, rtol=1e-12)
    assert ev.method == "dense" and ev.complete and ev.values.size == 2500
    assert pred.outliers.size == 1 and pred.outliers[0] == pytest.approx(expected, rel=1e-12)
    # constant row sums make the all-ones vector an exact eigenvector: lambda = J (C_E - g C_I)
    closest = ev.values[np.argmin(np.abs(ev.values - expected))]
    assert abs(closest - expected) / abs(expected) < 1e-9
    assert closest == ev.values[0]  # and it is the largest in modulus (|-5| > r = 3.80)


def test_brunel_bulk_radius(brunel: Brunel) -> None:
    cfg, W, ev, pred = brunel
    J, g, C_E, C_I = (cfg.vars[k] for k in ("J", "g", "C_E", "C_I"))
    # fixed in-degree with multapses: entry ~ Binomial(k, 1/n) J, so V_b = k_b (1 - 1/n_b) J_b^2
    # (E->E and I->I draw from n - 1 candidates, no autapses): r = 3.8045
    assert pred.radius == pytest.approx(np.sqrt(C_E * J**2 + C_I * (g * J) ** 2), rel=1e-3)
    bulk = np.abs(ev.values[1:])  # all but the outlier
    assert bulk.max() == pytest.approx(pred.radius, rel=0.05)  # measured 3.953: +3.9 %
    # ARPACK (sparse path) finds the same largest eigenvalues
    top = eigenvalues(W, dense_limit=0, k=20)
    assert top.method == "arpack" and not top.complete
    np.testing.assert_allclose(np.abs(top.values), np.abs(ev.values[:20]), atol=1e-9)
    assert np.abs(top.values[:, None] - ev.values[None, :]).min(axis=1).max() < 1e-9  # (conjugates may swap)


# ---------------------------------------------------------------- Bernoulli
def test_bernoulli_bulk_radius_and_outlier() -> None:
    # Brunel order 500 with Bernoulli p = 0.1 and g = 8: outlier J (p (n_E - 1) - g p n_I) = -19.83 far out
    cfg, _ = load_config(BRUNEL, brunel_overrides(500, bernoulli=0.1, g=8.0))
    W = weight_matrix(cfg)
    pred = predicted_spectrum(cfg)
    J, g, p = 0.1, 8.0, 0.1
    # Rajan & Abbott (2006): r^2 = N_E p (1 - p) J^2 + N_I p (1 - p) g^2 J^2
    # (up to the n - 1 candidates without autapses)
    assert pred.radius == pytest.approx(np.sqrt(p * (1 - p) * J**2 * (2000 + 500 * g**2)), rel=1e-3)
    assert pred.outliers.size == 1 and pred.outliers[0].real == pytest.approx(-19.829, abs=1e-3)
    ev = eigenvalues(W, dense_limit=0, k=12)
    # row sums fluctuate here, so the outlier moves by about |m| r / |lambda| = 0.5 (measured -18.64)
    assert ev.values[0].real == pytest.approx(pred.outliers[0].real, rel=0.1)
    assert abs(ev.values[1]) == pytest.approx(pred.radius, rel=0.05)  # measured 5.726 vs 5.527: +3.6 %


# ---------------------------------------------------------------- ring: deterministic, every eigenvalue closed form
def test_ring600_spectrum_is_its_fourier_modes() -> None:
    cfg, _ = load_config(CONFIGS / "ring600.toml")  # p = 1 box ring: W is its own mean matrix
    pred = predicted_spectrum(cfg)
    assert pred.radius == 0.0
    np.testing.assert_allclose(pred.mean_matrix, [[30 * 0.016, -31 * 0.013], [31 * 0.018, -30 * 0.010]])
    ev = eigenvalues(weight_matrix(cfg))
    assert ev.values.size == 600 and pred.outliers.size == 600
    # block-circulant W: mode m has the eigenvalues of [K_ab(m) J_ab], K(m) = sum_d P(d) cos(2 pi m d / 300)
    D = np.abs(ev.values[:, None] - pred.outliers[None, :])
    rows, cols = linear_sum_assignment(D)
    assert D[rows, cols].max() < 1e-12


# ---------------------------------------------------------------- linear rate network
def symmetric_network() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    lam = np.array([0.9, 0.5, 0.2, -0.8, -2.0])
    Q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(5, 5)))
    h = np.array([1.0, -0.5, 2.0, 0.3, 0.7])
    return Q @ np.diag(lam) @ Q.T, lam, Q, h


def test_steady_state_matches_inverse() -> None:
    W, lam, Q, h = symmetric_network()
    expected = Q @ np.diag(1.0 / (1.0 - lam)) @ Q.T @ h  # (I - W)^-1 h from the eigen-decomposition
    np.testing.assert_allclose(steady_state(W, h), expected, rtol=1e-12)
    np.testing.assert_allclose(steady_state(sp.csr_matrix(W), h), expected, rtol=1e-12)
    np.testing.assert_allclose(steady_state(sp.csr_matrix(W), h, dense_limit=0), expected, rtol=1e-8)  # GMRES


def test_mode_time_constants_match_integration() -> None:
    W, lam, Q, h = symmetric_network()
    tau = 10.0  # ms
    modes = linear_modes(lam, tau)
    r_ss = steady_state(W, h)
    r0 = r_ss + Q @ np.ones(5)  # every mode displaced by 1
    t = np.linspace(0.0, 2000.0, 20001)  # ms; the slowest mode relaxes with tau / 0.1 = 100 ms
    sol = solve_ivp(lambda _, r: (-r + W @ r + h) / tau, (0.0, 2000.0), r0, t_eval=t, method="DOP853",
                    rtol=1e-12, atol=1e-14)
    assert sol.success
    np.testing.assert_allclose(sol.y[:, -1], r_ss, atol=1e-6)
    coeffs = Q.T @ (sol.y - r_ss[:, None])  # projection on the eigenvectors
    for nu in range(5):
        c = np.abs(coeffs[nu])
        use = (c > 1e-6) & (c < 0.9)  # clear of the start and of the integration error floor
        slope = np.polyfit(t[use], np.log(c[use]), 1)[0]
        fitted = -1.0 / slope
        assert fitted == pytest.approx(tau / (1.0 - lam[nu]), rel=0.01)
        assert modes.relaxation_ms[nu].real == pytest.approx(fitted, rel=0.01)
        assert modes.amplification[nu].real == pytest.approx(1.0 / (1.0 - lam[nu]), rel=1e-12)


def test_linear_mode_flags_and_closed_forms() -> None:
    m = linear_modes(np.array([1.0, 1.2, 0.5, 0.5 + 0.5j]), tau_ms=20.0)
    assert m.integrating.tolist() == [True, False, False, False]
    assert m.diverging.tolist() == [False, True, False, False]
    assert np.isinf(m.amplification[0]) and np.isinf(m.decay_ms[0])
    assert m.decay_ms[1] == pytest.approx(-100.0)  # grows with e-folding time 20 / 0.2 ms
    assert m.relaxation_ms[3] == pytest.approx(20.0 + 20.0j)  # 20 / (0.5 - 0.5 i)
    assert m.decay_ms[3] == pytest.approx(40.0)
    assert m.frequency_hz[3] == pytest.approx(0.5 / (2 * np.pi * 20.0) * 1000.0)
    assert m.amplification[2] == pytest.approx(2.0)


def test_eigenvalues_dense_fallback_for_large_k() -> None:
    W = sp.random(30, 30, density=0.2, random_state=1, format="csr")
    ev = eigenvalues(W, dense_limit=0, k=29)  # ARPACK needs k < N - 1: falls back to dense
    assert ev.method == "dense" and ev.values.size == 30
    assert np.all(np.diff(np.abs(ev.values)) <= 1e-12)  # sorted by decreasing modulus


# ---------------------------------------------------------------- figure
def test_plot_spectrum_writes_png(tmp_path: Path) -> None:
    cfg, _ = load_config(raw=tiny_config())
    ev = eigenvalues(weight_matrix(cfg))
    out = plot_spectrum(ev, predicted_spectrum(cfg), tmp_path / "fig" / "spectrum.png")
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bare = plot_spectrum(ev.values, None, tmp_path / "bare.png")
    assert bare.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- multapses and the bulk radius
@pytest.mark.parametrize("multapses", [True, False])
def test_fixed_indegree_radius_with_and_without_multapses(multapses: bool) -> None:
    """k = n/2: with multapses an entry is J Binomial(k, 1/n), row variance k (1 - 1/n) J^2; with k distinct
    partners J Bernoulli(k/n), k (1 - k/n) J^2 (about half). g = 4 makes the outlier J (k_E - g k_I) = 0."""
    raw = tiny_config(J=0.125, g=4.0, kE=200, kI=50)
    raw["populations"][0]["n"], raw["populations"][1]["n"] = 400, 100
    for proj in raw["projections"]:
        proj["multapses"] = multapses
    cfg, _ = load_config(raw=raw)
    pred = predicted_spectrum(cfg)
    J, gJ = 0.125, 0.5
    n_e = np.array([399, 400])  # candidates of E->E (no autapses) and E->I, likewise I->E and I->I
    n_i = np.array([100, 99])
    if multapses:
        var = 200 * (1 - 1 / n_e) * J**2 + 50 * (1 - 1 / n_i) * gJ**2
    else:
        var = 200 * (1 - 200 / n_e) * J**2 + 50 * (1 - 50 / n_i) * gJ**2
    np.testing.assert_allclose(np.diag(pred.variance_matrix.sum(axis=1)), np.diag(var), rtol=1e-12)
    V = pred.variance_matrix
    assert pred.radius == pytest.approx(np.sqrt(np.max(np.abs(np.linalg.eigvals(V)))), rel=1e-12)
    assert pred.radius == pytest.approx(np.sqrt(var.mean()), rel=0.01)
    other = np.sqrt(np.mean(200 * (1 - 200 / n_e) * J**2 + 50 * (1 - 50 / n_i) * gJ**2)) if multapses else \
        np.sqrt(np.mean(200 * (1 - 1 / n_e) * J**2 + 50 * (1 - 1 / n_i) * gJ**2))
    assert pred.radius_multapses_flipped == pytest.approx(other, rel=0.01)
    assert "Binomial(k, 1/n)" in pred.formula
    ev = eigenvalues(weight_matrix(cfg)).values
    edge = np.quantile(np.abs(ev), 0.99)  # the bulk's edge: max |lambda| of n = 500 overshoots it by 5-12 %
    assert edge == pytest.approx(pred.radius, rel=0.05)
    assert abs(edge - pred.radius) < abs(edge - other)  # the setting matters


# ---------------------------------------------------------------- Rajan & Abbott (2006)
def rajan_abbott_sample(n: int, f: float, mu: tuple[float, float], sigma: tuple[float, float],
                        zero_row_sum: bool, seed: int) -> np.ndarray:
    """J_ij = (mu_j + sigma_j xi_ij) / sqrt(N), E columns first; rows shifted to sum to zero when asked."""
    n_e = round(f * n)
    m = np.r_[np.full(n_e, mu[0]), np.full(n - n_e, mu[1])]
    s = np.r_[np.full(n_e, sigma[0]), np.full(n - n_e, sigma[1])]
    J = (m + s * np.random.default_rng(seed).standard_normal((n, n))) / np.sqrt(n)
    return J - J.mean(axis=1, keepdims=True) if zero_row_sum else J


def test_rajan_abbott_radius_with_zero_row_sums() -> None:
    """f = 0.8, sigma_E = 1, sigma_I = 2: radius sqrt(0.8 + 0.2 * 4) = 1.2649; balanced means 0.8 - 0.2 * 4 = 0."""
    pred = rajan_abbott(0.8, 1.0, -4.0, 1.0, 2.0, 1000)
    assert pred.radius == pytest.approx(np.sqrt(1.6), rel=1e-15) and pred.outlier is None
    ev = np.linalg.eigvals(rajan_abbott_sample(1000, 0.8, (1.0, -4.0), (1.0, 2.0), True, seed=3))
    assert np.abs(ev).max() == pytest.approx(pred.radius, rel=0.05)
    assert np.mean(np.abs(ev) < pred.radius) > 0.99
    # the same means without the constraint: eigenvalues escape the disk (Rajan & Abbott's Fig. 2)
    loose = np.linalg.eigvals(rajan_abbott_sample(500, 0.8, (1.0, -4.0), (1.0, 2.0), False, seed=3))
    assert np.abs(loose).max() > 1.1 * pred.radius
    # unbalanced means: one real outlier at sqrt(N) (f mu_E + (1 - f) mu_I) = sqrt(500) 1.2 = 26.8
    out = rajan_abbott(0.8, 2.0, -2.0, 1.0, 2.0, 500, zero_row_sum=False)
    assert out.outlier == pytest.approx(np.sqrt(500) * 1.2, rel=1e-12)
    ev = np.linalg.eigvals(rajan_abbott_sample(500, 0.8, (2.0, -2.0), (1.0, 2.0), False, seed=4))
    ev = ev[np.argsort(-np.abs(ev))]
    assert ev[0].real == pytest.approx(out.outlier, rel=0.02)
    assert abs(ev[1]) < 1.1 * out.radius  # the rest stays in the bulk (N = 500: edge about 4 % out)


# ---------------------------------------------------------------- singular I - W
def test_steady_state_flags_an_integrating_mode() -> None:
    """W with eigenvalue 1: (I - W) r = h has a line of solutions r0 + t q (q the lambda = 1 eigenvector)
    when h has no component along q, and none otherwise (the mode integrates h . q)."""
    lam = np.array([1.0, 0.5, 0.2, -0.8, -2.0])
    Q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(5, 5)))
    W = Q @ np.diag(lam) @ Q.T
    assert linear_modes(np.linalg.eigvals(W), 10.0).integrating.sum() == 1
    h = Q[:, 1:] @ np.array([1.0, -2.0, 0.5, 3.0])
    with pytest.raises(SingularSteadyStateError, match="a line of steady states") as line:
        steady_state(W, h)
    err = line.value
    assert err.kind == "family" and err.dim == 1
    np.testing.assert_allclose(np.abs(err.null[:, 0]), np.abs(Q[:, 0]), atol=1e-10)
    np.testing.assert_allclose((np.eye(5) - W) @ err.r_particular, h, atol=1e-10)
    np.testing.assert_allclose(err.r_particular, Q[:, 1:] @ (np.array([1.0, -2.0, 0.5, 3.0]) / (1 - lam[1:])),
                               atol=1e-10)  # the minimum-norm member: no component along q
    with pytest.raises(SingularSteadyStateError, match="no steady state") as none:
        steady_state(W, h + 0.1 * Q[:, 0])
    assert none.value.kind == "none" and none.value.r_particular is None
