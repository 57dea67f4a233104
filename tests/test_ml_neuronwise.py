"""eilab.ml.neuronwise: the per-neuron inputs against the connectivity and the stored counts, streaming
that never reads ahead (a prediction of bin j is the same whether or not the segment goes on after j),
rollouts, and the head conditioned on the next bin's drive (`model.next_drive`): its level probabilities
against the Poisson distribution, its average over them, and rollout draws that go with the drive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import poisson

from conftest import small_network
from eilab.analysis.spectra import weight_matrix
from eilab.ml.data import Segment, open_series
from eilab.ml.neuronwise import (
    ROLLOUT_SAMPLES,
    NeuronInputs,
    draw_counts,
    drive_levels,
    make_streamer,
    per_neuron,
)
from eilab.sim.config import load_config
from eilab.sim.engine import run
from eilab.sim.reader import open_run


@pytest.fixture(scope="module")
def active(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small run of 300 ms with a 50 Hz drive, counts in 0.5 ms bins, drive counts recorded."""
    cfg, raw = load_config(raw=small_network(t_ms=300.0, seed=1), overrides=[
        "record.counts_bin_ms=0.5", "drive.0.rate_hz=50", "drive.1.rate_hz=50", "record.drive_counts=true"])
    d = tmp_path_factory.mktemp("nw") / "run"
    run(cfg, raw, d, progress=False)
    return d


def test_inputs_are_own_counts_synaptic_input_type_and_drive(active: Path) -> None:
    r = open_run(active)
    series = per_neuron(open_series([r], 1.0, "sums", external=True))[0]
    x = NeuronInputs(external=True).of(series, 20, 220).numpy()
    c = r.counts().astype(np.float64)
    counts = c[:600].reshape(300, 2, -1).sum(axis=1)[20:220]
    drive = np.asarray(r.root["drive_counts"][:600], np.float64).reshape(300, 2, -1).sum(axis=1)[20:220]
    w = weight_matrix(r.config).toarray()  # [post, pre], I columns negative
    assert x.shape == (200, 100, 6) and counts.sum() > 0
    np.testing.assert_array_equal(x[..., 0], counts)
    np.testing.assert_allclose(x[..., 1], counts @ np.where(w > 0, w, 0).T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x[..., 2], counts @ np.where(w < 0, -w, 0).T, rtol=1e-5, atol=1e-6)
    assert x[..., 2].sum() > 0
    np.testing.assert_array_equal(x[0, :, 3], np.arange(100) < 80)  # the small network: 80 E, then 20 I
    np.testing.assert_array_equal(x[..., 5], drive)


def test_streaming_never_reads_ahead(active: Path) -> None:
    torch.manual_seed(0)
    series = open_series([open_run(active)], 1.0, "sums")
    streamer = make_streamer({"hidden": 3, "layers": 1, "tbptt": 7}, series[0], False, np.zeros(5), np.ones(5),
                             torch.device("cpu"))
    torch.nn.init.normal_(streamer.net.head.weight)  # the head starts at zero (a constant): make it see the state
    neurons = per_neuron(series)
    whole = streamer.predict(neurons, Segment(0, 100, 300))
    cut = streamer.predict(neurons, Segment(0, 100, 160))
    assert whole.shape == (200, 2) and np.isnan(whole[0]).all()
    np.testing.assert_array_equal(whole[:60], cut)
    assert np.std(whole[1:, 0]) > 0
    later = streamer.predict(neurons, Segment(0, 130, 300))  # a fresh state at its own first bin
    assert not np.allclose(later[1:30], whole[31:60])


def test_a_rollout_starts_at_the_next_bin_prediction_and_keeps_each_window_apart(active: Path) -> None:
    """Step 1 of a rollout from bin f is the streamed prediction of bin f; a window's rollout is the same alone
    and beside others (states and fed-back counts stay with their window); it feeds predictions back, so from
    step 2 on it leaves the teacher-forced predictions."""
    torch.manual_seed(0)
    series = open_series([open_run(active)], 1.0, "sums", external=True)
    streamer = make_streamer({"hidden": 3, "layers": 1, "tbptt": 7}, series[0], True, np.zeros(6), np.ones(6),
                             torch.device("cpu"))
    torch.nn.init.normal_(streamer.net.head.weight)
    neurons = per_neuron(series)
    seg = Segment(0, 100, 300)
    forced = streamer.predict(neurons, seg)
    firsts = np.array([130, 130, 161, 200])
    rolled = streamer.rollout(neurons, seg, firsts, 20)
    assert rolled.shape == (4, 20, 2)
    np.testing.assert_allclose(rolled[:, 0], forced[firsts - seg.lo], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(rolled[0], rolled[1])
    np.testing.assert_allclose(streamer.rollout(neurons, seg, firsts[2:3], 20)[0], rolled[2], rtol=1e-5, atol=1e-7)
    assert not np.allclose(rolled[3, 1:], forced[firsts[3] - seg.lo + 1 : firsts[3] - seg.lo + 20])


def test_drive_levels_are_the_poisson_distribution_of_the_drive(active: Path) -> None:
    """The small network's drive: 100 inputs of 50 Hz per neuron, 5 events per 1 ms bin on average."""
    neurons = per_neuron(open_series([open_run(active)], 1.0, "sums", external=True))
    p = drive_levels(neurons, [Segment(0, 0, 300)])
    top = p.shape[1] - 1
    want = np.append(poisson.pmf(np.arange(top), 5.0), poisson.sf(top - 1, 5.0))
    assert p.shape[0] == 2 and top >= 10
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], want, atol=0.01)  # 80 E neurons x 300 bins
    np.testing.assert_allclose(p[1], want, atol=0.02)  # 20 I neurons x 300 bins


