"""Surrogate networks (issue 19, points 5 and 6): the Welch band power against scipy and a closed form, the
fast surrogate step against SurrogateNet.step, gradients reaching the connectivity, loss falling under Adam, the
optimised network written as an engine config that runs, `eilab train` end to end and its bad configs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import signal

from eilab.ml.surrogate import SurrogateNet
from eilab.ml.surrogate_data import SurrogateModel
from eilab.ml.surrogate_net import (
    NetObjective,
    NetOptimise,
    Stepper,
    SurrogateNetwork,
    band_power,
    load_surrogate,
    loss_of,
    network_spec,
    optimise,
    population_rate,
    spectrum,
    spike_of,
    summary,
    toml_text,
    welch,
    with_weights,
)
from eilab.sim.config import ConfigError, load_config
from eilab.sim.engine import run
from eilab.sim.reader import open_run
from tests.conftest import CONFIGS, eilab

torch.set_num_threads(1)
TINY = SurrogateModel(channels=6, kernel=3, dilations=[1, 2, 4], hidden=12)


def tiny_surrogate(folder: Path, threshold: float = 0.5, cell: str = "hh",
                   x_scale: tuple[float, ...] = (500.0, 50.0)) -> Path:
    """An untrained tiny surrogate (seeded weights) of `cell`, one input per x_scale entry (its scale per bin), in
    the layout `eilab train` writes (meta.json, model.pt)."""
    torch.manual_seed(0)
    net = SurrogateNet(len(x_scale), TINY)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "model.pt")
    meta = {"format": "eilab-surrogate/1", "cell": cell, "n_in": len(x_scale), "bin_ms": 0.5,
            "model": TINY.model_dump(),
            "scaling": {"x_scale": list(x_scale), "v_clip": -50.0, "v_mean": -65.0, "v_sd": 4.0},
            "thresholds": {"surrogate": threshold}}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def tiny_network(t_ms: float = 100.0) -> dict:
    """12 hh cells: E -> I -> E with delays, a Poisson drive and a kick."""
    pops = [{"name": "E", "n": 8, "type": "E", "model": "hh"}, {"name": "I", "n": 4, "type": "I", "model": "hh"}]
    projections = [{"name": "EI", "pre": "E", "post": "I", "rule": "fixed_indegree", "k": 4, "weight": 800.0,
                    "delay_ms": 1.0},
                   {"name": "IE", "pre": "I", "post": "E", "rule": "fixed_indegree", "k": 2, "weight": 200.0,
                    "delay_ms": 10.0}]
    drive = [{"target": "E", "kind": "poisson", "rate_hz": 20.0, "indegree": 10, "weight": 1000.0},
             {"target": "E", "kind": "spikes", "times_ms": [5.0, 30.0], "weight": 8000.0}]
    return {"run": {"name": "tiny", "t_ms": t_ms, "dt_ms": 0.1, "seed": 1, "progress": False},
            "populations": pops, "projections": projections, "drive": drive,
            "record": {"spikes": True, "counts_bin_ms": 1.0}}


def tiny_model(folder: Path, spikes: str = "threshold", dampening: float = 1.0) -> SurrogateNetwork:
    cfg, _ = load_config(raw=tiny_network())
    sur = load_surrogate(tiny_surrogate(folder))
    return SurrogateNetwork(network_spec(cfg, "tiny", 0.5, 0), {"E": sur, "I": sur}, ["EI", "IE"], spikes, dampening)


# ---------------------------------------------------------------- spectra
def test_welch_and_band_power_match_scipy_on_a_sine() -> None:
    fs, f0, amp = 1000.0, 20.0, 3.0
    t = np.arange(4000) / fs
    x = amp * np.sin(2 * np.pi * f0 * t) + 0.5
    f, psd = welch(torch.from_numpy(x), fs, 500)
    f_ref, psd_ref = signal.welch(x, fs=fs, nperseg=500)
    np.testing.assert_allclose(f.numpy(), f_ref)
    np.testing.assert_allclose(psd.numpy(), psd_ref, rtol=1e-10, atol=1e-12)
    assert f_ref[np.argmax(psd_ref)] == f0
    # a sine of amplitude A carries A^2 / 2; the Hann window spreads it over +-2 bins (2 Hz each)
    assert float(band_power(f, psd, (f0 - 4.0, f0 + 4.0))) == pytest.approx(amp**2 / 2, rel=1e-3)
    assert float(band_power(f, psd, (40.0, 100.0))) < 1e-6 * amp**2


def test_fundamental_of_a_volley_train() -> None:
    """Sharp volleys every 50 ms: the harmonics of 20 Hz are as high as it is (the raw peak may be any of them),
    the smoothed peak is the fundamental."""
    rate = np.zeros(4000)
    rate[::50] = 1000.0  # 1 ms bins
    f, psd = signal.welch(rate - rate.mean(), fs=1000.0, nperseg=500)
    harmonics = psd[np.isin(f, [20.0, 40.0, 60.0, 80.0])]
    assert harmonics.min() > 0.9 * harmonics.max()
    s = summary(f, psd, NetObjective())
    assert s["fundamental_hz"] == 20.0 and s["peak_hz"] in (20.0, 40.0, 60.0, 80.0, 100.0)


def test_smoothed_loss_is_the_welch_share_of_the_gaussian_smoothed_rate() -> None:
    """loss_smooth_ms: the loss is -log of the target band's share of the PSD times the Gaussian's power gain
    (numpy and scipy), which sets a 20 Hz volley train apart from a 10 Hz one's harmonics."""
    fs, sigma = 1000.0, 10.0
    shares = {}
    for period in (100, 50):
        rate = np.zeros(4000)
        rate[::period] = 1000.0  # sharp volleys, 1 ms bins
        f_ref, psd_ref = signal.welch(rate, fs=fs, nperseg=250)
        gain = np.exp(-((2 * np.pi * f_ref * sigma / 1000.0) ** 2))
        share = {}
        for smooth in (0.0, sigma):
            o = NetObjective(loss_smooth_ms=smooth)
            ref = psd_ref * (gain if smooth else 1.0)
            in_to = (f_ref >= 15.0) & (f_ref <= 30.0)
            in_total = (f_ref >= 2.0) & (f_ref <= 100.0)
            expected = ref[in_to].sum() / ref[in_total].sum()
            loss = loss_of(*welch(torch.from_numpy(rate), fs, 250), o)
            assert float(loss) == pytest.approx(-np.log(expected), rel=1e-9)
            share[smooth] = expected
        shares[period] = share
    # unsmoothed, the harmonics give a 10 Hz train nearly the share of a 20 Hz one; smoothed, the 20 Hz train's
    # fundamental is nearly all of its power and the 10 Hz train keeps a quarter (20 and 30 Hz at gains 0.2, 0.03)
    assert abs(shares[50][0.0] - shares[100][0.0]) < 0.1
    assert shares[100][sigma] < 0.3 and shares[50][sigma] > 0.95


