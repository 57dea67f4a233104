"""eilab.ml.neuronwise: the per-neuron inputs against the connectivity and the stored counts, and streaming
that never reads ahead (a prediction of bin j is the same whether or not the segment goes on after j)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import small_network
from eilab.analysis.spectra import weight_matrix
from eilab.ml.data import Segment, open_series
from eilab.ml.neuronwise import NeuronInputs, make_streamer, per_neuron
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
