"""A trained neuron surrogate's spike precision and recall (within 2 ms) per window of its held-out trials, streamed
from t = 0 as the scores run it, and restarted `--warmup-ms` before each window as the training sequences are:
whether its state drifts over trials longer than the sequences it was trained on; on training cells (`--split
train`), whether it fits the cells it learnt from any better than held-out ones. Prints one JSON line per window,
then one for the whole trials (from `--first-ms`, streamed): precision and recall at several tolerances, and the
recall within 2 ms of the spikes that open a burst (none in the `--burst-isi-ms` before) and of the others.

    python benchmarks/surrogate_windows.py runs/train-surrogate_l5pyr --window-ms 400
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a directory `eilab train` wrote for task = \"surrogate\"")
    ap.add_argument("--split", default="test", choices=["train", "validation", "test"])
    ap.add_argument("--chunks", type=int, default=None, help="only the split's first CHUNKS chunks")
    ap.add_argument("--first-ms", type=float, default=50.0, help="start of the first window, ms")
    ap.add_argument("--window-ms", type=float, default=400.0, help="window length, ms")
    ap.add_argument("--warmup-ms", type=float, default=100.0, help="a restarted window's lead-in, ms")
    ap.add_argument("--tolerances-ms", type=float, nargs="+", default=[1.0, 2.0, 5.0, 10.0, 20.0])
    ap.add_argument("--burst-isi-ms", type=float, default=15.0, help="a spike this close after another is in a burst")
    a = ap.parse_args()
    import torch

    from eilab.ml.surrogate import SurrogateNet, predict
    from eilab.ml.surrogate_data import Scaling, SurrogateModel, binned, open_trials
    from eilab.ml.surrogate_metrics import matches, precision_recall, spike_times

    d = Path(a.model)
    meta = json.loads((d / "meta.json").read_text())
    net = SurrogateNet(int(meta["n_in"]), SurrogateModel.model_validate(meta["model"]), int(meta.get("n_dendrites", 0)))
    net.load_state_dict(torch.load(d / "model.pt", map_location="cpu", weights_only=True))
    net.eval()
    torch.set_num_threads(1)
    scaling, b, th = Scaling.from_json(meta["scaling"]), float(meta["bin_ms"]), meta["thresholds"]["surrogate"]
    trials = open_trials(meta["chunks"][a.split][: a.chunks])
    x = scaling.inputs(binned(trials, b)[0])
    streamed = predict(net, x)[1]
    for t0 in np.arange(a.first_ms, trials.t_ms - a.window_ms / 2, a.window_ms):
        t1 = min(t0 + a.window_ms, trials.t_ms)
        first, last = round(t0 / b), round(t1 / b)
        lead = max(0, first - round(a.warmup_ms / b))
        restarted = predict(net, x[:, lead:last])[1][:, first - lead :]
        truth = [t[(t >= t0) & (t < t1)] for t in trials.spikes]
        row: dict = {"model": a.model, "split": a.split, "cells": len(trials.spikes),
                     "window_ms": [float(t0), float(t1)]}
        for name, prob in (("streamed", streamed[:, first:last]), ("restarted", restarted)):
            pr = precision_recall([spike_times(p, th, b) + first * b for p in prob], truth, 2.0)
            row[name] = {k: round(pr[k], 3) for k in ("precision", "recall", "f1")}
        print(json.dumps(row), flush=True)
    first = round(a.first_ms / b)
    pred = [spike_times(p, th, b) + first * b for p in streamed[:, first:]]
    truth = [t[t >= a.first_ms] for t in trials.spikes]
    opens = [np.diff(t, prepend=-np.inf) >= a.burst_isi_ms for t in truth]
    split = {name: [t[o == keep] for t, o in zip(truth, opens, strict=True)]
             for name, keep in (("burst_opening", True), ("within_burst", False))}
    keys = ("precision", "recall", "f1")
    by_tol = {str(tol): {k: round(v, 3) for k, v in precision_recall(pred, truth, tol).items() if k in keys}
              for tol in a.tolerances_ms}
    recall = {f"recall_2ms_{name}": round(sum(matches(p, t, 2.0) for p, t in zip(pred, ts, strict=True))
                                          / max(1, sum(len(t) for t in ts)), 3) for name, ts in split.items()}
    print(json.dumps({"model": a.model, "split": a.split, "cells": len(truth), "from_ms": a.first_ms,
                      "by_tolerance_ms": by_tol, **recall,
                      "true_spikes": {name: sum(len(t) for t in ts) for name, ts in split.items()}}), flush=True)


if __name__ == "__main__":
    main()
