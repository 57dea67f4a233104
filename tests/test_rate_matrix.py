"""Rate networks with W from a .npy file (`[matrix]`) and analysis that honours a projection's `sign`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import tomli_w

from conftest import eilab, small_network
from eilab.analysis.balance import mean_field
from eilab.analysis.report import analyze
from eilab.analysis.spectra import weight_matrix
from eilab.sim.config import ConfigError, load_config
from eilab.sim.engine import run
from eilab.sim.rate import RateNetwork, dense_weights, signed_connectivity
from eilab.sim.reader import open_run

TAU = {"A": 10.0, "B": 20.0}  # ms
GAIN = 2.0
SCALE = 0.5
X = {"A": 3.0, "B": 1.0}  # constant input, weight units x Hz
R0 = {"A": 1.0, "B": 0.0}  # Hz
W_FILE = np.array([[0.2, -3.0], [0.0, -0.6]])  # non-normal: a strong feedforward entry B -> A
W_PROJ = 0.4  # the A -> B projection, added to the file's W


def two_units(path: str, t_ms: float = 50.0) -> dict:
    """Two linear units A (E) and B (I) with W = SCALE x file + the projection A -> B."""
    return {
        "run": {"t_ms": t_ms, "dt_ms": 0.1, "progress": False},
        "populations": [{"name": k, "n": 1, "type": t, "model": "rate", "v_init": R0[k],
                         "params": {"tau_m": TAU[k], "transfer": "linear", "gain": GAIN, "I_e": X[k]}}
                        for k, t in (("A", "E"), ("B", "I"))],
        "projections": [{"pre": "A", "post": "B", "rule": "bernoulli", "p": 1.0, "weight": W_PROJ}],
        "matrix": {"file": path, "scale": SCALE},
        "record": {"counts_bin_ms": 1.0},
    }


def closed_form(t_ms: np.ndarray) -> np.ndarray:
    """r(t) = r* + e^{A t} (r0 - r*), A = (G W - 1) / tau, r* = -A^-1 G X / tau; rows: times."""
    w = SCALE * W_FILE + np.array([[0.0, 0.0], [W_PROJ, 0.0]])
    tau = np.array([TAU["A"], TAU["B"]])[:, None]
    a = (GAIN * w - np.eye(2)) / tau
    b = GAIN * np.array([X["A"], X["B"]]) / tau[:, 0]
    r_star = -np.linalg.solve(a, b)
    r0 = np.array([R0["A"], R0["B"]])
    return np.array([r_star + scipy.linalg.expm(a * t) @ (r0 - r_star) for t in t_ms])


def test_matrix_from_file_gives_the_closed_form_transient(tmp_path: Path) -> None:
    np.save(tmp_path / "W.npy", W_FILE)
    cfg, raw = load_config(raw=two_units(str(tmp_path / "W.npy")))
    expected = closed_form((np.arange(500) + 1) * 0.1)
    assert np.max(expected[:, 0]) > 2 * expected[-1, 0]  # the non-normal transient overshoots
    net = RateNetwork(cfg)
    assert net.exact
    r, x = np.array([R0["A"], R0["B"]]), np.array([X["A"], X["B"]])
    got = []
    for _ in range(500):
        r = net.step(r, x)
        got.append(r)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)

    summary = run(cfg, raw, tmp_path / "run", progress=False)
    assert [summary.populations[k]["final_rate_hz"] for k in "AB"] == pytest.approx(expected[-1], abs=1e-9)
    stored = open_run(tmp_path / "run")
    np.testing.assert_allclose(stored.rates(), expected[9::10], rtol=1e-6, atol=1e-6)  # float32, end of each bin
    w = stored.root["connectivity/W"]
    np.testing.assert_array_equal(w[:], W_FILE)
    assert w.attrs["file"] == str(tmp_path / "W.npy")
    assert w.attrs["sha256"] == hashlib.sha256((tmp_path / "W.npy").read_bytes()).hexdigest()


def test_run_is_analysed_without_the_file(tmp_path: Path) -> None:
    np.save(tmp_path / "W.npy", W_FILE)
    (tmp_path / "net.toml").write_text(tomli_w.dumps(two_units("W.npy")))
    made = eilab("run", "net.toml", "--out", "r", "--quiet", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    (tmp_path / "W.npy").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = eilab("analyze", str(tmp_path / "r"), "--no-spectrum", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert [p["name"] for p in summary["populations"]] == ["A", "B"]
    # the spectrum's W comes from the run's own copy of the matrix: W = [[0.1, -1.5], [0.4, -0.3]] has the
    # complex pair -0.1 +- i sqrt(0.56), modulus sqrt(det W) = sqrt(0.57)
    stored = open_run(tmp_path / "r")
    w = weight_matrix(stored.config, matrix=stored.read("connectivity/W")).toarray()
    np.testing.assert_array_equal(w, SCALE * W_FILE + np.array([[0.0, 0.0], [W_PROJ, 0.0]]))
    largest = analyze(tmp_path / "r")["spectrum"]["largest"]
    assert abs(largest) == pytest.approx(np.sqrt(0.57), rel=1e-12)
    assert largest.real == pytest.approx(-0.1, rel=1e-12)


@pytest.mark.parametrize(("content", "words"), [
    (None, "no such file"),
    (np.zeros((3, 3)), "shape (3, 3)"),
    (np.array([[0.0, 1.0], [np.inf, 0.0]]), "1 non-finite"),
])
def test_bad_matrix_file_exits_2_naming_the_field(tmp_path: Path, content: np.ndarray | None, words: str) -> None:
    if content is not None:
        np.save(tmp_path / "W.npy", content)
    (tmp_path / "net.toml").write_text(tomli_w.dumps(two_units("W.npy")))
    done = eilab("run", "net.toml", "--out", "r", "--quiet", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "matrix.file 'W.npy'" in done.stderr and words in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()


def test_matrix_file_not_an_array_or_not_2d_or_in_a_spiking_network(tmp_path: Path) -> None:
    bad = tmp_path / "W.npy"
    bad.write_text("secret-token 1 2 3\n")
    with pytest.raises(ConfigError, match=r"matrix\.file .*not a \.npy array") as e:
        load_config(raw=two_units(str(bad)))
    assert "secret-token" not in str(e.value)
    np.save(bad, np.zeros(4))
    with pytest.raises(ConfigError, match=r"matrix\.file .*1-D array; W must be 2-D"):
        load_config(raw=two_units(str(bad)))
    np.save(bad, np.zeros((100, 100)))
    with pytest.raises(ConfigError, match="matrix: a connectivity matrix from a file is for rate networks"):
        load_config(raw={**small_network(), "matrix": {"file": str(bad)}})


def test_stored_config_does_not_look_up_the_file(tmp_path: Path) -> None:
    np.save(tmp_path / "W.npy", W_FILE)
    cfg, raw = load_config(raw=two_units(str(tmp_path / "W.npy"), t_ms=1.0))
    run(cfg, raw, tmp_path / "run", progress=False)
    (tmp_path / "W.npy").unlink()
    assert open_run(tmp_path / "run").config.matrix.file == str(tmp_path / "W.npy")
    with pytest.raises(ConfigError, match="no such file"):
        load_config(raw=two_units(str(tmp_path / "W.npy")))


def signed_rate_net(sign: str) -> dict:
    return {
        "run": {"t_ms": 10.0, "dt_ms": 0.1, "progress": False},
        "populations": [{"name": "E", "n": 30, "type": "E", "model": "rate"},
                        {"name": "I", "n": 10, "type": "I", "model": "rate"}],
        "projections": [{"pre": "E", "post": "E", "rule": "fixed_indegree", "k": 5, "weight": 0.1},
                        {"pre": "E", "post": "I", "rule": "bernoulli", "p": 0.3, "weight": 0.2},
                        {"pre": "I", "post": "E", "rule": "fixed_indegree", "k": 4, "weight": 0.5, "sign": sign},
                        {"pre": "I", "post": "I", "rule": "bernoulli", "p": 0.5, "weight": 0.3}],
    }


@pytest.mark.parametrize("sign", ["+", "auto"])
def test_analysis_takes_the_sign_of_the_projection(sign: str) -> None:
    cfg, _ = load_config(raw=signed_rate_net(sign))
    mf = mean_field(cfg)
    expected = (1.0 if sign == "+" else -1.0) * 4 * 0.5 * 1e-3  # k J per ms
    assert mf.W[0, 1] == pytest.approx(expected, rel=1e-12)
    assert mf.W[1, 1] == pytest.approx(-0.5 * 9 * 0.3 * 1e-3, rel=1e-12)  # I -> I keeps Dale's sign (no autapses)
    simulated = dense_weights(signed_connectivity(cfg), cfg.n_total)
    np.testing.assert_array_equal(weight_matrix(cfg).toarray(), simulated)
    assert np.all(simulated[:30, 30:] >= 0) if sign == "+" else np.all(simulated[:30, 30:] <= 0)
    assert simulated[:30, 30:].sum() == pytest.approx((1 if sign == "+" else -1) * 30 * 4 * 0.5, rel=1e-12)
