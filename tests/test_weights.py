"""Per-synapse weight and delay distributions and the zero-row-sum constraint (sim/weights.py): the draws
against the closed-form moments, delays exact on the grid, rank invariance, and Rajan & Abbott's (2006) bulk
radius through a config and `eilab analyze`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from conftest import assert_same_run, eilab, mpi_eilab, small_network
from eilab.sim.config import Config, Projection
from eilab.sim.network import build_connectivity
from eilab.sim.rng import stream_key
from eilab.sim.weights import NEGATIVE, WEIGHT_DISTS, draw_weight, weight_moments

DRAWS = 200_000


def sample(pr: Projection) -> np.ndarray:
    key, c, out = stream_key(11, 99, 7), 0, np.empty(DRAWS)
    for n in range(DRAWS):
        out[n], c = draw_weight(WEIGHT_DISTS[pr.weight_dist], pr.weight, pr.weight_sd, NEGATIVE[pr.negative], key, c)
    return out


@pytest.mark.parametrize(("dist", "negative"), [
    ("normal", "redraw"), ("normal", "clip"), ("normal", "allow"), ("lognormal", "redraw"),
    ("uniform", "redraw"), ("uniform", "clip"), ("uniform", "allow"),
])
def test_drawn_weights_have_the_closed_form_moments(dist: str, negative: str) -> None:
    pr = Projection(pre="E", post="E", rule="bernoulli", p=0.1, weight=0.5, weight_sd=0.6, weight_dist=dist,
                    negative=negative)
    w = sample(pr)
    mean, var = weight_moments(pr)
    if negative != "allow":
        assert w.min() >= 0.0  # Dale's sign kept
    if negative == "clip" and dist != "lognormal":
        p0 = 0.5 * math.erfc(0.5 / 0.6 / math.sqrt(2)) if dist == "normal" else (math.sqrt(3) * 0.6 - 0.5) / (
            2 * math.sqrt(3) * 0.6)
        assert abs(np.mean(w == 0.0) - p0) < 5 * math.sqrt(p0 * (1 - p0) / DRAWS)  # the point mass at 0
    assert abs(w.mean() - mean) < 5 * math.sqrt(var / DRAWS)
    kurt = np.mean((w - w.mean()) ** 4) / var**2
    assert abs(w.var() - var) < 5 * var * math.sqrt((kurt - 1) / DRAWS)


def write(tmp_path: Path, cfg: dict, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(tomli_w.dumps(cfg))
    return path


def delay_network(dist: dict) -> dict:
    """One neuron fires once (an input spike of 100 mV at 5 ms); 200 targets, each made to fire by its synapse."""
    lif = {"tau_m": 10.0, "E_L": 0.0, "V_th": 20.0, "V_reset": 0.0, "t_ref": 100.0}
    return {
        "run": {"t_ms": 20.0, "dt_ms": 0.1, "seed": 5, "progress": False},
        "populations": [{"name": "P", "n": 1, "type": "E", "params": lif},
                        {"name": "Q", "n": 200, "type": "E", "params": lif}],
        "projections": [{"pre": "P", "post": "Q", "rule": "bernoulli", "p": 1.0, "weight": 100.0, **dist}],
        "drive": [{"target": "P", "kind": "spikes", "times_ms": [5.0], "weight": 100.0}],
        "record": {"counts_bin_ms": 0.0},
    }


@pytest.mark.parametrize("dist", [
    {"delay_dist": "uniform", "delay_min_ms": 0.5, "delay_max_ms": 3.0},
    {"delay_dist": "normal", "delay_ms": 1.6, "delay_sd_ms": 0.5, "delay_max_ms": 2.5},
])
def test_each_spike_arrives_after_its_own_delay(tmp_path: Path, dist: dict) -> None:
    from eilab.sim.reader import open_run

    cfg = delay_network(dist)
    out = tmp_path / "run"
    res = eilab("run", str(write(tmp_path, cfg)), "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    times, gids = open_run(out).spikes()
    steps = np.rint(times / 0.1).astype(np.int64)
    pre_step = steps[gids == 0]
    assert pre_step.size == 1
    conn = build_connectivity(Config(**cfg), 0, 201)
    delays = np.empty(201, np.int64)
    delays[conn.synapses(0)[1]] = conn.delays(0)
    lo = 5 if dist["delay_dist"] == "uniform" else 1
    hi = 30 if dist["delay_dist"] == "uniform" else 25
    assert delays[1:].min() >= lo and delays[1:].max() <= hi and np.unique(delays[1:]).size > 5
    post = gids != 0
    np.testing.assert_array_equal(steps[post] - pre_step[0], delays[gids[post]])
    assert post.sum() == 200
    if dist["delay_dist"] == "uniform":  # whole steps 5..30, each with probability 1/26
        assert abs(delays[1:].mean() - 17.5) < 5 * math.sqrt((26**2 - 1) / 12 / 200)


def distributed(**run: object) -> dict:
    """small_network with drawn weights, drawn delays and a zero-row-sum population."""
    cfg = small_network(**run)
    cfg["projections"][0].update(delay_dist="uniform", delay_min_ms=0.5, delay_max_ms=2.5)
    cfg["projections"][2].update(weight_dist="normal", weight_sd=0.5, negative="clip")
    cfg["projections"][3].update(weight_dist="lognormal", weight_sd=0.3, delay_dist="normal", delay_sd_ms=0.4,
                                 delay_max_ms=3.0)
    cfg["populations"][1]["zero_row_sum"] = True
    return cfg


def test_zero_row_sum_rows_sum_to_zero() -> None:
    from eilab.analysis.spectra import weight_matrix

    cfg = Config(**distributed())
    W = weight_matrix(cfg).toarray()
    rows = W[80:]  # the I population
    assert np.abs(rows.sum(axis=1)).max() < 1e-5 * np.abs(rows).sum(axis=1).max()
    assert abs(W[:80].sum()) > 1.0  # E rows keep their mean


def test_distributions_give_the_same_run_on_any_rank_count(tmp_path: Path) -> None:
    path = write(tmp_path, distributed(t_ms=150.0))
    one, two = tmp_path / "one", tmp_path / "two"
    assert eilab("run", str(path), "--out", str(one), "--quiet").returncode == 0
    res = mpi_eilab(2, "run", str(path), "--out", str(two), "--quiet")
    assert res.returncode == 0, res.stderr
    assert_same_run(one, two)


def test_rajan_abbott_bulk_radius_through_a_config_and_analyze(tmp_path: Path) -> None:
    """Columns E: (mu_E + sigma_E xi) / sqrt(N), I: (mu_I + sigma_I xi) / sqrt(N), rows summing to zero: every
    eigenvalue lies in the disk of radius sqrt(f sigma_E^2 + (1 - f) sigma_I^2), and the mean's outlier
    (sqrt(N) (f mu_E + (1 - f) mu_I) = 12.6 here) is gone (Rajan & Abbott 2006)."""
    from eilab.analysis.spectra import rajan_abbott

    rate = {"tau_m": 10.0, "transfer": "linear", "gain": 0.01}
    proj = {"rule": "bernoulli", "p": 1.0, "autapses": True, "scale": "sqrt_n", "weight_dist": "normal",
            "negative": "allow"}
    cfg = {
        "run": {"t_ms": 20.0, "dt_ms": 0.1, "seed": 2, "progress": False},
        "populations": [{"name": "E", "n": 800, "type": "E", "model": "rate", "params": rate, "zero_row_sum": True},
                        {"name": "I", "n": 200, "type": "I", "model": "rate", "params": rate, "zero_row_sum": True}],
        "projections": [
            {"pre": "E", "post": "E", "weight": 1.0, "weight_sd": 1.0, **proj},
            {"pre": "E", "post": "I", "weight": 1.0, "weight_sd": 1.0, **proj},
            {"pre": "I", "post": "E", "weight": 2.0, "weight_sd": 2.0, **proj},
            {"pre": "I", "post": "I", "weight": 2.0, "weight_sd": 2.0, **proj},
        ],
        "record": {"counts_bin_ms": 1.0},
    }
    out = tmp_path / "ra"
    assert eilab("run", str(write(tmp_path, cfg)), "--out", str(out), "--quiet").returncode == 0
    res = eilab("analyze", str(out), "--skip-ms", "2")
    assert res.returncode == 0, res.stderr
    spectrum = json.loads((out / "summary.json").read_text())["spectrum"]
    expected = rajan_abbott(0.8, 1.0, -2.0, 1.0, 2.0, 1000, zero_row_sum=True)
    assert expected.outlier is None
    assert spectrum["predicted_outliers"] == []
    assert spectrum["predicted_radius"] == pytest.approx(expected.radius, rel=1e-3)  # weight variance in V
    assert abs(complex(*spectrum["largest"])) == pytest.approx(expected.radius, rel=0.05)  # all in the disk


@pytest.mark.parametrize(("change", "field"), [
    ({"weight_dist": "normal"}, "weight_sd"),
    ({"delay_dist": "uniform"}, "delay_max_ms"),
    ({"delay_dist": "uniform", "delay_min_ms": 0.05, "delay_max_ms": 1.0}, "delay_min_ms"),
    ({"delay_dist": "uniform", "delay_min_ms": 0.55, "delay_max_ms": 1.0}, "delay_min_ms"),
])
def test_bad_distributions_name_the_field(tmp_path: Path, change: dict, field: str) -> None:
    cfg = small_network()
    cfg["projections"][0].update(change)
    out = tmp_path / "run"
    res = eilab("run", str(write(tmp_path, cfg)), "--out", str(out))
    assert res.returncode == 2 and field in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()


def test_zero_row_sum_is_refused_for_conductances(tmp_path: Path) -> None:
    cfg = small_network()
    for pop in cfg["populations"]:
        pop["model"] = "lif_cond_exp"
        pop["params"] = {}
        pop.pop("v_init")
    cfg["populations"][0]["zero_row_sum"] = True
    res = eilab("run", str(write(tmp_path, cfg)), "--out", str(tmp_path / "run"))
    assert res.returncode == 2 and "zero_row_sum" in res.stderr
