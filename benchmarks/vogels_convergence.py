"""Where inhibitory STDP (Vogels et al. 2011) leaves the excitatory rate: eilab or NEST, one network.

Runs configs/vogels2011.toml with the given size, connection probability and learning rate (eilab,
through its command line), or the same network in NEST 3.10 (benchmarks/peers/vogels_nest.py under
--nest-python), and prints one JSON line:

- rate_e_per_s, rate_i_per_s, w_ie_mean_per_s: per-second E and I rates (Hz), mean I -> E weight (nS);
- learned_rate_e_hz: the E rate over the last --tail-ms, and its offset from rho0;
- the rule's two pairing terms over that window, from the spikes and the I -> E synapses:
  c_pre = sum over synapses and presynaptic spikes of x_post, c_post = sum over postsynaptic
  spikes of x_pre, both divided by what independent spike trains with the same counts give
  (sum over synapses of n_pre n_post tau / T). The mean drift is zero where the presynaptically
  weighted post rate equals 2 rho0 / (c_pre + c_post) (`fixed_point_hz`): an inhibitory spike that
  delays the next postsynaptic spike makes c_post < 1 and puts the fixed point above rho0;
- drift_nS_per_s: the rule's mean weight change per synapse and second in the window, and
  frac_w_zero: the fraction of I -> E weights at 0 at the end.

    python benchmarks/vogels_convergence.py --n-e 800 --n-i 200 --p 0.1 --eta 0.25 --t-ms 60000
    python benchmarks/vogels_convergence.py --simulator nest --nest-python .venv-peers/bin/python ...
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tomli_w
from numba import njit

from eilab.sim.config import load_config
from eilab.sim.network import build_connectivity
from eilab.sim.reader import open_run

ROOT = Path(__file__).resolve().parent.parent
DT, TAU = 0.1, 20.0


@njit(cache=True)
def pairing_sums(steps, gids, n_e, in_ptr, in_src, out_ptr, out_tgt, decay, s_from):
    """(sum of x_post at presynaptic spikes, sum of x_pre at postsynaptic spikes) over I -> E synapses,
    counting spikes at steps >= s_from; traces as in sim/plasticity.py (values just before the step)."""
    n_i = out_ptr.size - 1
    xe, te = np.zeros(n_e), np.zeros(n_e, np.int64)
    xi, ti = np.zeros(n_i), np.zeros(n_i, np.int64)
    s_pre, s_post = 0.0, 0.0
    k = 0
    while k < steps.size:
        s = steps[k]
        kk = k
        while kk < steps.size and steps[kk] == s:
            kk += 1
        if s >= s_from:
            for m in range(k, kk):
                g = gids[m]
                if g < n_e:
                    for t in range(in_ptr[g], in_ptr[g + 1]):
                        r = in_src[t]
                        s_post += xi[r] * decay ** (s - ti[r])
                else:
                    r = g - n_e
                    for t in range(out_ptr[r], out_ptr[r + 1]):
                        e = out_tgt[t]
                        s_pre += xe[e] * decay ** (s - te[e])
        for m in range(k, kk):
            g = gids[m]
            if g < n_e:
                xe[g] = xe[g] * decay ** (s - te[g]) + 1.0
                te[g] = s
            else:
                r = g - n_e
                xi[r] = xi[r] * decay ** (s - ti[r]) + 1.0
                ti[r] = s
        k = kk
    return s_pre, s_post


def csr(keys: np.ndarray, vals: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(keys, kind="stable")
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(keys, minlength=n), out=ptr[1:])
    return ptr, vals[order].astype(np.int64)


def analyse(times: np.ndarray, gids: np.ndarray, pre: np.ndarray, post: np.ndarray, n_e: int, n_i: int,
            t_ms: float, tail_ms: float, rho0: float, eta: float) -> dict:
    """Per-second rates, the learned rate and the pairing terms over the last tail_ms."""
    n_s = round(t_ms / 1000.0)
    sec = np.minimum((times // 1000.0).astype(np.int64), n_s - 1)
    is_e = gids < n_e
    rate_e = np.bincount(sec[is_e], minlength=n_s) / n_e
    rate_i = np.bincount(sec[~is_e], minlength=n_s) / n_i
    t_from = t_ms - tail_ms
    steps = np.rint(times / DT).astype(np.int64)
    order = np.lexsort((gids, steps))
    steps, g = steps[order], gids[order].astype(np.int64)
    in_ptr, in_src = csr(post, pre, n_e)
    out_ptr, out_tgt = csr(pre, post, n_i)
    s_pre, s_post = pairing_sums(steps, g, n_e, in_ptr, in_src, out_ptr, out_tgt, np.exp(-DT / TAU),
                                 round(t_from / DT))
    win = times >= t_from
    n_spk = np.bincount(gids[win], minlength=n_e + n_i).astype(float)
    n_pre, n_post = n_spk[n_e + pre], n_spk[post]
    independent = float(np.sum(n_pre * n_post)) * TAU / tail_ms
    alpha = 2.0 * rho0 / 1000.0 * TAU
    c_pre, c_post = s_pre / independent, s_post / independent
    learned = float(n_spk[:n_e].sum() / n_e / (tail_ms / 1000.0))
    weighted = float(np.sum(n_pre * n_post) / np.sum(n_pre)) / (tail_ms / 1000.0)
    return {
        "rate_e_per_s": [round(float(x), 3) for x in rate_e], "rate_i_per_s": [round(float(x), 3) for x in rate_i],
        "tail_ms": tail_ms, "learned_rate_e_hz": round(learned, 3),
        "learned_rate_i_hz": round(float(n_spk[n_e:].sum() / n_i / (tail_ms / 1000.0)), 3),
        "offset_rel": round(learned / rho0 - 1.0, 4),
        "rate_e_sd_across_neurons_hz": round(float(np.std(n_spk[:n_e]) / (tail_ms / 1000.0)), 3),
        "pre_weighted_post_rate_hz": round(weighted, 3),
        "c_pre": round(c_pre, 4), "c_post": round(c_post, 4),
        "fixed_point_hz": round(2.0 * rho0 / (c_pre + c_post), 3),
        "drift_nS_per_s": round(eta * (s_pre + s_post - alpha * float(np.sum(n_pre))) / pre.size
                                / (tail_ms / 1000.0), 5),
    }


def run_eilab(args: argparse.Namespace, tmp: Path) -> dict:
    raw = load_config(ROOT / "configs" / "vogels2011.toml")[1]
    raw["vars"].update(N_E=args.n_e, N_I=args.n_i, p=args.p, eta=args.eta, rho0=args.rho0, g_gaba=args.g_gaba)
    raw["run"].update(t_ms=args.t_ms, seed=args.seed, progress=False)
    raw["record"]["probes"] = []
    ie = next(p for p in raw["projections"] if p.get("name") == "IE")
    if args.static_weight is not None:
        del ie["plasticity"]
        ie["weight"] = args.static_weight
    else:
        ie["plasticity"]["start_ms"] = 0.0  # learning from the start, as in peers/vogels_nest.py
    path = tmp / "net.toml"
    path.write_text(tomli_w.dumps(raw))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "eilab.cluster.cli", "run", str(path), "--out", str(tmp / "run"),
                    "--quiet"], check=True, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    r = open_run(tmp / "run")
    times, gids = r.spikes()
    cfg = load_config(path)[0]
    conn = build_connectivity(cfg, 0, args.n_e + args.n_i)
    q = [pr.name for pr in cfg.projections].index("IE")
    pre, post = conn.synapses(q)
    post = post.astype(np.int64)
    out = {"simulator": "eilab", "wall_s": round(wall, 1),
           "simulate_s": round(r.attrs["summary"]["timings"]["simulate_s"], 1)}
    if args.static_weight is None:
        _, ws = r.weights("IE")
        out["w_ie_mean_per_s"] = [round(float(w.mean()), 4) for w in ws]
        out["frac_w_zero"] = round(float(np.mean(ws[-1] == 0.0)), 4)
    return {**out, "n_ie": int(pre.size), **analyse(times - DT, gids, pre, post, args.n_e, args.n_i,
                                                    args.t_ms, args.tail_ms, args.rho0, args.eta)}


def run_nest(args: argparse.Namespace, tmp: Path) -> dict:
    cmd = [args.nest_python, str(ROOT / "benchmarks" / "peers" / "vogels_nest.py"), "--n-e", str(args.n_e),
           "--n-i", str(args.n_i), "--p", str(args.p), "--eta", str(args.eta), "--rho0", str(args.rho0),
           "--g-gaba", str(args.g_gaba), "--t-ms", str(args.t_ms), "--seed", str(args.seed),
           "--save", str(tmp / "nest.npz")]
    if args.static_weight is not None:
        cmd += ["--static-weight", str(args.static_weight)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    rep = json.loads(res.stdout.strip().splitlines()[-1])
    d = np.load(tmp / "nest.npz")
    out = {"simulator": "nest", "wall_s": round(wall, 1), "simulate_s": rep["simulate_s"], "n_ie": rep["n_ie"]}
    if args.static_weight is None:
        out["w_ie_mean_per_s"] = rep["w_ie_mean_per_s"]
        out["frac_w_zero"] = round(float(np.mean(d["ie_w"] == 0.0)), 4)
    # NEST stamps a spike at the end of its step (as eilab does); drop that step so both count from 0
    return {**out, **analyse(d["times_ms"] - DT, d["gids"], d["ie_pre"], d["ie_post"], args.n_e, args.n_i,
                             args.t_ms, args.tail_ms, args.rho0, args.eta)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--simulator", choices=["eilab", "nest"], default="eilab")
    ap.add_argument("--nest-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    ap.add_argument("--n-e", type=int, default=800)
    ap.add_argument("--n-i", type=int, default=200)
    ap.add_argument("--p", type=float, default=0.1)
    ap.add_argument("--eta", type=float, default=0.25, help="nS per pairing")
    ap.add_argument("--rho0", type=float, default=3.0, help="target rate, Hz")
    ap.add_argument("--g-gaba", type=float, default=3.0, help="I -> I weight, nS")
    ap.add_argument("--t-ms", type=float, default=12000.0, help="whole seconds")
    ap.add_argument("--tail-ms", type=float, default=4000.0, help="window for the learned rate, at the end")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--static-weight", type=float, default=None, help="static I -> E weight (nS), no STDP")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="eilab-vogels-") as tmp:
        res = (run_eilab if args.simulator == "eilab" else run_nest)(args, Path(tmp))
    head = {"n_e": args.n_e, "n_i": args.n_i, "p": args.p, "k_e": round(args.p * args.n_e, 1),
            "k_i": round(args.p * args.n_i, 1), "g_gaba": args.g_gaba, "eta": args.eta, "rho0": args.rho0,
            "t_ms": args.t_ms, "seed": args.seed, "static_weight": args.static_weight}
    print(json.dumps({**head, **res}))


if __name__ == "__main__":
    main()
