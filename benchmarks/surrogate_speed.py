"""Surrogate inference against the detailed simulation over N cells (issue 19, point 4). For each N, the
detailed side: for the config's cell `hh`, eilab's engine simulates one population of N unconnected hh neurons
under Poisson drive for T ms (its simulate time: no build, no JIT; the drive is drawn inside the kernel, so this
is a lower bound of the detailed cost); for an hnn-core cell (the detailed extra), NEURON runs N unconnected
cells, each with its config's k_e + k_i Poisson trains (eilab.ml.surrogate_hnn; the run only, not building the
cells). The surrogate (eilab.ml.surrogate.SurrogateNet, the shape of the config's [model], one input per synapse
group) steps the same N cells through T / bin_ms bins one step at a time with carried state (its use inside a
network), batched over N, on CPU (one thread) and on CUDA when present. Prints one JSON line per N and device
(seconds per simulated second); for NEURON against the surrogate on CPU also the CPU seconds of both processes
(time.process_time), which a machine shared with other work leaves nearly unchanged.

    python benchmarks/surrogate_speed.py [--n 1 10 100 1000 10000] [--t-ms 200] [--config configs/train/...]
    python benchmarks/surrogate_speed.py --config configs/train/surrogate_l5pyr.toml --n 1 10 100 --t-ms 100
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eilab.ml.surrogate_data import SurrogateData

ROOT = Path(__file__).resolve().parent.parent


def engine_seconds(n: int, t_ms: float, dt_ms: float) -> float:
    """Simulate time (s) of N hh cells with Poisson drive through eilab's engine."""
    from eilab.sim.config import load_config
    from eilab.sim.engine import run

    raw = {"run": {"t_ms": t_ms, "dt_ms": dt_ms, "seed": 1, "progress": False},
           "populations": [{"name": "cell", "n": n, "type": "E", "model": "hh"}],
           "drive": [{"target": "cell", "kind": "poisson", "rate_hz": 20.0, "indegree": 40, "weight": 1000.0}],
           "record": {"spikes": True, "counts_bin_ms": 0.0}}
    cfg, raw = load_config(raw=raw)
    with tempfile.TemporaryDirectory() as d:
        summary = run(cfg, raw, Path(d) / "run", progress=False)
    return float(summary.timings["simulate_s"])


def neuron_seconds(cell: str, n: int, t_ms: float, d: SurrogateData) -> tuple[float, float]:
    """Run time and its CPU time (s) of N unconnected hnn-core cells in NEURON, each with d.k_e E and d.k_i I
    Poisson trains at the middle of the config's rates and weights (geometric means)."""
    import numpy as np

    from eilab.cluster.surrogate_gen import CellInput
    from eilab.ml.surrogate_hnn import cell_inputs, simulate

    inp = CellInput(*(float(np.sqrt(lo * hi)) for lo, hi in (d.rate_e_hz, d.w_e_pa, d.rate_i_hz, d.w_i_pa)))
    _, sources, _ = cell_inputs(cell, [inp] * n, d.k_e, d.k_i, t_ms, d.dt_ms, 1)
    timings: dict[str, float] = {}
    simulate(cell, sources, t_ms, d.dt_ms, timings)
    return timings["run_s"], timings["run_cpu_s"]


def surrogate_seconds(n: int, n_in: int, t_ms: float, bin_ms: float, model, device: str) -> tuple[float, float]:
    """Wall time and CPU time (s) of N surrogate cells (n_in input groups) stepped through t_ms one bin at a time."""
    import torch

    from eilab.ml.surrogate import SurrogateNet

    torch.manual_seed(0)
    net = SurrogateNet(n_in, model).to(device).eval()
    x = torch.rand(n, n_in, device=device)
    with torch.no_grad():
        state = net.init_state(n)
        net.step(x, state)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(round(t_ms / bin_ms)):
            state = net.step(x, state)[1]
        if device == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    import torch

    from eilab.ml.config import load_train_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1, 10, 100, 1000, 10000])
    ap.add_argument("--t-ms", type=float, default=200.0, help="simulated time per measurement, ms")
    ap.add_argument("--config", default=str(ROOT / "configs" / "train" / "surrogate_hh.toml"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    tc, _ = load_train_config(args.config)
    d = tc.data
    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    if d.cell == "hh":
        engine_seconds(1, 10.0, d.dt_ms)  # JIT outside the measurements
        n_in = 2
    else:
        from eilab.ml.surrogate_hnn import group_names, require_hnn

        require_hnn("the benchmark of an hnn-core cell")
        n_in = len(group_names(d.cell))
    per_s = 1e3 / args.t_ms
    for n in args.n:
        det, det_cpu = ((engine_seconds(n, args.t_ms, d.dt_ms), None) if d.cell == "hh"
                        else neuron_seconds(d.cell, n, args.t_ms, d))
        for device in devices:
            sur, sur_cpu = surrogate_seconds(n, n_in, args.t_ms, d.bin_ms, tc.model, device)
            row = {"n": n, "cell": d.cell, "t_ms": args.t_ms, "device": device,
                   "detailed": "eilab engine" if d.cell == "hh" else "NEURON", "detailed_s_per_s": det * per_s,
                   "surrogate_s_per_s": sur * per_s, "speedup": det / sur}
            if det_cpu is not None and device == "cpu":
                row.update(detailed_cpu_s_per_s=det_cpu * per_s, surrogate_cpu_s_per_s=sur_cpu * per_s,
                           speedup_cpu=det_cpu / sur_cpu)
            print(json.dumps({**row, "bin_ms": d.bin_ms, "dt_ms": d.dt_ms, "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
