"""Brunel (2000) sparse E/I network in NEST 3.10, single thread (peer benchmark).

Parameters (order N, default 2500):
  NE = 4N excitatory, NI = N inhibitory, model iaf_psc_delta
  CE = int(epsilon NE), CI = int(epsilon NI) inputs per neuron (--epsilon, 0.1), rule fixed_indegree,
  no autapses, multapses allowed
  J = 0.1 mV (E), -g J with g = 5 (I), recurrent delay 1.5 ms, dt = 0.1 ms
  tau_m = 20 ms, C_m = 250 pF, t_ref = 2 ms, E_L = 0, V_th = 20 mV, V_reset = 10 mV,
  V_m(0) ~ U[0, 20) mV (numpy, seeded); input during refractoriness is lost
  external: one poisson_generator, rate = 1000 * nu_ext * CE Hz with
  nu_ext = eta * nu_th, nu_th = V_th / (J CE tau_m), eta = 2, weight J, delay 0.1 ms
  (NEST draws an independent train for every target)
  all spikes of all neurons go to one spike_recorder (in memory)

Prints one JSON line (the last line of stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np

DT, DELAY, J, G, ETA = 0.1, 1.5, 0.1, 5.0, 2.0
NEURON = {"tau_m": 20.0, "C_m": 250.0, "t_ref": 2.0, "E_L": 0.0,
          "V_th": 20.0, "V_reset": 10.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--order", type=int, default=2500)
    ap.add_argument("--t-ms", type=float, default=1000.0)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--epsilon", type=float, default=0.1, help="connection fraction: CE = epsilon NE")
    args = ap.parse_args()

    t0 = time.perf_counter()
    os.environ.setdefault("PYNEST_QUIET", "1")
    import nest
    import_s = time.perf_counter() - t0

    ne, ni = 4 * args.order, args.order
    ce, ci = int(args.epsilon * ne), int(args.epsilon * ni)
    nu_th = NEURON["V_th"] / (J * ce * NEURON["tau_m"])  # per ms
    rate_hz = 1000.0 * ETA * nu_th * ce

    t0 = time.perf_counter()
    nest.verbosity = nest.VerbosityLevel.ERROR  # NEST 3.10 form of set_verbosity("M_ERROR")
    nest.ResetKernel()
    nest.SetKernelStatus({"resolution": DT, "local_num_threads": 1,
                          "rng_seed": args.seed})
    v0 = np.random.default_rng(args.seed).uniform(0.0, NEURON["V_th"], ne + ni)
    nodes = nest.Create("iaf_psc_delta", ne + ni, params=NEURON)
    nodes.V_m = v0
    exc, inh = nodes[:ne], nodes[ne:]
    noise = nest.Create("poisson_generator", params={"rate": rate_hz})
    rec = nest.Create("spike_recorder")
    common = {"rule": "fixed_indegree", "allow_autapses": False, "allow_multapses": True}
    nest.Connect(exc, nodes, {**common, "indegree": ce},
                 {"synapse_model": "static_synapse", "weight": J, "delay": DELAY})
    nest.Connect(inh, nodes, {**common, "indegree": ci},
                 {"synapse_model": "static_synapse", "weight": -G * J, "delay": DELAY})
    synapses = nest.num_connections
    nest.Connect(noise, nodes, syn_spec={"weight": J, "delay": DT})
    nest.Connect(nodes, rec)
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    nest.Simulate(args.t_ms)
    simulate_s = time.perf_counter() - t0

    senders = np.asarray(rec.get("events", "senders"))
    times = np.asarray(rec.get("events", "times"))
    counts = np.bincount(np.ceil(times).astype(int) - 1, minlength=int(args.t_ms))[100:]  # 1 ms bins after 100 ms
    n_e = int(np.count_nonzero(senders <= exc[-1].global_id))
    sec = args.t_ms / 1000.0
    print(json.dumps({
        "simulator": "nest", "version": nest.__version__, "order": args.order,
        "n_neurons": ne + ni, "t_ms": args.t_ms, "import_s": round(import_s, 3),
        "build_s": round(build_s, 3), "simulate_s": round(simulate_s, 3),
        "spikes": int(senders.size),
        "mean_rate_hz": round(senders.size / (ne + ni) / sec, 3),
        "rate_e_hz": round(n_e / ne / sec, 3),
        "rate_i_hz": round((senders.size - n_e) / ni / sec, 3),
        "synapses": int(synapses),
        "pop_count_cv_1ms": round(float(counts.std() / counts.mean()), 4) if counts.size else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "seed": args.seed, "threads": nest.local_num_threads,
    }))


if __name__ == "__main__":
    main()
