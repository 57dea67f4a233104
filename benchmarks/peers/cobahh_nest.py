"""COBAHH network (Brette et al. 2007, benchmark 3) in NEST 3.10, one thread (peer benchmark).

The network of Brian2's published examples/COBAHH.py, in the NEST model of NEST's own
examples/nest/Brette_et_al_2007/hh_coba.sli (hh_cond_exp_traub, its parameters):
  N = 4000 neurons (NE = 3200, NI = 800), model hh_cond_exp_traub (GSL RKF45), dt = 0.1 ms
  membrane of 20000 um^2: C_m = 200 pF, g_Na = 20000 nS, g_K = 6000 nS, g_L = 10 nS,
  E_Na = 50 mV, E_K = -90 mV, E_L = -60 mV, V_T = -63 mV, E_ex = 0 mV, E_in = -80 mV,
  tau_syn_ex = 5 ms, tau_syn_in = 10 ms, t_ref = 3 ms (Brian's refractory; NEST's default is 2 ms)
  spikes: NEST's own criterion (V_m past V_T + 30 mV and falling, once per t_ref); Brian's
  example counts V > -20 mV: the same action potentials, times ~0.1-0.3 ms apart
  connections: pairwise_bernoulli p = 0.02 from every E and I neuron to every neuron (Brian's
  connect(p=0.02); hh_coba.sli uses fixed in-degree 64 + 16), we = 6 nS, wi = 67 nS,
  delay = dt = 0.1 ms (NEST's minimum; Brian's script has none)
  no external input (hh_coba.sli kicks 50 neurons with a Poisson generator; Brian's script
  has none): the initial state starts the activity, as in Brian's script (numpy, seeded):
  V_m ~ E_L + N(-5, 5) mV, g_ex ~ N(4, 1.5) x 10 nS, g_in ~ N(20, 12) x 10 nS, and the gates
  at their steady state for V_m (as configs/cobahh.toml; Brian's script leaves them at 0).
  NEST does not let g_ex, g_in be set: they arrive as input spikes at 0.2 ms (initial_conductances)
  all spikes of all neurons go to one spike_recorder (in memory)

Prints one JSON line (the last line of stdout).
"""

from __future__ import annotations

import json
import time
from types import ModuleType
from typing import Any

import common
import numpy as np

NE, NI, P_CONN, DT = 3200, 800, 0.02, 0.1
WE, WI = 6.0, 67.0  # nS
NEURON = {"C_m": 200.0, "g_Na": 20000.0, "g_K": 6000.0, "g_L": 10.0, "E_Na": 50.0, "E_K": -90.0,
          "E_L": -60.0, "V_T": -63.0, "E_ex": 0.0, "E_in": -80.0, "tau_syn_ex": 5.0, "tau_syn_in": 10.0,
          "t_ref": 3.0}


def initial_conductances(nest: ModuleType, nodes: Any, g_ex: np.ndarray, g_in: np.ndarray) -> None:
    """hh_cond_exp_traub's g_ex, g_in cannot be set: one spike_generator fires at dt and, over connections
    of delay dt, gives each neuron its drawn conductances (nS) as they have decayed by 2 dt, when they
    land; negative draws (0.4 % of g_ex, 5 % of g_in) become 0, since NEST reads a weight's sign as the
    receptor."""
    gen = nest.Create("spike_generator", params={"spike_times": [DT]})
    for g, tau, sign in ((g_ex, NEURON["tau_syn_ex"], 1.0), (g_in, NEURON["tau_syn_in"], -1.0)):
        w = sign * np.clip(g, 0.0, None) * np.exp(-2 * DT / tau)
        nest.Connect(gen, nodes, "all_to_all", {"weight": w[:, None], "delay": DT})


def main() -> None:
    args = common.make_parser(__doc__).parse_args()

    nest, import_s = common.import_nest()

    n = NE + NI
    t0 = time.perf_counter()
    common.reset_nest(nest, DT, args.seed)
    rng = np.random.default_rng(args.seed)
    nodes = nest.Create("hh_cond_exp_traub", n, params=NEURON)
    v0 = NEURON["E_L"] + rng.standard_normal(n) * 5.0 - 5.0
    m, h, gate_n = common.traub_steady_gates(v0 - NEURON["V_T"])
    nodes.set({"V_m": v0, "Act_m": m, "Inact_h": h, "Act_n": gate_n})
    g_ex = (rng.standard_normal(n) * 1.5 + 4.0) * 10.0
    g_in = (rng.standard_normal(n) * 12.0 + 20.0) * 10.0
    rec, synapses = common.nest_ei_bernoulli(nest, nodes, NE, P_CONN, WE, WI, DT)
    initial_conductances(nest, nodes, g_ex, g_in)
    out = common.nest_ei_report(nest, {"model": "cobahh"}, args, nodes, NE, rec, synapses, import_s, t0)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
