"""How precisely an hnn-core cell's spikes follow its input (issue 19): the ceiling its surrogate's spike precision
and recall face. The stored inputs of a chunk (trials.zarr from `eilab train` with an hnn-core cell) are fed
back into NEURON (eilab.ml.surrogate_hnn.replay) (a) with every weight scaled by 1 + eps, a surrogate's error in
its sense of the input, and (b) with every event moved to the first step of its surrogate bin of `bin_ms`, the
input timing a surrogate on such bins does not see. Spikes are matched to the stored ones within 2 ms. Prints
one JSON line per perturbation.

    python benchmarks/surrogate_reliability.py runs/surrogate-l5pyr/chunk-seed10/trials.zarr
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def quantised(x: np.ndarray, steps: int) -> np.ndarray:
    """Inputs (cells, steps, groups) with each bin's events summed onto its first step."""
    n = x.shape[1] // steps
    q = np.zeros_like(x)
    q[:, : n * steps : steps] = x[:, : n * steps].reshape(x.shape[0], n, steps, -1).sum(axis=2)
    return q


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", help="a chunk's trials.zarr of an hnn-core cell")
    ap.add_argument("--eps", type=float, nargs="*", default=[1e-3, 1e-2, 5e-2], help="relative weight errors")
    ap.add_argument("--bin-ms", type=float, nargs="*", default=[0.1, 0.25, 0.5], help="surrogate bins, ms")
    a = ap.parse_args()
    import zarr

    from eilab.ml.surrogate_hnn import replay
    from eilab.ml.surrogate_metrics import precision_recall

    root = zarr.open_group(a.store, mode="r")
    cell, dt = root.attrs["cell"]["model"], float(root.attrs["protocol"]["dt_ms"])
    x = root["input"][:].astype(np.float64)
    t, c = root["spike_times_ms"][:], root["spike_cell"][:]
    stored = [t[c == k] for k in range(x.shape[0])]
    cases = [("weights x (1 + eps)", eps, x * (1 + eps)) for eps in a.eps]
    cases += [("events at their bin's start", b, quantised(x, round(b / dt))) for b in a.bin_ms]
    for kind, value, inputs in cases:
        pr = precision_recall(replay(cell, inputs, dt)[1], stored, 2.0)
        print(json.dumps({"store": a.store, "cell": cell, "cells": len(stored), "perturbation": kind,
                          "value": value, **{k: round(v, 4) for k, v in pr.items()}}), flush=True)


if __name__ == "__main__":
    main()
