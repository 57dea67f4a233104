"""One billion synapses on one machine: Brunel (2000) with the original in-degree of 10 %.

Order 20,000 (N_E = 80,000, N_I = 20,000) with epsilon = 0.1 (C_E = 8,000, C_I = 2,000): 10^9 synapses on one
rank, stored as uint16 offsets within target blocks of 65,536 neurons (2 bytes per synapse; sim/network.py).
Builds and simulates `--t-ms` in this process and prints one JSON line: build and simulate time, CPU time,
peak memory (ru_maxrss, the whole process), bytes per synapse, ns per synaptic event (simulate phase and
delivery), the steady-state E and I rates after `--skip-ms` against the Siegert mean-field rates
(eilab.analysis.siegert; Brunel 2000 eqs. 4-5) and the load average. With `--nest-orders` it also runs NEST's
brunel_nest.py (benchmarks/peers/, `--peers-python`) at those smaller orders for a short time and fits
NEST's peak memory against the synapse count (least squares, linear) to extrapolate it to this network.
Not run in CI: the full size needs about 2.2 GB of memory and minutes of CPU.

    python benchmarks/billion.py                          # order 20000, 1 s
    python benchmarks/billion.py --order 2000 --t-ms 500  # a scaled-down check (10^7 synapses)
    python benchmarks/billion.py --nest-orders 500 1000 2000 --only-nest
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from compare import last_json  # noqa: E402


def cpu_s() -> float:
    """User plus system CPU time of this process so far, s."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def eilab_run(order: int, epsilon: float, t_ms: float, skip_ms: float) -> dict:
    """Build and simulate Brunel at `order` in this process; the figures of the JSON report."""
    from eilab.analysis.siegert import network_rates
    from eilab.sim.config import load_config
    from eilab.sim.engine import run
    from eilab.sim.reader import open_run

    overrides = [f"vars.order={order}", f"vars.epsilon={epsilon!r}", f"run.t_ms={t_ms}", "run.progress=false"]
    cfg, raw = load_config(ROOT / "configs" / "brunel.toml", overrides)
    cpu0 = cpu_s()
    with tempfile.TemporaryDirectory(prefix="eilab-billion-") as tmp:
        s = run(cfg, raw, Path(tmp) / "run", progress=False)
        cpu = cpu_s() - cpu0
        stored = open_run(Path(tmp) / "run")
        counts = {p: stored.counts(p, skip_ms) for p in ("E", "I")}  # bins starting at skip_ms or later
        rates = {p: float(c.sum()) / c.shape[1] / (c.shape[0] * stored.bin_ms / 1000.0) for p, c in counts.items()}
    theory = network_rates(cfg)
    t, events = s.timings, max(1, s.synaptic_events)
    return {
        "simulator": "eilab", "order": order, "epsilon": epsilon, "n_neurons": cfg.n_total, "t_ms": t_ms,
        "synapses": s.synapses, "bytes_per_synapse": s.connectivity_bytes / s.synapses,
        "build_s": t["build_s"], "jit_s": t["jit_s"], "simulate_s": t["simulate_s"], "cpu_s": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "synaptic_events": s.synaptic_events, "simulate_ns_per_event": 1e9 * t["simulate_s"] / events,
        "deliver_ns_per_event": 1e9 * t["deliver_s"] / events,
        "skip_ms": skip_ms, **{f"rate_{p}_hz": rates[p] for p in rates},
        **{f"siegert_{p}_hz": theory[p] for p in rates},
        **{f"rate_{p}_rel_err": rates[p] / theory[p] - 1.0 for p in rates},
        "loadavg": os.getloadavg(),
    }


def nest_memory(orders: list[int], epsilon: float, t_ms: float, peers: Path, synapses: float) -> dict:
    """NEST's peak RSS at `orders` (each its own process) and its linear fit in the synapse count, extrapolated
    to `synapses`."""
    rows = []
    for order in orders:
        line = last_json([str(peers), str(HERE / "peers" / "brunel_nest.py"), "--order", str(order), "--t-ms",
                          str(t_ms), "--epsilon", repr(epsilon)])
        rows.append({"order": order, "synapses": line["synapses"], "peak_rss_mb": line["peak_rss_mb"],
                     "build_s": line["build_s"]})
    x = np.array([r["synapses"] for r in rows], float)
    y = np.array([r["peak_rss_mb"] for r in rows], float)
    slope, intercept = np.polyfit(x, y, 1)
    return {"simulator": "nest", "measured": rows, "bytes_per_synapse": slope * 2**20,
            "base_mb": intercept, "extrapolated_synapses": synapses,
            "extrapolated_peak_rss_mb": intercept + slope * synapses, "loadavg": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--order", type=int, default=20000)
    ap.add_argument("--epsilon", type=float, default=0.1)
    ap.add_argument("--t-ms", type=float, default=1000.0)
    ap.add_argument("--skip-ms", type=float, default=200.0, help="initial transient left out of the rates")
    ap.add_argument("--nest-orders", type=int, nargs="*", default=[], help="orders NEST's memory is measured at")
    ap.add_argument("--nest-t-ms", type=float, default=100.0, help="simulated time of each NEST run")
    ap.add_argument("--only-nest", action="store_true", help="skip the eilab run")
    ap.add_argument("--peers-python", type=Path, default=ROOT / ".venv-peers" / "bin" / "python")
    args = ap.parse_args()
    if not 0 <= args.skip_ms < args.t_ms:
        ap.error(f"--skip-ms must be in [0, --t-ms), not {args.skip_ms}")
    if args.nest_orders and not args.peers_python.exists():
        ap.error(f"--nest-orders needs NEST in {args.peers_python} (see benchmarks/peers/README.md)")
    synapses = 5 * args.order * (int(args.epsilon * 4 * args.order) + int(args.epsilon * args.order))
    if not args.only_nest:
        t0 = time.perf_counter()
        print(json.dumps(eilab_run(args.order, args.epsilon, args.t_ms, args.skip_ms)
                         | {"wall_s": time.perf_counter() - t0}), flush=True)
    if args.nest_orders:
        print(json.dumps(nest_memory(args.nest_orders, args.epsilon, args.nest_t_ms, args.peers_python, synapses)))


if __name__ == "__main__":
    main()
