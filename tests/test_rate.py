"""Rate networks tau dr/dt = -r + F(W r + X) against closed forms, stored in the run format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eilab.sim.config import load_config
from eilab.sim.engine import run
from eilab.sim.store import open_run


def rate_net(transfer: str, j: float, x: float, n: int = 50, t_ms: float = 200.0, **params: float) -> dict:
    return {
        "run": {"t_ms": t_ms, "dt_ms": 0.01, "progress": False},
        "populations": [{"name": "A", "n": n, "type": "E", "model": "rate", "v_init": 0.0,
                         "params": {"tau_m": 10.0, "transfer": transfer, **params}}],
        "projections": [{"pre": "A", "post": "A", "rule": "bernoulli", "p": 1.0, "weight": j, "delay_ms": 0.01}],
        "drive": [{"target": "A", "kind": "current", "amplitude": x}],
        "record": {"counts_bin_ms": 0.1, "probes": [{"population": "A", "neurons": [0, n - 1]}], "probe_every_ms": 0.1},
    }


def test_linear_all_to_all_steady_state_and_time_constant(tmp_path: Path) -> None:
    """W = J (11^T - I): uniform mode lambda = J (n - 1); r* = X / (1 - lambda), relaxation tau / (1 - lambda)."""
    n, j, x, tau = 50, 0.01, 20.0, 10.0
    lam = j * (n - 1)
    cfg, raw = load_config(raw=rate_net("linear", j, x, n, t_ms=600.0))
    summary = run(cfg, raw, tmp_path / "r", progress=False)
    r = open_run(tmp_path / "r")
    rates = r.rates()
    assert rates.shape == (6000, n)
    r_star = x / (1 - lam)
    assert rates[-1].mean() == pytest.approx(r_star, rel=1e-6)  # stored as float32
    assert summary["populations"]["A"]["final_rate_hz"] == pytest.approx(r_star, rel=1e-9)
    t = (np.arange(6000) + 1) * 0.1
    gap = r_star - rates[:, 0]
    keep = gap > 1e-6 * r_star
    slope = np.polyfit(t[keep][:300], np.log(gap[keep][:300]), 1)[0]
    assert -1 / slope == pytest.approx(tau / (1 - lam), rel=0.01)
    pr = r.probes()
    np.testing.assert_allclose(pr["ext"], x)
    np.testing.assert_allclose(pr["syn_e"][-1], j * (n - 1) * pr["v"][-1], rtol=1e-5)


def test_rectified_unit_below_threshold_stays_silent_and_sigmoid_saturates(tmp_path: Path) -> None:
    cfg, raw = load_config(raw=rate_net("rectified", 0.0, 5.0, n=3, t_ms=300.0, threshold=8.0, gain=2.0))
    run(cfg, raw, tmp_path / "a", progress=False)
    assert np.all(open_run(tmp_path / "a").rates() == 0.0)
    cfg, raw = load_config(raw=rate_net("rectified", 0.0, 10.0, n=3, t_ms=300.0, threshold=8.0, gain=2.0))
    run(cfg, raw, tmp_path / "b", progress=False)
    assert open_run(tmp_path / "b").rates()[-1] == pytest.approx(2.0 * (10.0 - 8.0), rel=1e-6)
    cfg, raw = load_config(raw=rate_net("sigmoid", 0.0, 10.0, n=3, t_ms=300.0, threshold=1.0, gain=0.5, r_max=50.0))
    run(cfg, raw, tmp_path / "c", progress=False)
    assert open_run(tmp_path / "c").rates()[-1] == pytest.approx(50.0 / (1 + np.exp(-(0.5 * 10.0 - 1.0))), rel=1e-6)


def test_rate_and_spiking_populations_cannot_mix() -> None:
    raw = rate_net("linear", 0.01, 1.0)
    raw["populations"].append({"name": "S", "n": 2, "type": "I", "model": "lif_delta"})
    with pytest.raises(Exception, match="cannot be mixed"):
        load_config(raw=raw)