def test_the_next_drive_head_averages_over_levels_and_rollouts_draw_with_the_drive(active: Path) -> None:
    """Without the next bin's drive the prediction is each neuron's count per drive level averaged with the
    level probabilities; given the drive, the level of each neuron's own drive; a rollout's first step is the
    averaged prediction, and it feeds back counts drawn given each bin's true drive (a model that never fires
    without drive events draws no spike in a bin without them)."""
    torch.manual_seed(0)
    series = open_series([open_run(active)], 1.0, "sums", external=True)
    neurons = per_neuron(series)
    levels = drive_levels(neurons, [Segment(0, 0, 300)])
    streamer = make_streamer({"hidden": 3, "layers": 1, "tbptt": 7}, series[0], True, np.zeros(6), np.ones(6),
                             torch.device("cpu"), levels)
    net = streamer.net
    torch.nn.init.normal_(net.head.weight)
    seg = Segment(0, 100, 300)
    x = streamer.normed(NeuronInputs(True).of(neurons[0], 100, 140))[None]
    nxt = torch.from_numpy(neurons[0].bins(101, 141)[:, 100:])[None]
    with torch.no_grad():
        per_level, _ = net.level_rates(x)
        given, _ = net.rates(x, None, nxt)
        averaged, _ = net.rates(x)
    p = torch.from_numpy(series[0].by_type @ levels).float()
    assert per_level.shape == (1, 40, 100, levels.shape[1])
    np.testing.assert_allclose(averaged, (per_level * p).sum(-1), rtol=1e-6)
    idx = nxt.long().clamp(max=levels.shape[1] - 1)
    np.testing.assert_allclose(given, per_level.gather(-1, idx[..., None])[..., 0], rtol=1e-6)
    forced = streamer.predict(neurons, seg)
    np.testing.assert_allclose(forced[1:41], averaged[0] @ torch.from_numpy(series[0].by_type), rtol=1e-5)

    with torch.no_grad():  # no spike without a drive event, one expected with any
        net.head.weight.zero_()
        net.head.bias.fill_(2.0)
        net.head.bias[0] = -30.0
    forced = streamer.predict(neurons, seg)
    fed = []
    assemble = streamer.inputs.assemble
    streamer.inputs.assemble = lambda s, c, d: fed.append((c, d)) or assemble(s, c, d)  # a spy, same result
    firsts = np.array([130, 200])
    rolled = streamer.rollout(neurons, seg, firsts, 10)
    np.testing.assert_allclose(rolled[:, 0], forced[firsts - seg.lo], rtol=1e-5)
    drawn = fed[-9:]  # after the streamed history, one batch of futures per step fed back
    assert all(c.shape == (2 * ROLLOUT_SAMPLES, 100) for c, _ in drawn)
    counts, drive = torch.cat([c for c, _ in drawn]), torch.cat([d for _, d in drawn])
    assert (drive == 0).any() and counts[drive > 0].sum() > 0
    assert counts[drive == 0].sum() == 0


def test_drawn_counts_keep_the_mean_with_the_least_variance() -> None:
    mean = torch.tensor([0.0, 0.3, 1.0, 2.6]).repeat(20000, 1)
    drawn = draw_counts(mean, torch.Generator().manual_seed(0))
    assert set(drawn[:, 1].unique().tolist()) == {0.0, 1.0} and set(drawn[:, 3].unique().tolist()) == {2.0, 3.0}
    np.testing.assert_array_equal(drawn[:, [0, 2]], mean[:, [0, 2]])
    np.testing.assert_allclose(drawn.mean(0), mean[0], atol=0.015)
    np.testing.assert_allclose(drawn.var(0)[[1, 3]], [0.3 * 0.7, 0.6 * 0.4], rtol=0.05)  # Bernoulli of the fraction


def test_the_neuron_loss_is_every_neurons_squared_error(active: Path) -> None:
    torch.manual_seed(0)
    series = open_series([open_run(active)], 1.0, "sums")
    streamer = make_streamer({"hidden": 3, "layers": 1, "tbptt": 7, "loss": "neurons"}, series[0], False,
                             np.zeros(5), np.ones(5), torch.device("cpu"))
    torch.nn.init.normal_(streamer.net.head.weight)
    neurons, seg, k = per_neuron(series), Segment(0, 100, 160), 5
    total, terms = streamer.loss(neurons, [seg], k, torch.ones(2))
    with torch.no_grad():
        rates = torch.cat([r[0] for _, _, r, _ in streamer.chunks(neurons, [seg])]).numpy()
    err = rates - neurons[0].bins(101, 160)[:, :100]
    assert terms == (60 - k) * 100
    np.testing.assert_allclose(total, (err[k - 1 :] ** 2).sum(), rtol=1e-5)
