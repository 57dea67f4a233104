"""The E/I-ratio classifier (issue 22, point 8): from non-overlapping windows of the E and I sums of runs
simulated at several scalings of the inhibitory weights, predict the scaling's class (and, a regression
head, the factor itself), beside a multinomial logistic regression on hand-made features.

Features per window (eilab.analysis.spikes, eilab.analysis.mfe): E and I rate (Hz), mean ISI CV, mean
Fano factor (10-bin counts), Golomb synchrony of all cells, and the MFE rate (Hz; detector of
eilab.analysis.mfe with the window's own mean + 3 sd threshold). A statistic a window cannot define (no
ISI in it) is 0. The network is a small 1-D CNN (two strided convolutions, ReLU, global average), trained
with Adam on cross-entropy plus the MSE of the standardised factor, early stopping on the validation loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from eilab.analysis.mfe import detect_counts
from eilab.analysis.spikes import fano_factor, isi_cv, synchrony
from eilab.ml.config import TrainSettings
from eilab.ml.data import RunSeries, first_bin
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


def samples(series: list[RunSeries], labels: list[int], factors: list[float], window_ms: float,
            skip_ms: float) -> Samples:
    """Every window of every run (series of E/I sums) with its run's class and factor."""
    w = round(window_ms / series[0].bin_ms)
    xs, fs, ls, gs = [], [], [], []
    for s, label, factor in zip(series, labels, factors, strict=True):
        for b in window_starts(s, skip_ms, w):
            xs.append(s.bins(b, b + w))
            fs.append(features(s.run, b * s.bin_ms, (b + w) * s.bin_ms))
            ls.append(label)
            gs.append(factor)
    if not xs:
        raise ValueError(f"no window of {window_ms} ms after {skip_ms} ms fits the runs")
    return Samples(np.stack(xs), np.stack(fs), np.asarray(ls), np.asarray(gs, np.float32))


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


@torch.no_grad()
def logistic_predict(lin: nn.Linear, x: np.ndarray) -> np.ndarray:
    return lin(torch.from_numpy(x)).argmax(dim=1).numpy()


def logistic_baseline(train: Samples, val: Samples, n_classes: int, seed: int) -> tuple[nn.Linear, np.ndarray,
                                                                                         np.ndarray, float]:
    """The logistic regression with the L2 penalty of best validation accuracy; (model, mean, sd, penalty)."""
    mean, sd = standardise(train.feats)
    fits = [(fit_logistic((train.feats - mean) / sd, train.labels, n_classes, l2, seed), l2) for l2 in LOGISTIC_L2]
    lin, l2 = max(fits, key=lambda f: np.mean(logistic_predict(f[0], (val.feats - mean) / sd) == val.labels))
    return lin, mean, sd, l2


class RatioCNN(nn.Module):
    """Two strided 1-D convolutions with ReLU, global average pooling; class logits and a factor."""

    def __init__(self, n_classes: int, channels: int, kernel: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(2, channels, kernel, stride=2), nn.ReLU(),
                                  nn.Conv1d(channels, channels, kernel, stride=2), nn.ReLU(),
                                  nn.AdaptiveAvgPool1d(1), nn.Flatten())
        self.classes = nn.Linear(channels, n_classes)
        self.factor = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.body(x.transpose(1, 2))
        return self.classes(z), self.factor(z)[:, 0]


@dataclass
class CNNFit:
    net: RatioCNN
    x_mean: np.ndarray
    x_sd: np.ndarray
    f_mean: float
    f_sd: float
    history: list[dict]

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Classes and factors of windows x (n, bins, 2)."""
        self.net.eval()
        logits, f = self.net(torch.from_numpy(((x - self.x_mean) / self.x_sd).astype(np.float32)))
        return logits.argmax(dim=1).numpy(), f.numpy() * self.f_sd + self.f_mean


def cnn_loss(net: RatioCNN, x: torch.Tensor, y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    logits, fp = net(x)
    return nn.functional.cross_entropy(logits, y) + nn.functional.mse_loss(fp, f)


def train_cnn(train: Samples, val: Samples, n_classes: int, channels: int, kernel: int, s: TrainSettings) -> CNNFit:
    """Adam on cross-entropy + factor MSE, early stopping on the validation loss; the best weights."""
    torch.manual_seed(s.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(s.threads)
    x_mean, x_sd = standardise(train.x)
    f_mean, f_sd = float(train.factors.mean()), float(train.factors.std()) or 1.0

    def tensors(d: Samples) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(((d.x - x_mean) / x_sd).astype(np.float32)), torch.from_numpy(d.labels),
                torch.from_numpy((d.factors - f_mean) / f_sd).float())

    (xt, yt, ft), (xv, yv, fv) = tensors(train), tensors(val)
    net = RatioCNN(n_classes, channels, kernel)
    opt = torch.optim.Adam(net.parameters(), lr=s.lr)
    gen = torch.Generator().manual_seed(s.seed)
    best, best_state, bad, history = float("inf"), None, 0, []
    for epoch in range(1, s.epochs + 1):
        net.train()
        order = torch.randperm(len(xt), generator=gen)
        for a in range(0, len(order), s.batch):
            i = order[a : a + s.batch]
            opt.zero_grad()
            loss = cnn_loss(net, xt[i], yt[i], ft[i])
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            val_loss = float(cnn_loss(net, xv, yv, fv))
            train_loss = float(cnn_loss(net, xt, yt, ft))
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        if val_loss < best:
            best, best_state, bad = val_loss, {k: v.clone() for k, v in net.state_dict().items()}, 0
        else:
            bad += 1
            if bad >= s.patience:
                break
    net.load_state_dict(best_state)
    return CNNFit(net, x_mean, x_sd, f_mean, f_sd, history)


def confusion(true: np.ndarray, pred: np.ndarray, n_classes: int) -> list[list[int]]:
    """counts[true class][predicted class]."""
    m = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(m, (true, pred), 1)
    return m.tolist()


def scores(true: np.ndarray, pred: np.ndarray, n_classes: int) -> dict:
    return {"accuracy": float(np.mean(true == pred)), "confusion": confusion(true, pred, n_classes)}
