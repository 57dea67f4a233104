"""Brunel (2000) sparse E/I network in NEST 3.10, single thread (peer benchmark).

Parameters (order N, default 2500):
  NE = 4N excitatory, NI = N inhibitory, model iaf_psc_delta
  CE = int(epsilon NE), CI = int(epsilon NI) inputs per neuron (--epsilon, 0.1), rule fixed_indegree,
  no autapses, multapses allowed
  J = 0.1 mV (E), -g J with g = 5 (I), recurrent delay 1.5 ms, dt = 0.1 ms
  tau_m = 20 ms, C_m = 250 pF, t_ref = 2 ms, E_L = 0, V_th = 20 mV, V_reset = 10 mV,
  V_m(0) ~ U[0, 20) mV (numpy, seeded); input during refractoriness is lost
  external: one poisson_generator, rate = 1000 * nu_ext * CE Hz with
  nu_ext = eta * nu_th, nu_th = V_th / (J CE tau_m), eta = 2, weight J, delay 1.5 ms
  (NEST draws an independent train for every target)
  Every connection, the Poisson generator's included, has the 1.5 ms delay, as in NEST's own
  pynest/examples/brunel_delta_nest.py: NEST's minimum delay is then 1.5 ms and it exchanges
  spikes every 15 steps (a 0.1 ms generator delay would make it exchange every step). The
  generator's delay only shifts its Poisson trains, so the network's statistics do not change.
  As in that example: fixed in-degree, static synapses; unlike it (and as in Brunel 2000 and
  configs/brunel.toml) V_reset = 10 mV, random V_m(0), no autapses and every neuron recorded.
  all spikes of all neurons go to one spike_recorder (in memory)

Prints one JSON line (the last line of stdout).
"""

from __future__ import annotations

import json
import time

import common
import numpy as np

DT, DELAY, J, G, ETA = 0.1, 1.5, 0.1, 5.0, 2.0
NEURON = {"tau_m": 20.0, "C_m": 250.0, "t_ref": 2.0, "E_L": 0.0,
          "V_th": 20.0, "V_reset": 10.0}


def main() -> None:
    ap = common.make_parser(__doc__, order=True)
    ap.add_argument("--epsilon", type=float, default=0.1, help="connection fraction: CE = epsilon NE")
    args = ap.parse_args()

    nest, import_s = common.import_nest()

    ne, ni = 4 * args.order, args.order
    ce, ci = int(args.epsilon * ne), int(args.epsilon * ni)
    nu_th = NEURON["V_th"] / (J * ce * NEURON["tau_m"])  # per ms
    rate_hz = 1000.0 * ETA * nu_th * ce

    t0 = time.perf_counter()
    common.reset_nest(nest, DT, args.seed)
    v0 = np.random.default_rng(args.seed).uniform(0.0, NEURON["V_th"], ne + ni)
    nodes = nest.Create("iaf_psc_delta", ne + ni, params=NEURON)
    nodes.V_m = v0
    exc, inh = nodes[:ne], nodes[ne:]
    noise = nest.Create("poisson_generator", params={"rate": rate_hz})
    rec = nest.Create("spike_recorder")
    rule = {"rule": "fixed_indegree", "allow_autapses": False, "allow_multapses": True}
    nest.Connect(exc, nodes, {**rule, "indegree": ce},
                 {"synapse_model": "static_synapse", "weight": J, "delay": DELAY})
    nest.Connect(inh, nodes, {**rule, "indegree": ci},
                 {"synapse_model": "static_synapse", "weight": -G * J, "delay": DELAY})
    synapses = nest.num_connections
    nest.Connect(noise, nodes, syn_spec={"weight": J, "delay": DELAY})
    nest.Connect(nodes, rec)
    build_s = time.perf_counter() - t0

    simulate = common.simulate_nest(nest, args.t_ms)

    senders = np.asarray(rec.get("events", "senders"))
    times = np.asarray(rec.get("events", "times"))
    counts = np.bincount(np.ceil(times).astype(int) - 1, minlength=int(args.t_ms))[100:]  # 1 ms bins after 100 ms
    n_e = int(np.count_nonzero(senders <= exc[-1].global_id))
    stats = {**common.spike_stats(int(senders.size), n_e, ne, ni, args.t_ms, int(synapses)),
             "pop_count_cv_1ms": round(float(counts.std() / counts.mean()), 4) if counts.size else None}
    print(json.dumps(common.nest_report(nest, {"order": args.order}, ne + ni, args,
                                        import_s, build_s, simulate, stats)))


if __name__ == "__main__":
    main()
