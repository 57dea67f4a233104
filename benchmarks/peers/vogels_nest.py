"""Vogels et al. (2011) inhibitory plasticity network (configs/vogels2011.toml) in NEST 3.10, one thread.

The same network as eilab's configs/vogels2011.toml, at any size:
  N_E excitatory + N_I inhibitory iaf_cond_exp neurons, dt = 0.1 ms
  C_m = 200 pF, g_L = 10 nS, E_L = -60 mV, V_th = -50 mV, V_reset = -60 mV, t_ref = 5 ms,
  E_ex = 0 mV, E_in = -80 mV, tau_syn_ex = 5 ms, tau_syn_in = 10 ms, I_e = 200 pA (no noise);
  V_m ~ U[-60, -50) mV (numpy, seeded), conductances start at 0
  connections: pairwise_bernoulli with probability p, no autapses, delay 0.1 ms;
  E -> E and E -> I 0.3 nS, I -> I 3 nS (NEST weight -3: negative weights are inhibitory);
  I -> E `vogels_sprekeler_synapse`, weight 0 at start, tau = 20 ms, alpha = 2 rho0 tau
  (0.12 for 3 Hz), eta in nS per pairing, Wmax = -100 nS (the sign of Wmax makes the synapse
  inhibitory: NEST updates |w| and gives it Wmax's sign). The postsynaptic trace of this rule
  is the neuron's own (tau_minus = 20 ms, NEST's default).
With --static-weight W, I -> E is a static synapse of W nS instead (no plasticity).

Simulates in 1 s chunks, reading the I -> E weights after each. Prints one JSON line (the last
line of stdout) with per-second E and I rates and mean I -> E weight; --save FILE.npz also
writes every spike (times_ms, gids 0-based: E first, then I) and the I -> E synapses (pre as
index within I, post as index within E, final weight in nS), for benchmarks/vogels_convergence.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import common
import numpy as np

DT, DELAY = 0.1, 0.1
NEURON = {"C_m": 200.0, "g_L": 10.0, "E_L": -60.0, "V_th": -50.0, "V_reset": -60.0, "t_ref": 5.0,
          "E_ex": 0.0, "E_in": -80.0, "tau_syn_ex": 5.0, "tau_syn_in": 10.0, "I_e": 200.0, "tau_minus": 20.0}


def main() -> None:
    ap = common.make_parser(__doc__)
    ap.add_argument("--n-e", type=int, default=800)
    ap.add_argument("--n-i", type=int, default=200)
    ap.add_argument("--p", type=float, default=0.1)
    ap.add_argument("--eta", type=float, default=0.25, help="nS per pairing")
    ap.add_argument("--rho0", type=float, default=3.0, help="target rate, Hz")
    ap.add_argument("--tau", type=float, default=20.0, help="STDP trace time constant, ms")
    ap.add_argument("--g-ampa", type=float, default=0.3)
    ap.add_argument("--g-gaba", type=float, default=3.0)
    ap.add_argument("--w-max", type=float, default=100.0)
    ap.add_argument("--static-weight", type=float, default=None, help="static I -> E weight (nS), no STDP")
    ap.add_argument("--save", type=Path, default=None, help="npz file for spikes and I -> E synapses")
    args = ap.parse_args()

    nest, import_s = common.import_nest()
    t0 = time.perf_counter()
    common.reset_nest(nest, DT, args.seed)
    rng = np.random.default_rng(args.seed)
    n = args.n_e + args.n_i
    nodes = nest.Create("iaf_cond_exp", n, params=NEURON)
    nodes.V_m = rng.uniform(-60.0, -50.0, n)
    exc, inh = nodes[: args.n_e], nodes[args.n_e :]
    conn = {"rule": "pairwise_bernoulli", "p": args.p, "allow_autapses": False}
    nest.Connect(exc, nodes, conn, {"weight": args.g_ampa, "delay": DELAY})
    nest.Connect(inh, inh, conn, {"weight": -args.g_gaba, "delay": DELAY})
    if args.static_weight is None:
        alpha = 2.0 * args.rho0 / 1000.0 * args.tau
        nest.CopyModel("vogels_sprekeler_synapse", "isp", {"tau": args.tau, "alpha": alpha, "eta": args.eta,
                                                           "Wmax": -args.w_max, "weight": 0.0})
        nest.Connect(inh, exc, conn, {"synapse_model": "isp", "weight": 0.0, "delay": DELAY})
        ie = nest.GetConnections(inh, exc, synapse_model="isp")
    else:
        nest.Connect(inh, exc, conn, {"weight": -args.static_weight, "delay": DELAY})
        ie = nest.GetConnections(inh, exc)
    rec = nest.Create("spike_recorder")
    nest.Connect(nodes, rec)
    build_s = time.perf_counter() - t0

    w_mean = [0.0 if args.static_weight is None else args.static_weight]
    simulate = np.zeros(2)  # wall, CPU seconds
    n_chunks = round(args.t_ms / 1000.0)
    for _ in range(n_chunks):
        simulate += common.simulate_nest(nest, 1000.0)
        w_mean.append(float(-np.mean(ie.get("weight"))))
    times = np.asarray(rec.get("events", "times"), float)
    gids = np.asarray(rec.get("events", "senders"), np.int64) - nodes[0].global_id
    sec = np.minimum((times // 1000.0).astype(np.int64), n_chunks - 1)
    is_e = gids < args.n_e
    rate_e = np.bincount(sec[is_e], minlength=n_chunks) / args.n_e
    rate_i = np.bincount(sec[~is_e], minlength=n_chunks) / args.n_i
    if args.save is not None:
        src = np.asarray(ie.get("source"), np.int64) - inh[0].global_id
        tgt = np.asarray(ie.get("target"), np.int64) - exc[0].global_id
        np.savez(args.save, times_ms=times, gids=gids, ie_pre=src, ie_post=tgt,
                 ie_w=-np.asarray(ie.get("weight"), float), n_e=args.n_e, n_i=args.n_i)
    stats = common.spike_stats(int(gids.size), int(is_e.sum()), args.n_e, args.n_i, n_chunks * 1000.0,
                               int(nest.num_connections))
    label = {"model": "vogels2011", "n_e": args.n_e, "n_i": args.n_i, "p": args.p, "eta": args.eta,
             "static_weight": args.static_weight}
    report = common.nest_report(nest, label, n, args, import_s, build_s, tuple(simulate), stats)
    report.update(rate_e_per_s=[round(float(x), 3) for x in rate_e], rate_i_per_s=[round(float(x), 3) for x in rate_i],
                  w_ie_mean_per_s=[round(x, 4) for x in w_mean], n_ie=len(ie))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
