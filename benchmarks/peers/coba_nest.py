"""Vogels & Abbott (2005) COBA network (Brette et al. 2007, benchmark 1) in NEST 3.10, one thread.

Parameters, as in Brian's classic COBA.py benchmark script (R. Brette, 2007), where
conductances are in units of the leak conductance g_L (we = 6/10, wi = 67/10):
  N = 4000 neurons (NE = 3200, NI = 800), model iaf_cond_exp, dt = 0.1 ms
  C_m = 200 pF, g_L = 10 nS (tau_m = 20 ms), E_L = -60 mV, V_th = -50 mV,
  V_reset = -60 mV, t_ref = 5 ms
  E_ex = 0 mV, E_in = -80 mV, tau_syn_ex = 5 ms, tau_syn_in = 10 ms
  connections: pairwise_bernoulli p = 0.02 from every E and I neuron to every neuron
  (autapses allowed, as in Brian's connect(p=0.02)); we = 0.6 g_L = 6 nS,
  wi = 6.7 g_L = 67 nS; delay = dt = 0.1 ms (NEST's minimum; Brian's script has none)
  no external input (I_e = 0, option --i-ext-pa); activity is started by the initial
  state: V_m ~ U[V_reset, V_th), g_ex ~ N(4, 1.5) g_L, g_in ~ N(20, 12) g_L (numpy, seeded;
  the conductances as in Brian's script)
  all spikes of all neurons go to one spike_recorder (in memory)

Prints one JSON line (the last line of stdout).
"""

from __future__ import annotations

import json
import time

import common
import numpy as np

NE, NI, P_CONN, DT = 3200, 800, 0.02, 0.1
G_L = 10.0  # nS
WE, WI = 0.6 * G_L, 6.7 * G_L  # nS
NEURON = {"C_m": 200.0, "g_L": G_L, "E_L": -60.0, "V_th": -50.0, "V_reset": -60.0,
          "t_ref": 5.0, "E_ex": 0.0, "E_in": -80.0, "tau_syn_ex": 5.0, "tau_syn_in": 10.0}


def main() -> None:
    ap = common.make_parser(__doc__)
    common.add_i_ext_pa(ap)
    args = ap.parse_args()

    nest, import_s = common.import_nest()

    n = NE + NI
    t0 = time.perf_counter()
    common.reset_nest(nest, DT, args.seed)
    rng = np.random.default_rng(args.seed)
    nodes = nest.Create("iaf_cond_exp", n, params={**NEURON, "I_e": args.i_ext_pa})
    nodes.V_m = rng.uniform(NEURON["V_reset"], NEURON["V_th"], n)
    nodes.g_ex = (rng.standard_normal(n) * 1.5 + 4.0) * G_L
    nodes.g_in = (rng.standard_normal(n) * 12.0 + 20.0) * G_L
    rec, synapses = common.nest_ei_bernoulli(nest, nodes, NE, P_CONN, WE, WI, DT)
    out = common.nest_ei_report(nest, {"model": "coba"}, args, nodes, NE, rec, synapses, import_s, t0)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
