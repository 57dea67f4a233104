"""Brunel network across sizes, eilab against NEST 3.10 (one thread), side by side.

Orders 500 .. 10000 (2,500 to 50,000 neurons) with the in-degree held at C_E = 1000, C_I = 250
(epsilon = 1000 / N_E), 1000 ms each, so the work per neuron is fixed and only the size grows
(up to 62.5 M synapses). For each size: build s, simulate s, ns per synaptic event, peak RSS and
bytes per synapse, medians over `--repeats` interleaved runs. `--only eilab eilab_f32` puts eilab with
`run.ring_precision = "float32"` (the delay ring in float32) beside the default float64 ring. Writes the JSON lines to
`--out` (default benchmarks/results/scaling.jsonl) and a plot of ns/event and bytes/synapse
against size next to it (scaling.png).

    python benchmarks/scaling.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from compare import last_json  # noqa: E402


def runs_for(order: int, t_ms: float, peers: Path, only: list[str]) -> dict[str, list[str]]:
    eps = 1000 / (4 * order)
    eilab = [sys.executable, "-m", "eilab.cluster.cli", "bench", "brunel", "--order", str(order), "--t-ms", str(t_ms),
             "--set", f"vars.epsilon={eps!r}", "--profile"]
    cmds = {
        "eilab": eilab,
        "eilab_f32": [*eilab, "--set", "run.ring_precision='float32'"],
        "nest": [str(peers), str(HERE / "peers" / "brunel_nest.py"), "--order", str(order), "--t-ms", str(t_ms),
                 "--epsilon", repr(eps)],
    }
    return {k: v for k, v in cmds.items() if k in only}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, nargs="+", default=[500, 1000, 2500, 5000, 10000])
    ap.add_argument("--t-ms", type=float, default=1000.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", nargs="+", choices=["eilab", "eilab_f32", "nest"], default=["eilab", "nest"])
    ap.add_argument("--peers-python", type=Path, default=ROOT / ".venv-peers" / "bin" / "python")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "scaling.jsonl")
    args = ap.parse_args()
    lines: list[dict] = []
    with args.out.open("w") as log:
        for _ in range(args.repeats):
            for order in args.orders:
                for sim, cmd in runs_for(order, args.t_ms, args.peers_python, args.only).items():
                    line = last_json(cmd) | {"simulator": sim, "order": order}
                    lines.append(line)
                    log.write(json.dumps(line) + "\n")
                    log.flush()
                    print(json.dumps({k: line.get(k) for k in ("simulator", "order", "simulate_s", "peak_rss_mb")}),
                          flush=True)
        table = summarise(lines, args.orders, args.only)
        log.write(json.dumps({"summary": "scaling", "rows": table}) + "\n")
    print(json.dumps({"summary": "scaling", "rows": table}))
    plot(table, args.out.with_suffix(".png"))


def summarise(lines: list[dict], orders: list[int], sims: list[str]) -> list[dict]:
    rows = []
    for order in orders:
        row: dict[str, float | int] = {"order": order, "n_neurons": 5 * order, "synapses": 5 * order * 1250}
        for sim in sims:
            mine = [x for x in lines if x["simulator"] == sim and x["order"] == order]
            sim_s = statistics.median(x["simulate_s"] for x in mine)
            row[f"{sim}_build_s"] = statistics.median(x["build_s"] for x in mine)
            row[f"{sim}_simulate_s"] = sim_s
            row[f"{sim}_peak_rss_mb"] = statistics.median(x["peak_rss_mb"] for x in mine)
            row[f"{sim}_rate_hz"] = statistics.median(x["mean_rate_hz"] for x in mine)
            if sim.startswith("eilab"):
                events = mine[0]["synaptic_events"]
                row[f"{sim}_ns_per_event"] = 1e9 * sim_s / events
                row[f"{sim}_deliver_ns_per_event"] = statistics.median(
                    x["profile"]["deliver_ns_per_event"] for x in mine)
                row[f"{sim}_drive_ns_per_neuron_step"] = statistics.median(
                    x["profile"]["drive_ns_per_neuron_step"] for x in mine)
                row[f"{sim}_bytes_per_synapse"] = mine[0]["bytes_per_synapse"]
        if "nest" in sims:  # NEST's events: its spikes times the mean out-degree (synapses / neurons)
            spikes = statistics.median(x["spikes"] for x in lines if x["simulator"] == "nest" and x["order"] == order)
            row["nest_ns_per_event"] = 1e9 * row["nest_simulate_s"] / (spikes * 1250)
        if "eilab" in sims and "eilab_f32" in sims:
            row["f32_speedup"] = row["eilab_simulate_s"] / row["eilab_f32_simulate_s"]
            row["f32_rate_diff"] = row["eilab_f32_rate_hz"] / row["eilab_rate_hz"] - 1.0
        if "eilab" in sims and "nest" in sims:
            row["simulate_vs_nest"] = row["nest_simulate_s"] / row["eilab_simulate_s"]
            row["build_vs_nest"] = row["nest_build_s"] / row["eilab_build_s"]
            row["rss_vs_nest"] = row["eilab_peak_rss_mb"] / row["nest_peak_rss_mb"]
            row["nest_bytes_per_synapse"] = row["nest_peak_rss_mb"] * 2**20 / row["synapses"]
        rows.append(row)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    n = [r["n_neurons"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for sim, style in (("eilab", "o-"), ("eilab_f32", "^-"), ("nest", "s--")):
        if f"{sim}_ns_per_event" in rows[0]:
            a.plot(n, [r[f"{sim}_ns_per_event"] for r in rows], style, label=f"{sim} (simulate / events)")
    if "eilab_deliver_ns_per_event" in rows[0]:
        a.plot(n, [r["eilab_deliver_ns_per_event"] for r in rows], "o:", label="eilab delivery only")
    a.set(xscale="log", yscale="log", xlabel="neurons", ylabel="ns per synaptic event",
          title="Brunel, C_E = 1000, 1 core")
    a.legend()
    if "eilab_bytes_per_synapse" in rows[0]:
        b.plot(n, [r["eilab_bytes_per_synapse"] for r in rows], "o-", label="eilab connectivity")
    if "nest_bytes_per_synapse" in rows[0]:
        b.plot(n, [r["nest_bytes_per_synapse"] for r in rows], "s--", label="NEST whole process (RSS)")
        b.plot(n, [r["eilab_peak_rss_mb"] * 2**20 / r["synapses"] for r in rows], "o--",
               label="eilab whole process (RSS)")
    b.set(xscale="log", yscale="log", xlabel="neurons", ylabel="bytes per synapse")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
