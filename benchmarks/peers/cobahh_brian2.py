"""COBAHH network (Brette et al. 2007, benchmark 3) in Brian2 C++ standalone, one thread (peer benchmark).

Brian2's published examples/COBAHH.py in C++ standalone mode (same network as cobahh_nest.py):
  N = 4000 (NE = 3200, NI = 800), dt = 0.1 ms, one thread (no OpenMP)
  Traub-Miles HH on 20000 um^2: C_m dv/dt = g_L (E_L - v) + ge (E_e - v) + gi (E_i - v)
  - g_Na m^3 h (v - E_Na) - g_K n^4 (v - E_K), gates with the example's rate functions of v - V_T,
  dge/dt = -ge / tau_e, dgi/dt = -gi / tau_i; method "exponential_euler" as the example (--method)
  C_m = 200 pF, g_L = 10 nS, g_Na = 20 uS, g_K = 6 uS, E_L = -60 mV, E_K = -90 mV, E_Na = 50 mV,
  V_T = -63 mV, E_e = 0 mV, E_i = -80 mV, tau_e = 5 ms, tau_i = 10 ms
  threshold v > -20 mV, refractory 3 ms (no reset), as the example
  Synapses(...).connect(p=0.02) from every E and I neuron to every neuron, on_pre ge += we
  (we = 6 nS) / gi += wi (wi = 67 nS); delay = dt = 0.1 ms (the example has none)
  initial state from numpy with the same seed and draws as cobahh_nest.py: v ~ E_L + N(-5, 5) mV,
  ge ~ N(4, 1.5) x 10 nS, gi ~ N(20, 12) x 10 nS, gates at their steady state for v (as
  configs/cobahh.toml; the example leaves them at 0); a SpikeMonitor records every neuron

Timings as in brunel_brian2.py: build_s = setup + code generation + compilation
(compile_s = `make` alone), simulate_s = the binary's own simulation-loop time
(device._last_run_time), binary_s = wall time of the whole binary; peak_rss_mb = the binary's.

Prints one JSON line (the last line of stdout).
"""

from __future__ import annotations

import json
import time
from types import ModuleType

import common
import numpy as np

NE, NI, P_CONN, V_T = 3200, 800, 0.02, -63.0
EQS = """
dv/dt = (g_L * (E_L - v) + ge * (E_e - v) + gi * (E_i - v)
         - g_Na * (m * m * m) * h * (v - E_Na) - g_K * (n * n * n * n) * (v - E_K)) / C_m : volt
dm/dt = alpha_m * (1 - m) - beta_m * m : 1
dn/dt = alpha_n * (1 - n) - beta_n * n : 1
dh/dt = alpha_h * (1 - h) - beta_h * h : 1
dge/dt = -ge * (1. / tau_e) : siemens
dgi/dt = -gi * (1. / tau_i) : siemens
alpha_m = 0.32 * (mV**-1) * (13 * mV - v + V_T) / (exp((13 * mV - v + V_T) / (4 * mV)) - 1.) / ms : Hz
beta_m = 0.28 * (mV**-1) * (v - V_T - 40 * mV) / (exp((v - V_T - 40 * mV) / (5 * mV)) - 1) / ms : Hz
alpha_h = 0.128 * exp((17 * mV - v + V_T) / (18 * mV)) / ms : Hz
beta_h = 4. / (1 + exp((40 * mV - v + V_T) / (5 * mV))) / ms : Hz
alpha_n = 0.032 * (mV**-1) * (15 * mV - v + V_T) / (exp((15 * mV - v + V_T) / (5 * mV)) - 1.) / ms : Hz
beta_n = .5 * exp((10 * mV - v + V_T) / (40 * mV)) / ms : Hz
"""


def namespace(b2: ModuleType) -> dict:
    """The example's parameters (20000 um^2 of membrane) as Brian2 quantities."""
    area = 20000 * b2.umetre ** 2
    return {"C_m": 1 * b2.ufarad * b2.cm ** -2 * area, "g_L": 5e-5 * b2.siemens * b2.cm ** -2 * area,
            "E_L": -60 * b2.mV, "E_K": -90 * b2.mV, "E_Na": 50 * b2.mV,
            "g_Na": 100 * b2.msiemens * b2.cm ** -2 * area, "g_K": 30 * b2.msiemens * b2.cm ** -2 * area,
            "V_T": V_T * b2.mV, "tau_e": 5 * b2.ms, "tau_i": 10 * b2.ms, "E_e": 0 * b2.mV, "E_i": -80 * b2.mV,
            "we": 6 * b2.nS, "wi": 67 * b2.nS}


def main() -> None:
    ap = common.make_parser(__doc__)
    common.add_method(ap, "exponential_euler")
    common.add_build_dir(ap)
    args = ap.parse_args()

    b2, import_s = common.import_brian2()
    build_dir = common.standalone_dir(args.build_dir, "cobahh_brian2_")

    t0 = time.perf_counter()
    rss_file = common.setup_standalone(b2, build_dir, 0.1 * b2.ms, args.seed)
    n = NE + NI
    neurons = b2.NeuronGroup(n, EQS, threshold="v > -20*mV", refractory=3 * b2.ms, method=args.method)
    rng = np.random.default_rng(args.seed)
    v0 = -60.0 + rng.standard_normal(n) * 5.0 - 5.0
    neurons.v = v0 * b2.mV
    neurons.m, neurons.h, neurons.n = common.traub_steady_gates(v0 - V_T)
    neurons.ge = (rng.standard_normal(n) * 1.5 + 4.0) * 10.0 * b2.nS
    neurons.gi = (rng.standard_normal(n) * 12.0 + 20.0) * 10.0 * b2.nS
    out = common.brian2_ei_report(b2, {"model": "cobahh"}, args, neurons, NE, ("ge_post += we", "gi_post += wi"),
                                  P_CONN, namespace(b2), build_dir, rss_file, import_s, t0)
    common.remove_temp_dir(build_dir, args.build_dir)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
