"""One neuron of benchmarks/accuracy.py in Brian2 2.9: run a problem, save V, spikes and the synaptic variable.

    python accuracy_brian2.py SPEC.json OUT.npz

SPEC: as for accuracy_nest.py, plus method (a Brian2 state updater, or null for Brian2's default
choice, the first of exact, euler, heun that applies). The equations are the models' (eilab's
parameters and units; the Traub rates as Brian2's examples/COBAHH.py writes them), in runtime
mode with the numpy target (the same float64 state updates as C++ standalone, without compiling).
LIF: threshold v > V_th, reset, refractory t_ref (V held); squid HH: a spike when v > V_spike,
refractory while v > V_spike (Brian2's idiom); Traub HH: v > V_spike, refractory t_ref (COBAHH.py).
An input at T is a SpikeGeneratorGroup spike at T - dt (synapses without delay act after the state
update of their step, so the synaptic variable has jumped when the next step starts, at T).
A StateMonitor samples v at the start of every step (t = 0, dt, ...); Brian2 stamps a spike
with the start of the step whose update crossed the threshold.

OUT holds t, v, syn, spikes (ms, mV) and info (JSON: scheme, how, peak, dt).
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from types import ModuleType

import common
import numpy as np

SQUID_RATES = """
alpha_m = 1 / exprel(-(v + 40*mV) / (10*mV)) / ms : Hz
beta_m = 4 * exp(-(v + 65*mV) / (18*mV)) / ms : Hz
alpha_h = 0.07 * exp(-(v + 65*mV) / (20*mV)) / ms : Hz
beta_h = 1 / (1 + exp(-(v + 35*mV) / (10*mV))) / ms : Hz
alpha_n = 0.1 / exprel(-(v + 55*mV) / (10*mV)) / ms : Hz
beta_n = 0.125 * exp(-(v + 65*mV) / (80*mV)) / ms : Hz
"""
TRAUB_RATES = """
alpha_m = 0.32 * (mV**-1) * (13*mV - v + V_T) / (exp((13*mV - v + V_T) / (4*mV)) - 1.) / ms : Hz
beta_m = 0.28 * (mV**-1) * (v - V_T - 40*mV) / (exp((v - V_T - 40*mV) / (5*mV)) - 1) / ms : Hz
alpha_h = 0.128 * exp((17*mV - v + V_T) / (18*mV)) / ms : Hz
beta_h = 4. / (1 + exp((40*mV - v + V_T) / (5*mV))) / ms : Hz
alpha_n = 0.032 * (mV**-1) * (15*mV - v + V_T) / (exp((15*mV - v + V_T) / (5*mV)) - 1.) / ms : Hz
beta_n = .5 * exp((10*mV - v + V_T) / (40*mV)) / ms : Hz
"""
GATES = """
dm/dt = alpha_m * (1 - m) - beta_m * m : 1
dh/dt = alpha_h * (1 - h) - beta_h * h : 1
dn/dt = alpha_n * (1 - n) - beta_n * n : 1
"""
HH_ION = "g_Na * m**3 * h * (v - E_Na) + g_K * n**4 * (v - E_K) + g_L * (v - E_L)"
SYN = "dse/dt = -se / tau_syn_ex : {u}\ndsi/dt = -si / tau_syn_in : {u}\n"
EQS = {  # model: (equations, unit of the synaptic variables)
    "lif_exp": ("dv/dt = (E_L - v) / tau_m + (se - si + I_e) / C_m : volt (unless refractory)\n" + SYN, "amp"),
    "lif_cond_exp": ("dv/dt = (g_L * (E_L - v) + se * (E_ex - v) + si * (E_in - v) + I_e) / C_m"
                     " : volt (unless refractory)\n" + SYN, "siemens"),
    "hh": (f"dv/dt = (se - si + I_e - ({HH_ION})) / C_m : volt\n" + SYN + GATES + SQUID_RATES, "amp"),
    "hh_cond_exp_traub": (f"dv/dt = (se * (E_ex - v) + si * (E_in - v) + I_e - ({HH_ION})) / C_m : volt\n"
                          + SYN + GATES + TRAUB_RATES, "siemens"),
}


def namespace(b2: ModuleType, params: dict) -> dict:
    """eilab's parameters as Brian2 quantities (units from the name: tau_/t_ ms, C_ pF, g_ nS, E_/V_ mV, I_ pA)."""
    units = {"tau_": b2.ms, "t_": b2.ms, "C_": b2.pF, "g_": b2.nS, "E_": b2.mV, "V_": b2.mV, "I_": b2.pA}
    return {k: v * u for k, v in params.items() if isinstance(v, float)
            for prefix, u in units.items() if k.startswith(prefix)}


