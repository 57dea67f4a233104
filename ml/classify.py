"""The E/I-ratio classifier (issue 22, point 8): from non-overlapping windows of the E and I sums of runs
simulated at several scalings of the inhibitory weights, predict the scaling's class (and, a regression
head, the factor itself), beside a multinomial logistic regression on hand-made features.

Features per window (eilab.analysis.spikes, eilab.analysis.mfe): E and I rate (Hz), mean ISI CV, mean
Fano factor (10-bin counts), Golomb synchrony of all cells, and the MFE rate (Hz; detector of
eilab.analysis.mfe with the window's own mean + 3 sd threshold). A statistic a window cannot define (no
ISI in it) is 0. The network is a small 1-D CNN (two strided convolutions, ReLU, global average), trained
with Adam on cross-entropy plus the MSE of the standardised factor, early stopping on the validation loss,
through the epoch loop of `eilab.ml.lstm.fit` (a checkpoint each epoch; a resumed training ends with the
weights of an uninterrupted one on CPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eilab.analysis.mfe import detect_counts
from eilab.analysis.spikes import fano_factor, isi_cv, synchrony
from eilab.ml.config import TrainSettings
from eilab.ml.data import RunSeries, first_bin
from eilab.ml.lstm import WEIGHTS, fit, make_deterministic
from eilab.sim.config import ConfigError
from eilab.sim.reader import Run

FEATURES = ("rate_E_hz", "rate_I_hz", "cv_E", "cv_I", "fano_E", "fano_I", "synchrony", "mfe_rate_hz")
LOGISTIC_L2 = (1e-4, 1e-2, 1.0)


def window_starts(series: RunSeries, skip_ms: float, window_bins: int) -> list[int]:
    """First bins of the non-overlapping windows after skip_ms."""
    lo = first_bin(skip_ms, series.bin_ms)
    return list(range(lo, series.n_bins - window_bins + 1, window_bins))


def _mean_or_zero(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else 0.0


def features(run: Run, t0_ms: float, t1_ms: float) -> np.ndarray:
    """The module's hand-made features of the spikes in [t0_ms, t1_ms)."""
    secs = (t1_ms - t0_ms) / 1000.0
    counts = {t: np.concatenate([run.counts(name, t0_ms, t1_ms) for name, p in run.populations.items()
                                 if p["type"] == t], axis=1) for t in ("E", "I")}
    times, gids = run.spikes(t0_ms, t1_ms)
    out = []
    for t in ("E", "I"):
        out.append(counts[t].sum() / counts[t].shape[1] / secs)
    for t in ("E", "I"):
        mine = np.zeros(gids.size, bool)
        for p in run.populations.values():
            if p["type"] == t:
                mine |= (gids >= p["gid0"]) & (gids < p["gid0"] + p["n"])
        out.append(_mean_or_zero(isi_cv(times[mine], gids[mine])))
    for t in ("E", "I"):
        out.append(_mean_or_zero(fano_factor(counts[t], max(1, round(10 / run.bin_ms)))))
    sync = synchrony(np.hstack([counts["E"], counts["I"]]))
    out.append(sync if np.isfinite(sync) else 0.0)
    out.append(detect_counts(counts["E"], counts["I"], run.bin_ms, t0_ms, t1_ms)[1].rate_hz)
    return np.asarray(out, np.float64)


@dataclass
class Samples:
    """Windows (n, bins, 2) of E/I sums, their features (n, len(FEATURES)), class labels and factors."""

    x: np.ndarray
    feats: np.ndarray
    labels: np.ndarray
    factors: np.ndarray


def run_windows(series: RunSeries, window_ms: float, skip_ms: float) -> tuple[np.ndarray, np.ndarray]:
    """The non-overlapping windows (n, bins, 2) of one run's E/I sums after skip_ms, and their features."""
    w = round(window_ms / series.bin_ms)
    starts = window_starts(series, skip_ms, w)
    if not starts:
        raise ConfigError(f"{series.run.path}: no window of {window_ms} ms fits after {skip_ms} ms; use runs longer "
                          f"than {skip_ms + window_ms} ms")
    x = np.stack([series.bins(b, b + w) for b in starts])
    feats = np.stack([features(series.run, b * series.bin_ms, (b + w) * series.bin_ms) for b in starts])
    return x, feats


