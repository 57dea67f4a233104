"""One neuron of benchmarks/accuracy.py in NEST 3.10: run a problem, save V, spikes and the synaptic variable.

    python accuracy_nest.py SPEC.json OUT.npz

SPEC (written by benchmarks/accuracy.py): model (eilab's name), params (eilab's names, which are
NEST's), v0, gates (m, h, n at t = 0 or null), t_ms, dt, e_times / i_times (ms: when the synaptic
variable jumps), e_w / i_w (pA or nS, magnitudes). Models: lif_exp -> iaf_psc_exp (exact
integration), lif_cond_exp -> iaf_cond_exp, hh -> hh_psc_alpha (no input spikes: its synapses are
alpha-shaped), hh_cond_exp_traub -> hh_cond_exp_traub (the last three: GSL RKF45, adaptive).
An input at T is a spike_generator spike at T - dt over a connection of delay dt: NEST adds it to
the synaptic variable at the end of the step that ends at T. A multimeter samples V_m (and the
excitatory synaptic variable) at the end of every step; NEST's HH models emit a spike at the peak
of V_m (hh_psc_alpha above 0 mV, hh_cond_exp_traub above V_T + 30 mV).

OUT holds t, v, syn, spikes (ms, mV) and info (JSON: scheme, how, peak, dt).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import common
import numpy as np

MODELS = {  # eilab model: NEST model, its excitatory synaptic variable, how it integrates, spikes at the peak
    "lif_exp": ("iaf_psc_exp", "I_syn_ex", "exact integration", False),
    "lif_cond_exp": ("iaf_cond_exp", "g_ex", "GSL RKF45 (adaptive)", False),
    "hh": ("hh_psc_alpha", None, "GSL RKF45 (adaptive)", True),
    "hh_cond_exp_traub": ("hh_cond_exp_traub", "g_ex", "GSL RKF45 (adaptive)", True),
}


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    model, syn_var, how, peak = MODELS[spec["model"]]
    dt = spec["dt"]
    nest, _ = common.import_nest()
    common.reset_nest(nest, dt, 1)
    defaults = nest.GetDefaults(model)
    params = {k: v for k, v in spec["params"].items() if k in defaults and v is not None}
    neuron = nest.Create(model, params=params)
    neuron.set({"V_m": spec["v0"], **dict(zip(("Act_m", "Inact_h", "Act_n"), spec["gates"] or (), strict=False))})
    for times, w in ((spec["e_times"], spec["e_w"]), (spec["i_times"], -spec["i_w"])):
        if times:
            gen = nest.Create("spike_generator", params={"spike_times": [round(t - dt, 9) for t in times]})
            nest.Connect(gen, neuron, syn_spec={"weight": w, "delay": dt})
    mm = nest.Create("multimeter", params={"interval": dt, "record_from": ["V_m", *([syn_var] if syn_var else [])]})
    nest.Connect(mm, neuron)
    rec = nest.Create("spike_recorder")
    nest.Connect(neuron, rec)
    nest.Simulate(spec["t_ms"])
    ev = mm.get("events")
    t = np.asarray(ev["times"])
    syn = np.asarray(ev[syn_var]) if syn_var else np.zeros(t.size)
    info = {"scheme": f"{model}", "how": f"NEST {nest.__version__} {model}: {how}", "peak": peak, "dt": dt}
    np.savez(sys.argv[2], t=t, v=np.asarray(ev["V_m"]), syn=syn, spikes=np.asarray(rec.get("events", "times")),
             info=json.dumps(info))


if __name__ == "__main__":
    main()
