"""Spike statistics and MFE detection against closed forms, constructed data and simulated runs: ring600
has MFEs, the asynchronous irregular Brunel network (configs/brunel_ai.toml) has none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import run_config
from eilab.analysis.mfe import detect, detect_local, detect_run, marked_runs, mfes_present
from eilab.analysis.siegert import network_rates
from eilab.analysis.spikes import (
    fano_factor,
    isi_cv,
    neuron_rates,
    population_rate,
    population_stats,
    power_spectrum,
    synchrony,
    synchrony_index,
)
from eilab.sim.reader import open_run

RNG = np.random.default_rng(5)


def poisson_trains(n: int, rate_hz: float, t_ms: float, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Independent Poisson spikes on the step grid (at most one per step), times at step ends."""
    steps = round(t_ms / dt)
    fire = RNG.random((steps, n)) < rate_hz * dt / 1000
    s, g = np.nonzero(fire)
    return (s + 1) * dt, g


def test_synchrony_index_of_independent_poisson_neurons() -> None:
    n, rate, dt, t_ms = 200, 20.0, 0.1, 5000.0
    times, _ = poisson_trains(n, rate, t_ms, dt)
    w = int(2.5 / dt)
    expected = 1 / n + (2 * w + 1) * dt * rate / 1000
    assert synchrony_index(times, n, dt, t_ms) == pytest.approx(expected, rel=0.02)


def test_rates_cv_fano_and_chi2_closed_forms() -> None:
    n, rate, dt, t_ms = 100, 30.0, 0.1, 10000.0
    times, gids = poisson_trains(n, rate, t_ms, dt)
    r = neuron_rates(times, gids, 0, n, 0.0, t_ms)
    assert r.mean() == pytest.approx(rate, rel=0.02)
    assert isi_cv(times, gids).mean() == pytest.approx(1.0, abs=0.03)
    regular_t = np.tile(np.arange(1, 101) * 10.0, 3)
    regular_g = np.repeat(np.arange(3), 100)
    np.testing.assert_allclose(isi_cv(regular_t, regular_g), 0.0, atol=1e-9)
    counts = np.zeros((int(t_ms), n), np.int64)
    np.add.at(counts, (np.ceil(times).astype(int) - 1, gids), 1)
    assert np.nanmean(fano_factor(counts, 100)) == pytest.approx(1.0, abs=0.06)
    assert synchrony(counts) == pytest.approx(1 / n, rel=0.15)
    same = np.repeat(counts[:, :1], 10, axis=1)
    assert synchrony(same) == pytest.approx(1.0)


def test_power_spectrum_finds_a_modulation() -> None:
    t = np.arange(4000)  # 1 ms bins
    rate = 10 + 5 * np.sin(2 * np.pi * 40 * t / 1000)
    f, psd = power_spectrum(rate, 1.0)
    assert f[np.argmax(psd)] == pytest.approx(40.0, abs=2.0)


def test_marked_runs_merge_rule() -> None:
    c = np.array([0, 5, 5, 0, 5, 0, 0, 5, 0])
    assert marked_runs(c, 5, merge_gap=1) == [(1, 5), (7, 8)]
    assert marked_runs(c, 5, merge_gap=0) == [(1, 3), (4, 5), (7, 8)]


def test_detector_recovers_injected_events() -> None:
    """Background Poisson plus three bursts that recruit known cells at known times."""
    times, gids = poisson_trains(100, 5.0, 3000.0, 0.1)
    bursts = [(500.2, np.arange(10, 40)), (1500.5, np.arange(60, 90)), (2500.1, np.arange(0, 100, 2))]
    for t0, cells in bursts:
        times = np.r_[times, np.full(cells.size, t0)]
        gids = np.r_[gids, cells]
    events, stats = detect(times, gids, np.arange(50), np.arange(50, 100), 3000.0, theta=10, skip_ms=0.0)
    onsets = [e.onset_ms for e in events]
    assert stats.n_events == 3 and onsets == [500.0, 1500.0, 2500.0]
    first = events[0]
    assert first.e_size >= 30 and first.i_size == 0 and first.e_fraction >= 30 / 50
    assert events[1].i_fraction >= 30 / 50
    assert stats.excess > 20 and stats.present


