"""CUBA network (Brette et al. 2007, benchmark 2) in Brian2 C++ standalone, one thread (peer benchmark).

Brian2's published examples/CUBA.py, as it is, in C++ standalone mode (same network as cuba_nest.py):
  N = 4000 (NE = 3200, NI = 800), dt = 0.1 ms, one thread (no OpenMP)
  dv/dt = (ge + gi - (v - E_L)) / tau_m  (unless refractory), dge/dt = -ge / tau_e, dgi/dt = -gi / tau_i
  (ge, gi in volts), method "linear" (exact) as the example
  tau_m = 20 ms, E_L = -49 mV, V_th = -50 mV (v > V_th), V_reset = -60 mV, refractory 5 ms,
  tau_e = 5 ms, tau_i = 10 ms; on_pre ge += we (we = 1.62 mV) from E, gi += wi (wi = -9 mV) from I
  Synapses(...).connect(p=0.02) from every E and I neuron to every neuron; delay = dt = 0.1 ms
  (the example has none; one step gives the same spike-to-current latency as NEST's minimum delay)
  initial state from numpy with the same seed and draw as cuba_nest.py: v ~ U[V_reset, V_th)
  (the example's 'Vr + rand() * (Vt - Vr)'), ge = gi = 0; a SpikeMonitor records every neuron

Timings as in brunel_brian2.py: build_s = setup + code generation + compilation
(compile_s = `make` alone), simulate_s = the binary's own simulation-loop time
(device._last_run_time), binary_s = wall time of the whole binary; peak_rss_mb = the binary's.

Prints one JSON line (the last line of stdout).
"""

from __future__ import annotations

import json
import time

import common
import numpy as np

NE, NI, P_CONN = 3200, 800, 0.02
EQS = """
dv/dt = (ge + gi - (v - E_L)) / tau_m : volt (unless refractory)
dge/dt = -ge / tau_e : volt
dgi/dt = -gi / tau_i : volt
"""


def main() -> None:
    ap = common.make_parser(__doc__)
    common.add_method(ap, "linear")
    common.add_build_dir(ap)
    args = ap.parse_args()

    b2, import_s = common.import_brian2()
    build_dir = common.standalone_dir(args.build_dir, "cuba_brian2_")

    t0 = time.perf_counter()
    rss_file = common.setup_standalone(b2, build_dir, 0.1 * b2.ms, args.seed)
    ns = {"tau_m": 20 * b2.ms, "tau_e": 5 * b2.ms, "tau_i": 10 * b2.ms, "E_L": -49 * b2.mV,
          "V_th": -50 * b2.mV, "V_reset": -60 * b2.mV, "we": 1.62 * b2.mV, "wi": -9.0 * b2.mV}
    n = NE + NI
    neurons = b2.NeuronGroup(n, EQS, threshold="v > V_th", reset="v = V_reset",
                             refractory=5 * b2.ms, method=args.method)
    neurons.v = np.random.default_rng(args.seed).uniform(-60.0, -50.0, n) * b2.mV
    out = common.brian2_ei_report(b2, {"model": "cuba"}, args, neurons, NE, ("ge_post += we", "gi_post += wi"),
                                  P_CONN, ns, build_dir, rss_file, import_s, t0)
    common.remove_temp_dir(build_dir, args.build_dir)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
