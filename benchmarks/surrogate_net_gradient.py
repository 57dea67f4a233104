"""The loss and its BPTT gradient in a surrogate network against one trained weight (issue 19): whether the
surrogate gradient points the way the loss falls. For a `task = "surrogate_net"` training config (an `hh` network;
its surrogate trained), the first projection of `train` is set to each weight in turn, the network simulated
for optimise.t_ms from each drive seed, and per (weight, dampening, seed) the loss (the config's objective) and
d loss / d log w printed as one JSON line; then, per dampening, a summary line: the share of gradients that point
to a larger weight, and the median |gradient|. The loss itself needs no gradient: where it falls with w while
the gradients' signs scatter, BPTT, not the objective, misleads the descent.

    python benchmarks/surrogate_net_gradient.py configs/train/surrogate_net_alpha_beta.toml \
        --weights 40 60 80 100 120 --dampening 1 0.3 0.1 0.05 --seeds 0 1 2 3
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="a task = \"surrogate_net\" training config of an hh network")
    ap.add_argument("--weights", type=float, nargs="+", required=True, help="weights of the trained projection, pA")
    ap.add_argument("--dampening", type=float, nargs="+", default=[1.0], help="surrogate-gradient dampening")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="drive seeds")
    a = ap.parse_args()
    import torch

    from eilab.cluster.surrogate_net_train import check, one_bin
    from eilab.ml.config import load_train_config
    from eilab.ml.surrogate_net import SurrogateNetwork, loss_of, network_spec, population_rate, spectrum

    tc, _ = load_train_config(a.config)
    cfg, _, per_pop = check(tc)
    o, s = tc.objective, tc.optimise
    torch.set_num_threads(s.threads)
    bin_ms = one_bin(per_pop)
    spec = network_spec(cfg, tc.network, bin_ms, s.seed)
    name = tc.train[0]
    bins, skip = round(s.t_ms / bin_ms), round(s.skip_ms / bin_ms)
    for d in a.dampening:
        grads = []
        for w in a.weights:
            for seed in a.seeds:
                model = SurrogateNetwork(spec, per_pop, [name], s.spikes, d)
                with torch.no_grad():
                    model.theta.fill_(math.log(w))
                rate = population_rate(model(bins, seed), spec.cells(o.population), bin_ms)[skip:]
                loss = loss_of(*spectrum(rate, bin_ms, o.segment_ms), o)
                loss.backward()
                g = float(model.theta.grad[0])
                grads.append(g)
                print(json.dumps({"projection": name, "weight_pa": w, "dampening": d, "seed": seed,
                                  "loss": float(loss.detach()), "grad": g}), flush=True)
        g = np.array(grads)
        print(json.dumps({"projection": name, "dampening": d, "towards_larger_weight": float(np.mean(g < 0)),
                          "median_abs_grad": float(np.median(np.abs(g)))}), flush=True)


if __name__ == "__main__":
    main()
