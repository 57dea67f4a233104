"""The hh surrogate (issue 19): data generator against the engine's own output, the TCN-LSTM (streaming equals
whole-sequence inference, loss falls, resume), metrics on cases with known answers, `eilab train` end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from eilab.cluster.surrogate_gen import CellInput, generate_chunk
from eilab.cluster.surrogate_train import fi_curve
from eilab.ml.config import TrainSettings, load_train_config
from eilab.ml.surrogate import RidgeFilter, Sequences, SurrogateNet, loss_terms, train
from eilab.ml.surrogate_data import Scaling, SurrogateModel, Trials, binned, open_trials, segments
from eilab.ml.surrogate_metrics import (
    block_rate_sem,
    coincidence_factor,
    fi_error,
    matches,
    peak_depolarisation,
    precision_recall,
    relative_errors,
    spike_times,
    subthreshold_rmse,
)
from eilab.sim.config import ConfigError
from eilab.sim.reader import open_run
from tests.conftest import ROOT, eilab

torch.set_num_threads(1)
CELLS = [CellInput(40.0, 1500.0, 20.0, 150.0), CellInput(10.0, 500.0, 30.0, 300.0),
         CellInput(0.0, 40.0, 5.0, 100.0, (20.0, 60.0, 65.0))]
K_E, K_I, T_MS, DT = 40, 20, 400.0, 0.1


@pytest.fixture(scope="module")
def chunk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("surrogate") / "chunk"
    generate_chunk(str(folder), CELLS, K_E, K_I, T_MS, DT, 7, keep_run=True)
    return folder


# ---------------------------------------------------------------- data generator
def test_stored_trials_are_the_engines_own_output(chunk: Path) -> None:
    tr = open_trials([chunk / "trials.zarr"])
    run = open_run(chunk / "run")
    probes = run.probes()
    times, gids = run.spikes()
    assert tr.v.shape == (3, round(T_MS / DT)) and tr.input.shape == (3, round(T_MS / DT), 2)
    for c in range(3):
        col = int(np.flatnonzero(probes["probe"] == run.gids_of(f"cell{c}").start)[0])
        np.testing.assert_array_equal(tr.v[c], probes["v"][:, col])
        np.testing.assert_array_equal(tr.spikes[c], times[gids == run.gids_of(f"cell{c}").start])
        # the stored input is what the cell received: its synaptic currents (probed, pA / C_m) are the
        # arrivals filtered by exp(-dt / tau_syn) (docs/models.md, section 2.5)
        c_m, params = 100.0, run.config.populations[0].params
        for g, (var, tau, sign) in enumerate((("syn_e", params["tau_syn_ex"], 1.0),
                                              ("syn_i", params["tau_syn_in"], -1.0))):
            current, decay = np.zeros(tr.input.shape[1]), math.exp(-DT / tau)
            acc = 0.0
            for k, w in enumerate(tr.input[c, :, g].astype(np.float64)):
                acc = acc * decay + w
                current[k] = acc
            np.testing.assert_allclose(sign * probes[var][:, col] * c_m, current, rtol=1e-5, atol=1e-3)
        # spikes are upward crossings of V_spike = 0 mV in the stored V (end of the step of the crossing)
        v = tr.v[c].astype(np.float64)
        cross = np.flatnonzero((v[:-1] < 0.0) & (v[1:] >= 0.0)) + 1
        np.testing.assert_allclose(tr.spikes[c], (cross + 1) * DT, atol=1e-9)
    assert len(tr.spikes[0]) > 3, "the strong-input cell fires"
    assert tr.input[2, :, 0].sum() == pytest.approx(3 * K_E * 40.0) and len(tr.spikes[2]) == 0
    assert tr.cells[2]["e_times_ms"] == [20.0, 60.0, 65.0]


def test_chunks_are_resumed_not_redone(chunk: Path) -> None:
    before = (chunk / "trials.zarr" / "zarr.json").stat().st_mtime_ns
    generate_chunk(str(chunk), CELLS, K_E, K_I, T_MS, DT, 7)
    assert (chunk / "trials.zarr" / "zarr.json").stat().st_mtime_ns == before


def test_a_chunk_of_another_protocol_is_refused_not_reused(chunk: Path) -> None:
    for changed, field in (((CELLS, K_E, K_I, 2 * T_MS, DT, 7), "t_ms"), ((CELLS, K_E, K_I, T_MS, DT, 8), "seed"),
                           ((CELLS[:2], K_E, K_I, T_MS, DT, 7), "cells")):
        with pytest.raises(ConfigError, match=f"another {field} than the config asks for.*runs_dir"):
            generate_chunk(str(chunk), *changed)


def test_binning_sums_input_and_keeps_spikes(chunk: Path) -> None:
    tr = open_trials([chunk / "trials.zarr"])
    x, v, s = binned(tr, 0.5)
    assert x.shape == (3, 800, 2)
    np.testing.assert_allclose(x.sum(axis=1), tr.input.sum(axis=1), rtol=1e-5)
    np.testing.assert_array_equal(v[:, 0], tr.v[:, 4])
    assert s.sum(axis=1).tolist() == [len(t) for t in tr.spikes]
    with pytest.raises(ConfigError, match="bin_ms"):
        binned(tr, 0.25)
    with pytest.raises(ConfigError, match="not a surrogate data store"):
        open_trials([chunk / "run"])


# ---------------------------------------------------------------- the surrogate
def tiny_model() -> SurrogateModel:
    return SurrogateModel(channels=6, kernel=3, dilations=[1, 2, 4], hidden=12)


def test_streaming_equals_whole_sequence() -> None:
    torch.manual_seed(0)
    net = SurrogateNet(2, tiny_model()).eval()
    x = torch.randn(3, 40, 2)
    with torch.no_grad():
        whole = net(x)
        state, steps = net.init_state(3), []
        for t in range(40):
            out, state = net.step(x[:, t], state)
            steps.append(out)
    np.testing.assert_allclose(torch.stack(steps, 1).numpy(), whole.numpy(), atol=1e-6)


def sequences(chunk: Path) -> tuple[Sequences, np.ndarray]:
    x, v, s = binned(open_trials([chunk / "trials.zarr"]), 0.5)
    scaling = Scaling.fit(x, v, -50.0)
    q = Sequences(scaling.inputs(x), scaling.target(v), s)
    return q, segments(3, x.shape[1], 100, 20)


def test_loss_falls_and_resume_matches(chunk: Path, tmp_path: Path) -> None:
    q, seg = sequences(chunk)
    settings = TrainSettings(epochs=4, lr=1e-2, batch=4, patience=10, seed=0, device="cpu", threads=1)

    def fit(folder: Path, stops: list[int | None]) -> tuple[SurrogateNet, list[dict]]:
        torch.manual_seed(0)
        net = SurrogateNet(2, tiny_model())
        for stop in stops:
            history = train(net, q, seg, q, seg, 100, 20, tiny_model(), settings, folder, stop, progress=False)
        return net, history

    net, history = fit(tmp_path / "a", [None])
    losses = [e["train_loss"] for e in history]
    assert losses[-1] < losses[0]
    resumed, history_b = fit(tmp_path / "b", [2, None])
    assert [e["val_loss"] for e in history_b] == [e["val_loss"] for e in history]
    for a, b in zip(net.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_clipped_gradients_bound_the_steps(chunk: Path, tmp_path: Path) -> None:
    q, seg = sequences(chunk)
    settings = TrainSettings(epochs=1, lr=1e-2, batch=4, patience=10, seed=0, device="cpu", threads=1)
    moved = {}
    for clip in (0.0, 1e-12):
        m = tiny_model().model_copy(update={"clip_grad_norm": clip})
        torch.manual_seed(0)
        net = SurrogateNet(2, m)
        before = [w.detach().clone() for w in net.parameters()]
        train(net, q, seg, q, seg, 100, 20, m, settings, tmp_path / str(clip), progress=False)
        moved[clip] = max(float((w.detach() - b).abs().max()) for w, b in zip(net.parameters(), before, strict=True))
    # Adam moves a weight by about lr per step; with gradients far below its eps (1e-8), by lr * |g| / eps at most
    assert moved[0.0] > 1e-3 and moved[1e-12] < 6 * 1e-2 * 1e-12 / 1e-8


def test_ridge_filter_recovers_a_linear_filter() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 600, 2)).astype(np.float32)
    kernel = np.array([[0.5, -0.2], [0.3, 0.1], [0.1, -0.4]])  # (lag, group), newest first
    v = sum(np.pad(x, ((0, 0), (k, 0), (0, 0)))[:, : x.shape[1]] @ kernel[k] for k in range(3)) + 0.25
    q = Sequences(x, v.astype(np.float32), np.zeros(v.shape, bool))
    ridge = RidgeFilter.fit(q, q, 3, 0)
    np.testing.assert_allclose(ridge.w[:-1, 0].reshape(3, 2), kernel, atol=1e-3)
    np.testing.assert_allclose(ridge.predict(x)[0], v, atol=1e-3)


# ---------------------------------------------------------------- metrics
def test_spike_matching_precision_recall() -> None:
    assert matches(np.array([10.0, 10.5]), np.array([10.2]), 2.0) == 1  # one-to-one
    pr = precision_recall([np.array([10.0, 50.0, 90.0, 200.0])], [np.array([11.5, 52.5, 90.0])], 2.0)
    assert (pr["matched"], pr["precision"], pr["recall"]) == (2, 0.5, 2 / 3)
    assert pr["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert precision_recall([np.array([])], [np.array([])])["precision"] == 1.0


def test_coincidence_factor_known_cases() -> None:
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0, 100_000.0, 2000))
    assert coincidence_factor(t, t, 2.0, 100_000.0) == pytest.approx(1.0)
    other = np.sort(rng.uniform(0, 100_000.0, 2000))  # independent Poisson trains: Gamma about 0
    assert abs(coincidence_factor(other, t, 2.0, 100_000.0)) < 0.05
    assert math.isnan(coincidence_factor(np.array([]), np.array([]), 2.0, 1000.0))


def test_voltage_fi_and_psp_metrics() -> None:
    v_true = np.full(100, -65.0)
    spikes = np.zeros(100, bool)
    spikes[50] = True
    v_true[50:53] = 30.0
    v_pred = v_true + 1.5
    v_pred[40:70] = 99.0  # around the spike: left out
    assert subthreshold_rmse(v_pred, v_true, spikes, -50.0, 10, 20) == pytest.approx(1.5)
    err = fi_error(np.array([0.0, 11.0, 18.0]), np.array([0.0, 10.0, 20.0]))
    assert err == {"max_rel": pytest.approx(0.1), "mean_rel": pytest.approx(0.1), "max_abs_hz": pytest.approx(2.0)}
    prob = np.array([0.1, 0.6, 0.9, 0.2, 0.0, 0.7, 0.1])
    np.testing.assert_allclose(spike_times(prob, 0.5, 0.5), [1.25, 2.75])
    v = np.array([-65.0, -65.0, -63.0, -64.0, -62.0, -65.0])
    np.testing.assert_allclose(peak_depolarisation(v, np.array([2]), 0, 2), [2.0])
    np.testing.assert_allclose(peak_depolarisation(v, np.array([2]), 2, 2), [3.0])


def test_fi_curve_rates_errors_and_the_detailed_rates_spread() -> None:
    steps, bin_ms = 10_000, 0.5  # 1 s at 0.1 ms; 2000 bins
    truth = [np.arange(50.0, 1000.0, 100.0), np.array([])]  # 10 Hz, one spike in each 100 ms block; silent
    tr = Trials(np.zeros((2, steps, 2), np.float32), np.zeros((2, steps), np.float32), truth, 0.1, [])
    prob = np.zeros((2, 2000))
    prob[0, 20:2000:180] = 1.0  # 11 spikes: 11 Hz
    prob[1, [100, 900]] = 1.0  # 2 Hz where the detailed cell is silent
    fi = fi_curve({"net": {"fi": (np.zeros((2, 2000)), prob)}}, {"net": 0.5}, tr,
                  SimpleNamespace(fi_rates_hz=[30.0, 5.0], bin_ms=bin_ms), 0)
    assert fi["detailed_hz"] == [10.0, 0.0] and fi["detailed_sem_hz"] == [0.0, 0.0]
    assert fi["net"]["rate_hz"] == [11.0, 2.0] and fi["net"]["rel_error"] == [pytest.approx(0.1), None]
    assert fi["net"]["max_rel"] == pytest.approx(0.1) and fi["net"]["max_abs_hz"] == pytest.approx(2.0)
    # rates 3 and 1 Hz in two 1 s blocks: sample sd sqrt(2), standard error sqrt(2) / sqrt(2) = 1 Hz
    assert block_rate_sem(np.array([100.0, 200.0, 300.0, 1500.0]), 0.0, 2000.0, 2) == pytest.approx(1.0)
    np.testing.assert_allclose(relative_errors(np.array([1.0, 11.0, 18.0]), np.array([0.0, 10.0, 20.0])),
                               [np.nan, 0.1, 0.1])


# ---------------------------------------------------------------- eilab train
TINY = """task = "surrogate"
[data]
seeds = {{ train = [1], validation = [2], test = [3] }}
cells_per_chunk = 4
t_ms = 300.0
{extra}
segment_ms = 100.0
warmup_ms = 20.0
fi_rates_hz = [20.0, 60.0]
fi_t_ms = 300.0
psp_intervals_ms = [5.0]
[model]
channels = 4
dilations = [1, 2]
hidden = 8
[train]
epochs = 2
batch = 4
device = "cpu"
"""


def test_bad_surrogate_config_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.format(extra="w_e_pa = [900.0, 300.0]"))
    with pytest.raises(ConfigError, match="w_e_pa"):
        load_train_config(bad)
    bad.write_text(TINY.format(extra="").replace("validation = [2], ", ""))
    res = eilab("train", str(bad), "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and "Traceback" not in res.stderr and "seeds.validation" in res.stderr


def test_eilab_train_surrogate_end_to_end(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.format(extra=""))
    res = eilab("train", str(cfg), "--out", str(tmp_path / "out"), "--quiet")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    metrics, meta = json.loads((out / "metrics.json").read_text()), json.loads((out / "meta.json").read_text())
    assert set(metrics["splits"]["test"]) == {"surrogate", "ridge"}
    assert {"precision", "recall", "coincidence_factor", "v_rmse_subthreshold_mv"} <= set(
        metrics["splits"]["test"]["surrogate"])
    assert len(metrics["fi"]["detailed_hz"]) == 2 and metrics["psp"]["labels"] == ["single", "pair 5 ms"]
    assert meta["seed"] == 0 and "torch" in meta["versions"]
    assert all((out / "figures" / f).exists() for f in ("traces.png", "fi.png", "curves.png"))


def test_the_bundled_surrogate_config_plans_its_chunks(tmp_path: Path) -> None:
    from eilab.cluster.surrogate_train import plan

    tc, _ = load_train_config(ROOT / "configs" / "train" / "surrogate_hh.toml")
    jobs = plan(tc, tmp_path)
    d = tc.data
    assert [len(jobs[k]) for k in ("train", "validation", "test", "fi", "psp")] == [
        len(d.seeds.train), len(d.seeds.validation), len(d.seeds.test), 1, 1]
    seeds = [j[-1] for k in ("train", "validation", "test") for j in jobs[k]]
    assert seeds == [*d.seeds.train, *d.seeds.validation, *d.seeds.test]
    cells = jobs["train"][0][1]
    assert len(cells) == d.cells_per_chunk
    assert all(d.rate_e_hz[0] <= c.rate_e_hz <= d.rate_e_hz[1] and d.w_i_pa[0] <= c.w_i_pa <= d.w_i_pa[1]
               for c in cells)
    assert [c.rate_e_hz for c in jobs["fi"][0][1]] == d.fi_rates_hz


def test_missing_torch_names_the_ml_extra(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.format(extra=""))
    code = ("import sys; sys.modules['torch'] = None; from eilab.cluster.cli import main; "
            f"sys.exit(main(['train', {str(cfg)!r}, '--out', {str(tmp_path / 'out')!r}]))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "eilab[ml]" in res.stderr
    assert not (tmp_path / "out").exists()


def test_dendritic_targets_add_their_weighted_mse_and_train() -> None:
    """model.dendrite_weight: the loss adds the weighted MSE of the extra outputs against the dendritic V; a few
    steps of training on such targets lower it."""
    torch.manual_seed(0)
    m = tiny_model().model_copy(update={"dendrite_weight": 0.5})
    net = SurrogateNet(2, m, 3)
    x, v, s = torch.randn(4, 60, 2), torch.randn(4, 60), (torch.rand(4, 60) < 0.1).float()
    d = torch.cumsum(x[..., :1], dim=1).repeat(1, 1, 3) / 5  # a filtered input: learnable
    out = net(x)
    assert out.shape == (4, 60, 5)
    total, mse, bce, d_mse = loss_terms(out, v, s, m, d)
    assert float(d_mse) == pytest.approx(float(((out[..., 2:] - d) ** 2).mean()))
    assert float(total) == pytest.approx(float(mse + bce + 0.5 * d_mse))
    assert float(loss_terms(out, v, s, m)[3]) == 0.0
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = float(d_mse)
    for _ in range(30):
        opt.zero_grad()
        loss_terms(net(x), v, s, m, d)[0].backward()
        opt.step()
    assert float(loss_terms(net(x), v, s, m, d)[3]) < 0.5 * first
