"""Figures of a training directory (matplotlib's Figure directly: the global backend is left alone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def sums_figure(truth: np.ndarray, predictions: dict[str, np.ndarray], bin_ms: float, path: Path) -> None:
    """One-step predictions against the true E and I sums (bins, 2), counts per bin against time (ms)."""
    fig = Figure(figsize=(10, 5), layout="constrained")
    t = np.arange(len(truth)) * bin_ms
    for row, label in enumerate(("E", "I")):
        ax = fig.add_subplot(2, 1, row + 1)
        ax.plot(t, truth[:, row], color="k", lw=1, label="true")
        for name, p in predictions.items():
            ax.plot(t, p[:, row], lw=0.8, label=name)
        ax.set_ylabel(f"{label} spikes / bin")
        ax.legend(loc="upper right", fontsize=7)
    ax.set_xlabel("time from the first predicted bin (ms)")
    fig.savefig(path, dpi=110)


def rollout_figure(rollout: dict[str, list[float]], bin_ms: float, path: Path) -> None:
    """Rollout MSE against the horizon (ms) for every predictor."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for name, mse in rollout.items():
        ax.plot(bin_ms * np.arange(1, len(mse) + 1), mse, label=name)
    ax.set(xlabel="horizon (ms)", ylabel="MSE (counts per bin squared)", title="test rollouts")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)


def curves_figure(history: list[dict], path: Path) -> None:
    """Training and validation loss (normalised MSE) per epoch."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    epochs = [e["epoch"] for e in history]
    ax.plot(epochs, [e["train_loss"] for e in history], marker="o", label="train")
    ax.plot(epochs, [e["val_loss"] for e in history], marker="o", label="validation")
    ax.set(xlabel="epoch", ylabel="MSE (normalised)", title="training curves")
    ax.legend()
    fig.savefig(path, dpi=110)


def confusion_figure(matrices: dict[str, list[list[int]]], classes: list[float], path: Path) -> None:
    """Confusion matrices (rows: true class, columns: predicted) side by side, counts of windows."""
    fig = Figure(figsize=(4 * len(matrices), 3.6), layout="constrained")
    labels = [f"{c:g}" for c in classes]
    for j, (name, m) in enumerate(matrices.items()):
        ax = fig.add_subplot(1, len(matrices), j + 1)
        a = np.asarray(m)
        ax.imshow(a, cmap="Blues")
        for (r, c), v in np.ndenumerate(a):
            ax.text(c, r, str(v), ha="center", va="center", fontsize=8)
        ax.set(xticks=range(len(labels)), xticklabels=labels, yticks=range(len(labels)), yticklabels=labels,
               xlabel="predicted factor", ylabel="true factor", title=name)
    fig.savefig(path, dpi=110)
