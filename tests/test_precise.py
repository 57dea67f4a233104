"""Precise spike times (spike_times = "precise"): spike trains against closed forms at dt = 0.1 ms, and the
rank invariance and resume every run keeps."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from scipy.optimize import brentq

from conftest import assert_same_run, eilab, mpi_eilab, small_network
from eilab.sim.config import load_config
from eilab.sim.engine import run
from eilab.sim.reader import open_run

TAU, C_M, V_TH, V_RESET, T_REF = 10.0, 250.0, 20.0, 10.0, 2.0


def spike_times(tmp_path: Path, model: str, params: dict, mode: str, t_ms: float = 1000.0, **pop: object) -> np.ndarray:
    lif = {"tau_m": TAU, "C_m": C_M, "E_L": 0.0, "V_th": V_TH, "V_reset": V_RESET, "t_ref": T_REF, **params}
    raw = {"run": {"t_ms": t_ms, "dt_ms": 0.1, "seed": 1, "progress": False},
           "populations": [{"name": "N", "n": 1, "type": "E", "model": model, "params": lif, "v_init": 0.0,
                            "spike_times": mode, **pop}],
           "record": {"counts_bin_ms": 0.0}}
    cfg, raw = load_config(raw=raw)
    run(cfg, raw, tmp_path / mode, progress=False)
    return open_run(tmp_path / mode).spikes()[0]


@pytest.mark.parametrize("model", ["lif_delta", "lif_exp"])
def test_constant_current_spike_train_matches_the_closed_form(tmp_path: Path, model: str) -> None:
    """V relaxes to v_inf = R I: first spike at tau ln(v_inf / (v_inf - V_th)), then every
    t_ref + tau ln((v_inf - V_reset) / (v_inf - V_th)); rate = 1000 / ISI Hz."""
    i_e = 625.0  # v_inf = 25 mV
    vinf = TAU / C_M * i_e
    first = TAU * math.log(vinf / (vinf - V_TH))
    isi = T_REF + TAU * math.log((vinf - V_RESET) / (vinf - V_TH))
    times = spike_times(tmp_path, model, {"I_e": i_e}, "precise")
    expected = first + isi * np.arange(times.size)
    assert times.size == 1 + int((1000.0 - first) // isi)
    np.testing.assert_allclose(times, expected, rtol=0, atol=1e-9)
    isis = np.diff(times)
    assert abs(1000.0 / isis.mean() - 1000.0 / isi) < 1e-6 * (1000.0 / isi)  # the rate to 1e-6
    grid = spike_times(tmp_path, model, {"I_e": i_e}, "grid")
    assert np.abs(np.diff(grid) - isi).max() > 1e-3  # on the grid, ISIs are whole steps


def test_lif_exp_decaying_current_spike_times_match_roots_of_the_exact_solution(tmp_path: Path) -> None:
    """A current I_e plus a synaptic current S0 exp(-t / tau_s) from t = 0 (syn_init_ex): V(t) is closed-form
    between spikes; each spike is the root of V(t) = V_th after the last reset, found by brentq."""
    tau_s, s0, i_e = 2.0, 3000.0, 560.0  # v_inf = 22.4 mV; the synaptic current makes the first spike early
    times = spike_times(tmp_path, "lif_exp", {"I_e": i_e, "tau_syn_ex": tau_s}, "precise", t_ms=100.0,
                        syn_init_ex=s0)

    def v(t: float, t0: float, v0: float) -> float:
        u = t - t0
        s = s0 * math.exp(-t0 / tau_s)
        return (v0 * math.exp(-u / TAU) + TAU / C_M * i_e * -math.expm1(-u / TAU)
                + s * TAU * tau_s / (C_M * (TAU - tau_s)) * (math.exp(-u / TAU) - math.exp(-u / tau_s)))

    expected, t0, v0 = [], 0.0, 0.0
    while True:
        grid = np.arange(t0, 100.0, 0.01)
        above = np.nonzero([v(t, t0, v0) >= V_TH for t in grid])[0]
        if above.size == 0:
            break
        k = above[0]
        expected.append(brentq(lambda t, t0=t0, v0=v0: v(t, t0, v0) - V_TH, grid[k - 1], grid[k], xtol=1e-14))
        t0, v0 = expected[-1] + T_REF, V_RESET
    assert len(expected) > 5 and expected[0] < 3.0
    np.testing.assert_allclose(times, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("i_e", [700.0, 1000.0])
def test_eif_precise_spike_times_follow_the_ode(tmp_path: Path, i_e: float) -> None:
    """eif at dt = 0.1 ms: the upswing integrated with V as the variable places each crossing of V_peak inside
    the step; against solve_ivp (rtol 1e-10) the mean ISI is within 2e-4 ms (the grid: a step or more off)."""
    from test_models import EIF, eif_reference

    ref = eif_reference(i_e, 300.0)
    times = {}
    for mode in ("grid", "precise"):
        cfg, raw = load_config(raw={
            "run": {"t_ms": 300.0, "dt_ms": 0.1, "seed": 1, "progress": False},
            "populations": [{"name": "N", "n": 1, "type": "E", "model": "eif", "params": {**EIF, "I_e": i_e},
                             "spike_times": mode}], "record": {"counts_bin_ms": 0.0}})
        run(cfg, raw, tmp_path / mode, progress=False)
        times[mode] = open_run(tmp_path / mode).spikes()[0]
    isi_ref = np.diff(ref).mean()
    assert times["precise"].size == ref.size >= 10
    assert abs(np.diff(times["precise"]).mean() - isi_ref) < 2e-4
    assert np.abs(times["precise"] - ref).max() < 5e-3
    assert abs(np.diff(times["grid"]).mean() - isi_ref) > 5e-2


def precise_network(**run_: object) -> dict:
    cfg = small_network(**run_)
    for pop in cfg["populations"]:
        pop["spike_times"] = "precise"
        pop["params"]["I_e"] = 300.0  # v_inf = 24 mV > V_th: crossings between input spikes
    return cfg


def test_precise_runs_are_rank_invariant_and_resume_bitwise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.toml"
    path.write_text(tomli_w.dumps(precise_network(t_ms=200.0, checkpoint_every_ms=50.0)))
    one, two, killed = tmp_path / "one", tmp_path / "two", tmp_path / "killed"
    assert eilab("run", str(path), "--out", str(one), "--quiet").returncode == 0
    times = open_run(one).spikes()[0]
    assert times.size > 100 and np.any(np.abs(times / 0.1 - np.rint(times / 0.1)) > 1e-6)  # off the grid
    res = mpi_eilab(2, "run", str(path), "--out", str(two), "--quiet")
    assert res.returncode == 0, res.stderr
    assert_same_run(one, two)
    monkeypatch.setenv("EILAB_KILL_AT", "checkpoint-done:3")
    assert eilab("run", str(path), "--out", str(killed), "--quiet").returncode != 0
    monkeypatch.delenv("EILAB_KILL_AT")
    res = mpi_eilab(2, "resume", str(killed), "--quiet")
    assert res.returncode == 0, res.stderr
    assert_same_run(one, killed)


@pytest.mark.parametrize(("pop", "field"), [
    ({"model": "lif_cond_exp", "params": {}}, "spike_times"),
    ({"params": {"t_ref": 0.05}}, "t_ref"),
])
def test_precise_spike_times_refuse_what_they_cannot_do(tmp_path: Path, pop: dict, field: str) -> None:
    cfg = precise_network()
    cfg["populations"][0].update(pop)
    cfg["populations"][0].pop("v_init", None)
    path = tmp_path / "bad.toml"
    path.write_text(tomli_w.dumps(cfg))
    res = eilab("run", str(path), "--out", str(tmp_path / "run"))
    assert res.returncode == 2 and field in res.stderr and "Traceback" not in res.stderr
