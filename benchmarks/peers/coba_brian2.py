"""Vogels & Abbott (2005) COBA network (Brette et al. 2007, benchmark 1) in Brian2 C++ standalone.

Same network as coba_nest.py, following Brian's classic COBA.py benchmark script
(R. Brette, 2007; conductances there are in units of g_L: we = 6/10, wi = 67/10):
  N = 4000 (NE = 3200, NI = 800), dt = 0.1 ms, one thread (no OpenMP)
  C dv/dt = g_L (E_L - v) + ge (E_e - v) + gi (E_i - v) + I_ext   (unless refractory)
  dge/dt = -ge / tau_e, dgi/dt = -gi / tau_i
  C = 200 pF, g_L = 10 nS (tau_m = 20 ms), E_L = -60 mV, V_th = -50 mV (v > V_th),
  V_reset = -60 mV, refractory 5 ms, E_e = 0 mV, E_i = -80 mV, tau_e = 5 ms, tau_i = 10 ms
  Synapses(...).connect(p=0.02) from every E and I neuron to every neuron, on_pre
  ge += we (we = 6 nS) / gi += wi (wi = 67 nS); delay = dt = 0.1 ms (Brian's script has no
  delay; one step gives the same spike-to-conductance latency as NEST's minimum delay)
  no external input (I_ext = 0, option --i-ext-pa); initial state from numpy with the same
  seed and draw order as coba_nest.py: v ~ U[V_reset, V_th), ge ~ N(4, 1.5) g_L,
  gi ~ N(20, 12) g_L; integration method --method (default euler, as Brian's script)
  a SpikeMonitor records every neuron

Timings as in brunel_brian2.py: build_s = setup + code generation + compilation
(compile_s = `make` alone), simulate_s = the binary's own simulation-loop time
(device._last_run_time), binary_s = wall time of the whole binary (includes creating
the random synapses); peak_rss_mb = the binary's peak RSS.

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

NE, NI, P_CONN = 3200, 800, 0.02
EQS = """
dv/dt = (g_L * (E_L - v) + ge * (E_e - v) + gi * (E_i - v) + I_ext) / C_m : volt (unless refractory)
dge/dt = -ge / tau_e : siemens
dgi/dt = -gi / tau_i : siemens
"""
# Runs the binary and writes its peak RSS (KiB) to argv[1].
RSS_WRAPPER = (
    "import resource,subprocess,sys;rc=subprocess.call(sys.argv[2:]);"
    "open(sys.argv[1],'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss));"
    "sys.exit(rc)"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--t-ms", type=float, default=1000.0)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--i-ext-pa", type=float, default=0.0, help="constant input current")
    ap.add_argument("--method", default="euler", help="Brian2 state-update method")
    ap.add_argument("--build-dir", type=Path, default=None,
                    help="standalone project directory (default: a temp dir, removed after)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    import brian2 as b2
    import_s = time.perf_counter() - t0

    n = NE + NI
    build_dir = args.build_dir or Path(tempfile.mkdtemp(prefix="coba_brian2_"))
    rss_file = build_dir.resolve() / "main_maxrss_kib.txt"

    t0 = time.perf_counter()
    b2.set_device("cpp_standalone", directory=str(build_dir), build_on_run=False)
    b2.prefs.devices.cpp_standalone.openmp_threads = 0
    b2.prefs.devices.cpp_standalone.run_cmd_unix = [
        sys.executable, "-c", RSS_WRAPPER, str(rss_file), "./main"]
    dt = 0.1 * b2.ms
    b2.defaultclock.dt = dt
    b2.seed(args.seed)
    g_l = 10 * b2.nS
    ns = {"C_m": 200 * b2.pF, "g_L": g_l, "E_L": -60 * b2.mV, "E_e": 0 * b2.mV,
          "E_i": -80 * b2.mV, "tau_e": 5 * b2.ms, "tau_i": 10 * b2.ms,
          "V_th": -50 * b2.mV, "V_reset": -60 * b2.mV, "I_ext": args.i_ext_pa * b2.pA,
          "we": 0.6 * g_l, "wi": 6.7 * g_l}

    neurons = b2.NeuronGroup(n, EQS, threshold="v > V_th", reset="v = V_reset",
                             refractory=5 * b2.ms, method=args.method)
    rng = np.random.default_rng(args.seed)
    neurons.v = rng.uniform(-60.0, -50.0, n) * b2.mV
    neurons.ge = (rng.standard_normal(n) * 1.5 + 4.0) * g_l
    neurons.gi = (rng.standard_normal(n) * 12.0 + 20.0) * g_l
    syn_e = b2.Synapses(neurons[:NE], neurons, on_pre="ge_post += we", delay=dt)
    syn_e.connect(p=P_CONN)
    syn_i = b2.Synapses(neurons[NE:], neurons, on_pre="gi_post += wi", delay=dt)
    syn_i.connect(p=P_CONN)
    mon = b2.SpikeMonitor(neurons)
    net = b2.Network(neurons, syn_e, syn_i, mon)
    net.run(args.t_ms * b2.ms, namespace=ns)
    b2.device.build(directory=str(build_dir), compile=True, run=False)
    build_s = time.perf_counter() - t0

    b2.device.run(with_output=False)
    dev = b2.device
    counts = np.asarray(mon.count)
    spikes, n_e, sec = int(counts.sum()), int(counts[:NE].sum()), args.t_ms / 1000.0
    out = {
        "simulator": "brian2", "version": b2.__version__, "model": "coba",
        "n_neurons": n, "t_ms": args.t_ms, "import_s": round(import_s, 3),
        "build_s": round(build_s, 3), "compile_s": round(dev.timers["compile"]["make"], 3),
        "simulate_s": round(dev._last_run_time, 3),
        "binary_s": round(dev.timers["run_binary"], 3),
        "spikes": spikes, "mean_rate_hz": round(spikes / n / sec, 3),
        "rate_e_hz": round(n_e / NE / sec, 3),
        "rate_i_hz": round((spikes - n_e) / NI / sec, 3),
        "synapses": len(syn_e) + len(syn_i),
        "peak_rss_mb": round(int(rss_file.read_text()) / 1024, 1),
        "python_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "seed": args.seed, "threads": 1, "method": args.method,
    }
    if args.build_dir is None:
        shutil.rmtree(build_dir, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