def default_method(b2: ModuleType, neuron: object) -> str:
    """The state updater Brian2 picks when none is given: the first of NeuronGroup's default list that applies."""
    from brian2.stateupdaters.base import StateUpdateMethod, UnsupportedEquationsException

    for method in inspect.signature(b2.NeuronGroup).parameters["method"].default:
        try:
            StateUpdateMethod.apply_stateupdater(neuron.equations, neuron.variables, method)
        except UnsupportedEquationsException:
            continue
        return method
    raise RuntimeError("Brian2 has no default state updater for these equations")


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    b2, _ = common.import_brian2()
    b2.prefs.codegen.target = "numpy"
    b2.BrianLogger.log_level_error()
    dt = spec["dt"] * b2.ms
    b2.defaultclock.dt = dt
    model, params = spec["model"], spec["params"]
    ns = namespace(b2, params)
    eqs, unit = EQS[model]
    kwargs = {} if spec["method"] is None else {"method": spec["method"]}
    if model.startswith("lif"):
        kwargs |= {"threshold": "v > V_th", "reset": "v = V_reset", "refractory": params["t_ref"] * b2.ms}
    else:
        kwargs |= {"threshold": "v > V_spike",
                   "refractory": "v > V_spike" if model == "hh" else params["t_ref"] * b2.ms}
    neuron = b2.NeuronGroup(1, eqs.format(u=unit), namespace=ns, **kwargs)
    neuron.v = spec["v0"] * b2.mV
    if spec["gates"]:
        neuron.m, neuron.h, neuron.n = spec["gates"]
    objects = [neuron]
    for k, (times, w, var) in enumerate(((spec["e_times"], spec["e_w"], "se"), (spec["i_times"], spec["i_w"], "si"))):
        if times:
            gen = b2.SpikeGeneratorGroup(1, np.zeros(len(times), int), (np.asarray(times) - spec["dt"]) * b2.ms,
                                         name=f"input_{k}")
            syn = b2.Synapses(gen, neuron, on_pre=f"{var}_post += {w!r} * {unit_name(unit)}")
            syn.connect()
            objects += [gen, syn]
    state = b2.StateMonitor(neuron, ["v", "se"], record=0)
    spikes = b2.SpikeMonitor(neuron)
    net = b2.Network(*objects, state, spikes)
    net.run(spec["t_ms"] * b2.ms)
    method = spec["method"] or default_method(b2, neuron)
    info = {"scheme": method if spec["method"] else f"{method} (default)", "peak": False, "dt": spec["dt"],
            "how": f"Brian2 {b2.__version__}, method {method}" + ("" if spec["method"] else " (its default choice)")}
    np.savez(sys.argv[2], t=np.asarray(state.t / b2.ms), v=np.asarray(state.v[0] / b2.mV),
             syn=np.asarray(state.se[0] / (b2.nS if unit == "siemens" else b2.pA)),
             spikes=np.asarray(spikes.t / b2.ms), info=json.dumps(info))


def unit_name(unit: str) -> str:
    """The Brian2 unit that eilab's synaptic weights are in: nS for conductances, pA for currents."""
    return "nS" if unit == "siemens" else "pA"


if __name__ == "__main__":
    main()
