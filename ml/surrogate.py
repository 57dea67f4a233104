"""The surrogate of a detailed neuron (issue 19, point 2): a TCN front end (causal dilated convolutions,
Bai et al. 2018) and an LSTM (Hochreiter & Schmidhuber 1997), as the TCN-LSTM of Olah et al. (2022,
eLife 11:e79535). Per bin in: the synaptic input per synapse group (scaled pA); out: V (scaled, clipped
at v_clip) and a spike logit (and, trained with dendritic V, one output per dendritic section: a training
target only). Loss: V MSE plus `spike_weight` times the spike cross-entropy (plus `dendrite_weight` times the
dendritic V MSE).

`forward` runs whole sequences; `step` runs one bin with carried state (each convolution keeps its
last (kernel - 1) * dilation inputs, the LSTM its (h, c)), so a surrogate can sit inside a network.
Both give the same outputs (tests/test_surrogate.py). Training follows eilab.ml.lstm: checkpoint
every epoch, resume, early stopping on the validation loss, seeded and deterministic on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eilab.ml.baselines import RIDGE_ALPHAS, Moments, augmented, ridge_solution
from eilab.ml.config import TrainSettings
from eilab.ml.lstm import fit
from eilab.ml.surrogate_data import SurrogateModel

State = tuple[list[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""Streaming state: per convolution its last (kernel - 1) * dilation inputs (B, C, L); the LSTM's (h, c)."""


class SurrogateNet(nn.Module):
    """Causal dilated Conv1d layers (ReLU) -> LSTM -> linear head: (B, T, n_in) -> (B, T, 2 + n_dendrites) =
    (V, spike logit, dendritic V per section)."""

    def __init__(self, n_in: int, m: SurrogateModel, n_dendrites: int = 0) -> None:
        super().__init__()
        self.kernel, self.dilations = m.kernel, list(m.dilations)
        chans = [n_in] + [m.channels] * len(m.dilations)
        self.convs = nn.ModuleList(nn.Conv1d(a, b, m.kernel, dilation=d)
                                   for a, b, d in zip(chans[:-1], chans[1:], m.dilations, strict=True))
        self.lstm = nn.LSTM(m.channels + n_in, m.hidden, num_layers=m.layers, batch_first=True)
        self.head = nn.Linear(m.hidden, 2 + n_dendrites)

    def pads(self) -> list[int]:
        return [(self.kernel - 1) * d for d in self.dilations]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.transpose(1, 2)
        for conv, pad in zip(self.convs, self.pads(), strict=True):
            z = torch.relu(conv(nn.functional.pad(z, (pad, 0))))
        out, _ = self.lstm(torch.cat([z.transpose(1, 2), x], dim=2))
        return self.head(out)

    def init_state(self, batch: int) -> State:
        p = next(self.parameters())
        bufs = [torch.zeros(batch, conv.in_channels, pad, dtype=p.dtype, device=p.device)
                for conv, pad in zip(self.convs, self.pads(), strict=True)]
        h = torch.zeros(self.lstm.num_layers, batch, self.lstm.hidden_size, dtype=p.dtype, device=p.device)
        return bufs, (h, h.clone())

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One bin: x (B, n_in) -> ((B, 2), the state after it)."""
        bufs, hc = state
        z, new = x.unsqueeze(2), []
        for conv, buf in zip(self.convs, bufs, strict=True):
            window = torch.cat([buf, z], dim=2)
            new.append(window[:, :, 1:])
            z = torch.relu(conv(window))
        out, hc = self.lstm(torch.cat([z.transpose(1, 2), x.unsqueeze(1)], dim=2), hc)
        return self.head(out[:, 0]), (new, hc)


def loss_terms(out: torch.Tensor, v: torch.Tensor, s: torch.Tensor, m: SurrogateModel,
               d: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """(total, V MSE, spike BCE, dendritic V MSE (0 without d)) over all bins given: out (B, T, 2 + sections),
    v and s (B, T), d (B, T, sections) scaled."""
    mse = nn.functional.mse_loss(out[..., 0], v)
    bce = nn.functional.binary_cross_entropy_with_logits(out[..., 1], s, pos_weight=torch.tensor(m.spike_pos_weight))
    d_mse = nn.functional.mse_loss(out[..., 2:], d) if d is not None else torch.zeros(())
    return mse + m.spike_weight * bce + m.dendrite_weight * d_mse, mse, bce, d_mse


@dataclass
class Sequences:
    """Scaled inputs (cells, bins, groups), V targets (cells, bins), spike flags (cells, bins) and scaled dendritic
    V (cells, bins, sections; or None) of one split."""

    x: np.ndarray
    v: np.ndarray
    s: np.ndarray
    d: np.ndarray | None = None

    def batch(self, seg: np.ndarray, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                            torch.Tensor | None]:
        """Tensors (x, v, s, d or None) of the segments `seg` ((k, 2): cell, first bin) of `length` bins."""
        idx = seg[:, 1:2] + np.arange(length)
        cells = seg[:, 0:1]
        return (torch.from_numpy(self.x[cells, idx]), torch.from_numpy(self.v[cells, idx]),
                torch.from_numpy(self.s[cells, idx].astype(np.float32)),
                None if self.d is None else torch.from_numpy(self.d[cells, idx]))


@torch.no_grad()
def mean_loss(net: SurrogateNet, seqs: Sequences, seg: np.ndarray, length: int, warm: int, m: SurrogateModel,
              batch: int) -> float:
    net.eval()
    total = 0.0
    for a in range(0, len(seg), batch):
        x, v, s, d = seqs.batch(seg[a : a + batch], length)
        total += float(loss_terms(net(x)[:, warm:], v[:, warm:], s[:, warm:], m, tail(d, warm))[0]) * len(x)
    return total / max(1, len(seg))


def train(net: SurrogateNet, train_set: Sequences, train_seg: np.ndarray, val_set: Sequences, val_seg: np.ndarray,
          length: int, warm: int, m: SurrogateModel, s: TrainSettings, folder: Path, max_epochs: int | None = None,
          progress: bool = True) -> list[dict]:
    """Train (on CPU) on segments of `length` bins (the first `warm` bins out of the loss) with `lstm.fit`
    (checkpoints, resume, early stopping), gradients clipped to `m.clip_grad_norm` when set; the history adds
    the voltage MSE and spike cross-entropy (and the dendritic V MSE)."""

    def run_epoch(order: np.ndarray, opt: torch.optim.Optimizer) -> dict[str, float]:
        total = mse_sum = bce_sum = d_sum = 0.0
        for a in range(0, len(order), s.batch):
            x, v, sp, d = train_set.batch(train_seg[order[a : a + s.batch]], length)
            opt.zero_grad()
            loss, mse, bce, d_mse = loss_terms(net(x)[:, warm:], v[:, warm:], sp[:, warm:], m, tail(d, warm))
            loss.backward()
            if m.clip_grad_norm > 0:
                nn.utils.clip_grad_norm_(net.parameters(), m.clip_grad_norm)
            opt.step()
            total += loss.item() * len(x)
            mse_sum += mse.item() * len(x)
            bce_sum += bce.item() * len(x)
            d_sum += d_mse.item() * len(x)
        n = max(1, len(order))
        losses = {"train_loss": total / n, "train_v_mse": mse_sum / n, "train_spike_bce": bce_sum / n}
        return losses if train_set.d is None else {**losses, "train_dendrite_mse": d_sum / n}

    return fit(net, s, folder, len(train_seg), run_epoch,
               lambda: mean_loss(net, val_set, val_seg, length, warm, m, s.batch), max_epochs, progress)


def tail(d: torch.Tensor | None, warm: int) -> torch.Tensor | None:
    """The bins of d from `warm` on (None stays None)."""
    return None if d is None else d[:, warm:]


@torch.no_grad()
def predict(net: SurrogateNet, x: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Whole trials: scaled inputs (cells, bins, groups) -> (scaled V, spike probability), each (cells, bins)."""
    net.eval()
    outs = [net(torch.from_numpy(x[a : a + batch])) for a in range(0, len(x), batch)]
    out = torch.cat(outs).numpy() if outs else np.zeros((0, x.shape[1], 2), np.float32)
    return out[..., 0], 1.0 / (1.0 + np.exp(-out[..., 1]))


