"""CUBA network (Brette et al. 2007, benchmark 2) in NEST 3.10, one thread (peer benchmark).

The network of Brian2's published examples/CUBA.py (Brette et al. 2007), in the NEST model of
NEST's own examples/nest/Brette_et_al_2007/cuba.sli (iaf_psc_exp, C_m = 200 pF):
  N = 4000 neurons (NE = 3200, NI = 800), model iaf_psc_exp, dt = 0.1 ms
  C_m = 200 pF, tau_m = 20 ms, E_L = -49 mV (above threshold: the network drives itself),
  V_th = -50 mV, V_reset = -60 mV, t_ref = 5 ms, tau_syn_ex = 5 ms, tau_syn_in = 10 ms
  weights: Brian's voltage jumps we = 60 * 0.27 / 10 mV = 1.62 mV and wi = -20 * 4.5 / 10 mV = -9 mV
  of its synaptic variables (dv/dt = (ge + gi - (v - E_L)) / tau_m) are currents C_m w / tau_m:
  we = 16.2 pA (as cuba.sli) and wi = -90 pA (cuba.sli has -139.5 pA; Brian's value is used)
  connections: pairwise_bernoulli p = 0.02 from every E and I neuron to every neuron (autapses
  allowed, as Brian's connect(p=0.02); cuba.sli uses fixed in-degree 64 + 16), delay = dt = 0.1 ms
  (NEST's minimum; Brian's script has none)
  no external input: the initial state starts the activity, V_m ~ U[V_reset, V_th) (numpy, seeded;
  as Brian's 'Vr + rand() * (Vt - Vr)'), synaptic currents 0 (cuba.sli instead starts all at
  E_L and kicks 50 neurons with a Poisson generator)
  all spikes of all neurons go to one spike_recorder (in memory)

Prints one JSON line (the last line of stdout).
"""

from __future__ import annotations

import json
import time

import common
import numpy as np

NE, NI, P_CONN, DT = 3200, 800, 0.02, 0.1
C_M, TAU_M = 200.0, 20.0  # pF, ms
WE, WI = C_M * 1.62 / TAU_M, C_M * 9.0 / TAU_M  # pA: 16.2, 90
NEURON = {"C_m": C_M, "tau_m": TAU_M, "E_L": -49.0, "V_th": -50.0, "V_reset": -60.0, "t_ref": 5.0,
          "tau_syn_ex": 5.0, "tau_syn_in": 10.0}


def main() -> None:
    args = common.make_parser(__doc__).parse_args()

    nest, import_s = common.import_nest()

    n = NE + NI
    t0 = time.perf_counter()
    common.reset_nest(nest, DT, args.seed)
    rng = np.random.default_rng(args.seed)
    nodes = nest.Create("iaf_psc_exp", n, params=NEURON)
    nodes.V_m = rng.uniform(NEURON["V_reset"], NEURON["V_th"], n)
    rec, synapses = common.nest_ei_bernoulli(nest, nodes, NE, P_CONN, WE, WI, DT)
    out = common.nest_ei_report(nest, {"model": "cuba"}, args, nodes, NE, rec, synapses, import_s, t0)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