def test_independent_poisson_cells_have_no_mfes() -> None:
    """1000 independent cells at 20 Hz: the detector marks a few chance crossings, not MFEs."""
    times, gids = poisson_trains(1000, 20.0, 3000.0, 1.0)
    _, stats = detect(times, gids, np.arange(800), np.arange(800, 1000), 3000.0)
    assert stats.n_events < 2 * max(stats.null_expected, stats.gaussian_expected) + 5
    assert not stats.present
    assert not mfes_present(0, 0.0, 0.0) and not mfes_present(1, 0.0, 0.0)  # no variance: no MFEs
    assert mfes_present(21, 3.85, 5.85)       # ring600: P(N >= 21 | 5.85) ~ 1e-6
    assert not mfes_present(8, 0.5, 2.5)      # 3x the larger null but P ~ 4e-3: could be chance
    assert not mfes_present(30, 20.0, 1.0)    # significant but under 2x the Poisson null


@pytest.fixture(scope="module")
def brunel_ai(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_config(tmp_path_factory, "brunel_ai")


def test_ring600_has_mfes_well_above_both_nulls(ring600: Path) -> None:
    events, stats = detect_run(open_run(ring600))
    assert stats.n_events >= 10 and stats.excess > 3 and stats.tail_excess > 2 and stats.present
    assert all(e.e_size + e.i_size == e.size for e in events)
    local = detect_local(open_run(ring600))
    assert len(local) == 10
    assert sum(s.n_events for _, _, s in local) > 2 * sum(s.null_expected for _, _, s in local)


def test_population_stats_of_a_stored_run(ring600: Path) -> None:
    stats = {s.name: s for s in population_stats(open_run(ring600), skip_ms=100.0)}
    summary = open_run(ring600).attrs["summary"]["populations"]
    assert stats["E"].rate_hz == pytest.approx(summary["E"]["rate_hz"], rel=0.05)
    assert 0 < stats["E"].cv_isi < 1.5 and stats["I"].silent_fraction == 0.0


def test_asynchronous_brunel_has_no_mfes(brunel_ai: Path, ring600: Path) -> None:
    """The same detector and verdict: MFEs in ring600, few or none in the AI Brunel network."""
    _, ai = detect_run(open_run(brunel_ai))
    _, ring = detect_run(open_run(ring600))
    assert ring.present and not ai.present
    assert ai.rate_hz < ring.rate_hz / 2  # events per second, as both records differ in length


def test_brunel_ai_is_asynchronous_irregular_at_the_siegert_rates(brunel_ai: Path) -> None:
    run = open_run(brunel_ai)
    assert run.bin_ms == 1.0
    predicted = network_rates(run.config)
    for s in population_stats(run, skip_ms=100.0):
        assert 2.0 < s.rate_hz < 30.0 and s.silent_fraction < 0.01
        assert s.rate_hz == pytest.approx(predicted[s.name], rel=0.15)  # issue #4: within 15 %
        assert 0.75 < s.cv_isi < 1.2                                   # irregular
        assert s.synchrony < 1.5 / s.n                                 # chi^2: 1 / N when independent
    counts = np.concatenate([run.counts(name)[100:] for name in run.populations], axis=1)
    total = counts.sum(axis=1)
    assert total.var() / total.mean() < 1.4  # 1-ms population count: Fano 1 for independent Poisson cells
    f, psd = power_spectrum(population_rate(counts, run.bin_ms), run.bin_ms, segment_ms=200.0)
    band = f > 5.0
    assert psd[band].max() < 4 * np.median(psd[band])  # no oscillation peak
