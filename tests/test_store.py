"""The run store end to end: the README's run command, the reader, xarray, and run states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from scipy.stats import poisson

from conftest import CONFIGS, small_network
from eilab.sim.config import load_config
from eilab.sim.engine import run
from eilab.sim.reader import RunNotCompleteError, open_run


def test_ring600_store_is_complete_and_consistent(ring600: Path) -> None:
    r = open_run(ring600)
    assert r.status == "complete" and r.t_ms == 3000.0 and r.dt_ms == 0.05
    times, gids = r.spikes()
    assert np.all(np.diff(times) >= 0)
    same_t = np.diff(times) == 0
    assert np.all(np.diff(gids)[same_t] > 0), "spikes are sorted by (time, gid)"
    assert np.allclose(np.round(times / 0.05) * 0.05, times)
    counts = r.counts()
    assert counts.shape == (3000, 600) and counts.dtype == np.uint16
    # counts bin k holds the spikes with time in (k, k + 1] ms
    expected = np.zeros_like(counts, dtype=np.int64)
    np.add.at(expected, (np.ceil(times / 1.0 - 1e-9).astype(int) - 1, gids), 1)
    np.testing.assert_array_equal(counts, expected)
    summary = r.attrs["summary"]
    assert summary["spikes"] == times.size
    assert summary["populations"]["E"]["spikes"] == int(np.sum(gids < 300))
    probes = r.probes()
    assert probes["v"].shape == (6000, 5) and list(probes["probe"]) == [0, 100, 200, 300, 450]
    assert np.all(probes["v"] <= 1.0 + 1e-6) and not np.any(np.isnan(probes["v"]))
    assert r.attrs["config_given"]["vars"]["S_EE"] == 0.016
    assert r.config.populations[0].n == 300


def test_ring600_shows_multiple_firing_events(ring600: Path) -> None:
    """Local bursts: spikes of 31 adjacent ring positions (E and I) in 1 ms bins reach sizes that
    independent Poisson firing at the measured rate would practically never produce."""
    counts = open_run(ring600).counts().astype(np.int64)
    pos = counts[:, :300] + counts[:, 300:]
    blocks = np.stack([np.roll(pos, -s, axis=1)[:, :31].sum(1) for s in range(0, 300, 31)], axis=1)
    lam = blocks.mean()
    observed = int(np.sum(blocks >= 8))
    expected_poisson = blocks.size * poisson.sf(7, lam)
    assert observed >= 10 and observed > 20 * expected_poisson, (observed, expected_poisson)


def test_plain_xarray_and_zarr_read_the_store(ring600: Path) -> None:
    ds = xr.open_zarr(ring600 / "run.zarr", consolidated=False)
    assert ds["counts"].dims == ("time_bin", "neuron")
    assert float(ds["time_bin"][1]) == 1.0 and int(ds["neuron"][-1]) == 599
    pr = xr.open_zarr(ring600 / "run.zarr", group="probes", consolidated=False)
    assert pr["v"].dims == ("time", "probe") and pr["v"].attrs["units"] == "mV"
    root = zarr.open_group(ring600 / "run.zarr", mode="r")
    assert root.attrs["status"] == "complete" and root["spikes/gids"].dtype == np.int32


def test_failed_run_is_marked_and_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, raw = load_config(raw=small_network(t_ms=2500.0))

    class BoomError(RuntimeError):
        pass

    import eilab.sim.engine as engine

    original = engine.RankWriter.write_counts

    def explode(self, bin0, block, drive=None):  # a disk failure in the middle of the run
        if bin0 > 0:
            raise BoomError("disk full")
        original(self, bin0, block, drive)

    monkeypatch.setattr(engine.RankWriter, "write_counts", explode)
    with pytest.raises(BoomError):
        run(cfg, raw, tmp_path / "r", progress=False)
    with pytest.raises(RunNotCompleteError, match="failed"):
        open_run(tmp_path / "r")
    r = open_run(tmp_path / "r", allow_incomplete=True)
    assert r.status == "failed" and "disk full" in r.attrs["error"]


def test_same_seed_same_spikes_other_seed_differs(tmp_path: Path) -> None:
    cfg, raw = load_config(raw=small_network(t_ms=100.0))
    a = run(cfg, raw, tmp_path / "a", progress=False)
    b = run(cfg, raw, tmp_path / "b", progress=False)
    ta, ga = open_run(tmp_path / "a").spikes()
    tb, gb = open_run(tmp_path / "b").spikes()
    assert a.spikes == b.spikes > 0
    np.testing.assert_array_equal(ta, tb)
    np.testing.assert_array_equal(ga, gb)
    cfg2, raw2 = load_config(raw=small_network(t_ms=100.0, seed=99))
    run(cfg2, raw2, tmp_path / "c", progress=False)
    tc, gc = open_run(tmp_path / "c").spikes()
    assert tc.size != ta.size or not np.array_equal(gc, ga)


def test_brunel_config_sizes_follow_order() -> None:
    cfg, _ = load_config(CONFIGS / "brunel.toml", ["vars.order=100"])
    assert [p.n for p in cfg.populations] == [400, 100]
    assert cfg.projections[0].k == 40 and cfg.projections[2].k == 10
    assert cfg.drive[0].rate_hz == pytest.approx(2 * 20.0 / (0.1 * 40 * 20.0) * 1000)
