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

import json
import time

import common
import numpy as np

NE, NI, P_CONN = 3200, 800, 0.02
EQS = """
dv/dt = (g_L * (E_L - v) + ge * (E_e - v) + gi * (E_i - v) + I_ext) / C_m : volt (unless refractory)
dge/dt = -ge / tau_e : siemens
dgi/dt = -gi / tau_i : siemens
"""


def main() -> None:
    ap = common.make_parser(__doc__)
    common.add_i_ext_pa(ap)
    common.add_method(ap, "euler")
    common.add_build_dir(ap)
    args = ap.parse_args()

    b2, import_s = common.import_brian2()
    build_dir = common.standalone_dir(args.build_dir, "coba_brian2_")

    t0 = time.perf_counter()
    rss_file = common.setup_standalone(b2, build_dir, 0.1 * b2.ms, args.seed)
    g_l = 10 * b2.nS
    ns = {"C_m": 200 * b2.pF, "g_L": g_l, "E_L": -60 * b2.mV, "E_e": 0 * b2.mV,
          "E_i": -80 * b2.mV, "tau_e": 5 * b2.ms, "tau_i": 10 * b2.ms,
          "V_th": -50 * b2.mV, "V_reset": -60 * b2.mV, "I_ext": args.i_ext_pa * b2.pA,
          "we": 0.6 * g_l, "wi": 6.7 * g_l}
    n = NE + NI
    neurons = b2.NeuronGroup(n, EQS, threshold="v > V_th", reset="v = V_reset",
                             refractory=5 * b2.ms, method=args.method)
    rng = np.random.default_rng(args.seed)
    neurons.v = rng.uniform(-60.0, -50.0, n) * b2.mV
    neurons.ge = (rng.standard_normal(n) * 1.5 + 4.0) * g_l
    neurons.gi = (rng.standard_normal(n) * 12.0 + 20.0) * g_l
    out = common.brian2_ei_report(b2, {"model": "coba"}, args, neurons, NE, ("ge_post += we", "gi_post += wi"),
                                  P_CONN, ns, build_dir, rss_file, import_s, t0)
    common.remove_temp_dir(build_dir, args.build_dir)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