# ---------------------------------------------------------------- the network
def test_fast_step_equals_the_surrogates_step() -> None:
    torch.manual_seed(1)
    net = SurrogateNet(2, TINY).eval()
    fast = Stepper(net)
    x = torch.randn(40, 5, 2)
    with torch.no_grad():
        a, b = net.init_state(5), fast.init_state(5)
        for t in range(40):
            ya, a = net.step(x[t], a)
            yb, b = fast.step(x[t], b)
            np.testing.assert_allclose(yb.numpy(), ya.numpy(), atol=1e-5)


def test_gradient_reaches_the_connectivity(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "sur")
    spikes = model(200, 0)
    assert set(np.unique(spikes.detach().numpy())) <= {0.0, 1.0} and spikes.detach().sum() > 0  # 0/1 forward
    f, psd = welch(spikes[:, :8].mean(dim=1) * 2000.0, 2000.0, 100)
    band_power(f, psd, (15.0, 30.0)).backward()
    assert model.theta.grad is not None and torch.all(torch.isfinite(model.theta.grad))
    assert torch.all(model.theta.grad != 0)


def test_dampened_surrogate_gradient_matches_its_closed_form(tmp_path: Path) -> None:
    logit = torch.tensor([-3.0, -0.5, 0.2, 2.0], requires_grad=True)
    above = torch.tensor([False, False, True, False])
    spikes, now = spike_of(logit, torch.tensor(0.0), above, soft=False, dampening=0.3)
    assert spikes.tolist() == [0.0, 0.0, 0.0, 1.0] and now.tolist() == [False, False, True, True]
    spikes.sum().backward()
    assert torch.allclose(logit.grad, 0.3 / (1.0 + logit.detach().abs()) ** 2)
    # the network: the same spikes forward, a smaller gradient backward
    full, damped = tiny_model(tmp_path / "a"), tiny_model(tmp_path / "b", dampening=0.1)
    runs = []
    for model in (full, damped):
        spikes = model(200, 0)
        runs.append(spikes)
        f, psd = welch(spikes[:, :8].mean(dim=1) * 2000.0, 2000.0, 100)
        band_power(f, psd, (15.0, 30.0)).backward()
    assert torch.equal(runs[0].detach(), runs[1].detach())
    assert torch.all(damped.theta.grad.abs() < full.theta.grad.abs())


