"""eilab.ml.data and eilab.ml.baselines: windows, splits without leakage, normalisation, lazy reads; the
baselines against closed forms (a constant series, an AR(1) process); every neuron's counts as inputs of the
E and I sums (data.inputs = "neurons") and sector sums as their inputs (data.inputs = "sectors")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ml_helpers import Series, ar1

from conftest import small_network
from eilab.ml.baselines import Persistence, RidgeAR, TrainMean, WindowMean
from eilab.ml.config import load_train_config
from eilab.ml.data import BlockCache, Normaliser, Segment, WindowSet, first_bin, make_splits, open_series, split_time
from eilab.sim.config import ConfigError, load_config
from eilab.sim.engine import run
from eilab.sim.reader import Run, open_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three small runs (seeds 1-3) of 300 ms, counts in 0.5 ms bins."""
    out = []
    for seed in (1, 2, 3):
        cfg, raw = load_config(raw=small_network(t_ms=300.0, seed=seed), overrides=["record.counts_bin_ms=0.5"])
        d = tmp_path_factory.mktemp("ml") / f"seed{seed}"
        run(cfg, raw, d, progress=False)
        out.append(d)
    return out


@pytest.fixture(scope="module")
def active(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three small runs (seeds 1-3) of 300 ms with a 50 Hz drive (they spike after the transient), counts in
    0.5 ms bins."""
    out = []
    for seed in (1, 2, 3):
        cfg, raw = load_config(raw=small_network(t_ms=300.0, seed=seed), overrides=[
            "record.counts_bin_ms=0.5", "drive.0.rate_hz=50", "drive.1.rate_hz=50"])
        d = tmp_path_factory.mktemp("active") / f"seed{seed}"
        run(cfg, raw, d, progress=False)
        out.append(d)
    return out


def test_series_bins_are_the_stored_counts_summed(runs: list[Path]) -> None:
    r = open_run(runs[0])
    sums, neurons = open_series([r], 1.0, "sums")[0], open_series([r], 1.0, "neurons")[0]
    raw = r.counts().astype(np.int64)
    two = raw[: 2 * (len(raw) // 2)].reshape(-1, 2, raw.shape[1]).sum(axis=1)
    e, i = r.gids_of("E"), r.gids_of("I")
    np.testing.assert_array_equal(neurons.bins(0, neurons.n_bins), two)
    np.testing.assert_array_equal(sums.bins(17, 203), np.stack([two[17:203, e].sum(1), two[17:203, i].sum(1)], 1))
    assert sums.n_bins == 300 and neurons.n_channels == 100


def test_bins_that_are_not_whole_multiples_are_refused(runs: list[Path]) -> None:
    with pytest.raises(ConfigError, match=r"data.bin_ms = 0.75: must be a whole multiple"):
        open_series([open_run(runs[0])], 0.75, "sums")


def test_the_cache_holds_at_most_its_bytes(runs: list[Path]) -> None:
    cache = BlockCache(max_bytes=1)
    series = open_series([open_run(p) for p in runs], 1.0, "neurons", cache)
    for s in series:
        s.bins(0, 10)
    assert len(cache.blocks) == 1 and cache.blocks.popitem()[0][0] == series[-1].key


@pytest.mark.parametrize("inputs", ["outputs", "neurons", "sectors"])
def test_splits_share_no_bin_and_keep_the_gap(runs: list[Path], inputs: str) -> None:
    series = open_series([open_run(p) for p in runs], 1.0, "sums", inputs=inputs)
    k, h = 10, 3
    splits = make_splits(series[:2], [], series[2:], k, h, first_bin(100.0, 1.0), 0.25)
    occupied = {}
    for name, ws in splits.items():
        assert len(ws) > 0
        for key, a, b in ws.spans():
            assert a >= 100 and b - a == k + h
            occupied.setdefault(name, set()).update((key, t) for t in range(a, b))
    assert not occupied["train"] & occupied["validation"]
    assert not (occupied["train"] | occupied["validation"]) & occupied["test"]
    for key in (0, 1):  # time split within a run: the gap is at least k + h bins
        last_train = max(t for kk, t in occupied["train"] if kk == key)
        first_val = min(t for kk, t in occupied["validation"] if kk == key)
        assert first_val - last_train > k + h
    assert {kk for kk, _ in occupied["test"]} == {2}


def test_split_time_counts() -> None:
    assert split_time(100, 300, 0.25, 13) == ((100, 237), (250, 300))


def test_windows_are_inputs_then_targets() -> None:
    values = np.arange(40, dtype=np.float32).reshape(20, 2)
    ws = WindowSet([Series(values)], [Segment(0, 2, 20)], k=4, h=2)
    assert len(ws) == 20 - 2 - 6 + 1
    x, y = ws.batch(np.array([0, 12]))
    np.testing.assert_array_equal(x[1], values[14:18])
    np.testing.assert_array_equal(y[1], values[18:20])
    np.testing.assert_array_equal(x[0, 0], values[2])


def test_normaliser_uses_the_segments_only() -> None:
    values = np.r_[np.zeros(50), np.full(50, 1e6)][:, None]
    norm = WindowSet([Series(values)], [Segment(0, 0, 50)], k=2, h=1).normaliser()
    assert norm.mean[0] == 0 and norm.std[0] == 1.0  # a constant channel keeps sd 1
    ramp = WindowSet([Series(np.arange(10.0)[:, None])], [Segment(0, 0, 10)], k=2, h=1).normaliser()
    assert ramp.mean[0] == pytest.approx(4.5) and ramp.std[0] == pytest.approx(np.sqrt(8.25))


def test_persistence_is_exact_on_a_constant_series() -> None:
    values = np.full((60, 2), 7.0)
    ws = WindowSet([Series(values)], [Segment(0, 0, 60)], k=5, h=3)
    x, y = ws.batch(np.arange(len(ws)))
    for predictor in (Persistence(2, 3), WindowMean(2, 3), TrainMean(np.full(2, 7.0), 3)):
        np.testing.assert_array_equal(predictor.predict(x), y)


def test_ridge_recovers_an_ar1_coefficient() -> None:
    """x_t = 0.6 x_{t-1} + 2 + e_t: the least-squares coefficient on the last bin is 0.6, the others 0,
    the intercept 2 (sd of the estimate ~ 1/sqrt(n) = 0.004 for 60,000 bins)."""
    x = ar1(80_000, 0.6, 2.0, seed=5)
    s = Series(x)
    train = WindowSet([s], [Segment(0, 0, 60_000)], k=3, h=1)
    val = WindowSet([s], [Segment(0, 60_010, 80_000)], k=3, h=1)
    ar = RidgeAR.fit(train, val)
    assert ar.w[:, 0] == pytest.approx([0.0, 0.0, 0.6, 2.0], abs=0.03)
    xv, yv = val.batch(np.arange(len(val)))
    assert np.mean((ar.predict(xv) - yv) ** 2) == pytest.approx(1.0, abs=0.03)  # the noise variance


def sums_of(raw: np.ndarray, r: Run) -> np.ndarray:
    """E and I sums (bins, 2) of per-neuron counts (bins, neurons) of run r."""
    return np.stack([raw[:, r.gids_of("E")].sum(1), raw[:, r.gids_of("I")].sum(1)], 1)


def test_neuron_inputs_give_every_neuron_in_and_the_sums_out(active: list[Path]) -> None:
    """inputs = "neurons": windows (B, k, 100 neurons) -> (B, h, E and I sums of the target bins), each the
    stored counts of its own run and bins; every window of a split lies in that split's runs."""
    opened = [open_run(p) for p in active]
    series = open_series(opened, 1.0, "sums", inputs="neurons")
    assert series[0].n_channels == 100 and series[0].n_out == 2
    k, h = 6, 2
    splits = make_splits(series[:2], [], series[2:], k, h, first_bin(100.0, 1.0), 0.25)
    raw = [r.counts().astype(np.int64) for r in opened]  # counts in 0.5 ms bins
    neurons = [c[: 2 * (len(c) // 2)].reshape(-1, 2, c.shape[1]).sum(axis=1) for c in raw]
    for name, ws in splits.items():
        ids = np.linspace(0, len(ws) - 1, 7).round().astype(np.int64)
        x, y = ws.batch(ids)
        assert x.shape == (7, k, 100) and y.shape == (7, h, 2) and x.dtype == y.dtype == np.float32
        for (key, a, b), xi, yi in zip(ws.spans(ids), x, y, strict=True):
            assert (key == 2) == (name == "test")
            np.testing.assert_array_equal(xi, neurons[key][a : a + k])
            np.testing.assert_array_equal(yi, sums_of(neurons[key][a + k : b], opened[key]))
        assert y.sum() > 0 and x.sum() > 0


def test_neuron_inputs_normalise_inputs_and_outputs_apart(active: list[Path]) -> None:
    r = open_run(active[0])
    ws = WindowSet(open_series([r], 1.0, "sums", inputs="neurons"), [Segment(0, 100, 300)], k=4, h=1)
    norm = ws.normaliser()
    c = r.counts().astype(np.float64)
    neurons = c[:600].reshape(300, 2, -1).sum(axis=1)[100:300]
    sums = sums_of(neurons, r)
    assert np.all(sums.std(0) > 0.5)  # active, unlike a constant channel (sd 1 by convention)
    np.testing.assert_allclose(norm.mean, neurons.mean(0), rtol=1e-6)
    np.testing.assert_allclose(norm.out_mean, sums.mean(0), rtol=1e-6)
    np.testing.assert_allclose(norm.out_std, sums.std(0), rtol=1e-5)
    y = sums[:5, None].astype(np.float32)
    np.testing.assert_allclose(norm.invert(norm.apply_outputs(y)), y, rtol=1e-6)
    again = Normaliser.from_json(norm.to_json())
    np.testing.assert_array_equal(again.out_std, norm.out_std)
    np.testing.assert_array_equal(again.std, norm.std)


def test_the_default_inputs_are_the_outputs(active: list[Path]) -> None:
    """inputs = "outputs" (the default) feeds the outputs themselves; inputs = "neurons" with neuron outputs is
    the same series; the normaliser of summed inputs keeps no separate output statistics."""
    r = open_run(active[1])
    default, given = open_series([r], 1.0, "sums")[0], open_series([r], 1.0, "sums", inputs="outputs")[0]
    assert default.n_channels == given.n_channels == 2 and default.summed is None
    np.testing.assert_array_equal(default.bins(100, 300), given.bins(100, 300))
    plain, same = open_series([r], 1.0, "neurons")[0], open_series([r], 1.0, "neurons", inputs="neurons")[0]
    assert same.summed is None and same.n_channels == plain.n_channels == 100
    np.testing.assert_array_equal(plain.bins(0, 300), same.bins(0, 300))
    norm = WindowSet([default], [Segment(0, 100, 300)], k=4, h=1).normaliser()
    assert norm.out_mean is None and set(norm.to_json()) == {"mean", "std"}


def test_baselines_on_neuron_inputs_are_those_of_the_sums(active: list[Path]) -> None:
    """Persistence and window mean stay defined on the outputs: the same predictions from every neuron's counts
    as from the E and I sums."""
    r = open_run(active[2])
    by_sums = WindowSet(open_series([r], 1.0, "sums"), [Segment(0, 100, 300)], k=5, h=2)
    by_neurons = WindowSet(open_series([r], 1.0, "sums", inputs="neurons"), [Segment(0, 100, 300)], k=5, h=2)
    ids = np.arange(len(by_sums))
    (xs, ys), (xn, yn) = by_sums.batch(ids), by_neurons.batch(ids)
    np.testing.assert_array_equal(ys, yn)
    assert ys.std() > 0
    summed = by_neurons.summed
    for make in (Persistence, WindowMean):
        np.testing.assert_allclose(make(2, 2, summed).predict(xn), make(2, 2).predict(xs), rtol=1e-6)


def test_ridge_on_neuron_inputs_recovers_the_coefficients_of_the_sums() -> None:
    """Three independent AR(1) channels (coefficient 0.6, intercept 1, unit noise), two of type E and one of
    type I: the next E sum is 0.6 (x0 + x1) + 2 + noise of variance 2 and the next I sum 0.6 x2 + 1 + noise of
    variance 1, so least squares gives those weights on the last bin, 0 on the others, and an MSE of
    (2 + 1) / 2 (for 60,000 bins the sd of the weights is ~ 0.006, of the intercepts ~ 0.03: the inputs' means
    are 2.5)."""
    s = Series(np.hstack([ar1(80_000, 0.6, 1.0, seed=s) for s in (7, 8, 9)]), n_out=2)
    s.summed = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    train = WindowSet([s], [Segment(0, 0, 60_000)], k=2, h=1)
    val = WindowSet([s], [Segment(0, 60_010, 80_000)], k=2, h=1)
    ar = RidgeAR.fit(train, val)
    assert ar.w.shape == (2 * 3 + 1, 2)
    np.testing.assert_allclose(ar.w[:-1].T, [[0, 0, 0, 0.6, 0.6, 0], [0, 0, 0, 0, 0, 0.6]], atol=0.03)
    assert ar.w[-1] == pytest.approx([2.0, 1.0], abs=0.12)
    xv, yv = val.batch(np.arange(len(val)))
    assert np.mean((ar.predict(xv) - yv) ** 2) == pytest.approx(1.5, abs=0.03)


@pytest.mark.parametrize(("inputs", "outputs", "error"), [
    ("neuron", "sums", "data.inputs"), ("sums", "sums", "data.inputs"), ("neurons", "neurons", None),
    ("neurons", "sums", None), ("sectors", "sums", None), ("sectors", "neurons", "set data.outputs = \"sums\"")])
def test_the_inputs_option_is_checked(tmp_path: Path, inputs: str, outputs: str, error: str | None) -> None:
    path = tmp_path / "train.toml"
    path.write_text(f'[data]\nconfig = "ring600"\nseeds = {{ train = [1], test = [2] }}\noutputs = "{outputs}"\n'
                    f'inputs = "{inputs}"\n')
    if error:
        with pytest.raises(ConfigError, match=error):
            load_train_config(path)
    else:
        assert load_train_config(path)[0].data.inputs == inputs


def test_sector_inputs_are_block_sums_of_each_type_and_the_targets_their_totals(active: list[Path]) -> None:
    """inputs = "sectors": the E cells (80) and I cells (20) each cut into 4 contiguous gid blocks; windows
    (B, k, 8 block sums) -> (B, h, E and I sums), from the stored counts."""
    r = open_run(active[0])
    series = open_series([r], 1.0, "sums", inputs="sectors", sectors=4)
    assert series[0].n_channels == 8 and series[0].n_out == 2
    c = r.counts().astype(np.int64)
    neurons = c[:600].reshape(300, 2, -1).sum(axis=1)
    e, i = np.arange(100)[r.gids_of("E")], np.arange(100)[r.gids_of("I")]
    blocks = [neurons[:, b].sum(1) for cells in (e, i) for b in np.array_split(cells, 4)]
    want = np.stack(blocks, 1)
    ws = WindowSet(series, [Segment(0, 100, 300)], k=5, h=2)
    x, y = ws.batch(np.arange(len(ws)))
    for j, (xi, yi) in enumerate(zip(x, y, strict=True)):
        np.testing.assert_array_equal(xi, want[100 + j : 105 + j])
        np.testing.assert_array_equal(yi, sums_of(neurons[105 + j : 107 + j], r))
    assert x.sum() > 0
    with pytest.raises(ConfigError, match=r"data.sectors = 21: the I cells \(20\) are fewer than the sectors"):
        open_series([r], 1.0, "sums", inputs="sectors", sectors=21)
