"""eilab against NEST 3.10 and Brian2 (C++ standalone), side by side, one core each.

Runs `eilab bench NETWORK` and the peer scripts in benchmarks/peers/ one after another, repeated,
and prints one JSON line per run, then one summary line with medians and the ratios:

    simulate_vs_nest   NEST simulate_s / eilab simulate_s   (> 1: eilab is faster)
    simulate_vs_brian2 Brian2 simulate_s / eilab simulate_s
    build_vs_nest      NEST build_s / eilab build_s
    rss_vs_nest        eilab peak RSS / NEST peak RSS       (< 1: eilab uses less)
    rate_diff_vs_nest  (eilab rate - NEST rate) / NEST rate

    python benchmarks/compare.py brunel --order 2500 --t-ms 1000 --repeats 3
    python benchmarks/compare.py coba --t-ms 1000 --repeats 3

The peers run in their own environment (benchmarks/peers/README.md: `.venv-peers`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def last_json(cmd: list[str]) -> dict:
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def commands(args: argparse.Namespace, build_dir: Path) -> dict[str, list[str]]:
    size = ["--order", str(args.order)] if args.network == "brunel" else []
    common = [*size, "--t-ms", str(args.t_ms)]
    peers = str(args.peers_python)
    return {
        "eilab": [sys.executable, "-m", "eilab.cluster.cli", "bench", args.network, *common],
        "nest": [peers, str(HERE / "peers" / f"{args.network}_nest.py"), *common],
        "brian2": [peers, str(HERE / "peers" / f"{args.network}_brian2.py"), *common, "--build-dir", str(build_dir)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("network", choices=["brunel", "coba"])
    ap.add_argument("--order", type=int, default=2500)
    ap.add_argument("--t-ms", type=float, default=1000.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peers-python", type=Path, default=ROOT / ".venv-peers" / "bin" / "python")
    ap.add_argument("--only", nargs="+", choices=["eilab", "nest", "brian2"], default=["eilab", "nest", "brian2"])
    args = ap.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in args.only}
    with tempfile.TemporaryDirectory(prefix="eilab-brian2-") as tmp:
        cmds = commands(args, Path(tmp) / "build")
        for _ in range(args.repeats):  # interleaved, so slow drifts of the machine hit all alike
            for name in args.only:
                line = last_json(cmds[name])
                results[name].append(line)
                print(json.dumps(line), flush=True)
    med = {name: {key: statistics.median(r[key] for r in runs)
                  for key in ("build_s", "simulate_s", "peak_rss_mb", "mean_rate_hz")}
           for name, runs in results.items()}
    summary: dict[str, object] = {"summary": args.network, "order": args.order, "t_ms": args.t_ms,
                                  "repeats": args.repeats, "medians": med}
    if "eilab" in med and "nest" in med:
        e, n = med["eilab"], med["nest"]
        summary |= {"simulate_vs_nest": n["simulate_s"] / e["simulate_s"],
                    "build_vs_nest": n["build_s"] / e["build_s"],
                    "rss_vs_nest": e["peak_rss_mb"] / n["peak_rss_mb"],
                    "rate_diff_vs_nest": (e["mean_rate_hz"] - n["mean_rate_hz"]) / n["mean_rate_hz"]}
    if "eilab" in med and "brian2" in med:
        summary["simulate_vs_brian2"] = med["brian2"]["simulate_s"] / med["eilab"]["simulate_s"]
    if "eilab" in results:
        summary["eilab_bytes_per_synapse"] = results["eilab"][0]["bytes_per_synapse"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
