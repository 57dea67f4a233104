"""Baselines on the same windows as the model (issue 22, point 5): every predictor maps inputs
(B, k, channels) in counts per bin to predictions (B, h, n_out) of the next h bins.

- `TrainMean`: the training split's mean of each output (the best constant);
- `Persistence`: the next bins equal the last input bin;
- `WindowMean`: the next bins equal the mean of the k input bins;
  (both on the output channels: with neuron inputs and summed outputs, the E and I sums of the input bins)
- `RidgeAR`: linear autoregression on all k x channels inputs with an intercept, ridge penalty on the
  weights only, solved in closed form, W = (Xc^T Xc + lambda I)^-1 Xc^T Yc on the centred training
  windows (Hoerl & Kennard 1970); lambda is chosen on the validation split, never the test split, from
  `AR_ALPHAS` (1e-4 .. 1e4 times the mean input variance).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from eilab.ml.data import WindowSet, output_channels

RIDGE_ALPHAS = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
"""Ridge penalties the surrogate's ridge filter tries (eilab.ml.surrogate), relative to the mean eigenvalue of
the centred training moments."""
AR_ALPHAS = tuple(float(a) for a in np.logspace(-4.0, 4.0, 17))
"""Ridge penalties `RidgeAR` tries, relative as RIDGE_ALPHAS: 1e-4 .. 1e4 in half decades. Above 1 the penalty
outweighs the average input variance: the right choice when the inputs tell little about the target (weights
near 0), as for spike counts near a conditional-Poisson floor."""


class Predictor(Protocol):
    def predict(self, x: np.ndarray) -> np.ndarray: ...


@dataclass
class TrainMean:
    mean: np.ndarray
    h: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.mean, (x.shape[0], self.h, self.mean.size)).astype(np.float32)


@dataclass
class Persistence:
    """`summed`: the input channels' map to the outputs (eilab.ml.data.output_channels); None: the first n_out."""

    n_out: int
    h: int
    summed: np.ndarray | None = field(default=None, repr=False)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.repeat(output_channels(x[:, -1:], self.n_out, self.summed), self.h, axis=1)


@dataclass
class WindowMean:
    """`summed` as Persistence's."""

    n_out: int
    h: int
    summed: np.ndarray | None = field(default=None, repr=False)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.repeat(output_channels(x, self.n_out, self.summed).mean(axis=1, keepdims=True), self.h, axis=1)


@dataclass
class Moments:
    """Sums over windows of the augmented inputs [x, 1] and the targets: X^T X, X^T Y, sum |y|^2, count."""

    xtx: np.ndarray
    xty: np.ndarray
    yty: float
    n: int

    @classmethod
    def of(cls, windows: WindowSet, batch: int = 4096) -> Moments:
        f, t = windows.k * windows.series[0].n_channels + 1, windows.h * windows.n_out
        m = cls(np.zeros((f, f)), np.zeros((f, t)), 0.0, 0)
        for x, y in windows.batches(batch):
            xa, ya = augmented(x), y.reshape(len(y), -1).astype(np.float64)
            m.xtx += xa.T @ xa
            m.xty += xa.T @ ya
            m.yty += float((ya * ya).sum())
            m.n += len(y)
        return m

    def mse(self, w: np.ndarray) -> float:
        """Mean squared error of the predictions [x, 1] @ w over these windows and targets."""
        total = self.yty - 2.0 * float((w * self.xty).sum()) + float((w * (self.xtx @ w)).sum())
        return total / max(1, self.n * w.shape[1])


def augmented(x: np.ndarray) -> np.ndarray:
    """Inputs flattened per window with a trailing 1 (the intercept), float64."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    return np.hstack([flat, np.ones((len(x), 1))])


@dataclass
class RidgeAR:
    """Linear AR: predictions = [x, 1] @ w, reshaped to (B, h, n_out); `alpha` the chosen penalty."""

    w: np.ndarray
    h: int
    n_out: int
    alpha: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (augmented(x) @ self.w).reshape(len(x), self.h, self.n_out).astype(np.float32)

    @classmethod
    def fit(cls, train: WindowSet, validation: WindowSet, alphas: tuple[float, ...] = AR_ALPHAS) -> RidgeAR:
        """Closed-form ridge on the training windows; the penalty with the least validation MSE (the first of
        `alphas` without validation windows)."""
        tm, vm = Moments.of(train), Moments.of(validation)
        ws = list(zip(ridge_path(tm, alphas), alphas, strict=True))
        w, alpha = min(ws, key=lambda wa: vm.mse(wa[0])) if vm.n else ws[0]
        return cls(w, train.h, train.n_out, alpha)


def centred(m: Moments) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Means of x and y, the centred moments Cxx and Cxy, and the mean eigenvalue of Cxx (the penalty's unit)."""
    n = max(1, m.n)
    mx, my = m.xtx[-1, :-1] / n, m.xty[-1] / n
    cxx = m.xtx[:-1, :-1] - n * np.outer(mx, mx)
    cxy = m.xty[:-1] - n * np.outer(mx, my)
    return mx, my, cxx, cxy, max(np.trace(cxx) / max(1, cxx.shape[0]), 1e-12)


def ridge_solution(m: Moments, alpha: float) -> np.ndarray:
    """The ridge weights [W; b] from training moments: W solves (Cxx + lambda I) W = Cxy with Cxx, Cxy the
    centred moments and lambda = alpha x mean eigenvalue of Cxx; b = mean(y) - mean(x) W (unpenalised)."""
    mx, my, cxx, cxy, unit = centred(m)
    w = np.linalg.solve(cxx + alpha * unit * np.eye(cxx.shape[0]), cxy)
    return np.vstack([w, my - mx @ w])


def ridge_path(m: Moments, alphas: tuple[float, ...]) -> list[np.ndarray]:
    """ridge_solution for every alpha from one eigendecomposition Cxx = V diag(e) V^T: W = V diag(1 / (e +
    lambda)) V^T Cxy."""
    mx, my, cxx, cxy, unit = centred(m)
    e, v = np.linalg.eigh(cxx)
    proj = v.T @ cxy
    out = []
    for alpha in alphas:
        w = v @ (proj / (np.maximum(e, 0.0) + alpha * unit)[:, None])
        out.append(np.vstack([w, my - mx @ w]))
    return out
