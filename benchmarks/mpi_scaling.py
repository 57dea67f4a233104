"""Strong and weak scaling of the Brunel network over MPI ranks on this machine.

Strong: the same network (order N, 1000 ms) on 1 and 2 ranks. Weak: the load per rank fixed
(C_E = 0.4 N inputs per neuron, N / 2 * 5 neurons per rank): order N / 2 with epsilon 0.2 on 1 rank
against the strong run of order N (epsilon 0.1) on 2 ranks. Each case runs `--repeats` times,
interleaved; prints one JSON line per run and a summary with medians, speed-up, weak-scaling
efficiency and peak memory per rank.

    python benchmarks/mpi_scaling.py --order 2500 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench(ranks: int, order: int, t_ms: float, epsilon: float) -> dict:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    cmd = [str(mpiexec), "-n", str(ranks), sys.executable, "-m", "eilab.cluster.cli", "bench", "brunel",
           "--order", str(order), "--t-ms", str(t_ms), "--set", f"vars.epsilon={epsilon}"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--order", type=int, default=2500)
    ap.add_argument("--t-ms", type=float, default=1000.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cases = {
        "strong_1": (1, args.order, 0.1),
        "strong_2": (2, args.order, 0.1),
        "weak_1": (1, args.order // 2, 0.2),
    }
    runs: dict[str, list[dict]] = {k: [] for k in cases}
    for _ in range(args.repeats):
        for name, (ranks, order, eps) in cases.items():
            line = bench(ranks, order, args.t_ms, eps) | {"case": name}
            runs[name].append(line)
            print(json.dumps(line), flush=True)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    summary = {
        "summary": "mpi_scaling",
        "medians": {name: {k: med(name, k) for k in ("build_s", "simulate_s", "update_s", "exchange_s",
                                                      "deliver_s", "record_s", "peak_rss_mb")}
                    for name in runs},
        "strong_speedup_simulate": med("strong_1", "simulate_s") / med("strong_2", "simulate_s"),
        "strong_speedup_wall": (med("strong_1", "simulate_s") + med("strong_1", "build_s"))
        / (med("strong_2", "simulate_s") + med("strong_2", "build_s")),
        "weak_efficiency_simulate": med("weak_1", "simulate_s") / med("strong_2", "simulate_s"),
        "peak_rss_mb_per_rank": {name: runs[name][0]["peak_rss_mb_per_rank"] for name in runs},
        # per rank of the 2-rank runs: update (drive drawn while waiting included), that drawing, exchange
        # (waits for the slower rank), delivery; a rank on a slower core waits less and draws less ahead
        "strong_2_per_rank": [{k: statistics.median(r["per_rank"][rank][k] for r in runs["strong_2"])
                               for k in runs["strong_2"][0]["per_rank"][0]} for rank in range(2)],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
