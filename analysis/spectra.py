"""Eigenvalues of the actual connectivity, their random-matrix prediction and linear rate modes.

Definitions: Rajan & Abbott (2006), Phys Rev Lett 97:188104; per-block variances as in Aljadeff, Stern &
Sharpee (2015), Phys Rev Lett 114:088101.

W[post, pre] is the summed signed weight of all synapses pre -> post (multapses add; signed by the projection's
`sign`, by default inhibitory presynaptic neurons negative; a rate network's `matrix.file`, scaled, added), in the
projections' weight unit: mV for delta synapses, pA for
current synapses, nS for conductances, with the 1/sqrt(N) factor of ``scale = "sqrt_n"`` applied.
The linear rate view (tau dr/dt = -r + W r + h) reads W as a dimensionless gain matrix: multiply by
the neurons' rate-response slope first when the weights carry units.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from eilab.analysis.balance import ring_profile, weight_stats
from eilab.sim.config import Config, Projection, file_weights
from eilab.sim.network import build_connectivity


# ---------------------------------------------------------------- the matrix
def weight_matrix(cfg: Config, learned: Mapping[str, np.ndarray] | None = None,
                  matrix: np.ndarray | None = None) -> sp.csr_matrix:
    """N x N connectivity W[post, pre] of `cfg` (e.g. ``open_run(path).config``), built as the run builds it.

    Entries are summed signed weights in the projections' unit (multapses add, signs by `Config.sign_of`:
    I columns negative unless a rate network says otherwise), plus matrix.scale times the W of a rate
    network's `matrix.file` (`matrix`: that W as stored in the run, connectivity/W; default: read the file).
    `learned` maps plastic projections to per-synapse weights in the store's canonical order (one
    snapshot of ``Run.weights(name)``), used instead of their initial weight.
    Vectorised over synapses: ~15 M synapses (Brunel order 2500) take seconds beyond the build itself.
    """
    learned = learned or {}
    n = cfg.n_total
    conn = build_connectivity(cfg, 0, n)  # lo = 0, hi = N: local target indices are gids
    posts, pres, vals = [], [], []
    for q in range(conn.pre_gid0.size):
        pre, post = conn.synapses(q)
        if post.size == 0:
            continue
        posts.append(post)
        pres.append((conn.pre_gid0[q] + pre).astype(np.int32))
        sign = cfg.sign_of(cfg.projections[q])
        name = cfg.projections[q].name
        if name in learned:  # canonical order is by target, then presynaptic index: a stable sort of targets
            w = np.empty(post.size)
            w[np.argsort(post, kind="stable")] = learned[name]
            vals.append(sign * w)
        else:
            vals.append(sign * conn.weights(q))
    W = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(posts), np.concatenate(pres))), shape=(n, n)
    ).tocsr() if posts else sp.csr_matrix((n, n), dtype=np.float64)
    extra = file_weights(cfg, matrix)
    if extra is not None:
        W = W + sp.csr_matrix(extra)
    W.sum_duplicates()  # multapses: one entry with the summed weight
    W.sort_indices()
    return W


# ---------------------------------------------------------------- eigenvalues
class Eigenvalues(NamedTuple):
    """Eigenvalues sorted by decreasing modulus and how they were obtained."""

    values: np.ndarray  # complex128
    method: str         # "dense" (all N, numpy.linalg.eigvals) or "arpack" (k of largest modulus)
    complete: bool      # True when all N eigenvalues are present


def eigenvalues(W: sp.spmatrix | np.ndarray, dense_limit: int = 10000, k: int = 200) -> Eigenvalues:
    """All eigenvalues (dense LAPACK) for N <= dense_limit, else the k of largest modulus (ARPACK).

    Units: those of W. The dense path needs 8 N^2 bytes and O(N^3) time (N = 2500: ~30 s on 2 cores).
    ARPACK falls back to the dense path when k >= N - 1; if it does not converge, the converged
    eigenvalues are returned with a warning and method "arpack (k' of k converged)".
    """
    n = W.shape[0]
    if W.shape != (n, n):
        raise ValueError(f"W must be square, got shape {W.shape}")
    if n <= dense_limit or k >= n - 1:
        dense = W.toarray() if sp.issparse(W) else np.asarray(W, dtype=np.float64)
        vals = np.linalg.eigvals(dense).astype(np.complex128)
        return Eigenvalues(_by_modulus(vals), "dense", True)
    A = W.tocsr().astype(np.float64) if sp.issparse(W) else np.asarray(W, dtype=np.float64)
    try:
        v0 = np.random.default_rng(0).standard_normal(n)  # a fixed start vector: reproducible results
        vals = spla.eigs(A, k=k, which="LM", return_eigenvectors=False, v0=v0, ncv=min(n - 1, max(3 * k, k + 40)))
        method = "arpack"
    except spla.ArpackNoConvergence as e:
        vals = e.eigenvalues
        method = f"arpack ({vals.size} of {k} converged)"
        warnings.warn(f"ARPACK converged for only {vals.size} of {k} eigenvalues", RuntimeWarning, stacklevel=2)
    return Eigenvalues(_by_modulus(np.asarray(vals, np.complex128)), method, False)


def _by_modulus(vals: np.ndarray) -> np.ndarray:
    return vals[np.lexsort((vals.imag, vals.real, -np.abs(vals)))]


# ---------------------------------------------------------------- random-matrix prediction
@dataclass
class SpectrumPrediction:
    """Random-matrix prediction of the spectrum of W (units of W)."""

    radius: float               # bulk radius r
    outliers: np.ndarray        # complex, eigenvalues of the mean matrix with |lambda| > r, by decreasing modulus
    formula: str                # the formulas used, with the numbers of this config
    populations: list[str]      # order of the rows/columns below
    mean_matrix: np.ndarray     # M_ab = K_ab J_ab (signed), expected summed weight from b onto one neuron of a
    variance_matrix: np.ndarray  # V_ab = sum over pre in b of Var W[post in a, pre]
    radius_multapses_flipped: float | None = None  # the radius had every fixed_indegree projection the
    # other multapses setting (None without fixed_indegree projections): what allowing multapses changes


def _candidates(pr: Projection, n_pre: int) -> int:
    """Presynaptic neurons a postsynaptic neuron can draw from (its own index excluded without autapses)."""
    return n_pre - (1 if pr.pre == pr.post and not pr.autapses else 0)


def _ring_profile(pr: Projection, n_pre: int, n_post: int) -> np.ndarray:
    """Connection probability P_i of pre i onto post j = 0, exactly as network._inputs_of computes it."""
    i = np.arange(n_pre, dtype=np.int64)
    ring = n_pre * n_post
    diff = i * n_post
    d = np.minimum(diff, ring - diff) / ring
    prob = np.minimum(ring_profile(pr.profile, d, float(pr.p), pr.width), 1.0)
    prob[d > pr.radius * (1.0 + 1e-9) + 1e-12] = 0.0
    if pr.pre == pr.post and not pr.autapses:
        prob[0] = 0.0
    return prob


def _projection_moments(pr: Projection, n_pre: int, n_post: int, J: float, s2: float = 0.0,
                        multapses: bool | None = None) -> tuple[float, float, str]:
    """(expected in-degree K, summed entry variance V, text) of one projection onto one post neuron.

    J: mean weight of a synapse, s2: its variance (a weight_dist). Fixed in-degree with multapses: the k
    inputs are drawn with replacement, so an entry is the sum of a Binomial(k, 1/n) number of weights:
    k (1 - 1/n) J^2 + k s2 per row, against k (1 - k/n) J^2 + k s2 for k distinct partners (p = k/n).
    `multapses` overrides the projection's setting.
    """
    n_c = _candidates(pr, n_pre)
    extra = f" + K s2, s2 = {s2:g}" if s2 else ""
    if pr.rule == "fixed_indegree":
        k = float(pr.k)
        if n_c <= 0 or k == 0:
            return 0.0, 0.0, "k = 0"
        if pr.multapses if multapses is None else multapses:  # each entry Binomial(k, 1/n_c) weights
            return k, k * ((1.0 - 1.0 / n_c) * J**2 + s2), f"k (1 - 1/n) J^2 = {k:g} (1 - 1/{n_c}) {J:g}^2" + extra
        return k, k * ((1.0 - k / n_c) * J**2 + s2), f"k (1 - k/n) J^2 = {k:g} (1 - {k:g}/{n_c}) {J:g}^2" + extra
    if pr.rule == "bernoulli":
        p = float(pr.p)
        return (n_c * p, n_c * p * ((1.0 - p) * J**2 + s2),
                f"n p (1 - p) J^2 = {n_c} {p:g} (1 - {p:g}) {J:g}^2" + extra)
    P = _ring_profile(pr, n_pre, n_post)
    return (float(P.sum()), float((P * (1.0 - P)).sum()) * J**2 + float(P.sum()) * s2,
            "sum_i P_i (1 - P_i) J^2 (ring profile P)" + extra)


def predicted_spectrum(cfg: Config) -> SpectrumPrediction:
    """Bulk radius and outliers of W for `cfg` from the means and variances of its entries.

    Bulk: r^2 = spectral radius of V, V_ab = sum over pre in b of Var W[j in a, pre] (per projection:
    fixed in-degree k(1 - 1/n)J^2 with multapses, k(1 - k/n)J^2 without; Bernoulli n p(1 - p)J^2;
    ring sum_i P_i(1 - P_i)J^2). When V_ab does not depend on a this is Rajan & Abbott's
    r^2 = sum_b N_b p_b(1 - p_b)J_b^2. Outliers: eigenvalues of the population mean matrix
    M_ab = K_ab J_ab (K expected in-degree, J signed) with modulus above r; ring projections add one
    such matrix per Fourier mode m, K_ab(m) = sum_i P_i cos(2 pi m i / n_b) (exact for a deterministic ring
    whose populations have equal sizes, approximate otherwise). J takes its sign from `Config.sign_of`.
    A rate network's `matrix.file` is a given matrix, not a random one: it is not part of the prediction.
    Units: those of W.
    """
    pops = [p.name for p in cfg.populations]
    size = {p.name: p.n for p in cfg.populations}
    idx = {name: a for a, name in enumerate(pops)}
    npop = len(pops)
    M = np.zeros((npop, npop))
    V = np.zeros((npop, npop))
    V_flip = np.zeros((npop, npop))
    ring_terms: list[tuple[int, int, float, np.ndarray]] = []
    lines = []
    stats = weight_stats(cfg)
    for pr in cfg.projections:
        a, b = idx[pr.post], idx[pr.pre]
        _, J, s2 = stats[pr.name]
        K, var, text = _projection_moments(pr, size[pr.pre], size[pr.post], J, s2)
        M[a, b] += K * J
        V[a, b] += var
        V_flip[a, b] += _projection_moments(pr, size[pr.pre], size[pr.post], J, s2, not pr.multapses)[1] \
            if pr.rule == "fixed_indegree" else var
        lines.append(f"  {pr.name} ({pr.pre}->{pr.post}, {pr.rule}): K = {K:.6g}, K J = {K * J:.6g}, "
                     f"V = {text} = {var:.6g}")
        if pr.rule == "ring":
            ring_terms.append((a, b, J, _ring_profile(pr, size[pr.pre], size[pr.post])))

    radius = _radius(V)
    fixed = [pr for pr in cfg.projections if pr.rule == "fixed_indegree"]
    flipped = _radius(V_flip) if fixed else None
    means = [np.linalg.eigvals(M)]
    if ring_terms:  # Fourier modes m >= 1 of the ring projections (m = 0 is M itself)
        n_modes = min(P.size for _, _, _, P in ring_terms)
        Mm = np.zeros((n_modes - 1, npop, npop))
        for a, b, J, P in ring_terms:
            Mm[:, a, b] += J * np.fft.fft(P).real[1:n_modes]  # sum_i P_i cos(2 pi m i / n_b)
        means.append(np.linalg.eigvals(Mm).ravel())
    mean_eigs = np.concatenate(means).astype(np.complex128)
    scale = max(float(np.abs(M).max(initial=0.0)), radius, 1e-300)
    keep = np.abs(mean_eigs) > max(radius, 1e-9 * scale)
    outliers = _by_modulus(mean_eigs[keep])

    col_only = bool(np.allclose(V, V[:1, :], rtol=1e-12, atol=0.0)) if npop else True
    head = [
        "Rajan & Abbott (2006), per-block variances (Aljadeff et al. 2015); units of W.",
        "bulk radius r = sqrt(rho(V)), V_ab = sum over pre in b of Var W[post in a, pre]"
        + (" = sqrt(sum_b V_b) (V_ab independent of a)" if col_only else ""),
        f"  r = {radius:.6g}",
    ] + ([
        "fixed_indegree: with multapses an entry is w Binomial(k, 1/n) (variance k (1 - 1/n) w^2 per row), "
        "with distinct partners w Bernoulli(k/n) (k (1 - k/n) w^2 per row)",
        f"  r = {flipped:.6g} with the other multapses setting of "
        + ", ".join(f"{pr.name} (multapses={str(pr.multapses).lower()})" for pr in fixed),
    ] if fixed else []) + [
        "outliers: eigenvalues of the mean matrix M_ab = K_ab J_ab with |lambda| > r"
        + (" (and of K_ab(m) J_ab, K_ab(m) = sum_i P_i cos(2 pi m i/n_b), per ring Fourier mode m)"
           if ring_terms else ""),
        f"  M = {np.array2string(M, precision=6)}",
        f"  outliers = {np.array2string(outliers[:8], precision=6)}" + (" ..." if outliers.size > 8 else ""),
        "per projection:",
    ]
    return SpectrumPrediction(radius, outliers, "\n".join(head + lines), pops, M, V, flipped)


def _radius(V: np.ndarray) -> float:
    """Bulk radius sqrt(rho(V)) of a block variance matrix V (Aljadeff et al. 2015)."""
    return math.sqrt(max(float(np.max(np.abs(np.linalg.eigvals(V)))), 0.0)) if V.size else 0.0


class RajanAbbott(NamedTuple):
    """Rajan & Abbott (2006) prediction for J_ij = (mu_j + sigma_j xi_ij) / sqrt(N) (units of J)."""

    radius: float          # sqrt(f sigma_E^2 + (1 - f) sigma_I^2)
    outlier: float | None  # sqrt(N) (f mu_E + (1 - f) mu_I) when outside the bulk; None otherwise


def rajan_abbott(f: float, mu_e: float, mu_i: float, sigma_e: float, sigma_i: float, n: int,
                 zero_row_sum: bool = True) -> RajanAbbott:
    """Bulk radius and outlier of an E/I matrix with a fraction f of E columns (Rajan & Abbott 2006).

    Columns j of type E have entries (mu_E + sigma_E xi_ij) / sqrt(N), I columns (mu_I + sigma_I xi_ij) / sqrt(N),
    xi standard normal. Eigenvalues fill a disk of radius sqrt(f sigma_E^2 + (1 - f) sigma_I^2). With the
    zero-row-sum constraint (each row's sum subtracted evenly from its entries, as Rajan & Abbott impose for
    exact balance) the disk holds every eigenvalue: the mean part vanishes (the uniform vector has eigenvalue 0),
    and no eigenvalue escapes the disk. Without it, the mean adds the real outlier sqrt(N) (f mu_E + (1 - f) mu_I)
    when that exceeds the radius.
    """
    if not 0.0 <= f <= 1.0 or n < 1:
        raise ValueError(f"need 0 <= f <= 1 and n >= 1, got f = {f}, n = {n}")
    radius = math.sqrt(f * sigma_e**2 + (1.0 - f) * sigma_i**2)
    mean = math.sqrt(n) * (f * mu_e + (1.0 - f) * mu_i)
    return RajanAbbott(radius, None if zero_row_sum or abs(mean) <= radius else mean)


# ---------------------------------------------------------------- linear rate modes
@dataclass
class LinearModes:
    """Modes of tau dr/dt = -r + W r + h, one per eigenvalue lambda of W (dimensionless gain)."""

    eigenvalues: np.ndarray    # complex
    amplification: np.ndarray  # complex, 1 / (1 - lambda): steady-state gain of the mode (inf if integrating)
    relaxation_ms: np.ndarray  # complex, tau / (1 - lambda): the mode evolves as exp(-t / relaxation)
    decay_ms: np.ndarray       # tau / (1 - Re lambda): e-folding time of the amplitude (< 0: growth)
    frequency_hz: np.ndarray   # |Im lambda| / (2 pi tau), oscillation frequency, Hz
    integrating: np.ndarray    # bool, |1 - lambda| < tol
    diverging: np.ndarray      # bool, Re lambda > 1 (and not integrating)


def linear_modes(eigs: np.ndarray, tau_ms: float, tol: float = 1e-9) -> LinearModes:
    """Amplification, relaxation time (ms), decay time (ms), frequency (Hz) and flags of each mode."""
    lam = np.asarray(eigs, dtype=np.complex128).ravel()
    one_minus = 1.0 - lam
    integrating = np.abs(one_minus) < tol
    diverging = (lam.real > 1.0) & ~integrating
    with np.errstate(divide="ignore", invalid="ignore"):
        amp = np.where(integrating, np.inf + 0j, 1.0 / np.where(integrating, 1.0, one_minus))
        relax = tau_ms * amp
        decay = np.where(one_minus.real == 0.0, np.inf, tau_ms / np.where(one_minus.real == 0.0, 1.0,
                                                                         one_minus.real))
    freq = np.abs(lam.imag) / (2.0 * np.pi * tau_ms) * 1000.0
    return LinearModes(lam, amp, relax, decay, freq, integrating, diverging)


class SingularSteadyStateError(ValueError):
    """I - W is singular (an eigenvalue lambda = 1 of W, an integrating mode): (I - W) r = h has no solution
    (kind "none": h drives the integrator) or a family of them of dimension `dim` (kind "family": a line
    when dim = 1), r_particular + span(null)."""

    def __init__(self, kind: str, dim: int, rcond: float, r_particular: np.ndarray | None,
                 null: np.ndarray) -> None:
        what = ("no steady state: h has a component along an integrating mode, which grows linearly in time"
                if kind == "none" else
                ("a line" if dim == 1 else f"a {dim}-dimensional family") + " of steady states")
        super().__init__(f"I - W is singular (lambda = 1, reciprocal condition {rcond:.2g}): {what}")
        self.kind, self.dim, self.rcond, self.r_particular, self.null = kind, dim, rcond, r_particular, null


SINGULAR_RCOND = 1e-12  # reciprocal condition number of I - W below which it counts as singular


def _singular_system(A: np.ndarray, h: np.ndarray, rcond: float) -> SingularSteadyStateError:
    """Classify (I - W) r = h for singular A = I - W by its SVD: consistent (a family) or not (none)."""
    U, s, Vt = np.linalg.svd(A)
    tol = max(SINGULAR_RCOND * s[0], np.finfo(float).eps * A.shape[0] * s[0])
    rank = int(np.sum(s > tol))
    null = Vt[rank:].T
    cols = h.reshape(A.shape[0], -1)
    coef = U.T @ cols
    leftover = np.linalg.norm(coef[rank:], axis=0)
    consistent = bool(np.all(leftover <= 1e-9 * np.maximum(np.linalg.norm(cols, axis=0), 1e-300)))
    if not consistent:
        return SingularSteadyStateError("none", null.shape[1], rcond, None, null)
    particular = Vt[:rank].T @ (coef[:rank] / s[:rank, None])
    return SingularSteadyStateError("family", null.shape[1], rcond, particular.reshape(h.shape), null)


def steady_state(W: sp.spmatrix | np.ndarray, h: np.ndarray, dense_limit: int = 10000) -> np.ndarray:
    """Fixed point r of tau dr/dt = -r + W r + h: solves (I - W) r = h (units of h).

    Dense LU for N <= dense_limit, else GMRES (rtol 1e-10). The fixed point is reached from any start
    only when every eigenvalue has Re lambda < 1 (see `linear_modes`). When I - W is singular (an integrating
    mode, lambda = 1; dense path: reciprocal condition number < 1e-12) raises SingularSteadyStateError, which says
    whether there is no steady state or a line (family) of them instead of returning values of order 1/eps.
    """
    n = W.shape[0]
    h = np.asarray(h, dtype=np.float64)
    if n <= dense_limit:
        A = -(W.toarray() if sp.issparse(W) else np.array(W, dtype=np.float64))
        A[np.diag_indices(n)] += 1.0
        lu, piv = sla.lu_factor(A, check_finite=False)
        rcond = float(sla.lapack.dgecon(lu, np.linalg.norm(A, 1), norm="1")[0]) if n else 1.0
        if rcond < SINGULAR_RCOND:
            raise _singular_system(A, h, rcond)
        return sla.lu_solve((lu, piv), h, check_finite=False)
    A = (sp.identity(n, format="csr") - sp.csr_matrix(W)).tocsr()
    cols = h.reshape(n, -1)
    out = np.empty_like(cols)
    for c in range(cols.shape[1]):
        x, info = spla.gmres(A, cols[:, c], rtol=1e-10, atol=0.0, restart=200, maxiter=50)
        if info != 0:
            raise RuntimeError(f"GMRES did not converge (info={info}); is 1 close to an eigenvalue of W "
                               "(an integrating mode: no steady state, or a line of them)?")
        out[:, c] = x
    return out.reshape(h.shape)


# ---------------------------------------------------------------- figure
def plot_spectrum(eigs: np.ndarray | Eigenvalues, prediction: SpectrumPrediction | None,
                  path: str | Path, title: str | None = None) -> Path:
    """Eigenvalues in the complex plane with the predicted bulk circle, outliers and Re = 1; PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    if isinstance(eigs, Eigenvalues):
        title = title or f"eigenvalues ({eigs.method}, {eigs.values.size})"
        eigs = eigs.values
    lam = np.asarray(eigs, dtype=np.complex128)
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot()
    ax.scatter(lam.real, lam.imag, s=4, c="k", alpha=0.6, lw=0, label=f"eigenvalues ({lam.size})")
    if prediction is not None:
        t = np.linspace(0.0, 2.0 * np.pi, 400)
        r = prediction.radius
        ax.plot(r * np.cos(t), r * np.sin(t), "C0-", lw=1.2, label=f"predicted bulk, r = {r:.3g}")
        if prediction.outliers.size:
            out = prediction.outliers
            ax.scatter(out.real, out.imag, s=60, facecolors="none", edgecolors="C3", lw=1.2,
                       label=f"predicted outliers ({out.size})")
    ax.axvline(1.0, color="C1", ls="--", lw=1.0, label="Re λ = 1 (integration / instability)")
    ax.axhline(0.0, color="0.8", lw=0.5, zorder=0)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("Re λ")
    ax.set_ylabel("Im λ")
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120)
    return path
