"""Counter-based streams: distributions against closed forms, independence of keys."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from scipy import stats

from eilab.sim.rng import keys_for, poisson, poisson_table, poisson_tabled, poisson_word, uniforms_for


@njit(cache=True)
def _samples(keys, steps, mu, cdf, guide, tabled):
    out = np.empty((steps, keys.size), np.int64)
    for t in range(steps):
        for j in range(keys.size):
            out[t, j] = poisson_tabled(keys[j], poisson_word(t), cdf, guide) if tabled else poisson(keys[j], t, mu)
    return out


@pytest.mark.parametrize("mu", [0.0325, 0.5, 2.0, 7.5])
def test_tabled_poisson_matches_sequential_and_the_pmf(mu: float) -> None:
    keys = keys_for(7, 2, 0, 200)
    cdf, guide = poisson_table(mu)
    a = _samples(keys, 500, mu, cdf, guide, True)
    b = _samples(keys, 500, mu, cdf, guide, False)
    assert np.mean(a != b) < 1e-4  # the same inverse CDF; only float ties at table boundaries may differ
    k = np.arange(a.max() + 1)
    observed = np.bincount(a.ravel(), minlength=k.size)
    expected = stats.poisson.pmf(k, mu) * a.size
    keep = expected > 5
    chi2 = np.sum((observed[keep] - expected[keep]) ** 2 / expected[keep])
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3


@pytest.mark.parametrize("mu", [12.0, 40.0, 300.0])
def test_ptrs_poisson_mean_and_variance(mu: float) -> None:
    keys = keys_for(3, 2, 0, 400)
    cdf, guide = poisson_table(mu)
    x = _samples(keys, 250, mu, cdf, guide, False).ravel().astype(float)
    se = np.sqrt(mu / x.size)
    assert abs(x.mean() - mu) < 5 * se
    assert abs(x.var() / mu - 1) < 0.03
    assert stats.kstest((x - mu) / np.sqrt(mu), "norm").statistic < 0.08


def test_uniform_streams_are_uniform_and_independent() -> None:
    u = np.stack([uniforms_for(11, 3, 0, 20000, c) for c in range(3)])
    assert stats.kstest(u[0], "uniform").pvalue > 1e-3
    assert abs(np.corrcoef(u[0], u[1])[0, 1]) < 0.03
    assert abs(np.corrcoef(u[0, :-1], u[0, 1:])[0, 1]) < 0.03  # neighbouring gids
    assert not np.array_equal(uniforms_for(12, 3, 0, 10, 0), uniforms_for(11, 3, 0, 10, 0))
    np.testing.assert_array_equal(uniforms_for(11, 3, 5, 10, 0), u[0, 5:15])  # a pure function of gid
