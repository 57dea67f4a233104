"""eilab against NEST 3.10 and Brian2 (C++ standalone), side by side, one core each.

Runs `eilab bench NETWORK` and the peer scripts in benchmarks/peers/ one after another, repeated,
and prints one JSON line per run, then one summary line with medians and the ratios:

    simulate_vs_nest   NEST simulate_s / eilab simulate_s   (> 1: eilab is faster)
    simulate_vs_brian2 Brian2 simulate_s / eilab simulate_s
    build_vs_nest      NEST build_s / eilab build_s
    rss_vs_nest        eilab peak RSS / NEST peak RSS       (< 1: eilab uses less)
    rate_diff_vs_nest  (eilab rate - NEST rate) / NEST rate (medians of the mean rates)
    rate_diff_vs_brian2 the same against Brian2

    python benchmarks/compare.py brunel --order 2500 --t-ms 1000 --repeats 3
    python benchmarks/compare.py coba --t-ms 1000 --repeats 3
    python benchmarks/compare.py cuba --repeats 3 --vary-seed      # Brette et al. (2007) benchmark 2
    python benchmarks/compare.py cobahh --repeats 3 --vary-seed    # benchmark 3

Every simulator gets the same seed in a repeat (--seed, default 1; with --vary-seed repeat r uses
seed + r, so the rate medians run over several networks and initial states). The summary also
gives the load average (1 min) before and after, since timings on a busy machine mean little; NEST's
simulate_cpu_s (CPU time of nest.Simulate) and Brian2's simulate_s (its binary's CPU clock) hold on a
busy machine, and every run's process_cpu_s is the CPU time of its whole process.

The peers run in their own environment (benchmarks/peers/README.md: `.venv-peers`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def children_cpu_s() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def last_json(cmd: list[str]) -> dict:
    """The last stdout line of `cmd` as JSON, with eilab's population rates rate_E_hz, rate_I_hz also
    under the peers' names rate_e_hz, rate_i_hz, and process_cpu_s: the CPU seconds of the whole run
    (import, build, simulation; Brian2's compiler and binary included)."""
    cpu0 = children_cpu_s()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    line = json.loads(res.stdout.strip().splitlines()[-1])
    line["process_cpu_s"] = round(children_cpu_s() - cpu0, 3)
    for pop in ("e", "i"):
        line.setdefault(f"rate_{pop}_hz", line.get(f"rate_{pop.upper()}_hz"))
    return line


def commands(args: argparse.Namespace, build_dir: Path, seed: int) -> dict[str, list[str]]:
    """The command of each simulator for one repeat with `seed`."""
    size = ["--order", str(args.order)] if args.network == "brunel" else []
    common = [*size, "--t-ms", str(args.t_ms)]
    peers = str(args.peers_python)
    return {
        "eilab": [sys.executable, "-m", "eilab.cluster.cli", "bench", args.network, *common,
                  "--set", f"run.seed={seed}"],
        "nest": [peers, str(HERE / "peers" / f"{args.network}_nest.py"), *common, "--seed", str(seed)],
        "brian2": [peers, str(HERE / "peers" / f"{args.network}_brian2.py"), *common, "--seed", str(seed),
                   "--build-dir", str(build_dir)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("network", choices=["brunel", "coba", "cuba", "cobahh"])
    ap.add_argument("--order", type=int, default=2500)
    ap.add_argument("--t-ms", type=float, default=1000.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1, help="seed of every simulator (first repeat)")
    ap.add_argument("--vary-seed", action="store_true", help="repeat r uses seed + r")
    ap.add_argument("--peers-python", type=Path, default=ROOT / ".venv-peers" / "bin" / "python")
    ap.add_argument("--only", nargs="+", choices=["eilab", "nest", "brian2"], default=["eilab", "nest", "brian2"])
    args = ap.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in args.only}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="eilab-brian2-") as tmp:
        for r in range(args.repeats):  # interleaved, so slow drifts of the machine hit all alike
            cmds = commands(args, Path(tmp) / "build", args.seed + r if args.vary_seed else args.seed)
            for name in args.only:
                line = last_json(cmds[name])
                results[name].append(line)
                print(json.dumps(line), flush=True)
    keys = ("build_s", "simulate_s", "simulate_cpu_s", "process_cpu_s", "peak_rss_mb", "mean_rate_hz", "rate_e_hz",
            "rate_i_hz")
    med = {name: {key: statistics.median(r[key] for r in runs) for key in keys if key in runs[0]}
           for name, runs in results.items()}
    summary: dict[str, object] = {"summary": args.network, "order": args.order, "t_ms": args.t_ms,
                                  "repeats": args.repeats, "seed": args.seed, "vary_seed": args.vary_seed,
                                  "loadavg_1min": [load_before, os.getloadavg()[0]], "medians": med}
    if "eilab" in med and "nest" in med:
        e, n = med["eilab"], med["nest"]
        summary |= {"simulate_vs_nest": n["simulate_s"] / e["simulate_s"],
                    "build_vs_nest": n["build_s"] / e["build_s"],
                    "rss_vs_nest": e["peak_rss_mb"] / n["peak_rss_mb"],
                    "rate_diff_vs_nest": (e["mean_rate_hz"] - n["mean_rate_hz"]) / n["mean_rate_hz"]}
    if "eilab" in med and "brian2" in med:
        e, b = med["eilab"], med["brian2"]
        summary |= {"simulate_vs_brian2": b["simulate_s"] / e["simulate_s"],
                    "rate_diff_vs_brian2": (e["mean_rate_hz"] - b["mean_rate_hz"]) / b["mean_rate_hz"]}
    if "eilab" in results:
        summary["eilab_bytes_per_synapse"] = results["eilab"][0]["bytes_per_synapse"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
