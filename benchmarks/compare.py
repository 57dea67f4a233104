"""eilab against NEST 3.10 and Brian2 (C++ standalone), side by side, one core each.

Runs `eilab bench NETWORK` and the peer scripts in benchmarks/peers/ one after another, repeated,
and prints one JSON line per run, then one summary line with medians and the ratios:

    simulate_vs_nest   NEST simulate_s / eilab simulate_s   (> 1: eilab is faster)
    simulate_vs_brian2 Brian2 simulate_s / eilab simulate_s
    simulate_cpu_vs_*  the same with eilab's (and NEST's) CPU time of the simulate phase: Brian2's
                       simulate_s is CPU time already; on a loaded machine compare these
    build_vs_nest      NEST build_s / eilab build_s
    rss_vs_nest        eilab peak RSS / NEST peak RSS       (< 1: eilab uses less)
    rate_diff_vs_nest  (eilab rate - NEST rate) / NEST rate (medians of the mean rates)
    rate_diff_vs_brian2 the same against Brian2

    python benchmarks/compare.py brunel --order 2500 --t-ms 1000 --repeats 3
    python benchmarks/compare.py coba --t-ms 1000 --repeats 3
    python benchmarks/compare.py cuba --repeats 3 --vary-seed      # Brette et al. (2007) benchmark 2
    python benchmarks/compare.py cobahh --repeats 3 --vary-seed    # benchmark 3
    python benchmarks/compare.py coba --variant \
        euler:populations.E.params.integration=euler,populations.I.params.integration=euler

Like with like: the peers' scripts keep every spike in memory and record nothing else, so eilab records
spikes only by default (--record spikes: no counts, no probes); --record config keeps the bundled config's
recording. --variant LABEL:KEY=VALUE,... adds an eilab run with those overrides to every repeat (for a
scheme a peer uses: forward Euler for COBA, sub-steps for COBAHH); its ratios are reported as
simulate_vs_nest[LABEL] and so on. --brian2-method picks Brian2's state updater (default: its example's).

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


SPIKES_ONLY = ["--set", "record.counts_bin_ms=0", "--set", "record.probes=[]"]  # as the peers' spike monitors


def variant(text: str) -> tuple[str, list[str]]:
    """`LABEL:KEY=VALUE,KEY=VALUE` as ("eilab[LABEL]", its --set arguments)."""
    label, _, sets = text.partition(":")
    if not label or not sets or any("=" not in kv for kv in sets.split(",")):
        raise argparse.ArgumentTypeError(f"--variant {text!r}: expected LABEL:KEY=VALUE[,KEY=VALUE...]")
    return f"eilab[{label}]", [arg for kv in sets.split(",") for arg in ("--set", kv)]


def commands(args: argparse.Namespace, build_dir: Path, seed: int) -> dict[str, list[str]]:
    """The command of each simulator (and eilab variant) for one repeat with `seed`."""
    size = ["--order", str(args.order)] if args.network == "brunel" else []
    common = [*size, "--t-ms", str(args.t_ms)]
    peers = str(args.peers_python)
    eilab = [sys.executable, "-m", "eilab.cluster.cli", "bench", args.network, *common, "--set", f"run.seed={seed}",
             *(SPIKES_ONLY if args.record == "spikes" else [])]
    method = ["--method", args.brian2_method] if args.brian2_method else []
    return {
        "eilab": eilab,
        **{label: eilab + sets for label, sets in args.variant},
        "nest": [peers, str(HERE / "peers" / f"{args.network}_nest.py"), *common, "--seed", str(seed)],
        "brian2": [peers, str(HERE / "peers" / f"{args.network}_brian2.py"), *common, "--seed", str(seed),
                   "--build-dir", str(build_dir), *method],
    }


def ratios(med: dict[str, dict]) -> dict[str, float]:
    """Each eilab run (plain and variants) against each peer: simulate and build time, peak RSS, mean rate."""
    out: dict[str, float] = {}
    for name, e in med.items():
        if not name.startswith("eilab"):
            continue
        tag = name[len("eilab"):]
        if "nest" in med:
            n = med["nest"]
            out |= {f"simulate_vs_nest{tag}": n["simulate_s"] / e["simulate_s"],
                    f"build_vs_nest{tag}": n["build_s"] / e["build_s"],
                    f"rss_vs_nest{tag}": e["peak_rss_mb"] / n["peak_rss_mb"],
                    f"rate_diff_vs_nest{tag}": (e["mean_rate_hz"] - n["mean_rate_hz"]) / n["mean_rate_hz"]}
        if "nest" in med:
            out[f"simulate_cpu_vs_nest{tag}"] = med["nest"]["simulate_cpu_s"] / e["simulate_cpu_s"]
        if "brian2" in med:
            b = med["brian2"]
            out |= {f"simulate_vs_brian2{tag}": b["simulate_s"] / e["simulate_s"],
                    f"simulate_cpu_vs_brian2{tag}": b["simulate_s"] / e["simulate_cpu_s"],
                    f"rate_diff_vs_brian2{tag}": (e["mean_rate_hz"] - b["mean_rate_hz"]) / b["mean_rate_hz"]}
    return out


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
    ap.add_argument("--record", choices=["spikes", "config"], default="spikes",
                    help="eilab's recording: spikes only, as the peers (default), or the bundled config's")
    ap.add_argument("--variant", type=variant, action="append", default=[], metavar="LABEL:KEY=VALUE,...",
                    help="an extra eilab run per repeat with these overrides (repeatable)")
    ap.add_argument("--brian2-method", help="Brian2 state updater (default: the one of its example)")
    args = ap.parse_args()
    names = list(args.only)
    if "eilab" in args.only:
        names[names.index("eilab") + 1:names.index("eilab") + 1] = [label for label, _ in args.variant]
    results: dict[str, list[dict]] = {name: [] for name in names}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="eilab-brian2-") as tmp:
        for r in range(args.repeats):  # interleaved, so slow drifts of the machine hit all alike
            cmds = commands(args, Path(tmp) / "build", args.seed + r if args.vary_seed else args.seed)
            for name in names:
                line = last_json(cmds[name])
                line["run"] = name
                results[name].append(line)
                print(json.dumps(line), flush=True)
    keys = ("build_s", "simulate_s", "simulate_cpu_s", "process_cpu_s", "peak_rss_mb", "mean_rate_hz", "rate_e_hz",
            "rate_i_hz")
    med = {name: {key: statistics.median(r[key] for r in runs) for key in keys if key in runs[0]}
           for name, runs in results.items()}
    summary: dict[str, object] = {"summary": args.network, "order": args.order, "t_ms": args.t_ms,
                                  "repeats": args.repeats, "seed": args.seed, "vary_seed": args.vary_seed,
                                  "record": args.record,
                                  "variants": {label: sets[1::2] for label, sets in args.variant},
                                  "brian2_method": args.brian2_method or "example's",
                                  "loadavg_1min": [load_before, os.getloadavg()[0]], "medians": med, **ratios(med)}
    if "eilab" in results:
        summary["eilab_bytes_per_synapse"] = results["eilab"][0]["bytes_per_synapse"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
