"""Synthetic series for the ML tests: closed-form checks need series whose statistics are known."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from conftest import small_network


class Series:
    """An in-memory series (bins, channels) with RunSeries' bins() contract; its channels are sums."""

    outputs = "sums"
    summed = None  # the predicted channels are the first n_out (eilab.ml.data.output_channels)

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


def ei_ratio_config(folder: Path, factors: list[float], train: dict[str, Any], **data: Any) -> dict[str, Any]:
    """An E/I-ratio classifier config over the small E/I network (400 ms runs, written to folder/net.toml) with its
    inhibitory weights scaled by `factors`; seeds 1 train, 2 validation, 3 test; `data` adds to its [data]."""
    net = small_network(t_ms=400.0)
    net["vars"] = {"w_inh": 1.0}
    for proj in net["projections"]:
        if proj["pre"] == "I":
            proj["weight"] = "= w_inh"
    (folder / "net.toml").write_text(tomli_w.dumps(net))
    return {"task": "ei_ratio",
            "data": {"config": str(folder / "net.toml"), "set": ["drive.0.rate_hz=50", "drive.1.rate_hz=50"],
                     "seeds": {"train": [1], "validation": [2], "test": [3]},
                     "grid": {"scale": ["w_inh"], "factors": factors}, "window_ms": 100.0, **data},
            "model": {"channels": 4, "kernel": 5}, "train": train}
