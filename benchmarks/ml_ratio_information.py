"""Where does the activity carry the E/I ratio? (issue 22, point 8)

For the runs of an E/I-ratio training config (simulated if missing, as `eilab train` does), the multinomial
logistic regression of `eilab.ml.classify` (penalty chosen on the validation seeds) on subsets of the
hand-made features of every 1 s window, scored on the held-out seeds: all features, the E and I rates alone,
the E rate alone, all but the rates, and per-window VAR(3) coefficients of the E and I sums (how one bin
follows the last three: the coupling the weights set); with a Gaussian class-conditional (quadratic
discriminant) classifier on the two rates beside them. Why a window cannot tell more: the rates' spread from
window to window within a run and from seed to seed (of the run means), the accuracy a Gaussian model of the
window rates allows at best (its Bayes rule on draws from itself), and the logistic regression on each run's
mean features (all its windows at once). Prints one JSON object.

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


def gaussians(s: Samples, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Mean and covariance of the features of each class."""
    return [(s.feats[s.labels == c].mean(0), np.cov(s.feats[s.labels == c].T)) for c in range(n)]


def bayes_labels(stats: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """The most likely class of each row of x under Gaussian class densities (equal priors)."""
    scores = []
    for mu, cov in stats:
        d = x - mu
        scores.append(-0.5 * np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d) - 0.5 * np.linalg.slogdet(cov)[1])
    return np.argmax(scores, axis=0)


def qda_accuracy(train: Samples, test: Samples, n: int) -> float:
    """Held-out accuracy of Gaussian class-conditional densities (one mean and covariance per class)."""
    return float(np.mean(bayes_labels(gaussians(train, n), test.feats) == test.labels))


def gaussian_bayes_accuracy(train: Samples, n: int, draws: int = 100_000, seed: int = 0) -> float:
    """The accuracy of the Bayes rule on windows drawn from the Gaussian class densities fitted to the training
    windows: the best any classifier does if the features are these Gaussians."""
    stats, rng = gaussians(train, n), np.random.default_rng(seed)
    right = [np.mean(bayes_labels(stats, rng.multivariate_normal(mu, cov, draws)) == c)
             for c, (mu, cov) in enumerate(stats)]
    return float(np.mean(right))


def by_run(s: Samples, windows: int) -> Samples:
    """One sample per run: its windows' mean features."""
    return Samples(s.x[::windows], s.feats.reshape(-1, windows, s.feats.shape[1]).mean(1), s.labels[::windows],
                   s.factors[::windows])


def rate_spread(s: Samples, windows: int, n: int) -> dict[str, list[float]]:
    """Per feature (the rates), averaged over classes: the sd from window to window within a run, the sd of the
    run means from seed to seed, and the step between neighbouring classes' means (Hz)."""
    f = s.feats.reshape(-1, windows, s.feats.shape[1])
    lab = s.labels[::windows]
    within = np.mean([f[lab == c].std(axis=1, ddof=1).mean(0) for c in range(n)], axis=0)
    between = np.mean([f[lab == c].mean(axis=1).std(axis=0, ddof=1) for c in range(n)], axis=0)
    means = np.stack([f[lab == c].mean(axis=(0, 1)) for c in range(n)])
    return {"within_run_sd": within.tolist(), "between_seed_sd_of_run_means": between.tolist(),
            "class_step": np.abs(np.diff(means, axis=0)).mean(0).tolist()}


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
    out["gaussian_bayes_rates_accuracy"] = gaussian_bayes_accuracy(tr, n)
    runs_per_split = len(tc.data.seeds.test) * n
    windows = len(te.labels) // runs_per_split
    out["windows_per_run"] = windows
    out["rate_spread_hz"] = {k: dict(zip(("E", "I"), v, strict=True)) for k, v in rate_spread(tr, windows, n).items()}
    sets = {k: by_run(v, windows) for k, v in data.items()}
    fit = logistic_baseline(sets["train"], sets["validation"], n, tc.train.seed)
    out["logistic_run_means_test_accuracy"] = float(np.mean(fit.predict(sets["test"].feats) == sets["test"].labels))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