def samples(series: list[RunSeries], labels: list[int], factors: list[float], window_ms: float,
            skip_ms: float) -> Samples:
    """Every window of every run (series of E/I sums) with its run's class and factor."""
    parts = [run_windows(s, window_ms, skip_ms) for s in series]
    n = [len(x) for x, _ in parts]
    return Samples(np.concatenate([x for x, _ in parts]), np.concatenate([f for _, f in parts]),
                   np.repeat(labels, n), np.repeat(np.asarray(factors, np.float32), n))


def standardise(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd over the first axis (and the time axis of windows) of the training data; sd 0 -> 1."""
    axes = tuple(range(train.ndim - 1))
    mean, sd = train.mean(axis=axes), train.std(axis=axes)
    return mean, np.where(sd > 0, sd, 1.0)


def fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float, seed: int) -> nn.Linear:
    """Multinomial logistic regression (L2 on the weights) on standardised features, full-batch L-BFGS."""
    torch.manual_seed(seed)
    lin = nn.Linear(x.shape[1], n_classes).double()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(lin(xt), yt) + l2 * (lin.weight**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin


@dataclass
class Logistic:
    """A fitted logistic regression on standardised features: class = argmax(W z + b), z = (feats - mean) / sd."""

    weight: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    l2: float

    def predict(self, feats: np.ndarray) -> np.ndarray:
        return np.argmax((feats - self.mean) / self.sd @ self.weight.T + self.bias, axis=1)

    def to_json(self) -> dict:
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in vars(self).items()}

    @classmethod
    def from_json(cls, d: dict) -> Logistic:
        return cls(*(np.asarray(d[k], np.float64) for k in ("weight", "bias", "mean", "sd")), d["l2"])


def logistic_baseline(train: Samples, val: Samples, n_classes: int, seed: int) -> Logistic:
    """The logistic regression with the L2 penalty (of LOGISTIC_L2) of best validation accuracy."""
    mean, sd = standardise(train.feats)
    fits = []
    for l2 in LOGISTIC_L2:
        lin = fit_logistic((train.feats - mean) / sd, train.labels, n_classes, l2, seed)
        fits.append(Logistic(lin.weight.detach().numpy(), lin.bias.detach().numpy(), mean, sd, l2))
    return max(fits, key=lambda f: np.mean(f.predict(val.feats) == val.labels))


class RatioCNN(nn.Module):
    """Two strided 1-D convolutions with ReLU, global average pooling; class logits and a factor. With
    `head_hidden` > 0 the window's mean E and I counts per bin (its rates, standardised) join the pooled
    filters and a hidden layer of that many ReLU units feeds both heads (the rates carry nearly all of the ratio
    that a window shows, benchmarks/ml_ratio_information.py, and the classes are not linear in them); 0: linear
    heads on the pooled filters alone."""

    def __init__(self, n_classes: int, channels: int, kernel: int, head_hidden: int = 0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(2, channels, kernel, stride=2), nn.ReLU(),
                                  nn.Conv1d(channels, channels, kernel, stride=2), nn.ReLU(),
                                  nn.AdaptiveAvgPool1d(1), nn.Flatten())
        self.with_mean = head_hidden > 0
        width = channels + 2 if self.with_mean else channels
        self.trunk = nn.Sequential(nn.Linear(width, head_hidden), nn.ReLU()) if self.with_mean else nn.Identity()
        self.classes = nn.Linear(head_hidden or channels, n_classes)
        self.factor = nn.Linear(head_hidden or channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (n, bins, 2) standardised -> class logits (n, classes), standardised factor (n,)."""
        z = self.body(x.transpose(1, 2))
        if self.with_mean:  # the mean of standardised bins, scaled to unit variance for independent bins
            z = torch.cat([z, x.mean(dim=1) * x.shape[1] ** 0.5], dim=1)
        z = self.trunk(z)
        return self.classes(z), self.factor(z)[:, 0]


@dataclass
class Scaling:
    """Standardisation of the windows (per channel) and of the factor, from the training split only."""

    x_mean: np.ndarray
    x_sd: np.ndarray
    f_mean: float
    f_sd: float

    @classmethod
    def of(cls, train: Samples) -> Scaling:
        x_mean, x_sd = standardise(train.x.astype(np.float64))  # float64: exact through meta.json
        return cls(x_mean, x_sd, float(train.factors.mean()), float(train.factors.std()) or 1.0)

    def tensors(self, d: Samples) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Standardised windows (float32), labels and standardised factors of samples d."""
        return (self.windows(d.x), torch.from_numpy(d.labels.astype(np.int64)),
                torch.from_numpy((d.factors - self.f_mean) / self.f_sd).float())

    def windows(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x - self.x_mean) / self.x_sd).astype(np.float32))

    def to_json(self) -> dict:
        return {"x_mean": self.x_mean.tolist(), "x_sd": self.x_sd.tolist(), "f_mean": self.f_mean, "f_sd": self.f_sd}

    @classmethod
    def from_json(cls, d: dict) -> Scaling:
        return cls(np.asarray(d["x_mean"]), np.asarray(d["x_sd"]), d["f_mean"], d["f_sd"])


@dataclass
class CNNFit:
    net: RatioCNN
    scaling: Scaling
    history: list[dict]

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Classes and factors of windows x (n, bins, 2)."""
        self.net.eval()
        logits, f = self.net(self.scaling.windows(x))
        return logits.argmax(dim=1).numpy(), f.numpy() * self.scaling.f_sd + self.scaling.f_mean


def cnn_loss(net: RatioCNN, x: torch.Tensor, y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    logits, fp = net(x)
    return nn.functional.cross_entropy(logits, y) + nn.functional.mse_loss(fp, f)


def train_cnn(train: Samples, val: Samples, n_classes: int, model: dict, s: TrainSettings, folder: Path,
              max_epochs: int | None = None, progress: bool = False) -> CNNFit:
    """Adam on cross-entropy + factor MSE through `eilab.ml.lstm.fit`: a checkpoint each epoch in `folder`
    (resumed from when present), early stopping on the validation loss; the best weights."""
    make_deterministic(s.seed, s.threads)
    scaling = Scaling.of(train)
    (xt, yt, ft), (xv, yv, fv) = scaling.tensors(train), scaling.tensors(val)
    net = make_cnn(n_classes, model)

    def run_epoch(order: np.ndarray, opt: torch.optim.Optimizer) -> dict[str, float]:
        total = 0.0
        for a in range(0, len(order), s.batch):
            i = torch.from_numpy(order[a : a + s.batch])
            opt.zero_grad()
            loss = cnn_loss(net, xt[i], yt[i], ft[i])
            loss.backward()
            opt.step()
            total += loss.item() * len(i)
        return {"train_loss": total / max(1, len(order))}

    @torch.no_grad()
    def validate() -> float:
        net.eval()
        return float(cnn_loss(net, xv, yv, fv))

    history = fit(net, s, folder, len(xt), run_epoch, validate, max_epochs, progress)
    return CNNFit(net, scaling, history)


def make_cnn(n_classes: int, model: dict) -> RatioCNN:
    """The CNN of a config's [model] (a directory's meta.json; before `head_hidden` existed: 0)."""
    return RatioCNN(n_classes, model["channels"], model["kernel"], model.get("head_hidden", 0))


def load_cnn(folder: Path, n_classes: int, model: dict, scaling: Scaling) -> CNNFit:
    """The best weights saved by train_cnn in folder (model.pt)."""
    net = make_cnn(n_classes, model)
    net.load_state_dict(torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True))
    return CNNFit(net, scaling, [])


def mcnemar(true: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict:
    """Paired comparison of two classifiers on the same windows: the windows only `a` gets right, only `b`
    gets right, and the exact two-sided McNemar p-value (binomial, 1/2, over the discordant windows)."""
    only_a, only_b = int(np.sum((a == true) & (b != true))), int(np.sum((a != true) & (b == true)))
    n, k = only_a + only_b, min(only_a, only_b)
    p = min(1.0, 2.0 * sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n) if n else 1.0
    return {"only_first": only_a, "only_second": only_b, "p": p}


def confusion(true: np.ndarray, pred: np.ndarray, n_classes: int) -> list[list[int]]:
    """counts[true class][predicted class]."""
    m = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(m, (true, pred), 1)
    return m.tolist()


def scores(true: np.ndarray, pred: np.ndarray, n_classes: int) -> dict:
    return {"accuracy": float(np.mean(true == pred)), "confusion": confusion(true, pred, n_classes)}