def lagged(x: np.ndarray, lags: int) -> np.ndarray:
    """(cells, bins, groups) -> (cells, bins, lags * groups): each bin's input and that of the lags - 1 bins
    before it (zeros before the start), the newest first."""
    pad = np.pad(x, ((0, 0), (lags - 1, 0), (0, 0)))
    n = x.shape[1]
    return np.concatenate([pad[:, lags - 1 - k : lags - 1 - k + n] for k in range(lags)], axis=2)


@dataclass
class RidgeFilter:
    """Baseline: V target and spike flag as linear filters of the last `lags` bins of input (ridge regression,
    eilab.ml.baselines; the penalty chosen on the validation split)."""

    w: np.ndarray  # (lags * groups + 1, 2)
    lags: int
    alpha: float

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scaled inputs (cells, bins, groups) -> (scaled V, spike score), each (cells, bins)."""
        out = augmented(lagged(x, self.lags).reshape(-1, self.lags * x.shape[2])) @ self.w
        out = out.reshape(x.shape[0], x.shape[1], 2)
        return out[..., 0], out[..., 1]

    @classmethod
    def fit(cls, train: Sequences, validation: Sequences, lags: int, first: int) -> RidgeFilter:
        tm, vm = (ridge_moments(q, lags, first) for q in (train, validation))
        ws = [(ridge_solution(tm, a), a) for a in RIDGE_ALPHAS]
        w, alpha = min(ws, key=lambda wa: vm.mse(wa[0]))
        return cls(w, lags, alpha)


def ridge_moments(q: Sequences, lags: int, first: int) -> Moments:
    """Moments of the lagged inputs against (V target, spike flag) over every cell's bins from `first` on."""
    f = lags * q.x.shape[2] + 1
    m = Moments(np.zeros((f, f)), np.zeros((f, 2)), 0.0, 0)
    for c in range(len(q.x)):
        xa = augmented(lagged(q.x[c : c + 1], lags)[0, first:])
        y = np.stack([q.v[c, first:], q.s[c, first:].astype(np.float64)], axis=1)
        m.xtx += xa.T @ xa
        m.xty += xa.T @ y
        m.yty += float((y * y).sum())
        m.n += len(y)
    return m
