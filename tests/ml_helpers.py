"""Synthetic series for the ML tests: closed-form checks need series whose statistics are known."""

from __future__ import annotations

import numpy as np


class Series:
    """An in-memory series (bins, channels) with RunSeries' bins() contract; its channels are sums."""

    outputs = "sums"

    def __init__(self, values: np.ndarray, key: int = 0, n_out: int | None = None) -> None:
        self.values, self.key, self.n_bins = values.astype(np.float32), key, len(values)
        self.n_channels = values.shape[1]
        self.n_out = self.n_channels if n_out is None else n_out  # the predicted channels come first

    def bins(self, b0: int, b1: int) -> np.ndarray:
        return self.values[b0:b1]


def ar1(n: int, coefficient: float, intercept: float, seed: int) -> np.ndarray:
    """x_t = coefficient x_{t-1} + intercept + e_t, e_t standard normal, started at its mean; (n, 1)."""
    noise = np.random.default_rng(seed).normal(size=n)
    x = np.empty(n)
    x[0] = intercept / (1.0 - coefficient)
    for t in range(1, n):
        x[t] = coefficient * x[t - 1] + intercept + noise[t]
    return x[:, None]
