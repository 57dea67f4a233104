"""Brunel (2000) sparse E/I network in Brian2 C++ standalone, one thread (peer benchmark).

Same network as brunel_nest.py (order N, default 2500):
  NE = 4N, NI = N; CE = int(0.1 NE), CI = int(0.1 NI) presynaptic partners per
  neuron drawn with numpy (with replacement, never the neuron itself)
  LIF with delta synapses: dv/dt = -v / tau_m (E_L = 0), tau_m = 20 ms,
  threshold v >= 20 mV, reset 10 mV, refractory 2 ms (v clamped; synaptic and
  Poisson input arriving while refractory is dropped, as in NEST's iaf_psc_delta)
  on_pre: v += J (E), v -= g J (I); J = 0.1 mV, g = 5, delay 1.5 ms, dt = 0.1 ms
  (Brian applies synaptic input after the threshold test of its step, NEST before it,
  so a spike can at the earliest trigger a spike one step, 0.1 ms, later than in NEST)
  v(0) ~ U[0, 20) mV (numpy, seeded)
  external: PoissonInput(N=CE, rate=nu_ext, weight=J), nu_ext = eta V_th / (J CE tau_m),
  eta = 2; a SpikeMonitor records every neuron
  no OpenMP (openmp_threads = 0)
Written as Brian2's own examples/frompapers/Brunel_2000.py: the same equation with
method="exact", on_pre "v += J" / "v += -g J" with delay D = 1.5 ms, and one PoissonInput of
C_ext = CE sources at nu_ext. Changed to be the network of brunel_nest.py and
configs/brunel.toml: fixed in-degree instead of connect(p=epsilon), NE = 4 NI, threshold
v >= V_th (NEST's), input dropped while refractory (the `int(not_refractory)` factors) and
every neuron recorded.

Timings: build_s = Python object setup + code generation + compilation
(compile_s = the `make` step alone); simulate_s = the binary's own timing of its
simulation loop (device._last_run_time, CPU clock of the single thread);
binary_s = wall time of the whole binary (loading the connectivity arrays,
creating synapses, simulating, writing results). peak_rss_mb is the binary's
(measured by a tiny wrapper process, since RUSAGE_CHILDREN would include g++).

Prints one JSON line (the last line of stdout).
"""

from __future__ import annotations

import json
import time

import common
import numpy as np


def fixed_indegree(rng: np.random.Generator, n_src: int, k: int, n_post: int,
                   self_offset: int | None) -> tuple[np.ndarray, np.ndarray]:
    """k sources per target, with replacement; excludes i == j for targets self_offset + s."""
    if self_offset is None:
        pre = rng.integers(0, n_src, size=(n_post, k), dtype=np.int64)
    else:
        pre = rng.integers(0, n_src - 1, size=(n_post, k), dtype=np.int64)
        own = np.arange(n_post)[:, None] - self_offset  # own index within the source group
        pre += (pre >= own) & (own >= 0) & (own < n_src)
    return pre.ravel(), np.repeat(np.arange(n_post), k)


def main() -> None:
    ap = common.make_parser(__doc__, order=True)
    common.add_build_dir(ap)
    args = ap.parse_args()

    b2, import_s = common.import_brian2()

    ne, ni = 4 * args.order, args.order
    n, ce, ci = ne + ni, int(0.1 * ne), int(0.1 * ni)
    build_dir = common.standalone_dir(args.build_dir, "brunel_brian2_")

    t0 = time.perf_counter()
    rss_file = common.setup_standalone(b2, build_dir, 0.1 * b2.ms, args.seed)
    ns = {"tau_m": 20 * b2.ms, "V_th": 20 * b2.mV, "V_reset": 10 * b2.mV,
          "J": 0.1 * b2.mV, "g": 5.0}
    nu_ext = 2.0 * ns["V_th"] / (ns["J"] * ce * ns["tau_m"])

    neurons = b2.NeuronGroup(n, "dv/dt = -v / tau_m : volt (unless refractory)",
                             threshold="v >= V_th", reset="v = V_reset",
                             refractory=2 * b2.ms, method="exact")
    rng = np.random.default_rng(args.seed)
    neurons.v = rng.uniform(0.0, 20.0, n) * b2.mV
    syn_e = b2.Synapses(neurons[:ne], neurons, on_pre="v_post += J * int(not_refractory_post)",
                        delay=1.5 * b2.ms)
    pre, post = fixed_indegree(rng, ne, ce, n, 0)
    syn_e.connect(i=pre, j=post)
    syn_i = b2.Synapses(neurons[ne:], neurons,
                        on_pre="v_post -= g * J * int(not_refractory_post)",
                        delay=1.5 * b2.ms)
    pre, post = fixed_indegree(rng, ni, ci, n, ne)
    syn_i.connect(i=pre, j=post)
    poisson = b2.PoissonInput(neurons, "v", N=ce, rate=nu_ext, weight="J * int(not_refractory)")
    mon = b2.SpikeMonitor(neurons)
    net = b2.Network(neurons, syn_e, syn_i, poisson, mon)
    build_s = common.build_and_run(b2, net, args.t_ms, ns, build_dir, t0)

    counts = np.asarray(mon.count)
    stats = common.spike_stats(int(counts.sum()), int(counts[:ne].sum()), ne, ni, args.t_ms, len(syn_e) + len(syn_i))
    out = common.brian2_report(b2, {"order": args.order}, n, args, import_s, build_s, stats, rss_file)
    common.remove_temp_dir(build_dir, args.build_dir)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
