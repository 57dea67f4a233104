"""Peak memory and read speed of a windowed dataset over many runs (issue 22: "peak memory of a dataset
over 20 runs"). Simulates N ring600 runs (2 s, seeds 1..N) into RUNS_DIR unless they are there, then in a
fresh process per cache size builds the all-neuron dataset (k = 10, 1 ms bins), draws one epoch of
windows and prints one JSON line: peak RSS before and after, windows per second. The order is random
when the cache holds every run's blocks, else run by run (random order over more runs than the cache
holds decodes a chunk for almost every window).

    python benchmarks/ml_dataset_memory.py RUNS_DIR [--runs 20] [--cache-mib 256 32]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(runs_dir: Path, n: int, cache_mib: int) -> dict:
    """One epoch over the dataset of runs seed1..seedN with an LRU of cache_mib MiB (this process)."""
    import numpy as np

    from eilab.ml.data import BlockCache, Segment, WindowSet, open_series
    from eilab.sim.reader import open_run

    before = peak_mib()
    runs = [open_run(runs_dir / f"ring600-seed{s}") for s in range(1, n + 1)]
    series = open_series(runs, 1.0, "neurons", BlockCache(cache_mib << 20))
    ws = WindowSet(series, [Segment(i, 100, s.n_bins) for i, s in enumerate(series)], 10, 1)
    fits = sum(s.n_bins * s.n_channels * 4 for s in series) <= cache_mib << 20
    ids = np.random.default_rng(0).permutation(len(ws)) if fits else np.arange(len(ws))
    t0 = time.perf_counter()
    for a in range(0, len(ids), 256):
        ws.batch(ids[a : a + 256])
    secs = time.perf_counter() - t0
    stored = sum(r.root["counts"].nbytes for r in runs) * 2  # as float32
    return {"runs": n, "windows": len(ws), "cache_mib": cache_mib, "peak_rss_mib_before": before,
            "peak_rss_mib_after": peak_mib(), "all_counts_as_float32_mib": stored / 2**20,
            "order": "random" if fits else "run by run", "windows_per_s": len(ids) / secs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs_dir", type=Path)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--cache-mib", type=int, nargs="+", default=[256, 32])
    ap.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # child: one cache size
    a = ap.parse_args()
    if a.measure is not None:
        print(json.dumps(measure(a.runs_dir, a.runs, a.measure)))
        return
    for s in range(1, a.runs + 1):
        if not (a.runs_dir / f"ring600-seed{s}" / "run.zarr").exists():
            subprocess.run([sys.executable, "-m", "eilab.cluster.cli", "run", "ring600", "--seed", str(s), "--set",
                            "run.t_ms=2000", "--quiet", "--out", str(a.runs_dir / f"ring600-seed{s}")], check=True,
                           capture_output=True)
    for mib in a.cache_mib:
        subprocess.run([sys.executable, __file__, str(a.runs_dir), "--runs", str(a.runs), "--measure", str(mib)],
                       check=True)


if __name__ == "__main__":
    main()
