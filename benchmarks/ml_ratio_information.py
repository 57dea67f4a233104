"""Where does the activity carry the E/I ratio? (issue 22, point 8)

For the runs of an E/I-ratio training config (simulated if missing, as `eilab train` does), the multinomial
logistic regression of `eilab.ml.classify` (penalty chosen on the validation seeds) on subsets of the
hand-made features of every 1 s window, scored on the held-out seeds: all features, the E and I rates alone,
the E rate alone, all but the rates, and per-window VAR(3) coefficients of the E and I sums (how one bin
follows the last three: the coupling the weights set); with a Gaussian class-conditional (quadratic
discriminant) classifier on the two rates beside them. Prints one JSON object.

  python benchmarks/ml_ratio_information.py configs/train/ei_ratio_20seeds.toml --runs-dir runs/ei20
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from eilab.cluster.classify_cli import split_samples
from eilab.cluster.train import ensure_runs, run_plan
from eilab.ml.classify import FEATURES, Samples, logistic_baseline
from eilab.ml.config import load_train_config

SUBSETS = {"all": FEATURES, "rates": ("rate_E_hz", "rate_I_hz"), "rate_E": ("rate_E_hz",),
           "no_rates": tuple(f for f in FEATURES if not f.startswith("rate"))}


def var_coefficients(x: np.ndarray, p: int = 3) -> np.ndarray:
    """Least-squares VAR(p) coefficients (with intercept, left out) of a window's E/I sums x (bins, 2), and
    its residual covariance (3 entries)."""
    z = np.concatenate([x[p - i - 1 : len(x) - i - 1] for i in range(p)] + [np.ones((len(x) - p, 1))], axis=1)
    w, *_ = np.linalg.lstsq(z, x[p:], rcond=None)
    c = np.cov((x[p:] - z @ w).T)
    return np.concatenate([w[:-1].ravel(), [c[0, 0], c[1, 1], c[0, 1]]])


def qda_accuracy(train: Samples, test: Samples, n: int) -> float:
    """Held-out accuracy of Gaussian class-conditional densities (one mean and covariance per class)."""
    stats = [(train.feats[train.labels == c].mean(0), np.cov(train.feats[train.labels == c].T)) for c in range(n)]
    scores = []
    for mu, cov in stats:
        d = test.feats - mu
        scores.append(-0.5 * np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d) - 0.5 * np.linalg.slogdet(cov)[1])
    return float(np.mean(np.argmax(scores, axis=0) == test.labels))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("--runs-dir", required=True)
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args()
    tc, _ = load_train_config(Path(a.config))
    runs = ensure_runs(tc, run_plan(tc, Path(a.runs_dir)), a.jobs, False)
    data = split_samples(tc, runs)
    n = len(tc.data.grid.factors)
    out = {"config": a.config, "windows": {k: len(v.labels) for k, v in data.items()}, "chance": 1.0 / n,
           "logistic_test_accuracy": {}}

    def score(name: str, pick: dict[str, np.ndarray]) -> None:
        sets = {k: replace(v, feats=pick[k]) for k, v in data.items()}
        fit = logistic_baseline(sets["train"], sets["validation"], n, tc.train.seed)
        out["logistic_test_accuracy"][name] = float(np.mean(fit.predict(sets["test"].feats) == sets["test"].labels))

    for name, cols in SUBSETS.items():
        idx = [FEATURES.index(c) for c in cols]
        score(name, {k: v.feats[:, idx] for k, v in data.items()})
    score("var3", {k: np.stack([var_coefficients(x.astype(np.float64)) for x in v.x]) for k, v in data.items()})
    rates = [FEATURES.index("rate_E_hz"), FEATURES.index("rate_I_hz")]
    tr, te = (replace(data[k], feats=data[k].feats[:, rates]) for k in ("train", "test"))
    out["qda_rates_test_accuracy"] = qda_accuracy(tr, te, n)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
