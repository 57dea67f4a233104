"""The E/I-ratio classifier behind `eilab train` (task = "ei_ratio") and `eilab predict` (issue 22, point 8).

A classifier's training directory holds config.toml, checkpoint.pt (every epoch; the same command resumes from
it), model.pt (the CNN's best weights), meta.json (format eilab-classifier/1: classes, windows, populations,
the training split's standardisation and the fitted logistic baseline), metrics.json and figures/confusion.png.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from eilab.cluster.train import CLASSIFIER_FORMAT, history_improving, populations_of, provenance, write_json
from eilab.sim.config import ConfigError
from eilab.sim.reader import Run


def split_samples(tc: Any, runs: dict[tuple[float | None, int], Run]) -> dict[str, Any]:
    """Samples of the train, validation and test seeds: every factor's runs, class = index of the factor."""
    from eilab.ml.classify import samples
    from eilab.ml.data import open_series

    d, factors = tc.data, tc.data.grid.factors
    split_seeds = {"train": d.seeds.train, "validation": d.seeds.validation, "test": d.seeds.test}
    keys = [(f, seed) for name in ("train", "validation", "test") for f in factors for seed in split_seeds[name]]
    series = dict(zip(keys, open_series([runs[k] for k in keys], d.bin_ms, "sums"), strict=True))
    return {name: samples([series[f, seed] for f in factors for seed in seeds],
                          [i for i, _ in enumerate(factors) for _ in seeds], [f for f in factors for _ in seeds],
                          d.window_ms, d.skip_ms) for name, seeds in split_seeds.items()}


def split_scores(fit: Any, logistic: Any, smp: Any, n: int, train_factor: float) -> dict[str, Any]:
    """Accuracy and confusion of the CNN and the logistic baseline on samples smp; chance and majority class;
    the regression head's factor error beside that of predicting the training mean factor."""
    from eilab.ml.classify import mcnemar, scores

    pred, fac = fit.predict(smp.x)
    base = logistic.predict(smp.feats)
    counts = np.bincount(smp.labels, minlength=n)
    return {"windows": len(smp.labels), "chance": 1.0 / n, "majority": float(counts.max() / counts.sum()),
            "cnn": {**scores(smp.labels, pred, n), "factor_mae": float(np.mean(np.abs(fac - smp.factors))),
                    "factor_rmse": float(np.sqrt(np.mean((fac - smp.factors) ** 2)))},
            "train_mean_factor": {"factor_mae": float(np.mean(np.abs(train_factor - smp.factors)))},
            "logistic": scores(smp.labels, base, n), "cnn_vs_logistic": mcnemar(smp.labels, pred, base)}


def classify_and_report(tc: Any, runs: dict[tuple[float | None, int], Run], out: Path, max_epochs: int | None,
                        progress: bool) -> int:
    """The E/I-ratio classifier and its logistic-regression baseline: metrics.json (accuracy and confusion
    matrix per split, chance, factor error of the CNN's regression head), model.pt, meta.json, figures."""
    from eilab.ml.classify import FEATURES, logistic_baseline, train_cnn
    from eilab.ml.figures import confusion_figure
    from eilab.ml.lstm import make_deterministic

    d, s, factors = tc.data, tc.train, tc.data.grid.factors
    data = split_samples(tc, runs)
    n = len(factors)
    make_deterministic(s.seed, s.threads)
    logistic = logistic_baseline(data["train"], data["validation"], n, s.seed)
    fit = train_cnn(data["train"], data["validation"], n, tc.model.model_dump(), s, out, max_epochs, progress)
    if len(fit.history) < s.epochs and history_improving(fit.history, s.patience):  # stopped by max_epochs
        print(f"stopped after epoch {len(fit.history)} (--max-epochs); run the same command without it to resume",
              file=sys.stderr)
        return 0
    train_factor = float(data["train"].factors.mean())
    metrics: dict[str, Any] = {"classes": factors, "features": list(FEATURES), "logistic_l2": logistic.l2,
                               "splits": {name: split_scores(fit, logistic, smp, n, train_factor)
                                          for name, smp in data.items()}}
    metrics["training"] = {"history": fit.history, "epochs": len(fit.history)}
    metrics["setup"] = {"window_ms": d.window_ms, "bin_ms": d.bin_ms, "skip_ms": d.skip_ms, "scale": d.grid.scale,
                        "seeds": {"train": d.seeds.train, "validation": d.seeds.validation, "test": d.seeds.test},
                        **provenance(s.seed)}
    write_json({"format": CLASSIFIER_FORMAT, "classes": factors, "model": tc.model.model_dump(),
                "populations": populations_of(next(iter(runs.values()))), "scaling": fit.scaling.to_json(),
                "logistic": logistic.to_json(), **metrics["setup"]}, out / "meta.json")
    write_json(metrics, out / "metrics.json")
    (out / "figures").mkdir(exist_ok=True)
    test = metrics["splits"]["test"]
    confusion_figure({"cnn": test["cnn"]["confusion"], "logistic": test["logistic"]["confusion"]}, factors,
                     out / "figures" / "confusion.png")
    print(accuracy_table(metrics, factors))
    print(f"training directory: {out}")
    return 0


