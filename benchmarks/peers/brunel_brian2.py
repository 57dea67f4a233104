"""Brunel (2000) sparse E/I network in Brian2 C++ standalone, one thread (peer benchmark).

Same network as brunel_nest.py (order N, default 2500):
  NE = 4N, NI = N; CE = int(0.1 NE), CI = int(0.1 NI) presynaptic partners per
  neuron drawn with numpy (with replacement, never the neuron itself)
  LIF with delta synapses: dv/dt = -v / tau_m (E_L = 0), tau_m = 20 ms,
  threshold v >= 20 mV, reset 10 mV, refractory 2 ms (v clamped; synaptic and
  Poisson input arriving while refractory is dropped, as in NEST's iaf_psc_delta)
  on_pre: v += J (E), v -= g J (I); J = 0.1 mV, g = 5, delay 1.5 ms, dt = 0.1 ms
  (Brian applies synaptic input after the threshold test of its step, NEST before it,
  so a spike can at the earliest trigger a spike one step, 0.1 ms, later than in NEST)
  v(0) ~ U[0, 20) mV (numpy, seeded)
  external: PoissonInput(N=CE, rate=nu_ext, weight=J), nu_ext = eta V_th / (J CE tau_m),
  eta = 2; a SpikeMonitor records every neuron
  no OpenMP (openmp_threads = 0)

Timings: build_s = Python object setup + code generation + compilation
(compile_s = the `make` step alone); simulate_s = the binary's own timing of its
simulation loop (device._last_run_time, CPU clock of the single thread);
binary_s = wall time of the whole binary (loading the connectivity arrays,
creating synapses, simulating, writing results). peak_rss_mb is the binary's
(measured by a tiny wrapper process, since RUSAGE_CHILDREN would include g++).

Prints one JSON line (the last line of stdout).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Runs the binary and writes its peak RSS (KiB) to argv[1].
RSS_WRAPPER = (
    "import resource,subprocess,sys;rc=subprocess.call(sys.argv[2:]);"
    "open(sys.argv[1],'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss));"
    "sys.exit(rc)"
)


def fixed_indegree(rng: np.random.Generator, n_src: int, k: int, n_post: int,
                   self_offset: int | None) -> tuple[np.ndarray, np.ndarray]:
    """k sources per target, with replacement; excludes i == j for targets self_offset + s."""
    if self_offset is None:
        pre = rng.integers(0, n_src, size=(n_post, k), dtype=np.int64)
    else:
        pre = rng.integers(0, n_src - 1, size=(n_post, k), dtype=np.int64)
        own = np.arange(n_post)[:, None] - self_offset  # own index within the source group
        pre += (pre >= own) & (own >= 0) & (own < n_src)
    return pre.ravel(), np.repeat(np.arange(n_post), k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--order", type=int, default=2500)
    ap.add_argument("--t-ms", type=float, default=1000.0)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--build-dir", type=Path, default=None,
                    help="standalone project directory (default: a temp dir, removed after)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    import brian2 as b2
    import_s = time.perf_counter() - t0

    ne, ni = 4 * args.order, args.order
    n, ce, ci = ne + ni, int(0.1 * ne), int(0.1 * ni)
    build_dir = args.build_dir or Path(tempfile.mkdtemp(prefix="brunel_brian2_"))
    rss_file = build_dir.resolve() / "main_maxrss_kib.txt"

    t0 = time.perf_counter()
    b2.set_device("cpp_standalone", directory=str(build_dir), build_on_run=False)
    b2.prefs.devices.cpp_standalone.openmp_threads = 0
    b2.prefs.devices.cpp_standalone.run_cmd_unix = [
        sys.executable, "-c", RSS_WRAPPER, str(rss_file), "./main"]
    b2.defaultclock.dt = 0.1 * b2.ms
    b2.seed(args.seed)
    ns = {"tau_m": 20 * b2.ms, "V_th": 20 * b2.mV, "V_reset": 10 * b2.mV,
          "J": 0.1 * b2.mV, "g": 5.0}
    nu_ext = 2.0 * ns["V_th"] / (ns["J"] * ce * ns["tau_m"])

    neurons = b2.NeuronGroup(n, "dv/dt = -v / tau_m : volt (unless refractory)",
                             threshold="v >= V_th", reset="v = V_reset",
                             refractory=2 * b2.ms, method="exact")
    rng = np.random.default_rng(args.seed)
    neurons.v = rng.uniform(0.0, 20.0, n) * b2.mV
    syn_e = b2.Synapses(neurons[:ne], neurons, on_pre="v_post += J * int(not_refractory_post)",
                        delay=1.5 * b2.ms)
    pre, post = fixed_indegree(rng, ne, ce, n, 0)
    syn_e.connect(i=pre, j=post)
    syn_i = b2.Synapses(neurons[ne:], neurons,
                        on_pre="v_post -= g * J * int(not_refractory_post)",
                        delay=1.5 * b2.ms)
    pre, post = fixed_indegree(rng, ni, ci, n, ne)
    syn_i.connect(i=pre, j=post)
    poisson = b2.PoissonInput(neurons, "v", N=ce, rate=nu_ext, weight="J * int(not_refractory)")
    mon = b2.SpikeMonitor(neurons)
    net = b2.Network(neurons, syn_e, syn_i, poisson, mon)
    net.run(args.t_ms * b2.ms, namespace=ns)
    b2.device.build(directory=str(build_dir), compile=True, run=False)
    build_s = time.perf_counter() - t0

    b2.device.run(with_output=False)
    dev = b2.device
    counts = np.asarray(mon.count)
    spikes, n_e, sec = int(counts.sum()), int(counts[:ne].sum()), args.t_ms / 1000.0
    out = {
        "simulator": "brian2", "version": b2.__version__, "order": args.order,
        "n_neurons": n, "t_ms": args.t_ms, "import_s": round(import_s, 3),
        "build_s": round(build_s, 3), "compile_s": round(dev.timers["compile"]["make"], 3),
        "simulate_s": round(dev._last_run_time, 3),
        "binary_s": round(dev.timers["run_binary"], 3),
        "spikes": spikes, "mean_rate_hz": round(spikes / n / sec, 3),
        "rate_e_hz": round(n_e / ne / sec, 3),
        "rate_i_hz": round((spikes - n_e) / ni / sec, 3),
        "synapses": len(syn_e) + len(syn_i),
        "peak_rss_mb": round(int(rss_file.read_text()) / 1024, 1),
        "python_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "seed": args.seed, "threads": 1,
    }
    if args.build_dir is None:
        shutil.rmtree(build_dir, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
