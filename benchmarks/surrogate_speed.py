"""Surrogate inference against eilab's `hh` engine over N cells (issue 19, point 4). For each N: the engine
simulates one population of N unconnected hh neurons under Poisson drive for T ms (its simulate time: no build,
no JIT; the drive is drawn inside the kernel, so this is a lower bound of the detailed cost), and the surrogate
(eilab.ml.surrogate.SurrogateNet, the shape of a training config's [model]) steps the same N cells through
T / bin_ms bins one step at a time with carried state (its use inside a network), batched over N, on CPU
(one thread) and on CUDA when present. Prints one JSON line per N and device (seconds per simulated second).

    python benchmarks/surrogate_speed.py [--n 1 10 100 1000 10000] [--t-ms 200] [--config configs/train/...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

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


def surrogate_seconds(n: int, t_ms: float, bin_ms: float, model, device: str) -> float:
    """Wall time (s) of N surrogate cells stepped through t_ms one bin at a time."""
    import torch

    from eilab.ml.surrogate import SurrogateNet

    torch.manual_seed(0)
    net = SurrogateNet(2, model).to(device).eval()
    x = torch.rand(n, 2, device=device)
    with torch.no_grad():
        state = net.init_state(n)
        net.step(x, state)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(round(t_ms / bin_ms)):
            state = net.step(x, state)[1]
        if device == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - t0


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
    engine_seconds(1, 10.0, d.dt_ms)  # JIT outside the measurements
    for n in args.n:
        eng = engine_seconds(n, args.t_ms, d.dt_ms)
        for device in devices:
            sur = surrogate_seconds(n, args.t_ms, d.bin_ms, tc.model, device)
            print(json.dumps({"n": n, "t_ms": args.t_ms, "device": device, "engine_s_per_s": eng / args.t_ms * 1e3,
                              "surrogate_s_per_s": sur / args.t_ms * 1e3, "speedup": eng / sur,
                              "bin_ms": d.bin_ms, "dt_ms": d.dt_ms, "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
