"""Where is the room between linear AR and the predictability ceiling? (issue 22)

The ceiling (eilab.ml.ceiling) branches from the whole network state; predictors see only past spike counts.
This script replays stored runs (the ceiling's `Replay`, bitwise the stored run) and records at every bin edge
what the counts do not show: the histogram of the membrane potentials of the E and I cells (and how many are
refractory). Ridge regressions of the next bin's E and I sums, fitted on the training runs and scored on the
held-out runs, then compare three input sets on the same windows:

  counts   the last k bins of the E and I sums (the product's `ridge_ar`)
  voltage  the V histograms at the window's end only
  both     the two together

If `both` closes most of the room that `counts` leaves above the ceiling, the room lies in the subthreshold
state, which no predictor of spike counts can see. With --ceiling-branches B the ceiling of the same held-out runs
(eilab.ml.ceiling, B branch points x 16 drive seeds) is printed beside them. Prints one JSON object.

  python benchmarks/ml_hidden_state.py runs/ring600-10s --train 1-20 --test 45-52 [--bin-ms 1] [--k 10]
      [--ceiling-branches 200]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from eilab.ml.ceiling import Replay, ceiling
from eilab.ml.data import first_bin
from eilab.sim.models import REF, V
from eilab.sim.reader import open_run

# V bin edges (ring600's dimensionless V: reset 0, threshold 1), finer towards the threshold
EDGES = np.array([-np.inf, 0.2, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.88, 0.91, 0.94, 0.96, 0.98, np.inf])
ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def seeds(text: str) -> list[int]:
    """'1-20' or '1,2,5' -> seeds."""
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(x) for x in text.split(",")]


def replay_run(path: str, bin_ms: float) -> tuple[np.ndarray, np.ndarray]:
    """(E and I sums per bin (bins, 2), state features at each bin's start (bins, 2 x (len(EDGES) - 1 + 1)))
    of one stored run, stepped again; the replay's counts are checked against the stored ones."""
    run = open_run(path)
    rp = Replay(run)
    steps = rp.cfg.steps(bin_ms)
    n_bins = rp.cfg.steps(rp.cfg.run.t_ms) // steps
    own = rp.drive(rp.own_seed)
    counts = np.zeros((n_bins, rp.net.n_local), np.uint16)
    feats = np.zeros((n_bins, 2 * len(EDGES)), np.float32)
    for b in range(n_bins):
        v, ref = rp.net.state[V], rp.net.state[REF]
        for t in range(2):
            mine = rp.type_of == t
            free = mine & (ref <= 0)
            feats[b, t * len(EDGES) : (t + 1) * len(EDGES) - 1] = np.histogram(v[free], EDGES)[0]
            feats[b, (t + 1) * len(EDGES) - 1] = (mine & (ref > 0)).sum()
        rp.advance(steps, own, counts[b : b + 1], steps)
    stored = run.counts().reshape(n_bins, -1, counts.shape[1]).sum(axis=1)
    if not np.array_equal(stored, counts):
        raise SystemExit(f"{path}: the replay's counts differ from the stored ones")
    return rp.outputs(counts, "sums"), feats


def design(sums: np.ndarray, feats: np.ndarray, k: int, lo: int, which: str) -> tuple[np.ndarray, np.ndarray]:
    """Windows whose target bin is j in [lo + k, bins): inputs of set `which`, targets (windows, 2)."""
    js = np.arange(lo + k, len(sums))
    parts = []
    if which in ("counts", "both"):
        parts.append(np.stack([sums[js - k + i] for i in range(k)], axis=1).reshape(len(js), -1))
    if which in ("voltage", "both"):
        parts.append(feats[js])  # the state at the start of the target bin: the end of the window
    return np.concatenate(parts, axis=1), sums[js]


def ridge(x: np.ndarray, y: np.ndarray, alpha: float, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    z = np.concatenate([(x - mean) / sd, np.ones((len(x), 1))], axis=1)
    reg = alpha * len(z) * np.eye(z.shape[1])
    reg[-1, -1] = 0.0
    return np.linalg.solve(z.T @ z + reg, z.T @ y)


def predict(w: np.ndarray, x: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return np.concatenate([(x - mean) / sd, np.ones((len(x), 1))], axis=1) @ w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs_dir")
    ap.add_argument("--name", default="ring600-seed{}")
    ap.add_argument("--train", default="1-20")
    ap.add_argument("--validation", default="41-44")
    ap.add_argument("--test", default="45-52")
    ap.add_argument("--bin-ms", type=float, default=1.0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--skip-ms", type=float, default=100.0)
    ap.add_argument("--ceiling-branches", type=int, default=0)
    a = ap.parse_args()
    t0 = time.time()
    data = {split: [replay_run(f"{a.runs_dir}/{a.name.format(s)}", a.bin_ms) for s in seeds(getattr(a, split))]
            for split in ("train", "validation", "test")}
    replay_s = time.time() - t0
    lo = first_bin(a.skip_ms, a.bin_ms)
    out = {"bin_ms": a.bin_ms, "k": a.k, "edges": EDGES[1:-1].tolist(), "replay_s": round(replay_s, 1),
           "train": a.train, "validation": a.validation, "test": a.test, "next_bin_mse": {}, "alpha": {}}
    for which in ("counts", "voltage", "both"):
        xy = {split: [design(s, f, a.k, lo, which) for s, f in runs] for split, runs in data.items()}
        x, y = (np.concatenate([p[i] for p in xy["train"]]) for i in (0, 1))
        mean, sd = x.mean(axis=0), x.std(axis=0) + 1e-9
        xv, yv = (np.concatenate([p[i] for p in xy["validation"]]) for i in (0, 1))
        fits = {al: ridge(x, y, al, mean, sd) for al in ALPHAS}
        best = min(ALPHAS, key=lambda al: float(np.mean((predict(fits[al], xv, mean, sd) - yv) ** 2)))
        xt, yt = (np.concatenate([p[i] for p in xy["test"]]) for i in (0, 1))
        err = (predict(fits[best], xt, mean, sd) - yt) ** 2
        out["next_bin_mse"][which] = float(err.mean())
        out["alpha"][which] = best
        out.setdefault("per_output", {})[which] = err.mean(axis=0).tolist()
        out["test_windows"] = len(yt)
    if a.ceiling_branches:
        runs = [open_run(f"{a.runs_dir}/{a.name.format(s)}") for s in seeds(a.test)]
        out["ceiling"] = ceiling(runs, a.bin_ms, "sums", lo + a.k, 1, a.ceiling_branches, 16).to_json()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