def accuracy_table(metrics: dict[str, Any], factors: list[float]) -> str:
    rows = [f"{'split':<12}{'windows':>8}{'chance':>8}{'logistic':>10}{'cnn':>8}{'factor MAE':>12}{'mean MAE':>10}"]
    for name, m in metrics["splits"].items():
        rows.append(f"{name:<12}{m['windows']:>8}{m['chance']:>8.3f}{m['logistic']['accuracy']:>10.3f}"
                    f"{m['cnn']['accuracy']:>8.3f}{m['cnn']['factor_mae']:>12.4f}"
                    f"{m['train_mean_factor']['factor_mae']:>10.4f}")
    return "E/I-ratio classes " + ", ".join(f"{f:g}" for f in factors) + " (accuracy):\n" + "\n".join(rows)


def predict_classifier(meta: dict[str, Any], model_dir: Path, run: Run, out_arg: str | None) -> int:
    """Apply a classifier's CNN and logistic baseline to every window of `run`: the factor per window, the
    most voted factor and the mean regressed factor, printed and written to MODEL_DIR/predictions/<run>.json."""
    from eilab.ml.classify import Logistic, Scaling, load_cnn, run_windows
    from eilab.ml.data import open_series

    classes = meta["classes"]
    x, feats = run_windows(open_series([run], meta["bin_ms"], "sums")[0], meta["window_ms"], meta["skip_ms"])
    try:
        cnn = load_cnn(model_dir, len(classes), meta["model"], Scaling.from_json(meta["scaling"]))
    except (OSError, RuntimeError) as e:
        raise ConfigError(f"{model_dir / 'model.pt'}: not the weights meta.json describes ({e}); train the "
                          "classifier again") from None
    cls, factor = cnn.predict(x)
    by_logistic = Logistic.from_json(meta["logistic"]).predict(feats)

    def summary(labels: np.ndarray) -> dict[str, Any]:
        votes = np.bincount(labels, minlength=len(classes))
        return {"factors": [classes[i] for i in labels], "votes": votes.tolist(),
                "factor": classes[int(votes.argmax())]}

    result = {"run": str(run.path), "windows": len(x), "window_ms": meta["window_ms"], "classes": classes,
              "cnn": {**summary(cls), "regressed": factor.tolist(), "regressed_mean": float(factor.mean())},
              "logistic": summary(by_logistic)}
    out = Path(out_arg) if out_arg else model_dir / "predictions" / f"{run.path.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(result, out)
    print(f"{run.path}: {len(x)} windows of {meta['window_ms']:g} ms; predicted factor of the inhibitory weights: "
          f"CNN {result['cnn']['factor']:g} (most voted; regression head {result['cnn']['regressed_mean']:.4f}), "
          f"logistic {result['logistic']['factor']:g}")
    print(f"predictions written to {out}")
    return 0
