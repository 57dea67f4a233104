"""Per-synapse weights and delays drawn from distributions (kernels), and the moments of those weights.

A projection with `weight_dist` other than "fixed" gives each synapse its own weight magnitude: normal or
uniform with mean `weight` and standard deviation `weight_sd` (uniform on weight +- sqrt(3) weight_sd), or
lognormal with that mean and standard deviation. Magnitudes below zero are redrawn (`negative = "redraw"`:
the sign stays Dale's, the distribution is truncated at 0), set to 0 (`"clip"`: a point mass at 0) or kept
(`"allow"`: the synapse acts with the other sign). Delays with `delay_dist` "uniform" are whole steps drawn
uniformly from [delay_min_ms, delay_max_ms]; "normal" ones are N(delay_ms, delay_sd_ms) rounded to the grid
and redrawn outside those bounds.

Draws come from the stream (seed, weight | delay + projection name, postsynaptic gid) in the order the
neuron's inputs are drawn (rng.py), so every partition gives every synapse the same value.
"""

from __future__ import annotations

import math

from numba import njit

from eilab.sim.config import Projection
from eilab.sim.rng import uniform

WEIGHT_DISTS = {"fixed": 0, "normal": 1, "lognormal": 2, "uniform": 3}
NEGATIVE = {"redraw": 0, "clip": 1, "allow": 2}
DELAY_DISTS = {"fixed": 0, "uniform": 1, "normal": 2}
SQRT3 = math.sqrt(3.0)


@njit(cache=True, inline="always")
def _normal(key, c) -> float:
    """A standard normal from counters c, c + 1 of stream `key` (Box-Muller)."""
    u1 = uniform(key, c)
    u2 = uniform(key, c + 1)
    return math.sqrt(-2.0 * math.log1p(-u1)) * math.cos(2.0 * math.pi * u2)


@njit(cache=True)
def draw_weight(kind, mean, sd, negative, key, c) -> tuple[float, int]:
    """(weight magnitude, next counter) from counter c of stream `key` (kind: WEIGHT_DISTS, negative: NEGATIVE)."""
    while True:
        if kind == 2:  # lognormal with this mean and standard deviation
            s2 = math.log1p((sd / mean) ** 2)
            return math.exp(math.log(mean) - 0.5 * s2 + math.sqrt(s2) * _normal(key, c)), c + 2
        if kind == 1:
            w = mean + sd * _normal(key, c)
            c += 2
        else:
            w = mean + SQRT3 * sd * (2.0 * uniform(key, c) - 1.0)
            c += 1
        if w >= 0.0 or negative == 2:
            return w, c
        if negative == 1:
            return 0.0, c


@njit(cache=True)
def draw_delay(kind, mean, sd, lo, hi, key, c) -> tuple[int, int]:
    """(delay in steps within [lo, hi], next counter) from counter c of stream `key` (kind: DELAY_DISTS;
    mean and sd in steps)."""
    if kind == 1:
        return lo + min(int(uniform(key, c) * (hi - lo + 1)), hi - lo), c + 1
    while True:
        d = round(mean + sd * _normal(key, c))
        c += 2
        if lo <= d <= hi:
            return d, c


def weight_moments(pr: Projection) -> tuple[float, float]:
    """(mean, variance) of one synapse's weight magnitude as drawn (config units, before `scale`)."""
    m, s = pr.weight, pr.weight_sd
    if pr.weight_dist == "fixed":
        return m, 0.0
    if pr.weight_dist == "lognormal" or pr.negative == "allow":
        return m, s * s
    if pr.weight_dist == "normal":
        return _normal_moments(m, s, pr.negative == "clip")
    return _uniform_moments(m - SQRT3 * s, m + SQRT3 * s, pr.negative == "clip")


def _normal_moments(m: float, s: float, clip: bool) -> tuple[float, float]:
    """Mean and variance of max(X, 0) (clip) or of X given X >= 0 (truncated), X ~ N(m, s^2)."""
    if s == 0.0:
        return max(m, 0.0), 0.0
    a = m / s
    pdf = math.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi)
    cdf = 0.5 * math.erfc(-a / math.sqrt(2.0))  # P(X >= 0)
    if clip:  # E[X; X >= 0] and E[X^2; X >= 0]
        e1 = m * cdf + s * pdf
        e2 = (m * m + s * s) * cdf + m * s * pdf
        return e1, e2 - e1 * e1
    lam = pdf / cdf
    return m + s * lam, s * s * (1.0 - a * lam - lam * lam)


def _uniform_moments(a: float, b: float, clip: bool) -> tuple[float, float]:
    """Mean and variance of max(U, 0) (clip) or of U given U >= 0 (truncated), U uniform on [a, b]."""
    if a >= 0.0 or b <= a:
        return 0.5 * (a + b), (b - a) ** 2 / 12.0
    if not clip:
        return 0.5 * b, b * b / 12.0
    p = b / (b - a)  # P(U >= 0)
    e1 = p * 0.5 * b
    e2 = p * b * b / 3.0
    return e1, e2 - e1 * e1
