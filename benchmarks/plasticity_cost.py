"""The cost of inhibitory plasticity: configs/vogels2011.toml with and without STDP on I -> E.

Both runs start from the same network; without plasticity the I -> E weights stay at their
initial value (raised to `--static-weight` nS so the static network is not runaway-active, which
would make it do more work per ms). Prints one JSON line per run and a summary with the ratio of
simulate times and of synaptic events. Several repeats, interleaved; medians.

    python benchmarks/plasticity_cost.py --t-ms 2000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import tomli_w

from eilab.sim.config import load_config
from eilab.sim.reader import open_run

ROOT = Path(__file__).resolve().parent.parent


def configs(t_ms: float, static_weight: float, tmp: Path) -> dict[str, Path]:
    raw = load_config(ROOT / "configs" / "vogels2011.toml")[1]
    raw["run"].update(t_ms=t_ms, progress=False)
    raw["record"]["probes"] = []
    ie = next(p for p in raw["projections"] if p.get("name") == "IE")
    ie["plasticity"]["start_ms"] = 0.0  # learning throughout: the rule's cost, not the static phase's high rates
    plastic = tmp / "plastic.toml"
    plastic.write_text(tomli_w.dumps(raw))
    del ie["plasticity"]
    ie["weight"] = static_weight
    static = tmp / "static.toml"
    static.write_text(tomli_w.dumps(raw))
    return {"plastic": plastic, "static": static}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--t-ms", type=float, default=2000.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--static-weight", type=float, default=1.5, help="I -> E weight of the static network, nS")
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {"plastic": [], "static": []}
    with tempfile.TemporaryDirectory(prefix="eilab-plasticity-") as tmp:
        paths = configs(args.t_ms, args.static_weight, Path(tmp))
        for k in range(args.repeats):
            for name, cfg in paths.items():
                out = Path(tmp) / f"{name}{k}"
                subprocess.run([sys.executable, "-m", "eilab.cluster.cli", "run", str(cfg), "--out", str(out),
                                "--quiet"], check=True, capture_output=True, cwd=ROOT)
                s = open_run(out).attrs["summary"]
                line = {"case": name, "simulate_s": s["timings"]["simulate_s"], "deliver_s": s["timings"]["deliver_s"],
                        "synaptic_events": s["synaptic_events"], "spikes": s["spikes"],
                        "rate_E_hz": s["populations"]["E"]["rate_hz"], "peak_rss_mb": s["peak_rss_mb"]}
                runs[name].append(line)
                print(json.dumps(line), flush=True)
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("simulate_s", "synaptic_events", "peak_rss_mb")}
           for n, rs in runs.items()}
    print(json.dumps({"summary": "plasticity_cost", "t_ms": args.t_ms, "medians": med,
                      "simulate_ratio": med["plastic"]["simulate_s"] / med["static"]["simulate_s"],
                      "ns_per_event_ratio": (med["plastic"]["simulate_s"] / med["plastic"]["synaptic_events"])
                      / (med["static"]["simulate_s"] / med["static"]["synaptic_events"])}))


if __name__ == "__main__":
    main()
