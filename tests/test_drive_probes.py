"""Drive (currents from formulas and files, input spikes, Poisson) and probes against closed forms."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, ROOT
from eilab.sim.config import load_config
from eilab.sim.engine import run
from eilab.sim.reader import open_run

TAU, C, DT = 20.0, 250.0, 0.1


def one_neuron(drive: list[dict], t_ms: float = 60.0) -> dict:
    return {
        "run": {"t_ms": t_ms, "dt_ms": DT, "progress": False},
        "populations": [{"name": "N", "n": 2, "type": "E", "model": "lif_delta", "v_init": 0.0,
                         "params": {"tau_m": TAU, "C_m": C, "E_L": 0.0, "V_th": 1e9, "V_reset": 0.0}}],
        "drive": drive,
        "record": {"probes": [{"population": "N", "neurons": [0]}]},
    }


def v_trace(tmp_path: Path, raw: dict) -> tuple[np.ndarray, dict]:
    cfg, raw = load_config(raw=raw)
    run(cfg, raw, tmp_path / "r", progress=False)
    pr = open_run(tmp_path / "r").probes()
    return pr["v"][:, 0].astype(float), pr


def exact_step_response(current: np.ndarray) -> np.ndarray:
    """V after each step for a current held constant over each step (exact integration)."""
    p = np.exp(-DT / TAU)
    v, out = 0.0, []
    for i in current:
        v = p * v + TAU / C * (1 - p) * i
        out.append(v)
    return np.array(out)


def test_constant_current_window(tmp_path: Path) -> None:
    v, _ = v_trace(tmp_path, one_neuron([{"target": "N", "kind": "current", "amplitude": 500.0,
                                          "start_ms": 10.0, "stop_ms": 40.0}]))
    t = np.arange(600) * DT  # step start times
    expected = exact_step_response(np.where((t >= 10.0) & (t < 40.0), 500.0, 0.0))
    np.testing.assert_allclose(v, expected, rtol=1e-5, atol=1e-6)  # probes are float32
    assert v[399] == pytest.approx(500.0 * TAU / C * (1 - np.exp(-30.0 / TAU)), rel=1e-5)


def test_formula_and_file_currents_add(tmp_path: Path) -> None:
    samples = np.array([100.0, -50.0, 300.0])
    np.save(tmp_path / "cur.npy", samples)
    v, _ = v_trace(tmp_path, one_neuron([
        {"target": "N", "kind": "current", "formula": "200 * sin(2 * pi * t / 25)"},
        {"target": "N", "kind": "current", "file": str(tmp_path / "cur.npy"), "file_dt_ms": 10.0, "start_ms": 5.0},
    ]))
    t = np.arange(600) * DT
    idx = np.floor((t - 5.0) / 10.0 + 1e-9).astype(int)
    from_file = np.where((idx >= 0) & (idx < 3), samples[np.clip(idx, 0, 2)], 0.0)
    expected = exact_step_response(200 * np.sin(2 * np.pi * t / 25) + from_file)
    np.testing.assert_allclose(v, expected, rtol=1e-4, atol=1e-5)


def test_input_spikes_are_delta_kicks(tmp_path: Path) -> None:
    v, pr = v_trace(tmp_path, one_neuron([{"target": "N", "kind": "spikes", "times_ms": [10.0, 10.0, 30.0],
                                           "weight": 0.5}]))
    s1, s2 = 100, 300
    assert v[s1 - 1] == 0.0 and v[s1] == pytest.approx(1.0)
    assert v[s2 - 1] == pytest.approx(np.exp(-(s2 - 1 - s1) * DT / TAU), rel=1e-6)
    assert pr["ext"][s1, 0] == pytest.approx(1.0 / DT)  # mV per ms in that step


def test_poisson_drive_mean_input_matches_rate(tmp_path: Path) -> None:
    """ext probe of a delta neuron: mean = K nu w (mV/ms), variance per step = K nu dt w^2 / dt^2."""
    raw = one_neuron([{"target": "N", "kind": "poisson", "rate_hz": 10.0, "indegree": 500, "weight": 0.2}],
                     t_ms=2000.0)
    _, pr = v_trace(tmp_path, raw)
    ext = pr["ext"][:, 0].astype(float)
    lam = 500 * 10.0 / 1000.0  # events per ms
    assert ext.mean() == pytest.approx(lam * 0.2, rel=0.03)
    assert ext.var() == pytest.approx(lam * DT * (0.2 / DT) ** 2, rel=0.06)


def test_poisson_drive_respects_start_and_stop(tmp_path: Path) -> None:
    raw = one_neuron([{"target": "N", "kind": "poisson", "rate_hz": 10.0, "indegree": 500, "weight": 0.2,
                       "start_ms": 20.0, "stop_ms": 40.0}])
    _, pr = v_trace(tmp_path, raw)
    ext = pr["ext"][:, 0]
    assert np.all(ext[:199] == 0) and np.all(ext[400:] == 0)  # samples of steps before 20 ms, after 40 ms
    assert ext[200:400].mean() == pytest.approx(500 * 10.0 / 1000 * 0.2, rel=0.25)


def test_brunel_probes_give_mean_inputs_of_measured_rates(tmp_path: Path) -> None:
    """Mean recurrent E input = C_E J nu_E, I input = -C_I g J nu_I (mV/ms), nu from the same run."""
    cfg, raw = load_config(CONFIGS / "brunel.toml", ["vars.order=200", "run.t_ms=400",
                                                     "record.probes=[{population='E', neurons=[0,1,2,3,4,5,6,7]}]"])
    run(cfg, raw, tmp_path / "b", progress=False)
    r = open_run(tmp_path / "b")
    s = r.attrs["summary"]["populations"]
    pr = r.probes()
    skip = 50  # first 5 ms: inputs still travelling
    nu_e, nu_i = s["E"]["rate_hz"] / 1000, s["I"]["rate_hz"] / 1000
    assert pr["syn_e"][skip:].mean() == pytest.approx(80 * 0.1 * nu_e, rel=0.08)
    assert pr["syn_i"][skip:].mean() == pytest.approx(-20 * 0.5 * nu_i, rel=0.08)


def test_second_run_loads_compiled_kernels_from_cache(tmp_path: Path) -> None:
    """Numba's on-disk cache: a fresh process finds the engine kernel compiled already."""
    code = (
        "import sys; from eilab.sim.config import load_config; from eilab.sim.engine import run;"
        "from eilab.sim import step; cfg, raw = load_config(sys.argv[1], ['run.t_ms=10']);"
        "run(cfg, raw, sys.argv[2], progress=False);"
        "print(sum(step.advance.stats.cache_hits.values()), sum(step.advance.stats.cache_misses.values()))"
    )
    outs = []
    for k in range(2):
        res = subprocess.run([sys.executable, "-c", code, str(CONFIGS / "ring600.toml"), str(tmp_path / f"r{k}")],
                             capture_output=True, text=True, cwd=ROOT, check=True)
        outs.append(res.stdout.split())
    hits, misses = map(int, outs[1])
    assert hits >= 1 and misses == 0, outs