def test_loss_falls_under_adam(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "sur", spikes="probability")
    o = NetObjective(segment_ms=40.0)
    s = NetOptimise(steps=4, lr=0.3, t_ms=100.0, eval_t_ms=100.0, skip_ms=10.0, spikes="probability")
    trajectory = optimise(model, o, s, (s.min_weight_pa, s.max_weight_pa))
    assert len(trajectory) == 5 and trajectory[-1]["loss"] < trajectory[0]["loss"]
    assert trajectory[-1]["weights_pa"] != trajectory[0]["weights_pa"]


def test_draws_average_the_gradient_over_drive_seeds(tmp_path: Path) -> None:
    """optimise.draws = 2: step 0 draws drive seeds 0 and 1, the gradient is the mean of theirs, and the
    evaluations take a seed the descent never drew."""
    o = NetObjective(segment_ms=40.0)
    s = NetOptimise(steps=1, lr=0.3, t_ms=100.0, eval_t_ms=100.0, skip_ms=10.0, spikes="probability", draws=2)
    single = []
    for seed in (0, 1):
        m = tiny_model(tmp_path / "sur", spikes="probability")
        rate = population_rate(m(200, seed), m.spec.cells(o.population), 0.5)[20:]
        loss_of(*spectrum(rate, 0.5, o.segment_ms), o).backward()
        single.append((m.theta.grad.clone(), rate.detach()))
    assert not torch.equal(single[0][1], single[1][1])  # two draws indeed
    model = tiny_model(tmp_path / "sur", spikes="probability")
    grads: list[torch.Tensor] = []
    model.theta.register_hook(lambda g: grads.append(g.clone()))
    trajectory = optimise(model, o, s, (s.min_weight_pa, s.max_weight_pa))
    assert len(grads) == 2 and len(trajectory) == 2
    assert torch.allclose(grads[0] + grads[1], (single[0][0] + single[1][0]) / 2)
    assert s.eval_seed == 4 and NetOptimise(steps=3, seed=5).eval_seed == 9


def test_a_gradient_that_is_not_finite_ends_the_descent_without_an_update(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "sur", spikes="probability")
    before = model.theta.detach().clone()
    model.theta.register_hook(lambda g: g * float("nan"))  # as an overflow in BPTT would leave it
    s = NetOptimise(steps=4, lr=0.3, t_ms=100.0, eval_t_ms=100.0, skip_ms=10.0, spikes="probability")
    trajectory = optimise(model, NetObjective(segment_ms=40.0), s, (s.min_weight_pa, s.max_weight_pa))
    assert len(trajectory) == 1 and "not finite" in trajectory[0]["stopped"]
    assert torch.equal(model.theta.detach(), before)


