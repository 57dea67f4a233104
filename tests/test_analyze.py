"""`eilab analyze` as a user runs it, and the Siegert mean-field rates against closed forms and simulation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import tomli_w

from conftest import CONFIGS, eilab, run_config
from eilab.analysis.siegert import network_rates, siegert_cv, siegert_rate
from eilab.sim.config import load_config
from eilab.sim.reader import open_run


def test_siegert_tends_to_the_deterministic_rate() -> None:
    """sigma -> 0 with mu above threshold: 1 / (t_ref + tau ln((mu - V_r) / (mu - theta)))."""
    tau, t_ref, theta, vr, mu = 20.0, 2.0, 20.0, 10.0, 25.0
    exact = 1000.0 / (t_ref + tau * math.log((mu - vr) / (mu - theta)))
    assert siegert_rate(mu, 0.05, tau, t_ref, theta, vr) == pytest.approx(exact, rel=2e-3)
    assert siegert_rate(10.0, 0.5, tau, t_ref, theta, vr) < 1e-6  # far below threshold, no noise: silent


@pytest.fixture(scope="module")
def brunel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_config(tmp_path_factory, "brunel", "--set", "vars.order=1000")


def test_brunel_rates_match_the_siegert_prediction(brunel: Path) -> None:
    run = open_run(brunel)
    predicted = network_rates(run.config)
    for name, p in run.attrs["summary"]["populations"].items():
        assert p["rate_hz"] == pytest.approx(predicted[name], rel=0.15)
    cfg, _ = load_config(CONFIGS / "brunel.toml")  # the published size too (prediction only)
    assert network_rates(cfg)["E"] == pytest.approx(38.0, rel=0.05)  # NEST 3.10 measures 37.96 Hz


def test_analyze_writes_summary_and_figures(brunel: Path) -> None:
    res = eilab("analyze", str(brunel))
    assert res.returncode == 0, res.stderr
    assert "CV ISI" in res.stdout and "Siegert" in res.stdout and "spectrum" in res.stdout
    summary = json.loads((brunel / "summary.json").read_text())
    for name in ("raster", "rates", "inputs", "spectrum"):
        png = Path(summary["figures"][name])
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p["name"] for p in summary["populations"]} == {"E", "I"}
    assert summary["spectrum"]["method"] == "arpack"
    assert summary["balance"][0]["population"] == "E"


def test_analyze_ring600_and_a_rate_network(ring600: Path, tmp_path: Path) -> None:
    out = ring600
    res = eilab("analyze", str(out))
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mfe"]["stats"]["n_events"] > 0 and summary["spectrum"]["method"] == "dense"
    rate = {"run": {"t_ms": 200.0, "dt_ms": 0.1}, "record": {"counts_bin_ms": 1.0,
            "probes": [{"population": "E", "neurons": [0]}, {"population": "I", "neurons": [0]}]},
            "populations": [{"name": "E", "n": 40, "type": "E", "model": "rate", "params": {"transfer": "rectified"}},
                            {"name": "I", "n": 10, "type": "I", "model": "rate", "params": {"transfer": "rectified"}}],
            "projections": [{"pre": a, "post": b, "rule": "fixed_indegree", "k": 4, "weight": w, "delay_ms": 0.1}
                            for a, b, w in (("E", "E", 0.1), ("E", "I", 0.1), ("I", "E", 0.3), ("I", "I", 0.3))],
            "drive": [{"target": "E", "kind": "current", "amplitude": 10.0},
                      {"target": "I", "kind": "current", "amplitude": 8.0}]}
    (tmp_path / "rate.toml").write_text(tomli_w.dumps(rate))
    assert eilab("run", str(tmp_path / "rate.toml"), "--out", str(tmp_path / "rate"), "--quiet").returncode == 0
    res = eilab("analyze", str(tmp_path / "rate"))
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "rate" / "summary.json").read_text())
    assert "linear_modes" in summary["spectrum"] and "mfe" not in summary
    bad = eilab("analyze", str(tmp_path / "missing"))
    assert bad.returncode == 2 and "not an eilab run directory" in bad.stderr


def test_analyze_reports_siegert_states_with_cv_and_multapses(brunel: Path) -> None:
    """summary.json's Siegert state against Brunel's (2000) mu and sigma computed here from the config's numbers,
    its CV against Brunel's CV formula at those; the headline shows the CV, the stability and the multapse setting."""
    res = eilab("analyze", str(brunel))
    assert res.returncode == 0, res.stderr
    summary = json.loads((brunel / "summary.json").read_text())
    cfg = open_run(brunel).config
    J, g, C_E, C_I, tau, theta, eta = (cfg.vars[k] for k in ("J", "g", "C_E", "C_I", "tau_m", "theta", "eta"))
    nu = summary["siegert_hz"]["E"] / 1000.0  # E and I alike in Brunel's model A
    nu_ext = eta * theta / (J * C_E * tau)
    mu = tau * J * (C_E * nu - g * C_I * nu + C_E * nu_ext)
    sigma = math.sqrt(tau * J**2 * (C_E * nu + g**2 * C_I * nu + C_E * nu_ext))
    assert siegert_rate(mu, sigma, tau, 2.0, theta, 10.0) == pytest.approx(1000.0 * nu, rel=1e-9)
    assert summary["siegert_cv"]["E"] == pytest.approx(siegert_cv(mu, sigma, tau, 2.0, theta, 10.0), rel=1e-9)
    states = summary["siegert"]["states"]
    assert summary["siegert"]["complete"] and any(s["stable"] for s in states)
    assert f"(CV {summary['siegert_cv']['E']:.4g})" in res.stdout and "stable" in res.stdout
    assert "with multapses: entries w Binomial(k, 1/n)" in res.stdout
    assert summary["spectrum"]["multapses"] == {"EE": True, "EI": True, "IE": True, "II": True}
