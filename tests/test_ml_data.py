"""eilab.ml.data and eilab.ml.baselines: windows, splits without leakage, normalisation, lazy reads; the
baselines against closed forms (a constant series, an AR(1) process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ml_helpers import Series, ar1

from conftest import small_network
from eilab.ml.baselines import Persistence, RidgeAR, TrainMean, WindowMean
from eilab.ml.data import BlockCache, Segment, WindowSet, first_bin, make_splits, open_series, split_time
from eilab.sim.config import ConfigError, load_config
from eilab.sim.engine import run
from eilab.sim.reader import open_run


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


def test_splits_share_no_bin_and_keep_the_gap(runs: list[Path]) -> None:
    series = open_series([open_run(p) for p in runs], 1.0, "sums")
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