def test_written_config_loads_and_runs_in_the_engine(tmp_path: Path) -> None:
    raw = tiny_network(t_ms=60.0)
    path = tmp_path / "optimised.toml"
    path.write_text(toml_text(with_weights(raw, {"IE": 123.4567}), "optimised\nby a test"))
    cfg, _ = load_config(path)
    assert [p.weight for p in cfg.projections] == [800.0, 123.457]
    assert cfg.drive[1].times_ms == [5.0, 30.0] and cfg.populations[1].type == "I"
    run(cfg, raw, tmp_path / "run", force=True, progress=False)
    assert open_run(tmp_path / "run").spikes()[0].size > 0
    alpha, alpha_raw = load_config(CONFIGS / "alpha_hh.toml")
    (tmp_path / "alpha.toml").write_text(toml_text(with_weights(alpha_raw, {"IfE": 250.0})))
    again, _ = load_config(tmp_path / "alpha.toml")
    assert [p.weight for p in again.projections] == [250.0 if p.name == "IfE" else p.weight
                                                     for p in alpha.projections]
    assert again.drive == alpha.drive and again.populations == alpha.populations


def test_networks_the_surrogate_cannot_stand_for_are_refused(tmp_path: Path) -> None:
    raw = tiny_network()
    raw["populations"][1]["params"] = {"g_L": 40.0}
    with pytest.raises(ConfigError, match=r"populations.1 \(I\).*default parameters"):
        network_spec(load_config(raw=raw)[0], "net", 0.5, 0)
    raw = tiny_network()
    raw["projections"][1]["delay_ms"] = 10.3
    with pytest.raises(ConfigError, match=r"projections.1 \(IE\).delay_ms = 10.3.*0.5 ms"):
        network_spec(load_config(raw=raw)[0], "net", 0.5, 0)


# ---------------------------------------------------------------- eilab train
def train_config(tmp_path: Path, **extra: str) -> Path:
    net = tmp_path / "net.toml"
    net.write_text(toml_text(tiny_network(t_ms=150.0)))
    sur = tiny_surrogate(tmp_path / "sur")
    lines = ['task = "surrogate_net"', f'network = "{net}"', f'surrogate = "{sur}"', *extra.values(),
             "[objective]", "segment_ms = 50.0",
             "[optimise]", "steps = 2", "t_ms = 100.0", "eval_t_ms = 150.0", "skip_ms = 20.0"]
    cfg = tmp_path / "train.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def test_eilab_train_surrogate_net_end_to_end(tmp_path: Path) -> None:
    res = eilab("train", str(train_config(tmp_path)), "--out", str(tmp_path / "out"), "--quiet")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["trajectory"]) == 3
    for where in ("surrogate", "engine"):
        for when in ("before", "after"):
            assert {"peak_hz", "power_from", "power_to", "power_total"} <= set(m[where][when])
    cfg, _ = load_config(out / "runs" / "optimised.toml")
    for p in cfg.projections:
        assert math.isclose(p.weight, m["weights_pa"]["after"][p.name], abs_tol=1e-3)
    assert open_run(out / "runs" / "after").config.projections[1].weight == cfg.projections[1].weight
    assert {p.name for p in (out / "figures").iterdir()} == {"spectra.png", "raster.png", "trajectory.png"}


def test_bad_surrogate_net_configs_exit_2(tmp_path: Path) -> None:
    cfg = train_config(tmp_path, bad='train = ["EI", "XE"]')
    res = eilab("train", str(cfg), "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and "train: no projection 'XE'" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()
    cfg.write_text(cfg.read_text().replace('train = ["EI", "XE"]', "").replace("segment_ms = 50.0",
                                                                              "band_to_hz = [30.0, 15.0]"))
    res = eilab("train", str(cfg), "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and "band_to_hz" in res.stderr and "Traceback" not in res.stderr
