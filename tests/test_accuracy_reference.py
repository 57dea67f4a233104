"""The reference of benchmarks/accuracy.py against closed forms, and eilab's schemes against it.

The accuracy table (benchmarks/README.md) is only as good as its reference: the piecewise solve_ivp
solution with input jumps, threshold events, resets and refractoriness. Here it must reproduce the
closed-form LIF solutions (sums of exponential PSPs; the spike train of a constant drive), and the
eilab schemes that are exact in theory must agree with it.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

SPEC = importlib.util.spec_from_file_location("accuracy", Path(__file__).parents[1] / "benchmarks" / "accuracy.py")
accuracy = importlib.util.module_from_spec(SPEC)
sys.modules["accuracy"] = accuracy  # dataclasses look their module up there
SPEC.loader.exec_module(accuracy)

CUBA = accuracy.CUBA  # C_m 200 pF, tau_m 20 ms, E_L -49 mV, V_th -50 mV, V_reset -60 mV, t_ref 5 ms


def psp(w: float, c_m: float, tau_m: float, tau_s: float, u: np.ndarray) -> np.ndarray:
    """V - E_L after a current w exp(-u / tau_s) (pA) switched on at u = 0 into a resting LIF (mV), 0 before."""
    u = np.asarray(u, dtype=np.float64)
    amp = w * tau_m * tau_s / (c_m * (tau_m - tau_s))
    return np.where(u > 0, amp * (np.exp(-u / tau_m) - np.exp(-u / tau_s)), 0.0)


def test_subthreshold_reference_is_the_sum_of_exponential_psps() -> None:
    """lif_exp without a threshold under the CUBA inputs: leak relaxation plus one PSP per input, to 1e-8 mV."""
    params = {**CUBA, "V_th": 1e9}
    pb = accuracy.Problem("lif_exp", params, v0=-60.0, t_ms=200.0, e_rate_hz=400.0, e_w=48.6,
                          i_rate_hz=60.0, i_w=90.0)
    assert len(pb.e_times) > 50 and len(pb.i_times) > 5
    ref = accuracy.reference(pb)
    t = np.linspace(0.05, pb.t_ms, 4001)
    exact = params["E_L"] + (pb.v0 - params["E_L"]) * np.exp(-t / params["tau_m"])
    for times, w, tau_s in ((pb.e_times, pb.e_w, params["tau_syn_ex"]), (pb.i_times, -pb.i_w, params["tau_syn_in"])):
        for t_in in times:
            exact += psp(w, params["C_m"], params["tau_m"], tau_s, t - t_in)
    assert np.abs(ref.v(t) - exact).max() < 1e-8
    assert ref.crossings.size == 0


def test_reference_spike_train_of_a_constant_drive_is_the_closed_form() -> None:
    """E_L above threshold, no input: spikes at tau_m ln((E_L - V) / (E_L - V_th)) from V(0), then every
    t_ref + tau_m ln((E_L - V_reset) / (E_L - V_th)); V held at V_reset while refractory."""
    pb = accuracy.Problem("lif_exp", CUBA, v0=-55.0, t_ms=300.0)
    ref = accuracy.reference(pb)
    first = CUBA["tau_m"] * math.log((CUBA["E_L"] - pb.v0) / (CUBA["E_L"] - CUBA["V_th"]))
    isi = CUBA["t_ref"] + CUBA["tau_m"] * math.log((CUBA["E_L"] - CUBA["V_reset"]) / (CUBA["E_L"] - CUBA["V_th"]))
    expected = first + isi * np.arange(int((pb.t_ms - first) / isi) + 1)
    # rtol 1e-10 of |V| ~ 50 mV is ~5e-9 mV; at dV/dt = 1/20 mV/ms near threshold that is ~1e-7 ms
    np.testing.assert_allclose(ref.crossings, expected, rtol=0, atol=1e-6)
    held = ref.crossings[0] + np.array([0.0, 1.0, CUBA["t_ref"] - 1e-6])
    np.testing.assert_allclose(ref.v(held), CUBA["V_reset"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("dt", [0.1, 0.01])
def test_eilab_exact_schemes_agree_with_the_reference(dt: float) -> None:
    """lif_exp under the accuracy problem's input: the precise scheme (exact integration, crossing by root finding)
    to 1e-6 ms and 1e-6 mV; the grid scheme exact before the first spike, which it places at the end of its
    step, and then spikes late on the whole, by at most a few steps."""
    pb = accuracy.PROBLEMS["lif_exp"]
    ref = accuracy.reference(pb)
    assert ref.crossings.size > 10
    precise = accuracy.run_eilab(pb, dt, {"spike_times": "precise"})
    err = accuracy.errors(pb, ref, precise["t"], precise["v"], precise["spikes"], peak=False)
    assert err["spikes_missing"] == err["spikes_extra"] == 0
    assert err["spike_max_abs_ms"] < 1e-6 and err["v_rms_mv"] < 1e-6, err
    grid = accuracy.run_eilab(pb, dt, {})
    err = accuracy.errors(pb, ref, grid["t"], grid["v"], grid["spikes"], peak=False)
    assert err["v_rms_pre_mv"] < 1e-9
    assert err["spikes_missing"] == err["spikes_extra"] == 0
    assert 0.0 < grid["spikes"][0] - ref.crossings[0] <= dt + 1e-9
    # each reset waits for its step's end, so later spikes carry the lateness of earlier ones
    assert err["spike_bias_ms"] > 0.0 and err["spike_max_abs_ms"] < 10 * dt, err
