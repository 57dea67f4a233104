"""The LSTM predictor (issue 22, point 4): k normalised input bins -> the next h bins of every output
(Hochreiter & Schmidhuber 1997, torch.nn.LSTM), MSE on normalised counts, Adam (Kingma & Ba 2015),
early stopping on the validation loss.

Training writes `checkpoint.pt` into its folder after every epoch (weights, optimizer, torch and
shuffling RNG states, epoch, history, best weights, epochs without improvement) and resumes from it:
a training stopped after any epoch and resumed ends with the same weights as an uninterrupted one on
CPU (deterministic algorithms, a fixed number of threads). `model.pt` holds the best weights.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from eilab.ml.config import TrainSettings
from eilab.ml.data import Normaliser, WindowSet

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.pt"


class LSTMNet(nn.Module):
    """LSTM over the k input bins; a linear head on the last hidden state gives (h, n_out)."""

    def __init__(self, n_in: int, n_out: int, h: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.n_out, self.h = n_out, h
        self.lstm = nn.LSTM(n_in, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, h * n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1]).view(x.shape[0], self.h, self.n_out)


def resolve_device(name: str) -> torch.device:
    """"auto": CUDA when present, else CPU; otherwise the named torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_deterministic(seed: int, threads: int) -> None:
    """Seeded, deterministic algorithms, a fixed thread count (CPU results repeat bit for bit)."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS on CUDA


@dataclass
class LSTMPredictor:
    """A trained net with its normaliser: predict() maps counts (B, k, channels) to counts (B, h, n_out)."""

    net: LSTMNet
    norm: Normaliser
    device: torch.device

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> np.ndarray:
        self.net.eval()
        z = self.net(torch.from_numpy(self.norm.apply(x).astype(np.float32)).to(self.device))
        return self.norm.invert(z.cpu().numpy())


def tensors(windows: WindowSet, ids: np.ndarray, norm: Normaliser,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = windows.batch(ids)
    return (torch.from_numpy(norm.apply(x).astype(np.float32)).to(device),
            torch.from_numpy(norm.apply_outputs(y).astype(np.float32)).to(device))


def validation_ids(n: int, cap: int) -> np.ndarray:
    """All ids, or `cap` evenly spaced ones."""
    return np.arange(n) if cap <= 0 or cap >= n else np.linspace(0, n - 1, cap).round().astype(np.int64)


@torch.no_grad()
def mean_loss(net: LSTMNet, windows: WindowSet, ids: np.ndarray, norm: Normaliser, device: torch.device,
              batch: int) -> float:
    """MSE on normalised counts over windows `ids`."""
    net.eval()
    total = 0.0
    for a in range(0, len(ids), batch):
        x, y = tensors(windows, ids[a : a + batch], norm, device)
        total += float(nn.functional.mse_loss(net(x), y, reduction="sum"))
    return total / max(1, len(ids) * windows.h * windows.n_out)


def save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def fit(net: nn.Module, s: TrainSettings, folder: Path, n_train: int,
        run_epoch: Callable[[np.ndarray, torch.optim.Optimizer], dict[str, float]], validate: Callable[[], float],
        max_epochs: int | None = None, progress: bool = True) -> list[dict]:
    """The epoch loop every trainer shares: Adam, items of the training set in a seeded random order (at most
    s.windows_per_epoch per epoch), `run_epoch(order, optimizer)` (returns mean training losses by name),
    `validate()` (the validation loss), a checkpoint each epoch (folder/checkpoint.pt: weights, optimizer, RNG
    states, history), resume from it, early stopping after s.patience epochs without a better validation loss,
    the learning rate times s.lr_decay after every s.lr_patience of them (the history gives each epoch's next rate);
    `max_epochs` stops this call after that many epochs in all (to be resumed). Leaves the best weights in `net`
    and folder/model.pt; returns the history (one dict per epoch, with items per second)."""
    folder.mkdir(parents=True, exist_ok=True)
    make_deterministic(s.seed, s.threads)
    opt = torch.optim.Adam(net.parameters(), lr=s.lr)
    gen = torch.Generator().manual_seed(s.seed)
    state = {"epoch": 0, "history": [], "best_loss": float("inf"), "best": None, "bad": 0}
    ckpt = folder / CHECKPOINT
    if ckpt.exists():
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)  # RNG states stay CPU tensors
        net.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])
        gen.set_state(saved["shuffle_rng"])
        state = saved["state"]
    last = min(s.epochs, max_epochs or s.epochs)
    bar = tqdm(total=s.epochs, initial=state["epoch"], desc="epochs", unit="epoch", disable=not progress)
    while state["epoch"] < last and state["bad"] < s.patience:
        t0 = time.perf_counter()
        order = torch.randperm(n_train, generator=gen).numpy()
        order = order[: s.windows_per_epoch] if s.windows_per_epoch else order
        net.train()
        losses = run_epoch(order, opt)
        rate = len(order) / (time.perf_counter() - t0)  # training only
        val = validate()
        state["epoch"] += 1
        state["history"].append({"epoch": state["epoch"], **losses, "val_loss": val, "windows_per_s": rate})
        if val < state["best_loss"]:
            state.update(best_loss=val, best={k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, bad=0)
        else:
            state["bad"] += 1
            if s.lr_decay < 1 and state["bad"] % s.lr_patience == 0:
                for group in opt.param_groups:  # saved with the optimizer: a resumed run keeps the decayed rate
                    group["lr"] *= s.lr_decay
        state["history"][-1]["lr"] = opt.param_groups[0]["lr"]
        save_atomic({"model": net.state_dict(), "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(),
                     "shuffle_rng": gen.get_state(), "state": state}, ckpt)
        bar.update(1)
        bar.set_postfix(train=f"{losses['train_loss']:.4f}", val=f"{val:.4f}")
    bar.close()
    if state["best"] is not None:
        net.load_state_dict(state["best"])
        torch.save(state["best"], folder / WEIGHTS)
    return state["history"]


def train(net: LSTMNet, train_set: WindowSet, val_set: WindowSet, norm: Normaliser, s: TrainSettings,
          folder: Path, max_epochs: int | None = None, progress: bool = True) -> list[dict]:
    """Train `net` with MSE on the normalised windows (`fit`: checkpoints, resume, early stopping)."""
    device = resolve_device(s.device)
    net.to(device)
    val_ids = validation_ids(len(val_set), s.validation_windows)

    def run_epoch(ids: np.ndarray, opt: torch.optim.Optimizer) -> dict[str, float]:
        total = 0.0
        for a in range(0, len(ids), s.batch):
            x, y = tensors(train_set, ids[a : a + s.batch], norm, device)
            opt.zero_grad()
            loss = nn.functional.mse_loss(net(x), y)
            loss.backward()
            opt.step()
            total += loss.item() * len(x)
        return {"train_loss": total / max(1, len(ids))}

    return fit(net, s, folder, len(train_set), run_epoch,
               lambda: mean_loss(net, val_set, val_ids, norm, device, s.batch), max_epochs, progress)


def load_net(folder: Path, n_in: int, n_out: int, h: int, hidden: int, layers: int, device: torch.device) -> LSTMNet:
    """The best weights saved in folder/model.pt, into a net of the given shape."""
    net = LSTMNet(n_in, n_out, h, hidden, layers)
    net.load_state_dict(torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True))
    return net.to(device)
