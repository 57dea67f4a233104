"""The hnn-core cells' surrogate data (issue 19; the `detailed` extra): the generator against hnn-core's own
simulation of the cell and against NEURON driven by the stored inputs, resuming, the bundled config, and the
message naming the extra when hnn-core is missing (that one runs without the extra too)."""

from __future__ import annotations

import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from eilab.cluster.surrogate_gen import CellInput, generate_chunk
from eilab.ml.config import load_train_config
from tests.conftest import ROOT

needs_hnn = pytest.mark.skipif(find_spec("hnn_core") is None or find_spec("neuron") is None,
                               reason="hnn-core and NEURON not installed (the detailed extra: "
                                      "pip install 'eilab[detailed]')")
CELL, DT, T_MS, K_E, K_I = "L5_pyramidal", 0.025, 200.0, 20, 10
CELLS = [CellInput(40.0, 2.5, 10.0, 1.0), CellInput(0.0, 0.5, 5.0, 2.0, (40.0, 120.0, 125.0))]


@pytest.fixture(scope="module")
def chunk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("surrogate_hnn") / "chunk"
    generate_chunk(str(folder), CELLS, K_E, K_I, T_MS, DT, 5, CELL)
    return folder


@needs_hnn
def test_hnn_core_simulates_the_cell_the_generator_simulates() -> None:
    """One evoked input to the L5 pyramidal cell of hnn-core's own network (the Jones 2009 model, under its
    current name neymotin_2020_model, on a 1 x 1 grid, connections removed, simulate_dipole): the generator's
    NEURON cell gives the same somatic V, and the same V at the centre of every dendritic section."""
    from hnn_core import neymotin_2020_model, simulate_dipole

    from eilab.ml.surrogate_hnn import dendrite_sections, group_names, simulate

    net = neymotin_2020_model(mesh_shape=(1, 1))
    net.connectivity = []
    net.add_evoked_drive("ev", mu=20.0, sigma=0.0, numspikes=1, location="proximal",
                         weights_ampa={CELL: 0.004}, weights_nmda={CELL: 0.002}, synaptic_delays={CELL: 0.1})
    simulate_dipole(net, tstop=60.0, dt=DT, n_trials=1, record_vsec="all")
    vsec = net.cell_response.vsec[0][net.gid_ranges[CELL][0]]
    names = group_names(CELL)
    k = round(20.1 / DT) - 1  # the event arrives at mu + delay = (k + 1) dt
    v, spikes, v_d = simulate(CELL, [[(names.index("proximal_ampa"), np.array([k]), 4.0),
                                      (names.index("proximal_nmda"), np.array([k]), 2.0)]], 60.0, DT, dendrites=True)
    np.testing.assert_allclose(v[0], np.array(vsec["soma"])[1 : v.shape[1] + 1], rtol=0, atol=1e-9)
    sections = dendrite_sections(CELL)
    assert set(sections) == set(vsec) - {"soma"} and v_d.shape == (1, v.shape[1], len(sections))
    for j, sec in enumerate(sections):
        np.testing.assert_allclose(v_d[0, :, j], np.array(vsec[sec])[1 : v.shape[1] + 1], rtol=0, atol=1e-9)
    assert v[0].max() > 0.0 and len(spikes[0]) >= 1, "the evoked input makes the cell fire"


@needs_hnn
def test_stored_trials_are_the_neuron_cells_own_output(chunk: Path) -> None:
    from eilab.ml.surrogate_data import open_trials
    from eilab.ml.surrogate_hnn import group_names, replay

    tr = open_trials([chunk / "trials.zarr"])
    steps, names = round(T_MS / DT), group_names(CELL)
    assert tr.input.shape == (2, steps, len(names)) and tr.v.shape == (2, steps)
    # the stored inputs, fed back into NEURON as one train per group, give the stored V and spikes
    v, spikes, _ = replay(CELL, tr.input, DT)
    np.testing.assert_allclose(tr.v, v.astype(np.float32), rtol=0, atol=1e-4)
    for c in range(2):
        np.testing.assert_array_equal(tr.spikes[c], spikes[c])
        # spikes are upward crossings of 0 mV in the stored V, at the end of the step of the crossing
        vc = v[c]
        cross = np.flatnonzero((vc[:-1] < 0.0) & (vc[1:] >= 0.0)) + 1
        np.testing.assert_allclose(tr.spikes[c], (cross + 1) * DT, atol=1e-9)
    assert len(tr.spikes[0]) > 2, "the strong-input cell fires"
    # the input-spike cell: each E train delivers w at each time one step later, on the E groups only
    w, n_e = CELLS[1].w_e_pa, 4
    e_in = tr.input[1, :, :n_e].sum(axis=1)
    at = np.flatnonzero(e_in)
    np.testing.assert_array_equal(at, [round(t / DT) for t in CELLS[1].e_times_ms])
    np.testing.assert_allclose(e_in[at], K_E * w)
    assert sorted(set(tr.cells[1]["train_groups"][:K_E])) <= list(range(n_e))
    assert all(n_e <= g < len(names) for g in tr.cells[1]["train_groups"][K_E:])


@needs_hnn
def test_chunks_are_resumed_not_redone(chunk: Path) -> None:
    before = (chunk / "trials.zarr" / "zarr.json").stat().st_mtime_ns
    generate_chunk(str(chunk), CELLS, K_E, K_I, T_MS, DT, 5, CELL)
    assert (chunk / "trials.zarr" / "zarr.json").stat().st_mtime_ns == before


@needs_hnn
def test_a_chunk_with_dendrites_holds_their_voltage(chunk: Path, tmp_path: Path) -> None:
    """data.dendrites: the chunk also holds V of every dendritic section, as NEURON gives it for the stored
    inputs; a chunk without them is refused for a config that asks for them, naming the field."""
    from eilab.ml.surrogate_data import binned_dendrites, open_trials
    from eilab.ml.surrogate_hnn import dendrite_sections, replay
    from eilab.sim.config import ConfigError

    with pytest.raises(ConfigError, match="dendrites"):
        generate_chunk(str(chunk), CELLS, K_E, K_I, T_MS, DT, 5, CELL, dendrites=True)
    with pytest.raises(ConfigError, match="dendritic V"):
        open_trials([chunk / "trials.zarr"], dendrites=True)
    folder = tmp_path / "dend"
    generate_chunk(str(folder), CELLS[:1], K_E, K_I, 100.0, DT, 5, CELL, dendrites=True)
    tr = open_trials([folder / "trials.zarr"], dendrites=True)
    _, _, v_d = replay(CELL, tr.input, DT, dendrites=True)
    assert tr.dendrites is not None and tr.dendrites.shape == (1, round(100.0 / DT), len(dendrite_sections(CELL)))
    np.testing.assert_allclose(tr.dendrites, v_d.astype(np.float32), rtol=0, atol=1e-4)
    d = binned_dendrites(tr, 0.5)  # V at the end of each bin of 20 steps
    assert d is not None
    np.testing.assert_array_equal(d, tr.dendrites[:, 19::20])


def test_the_bundled_l5pyr_config_plans_neuron_chunks(tmp_path: Path) -> None:
    from eilab.cluster.surrogate_train import plan

    tc, _ = load_train_config(ROOT / "configs" / "train" / "surrogate_l5pyr.toml")
    jobs = plan(tc, tmp_path)
    assert tc.data.cell == CELL and tc.data.dt_ms == DT  # hnn-core's step
    assert [j[-1] for j in jobs["train"]] == tc.data.seeds.train
    assert all(tc.data.w_e_pa[0] <= c.w_e_pa <= tc.data.w_e_pa[1] for c in jobs["train"][0][1])


def test_missing_hnn_core_names_the_detailed_extra(tmp_path: Path) -> None:
    cfg = tmp_path / "l5.toml"
    cfg.write_text((ROOT / "configs" / "train" / "surrogate_l5pyr.toml").read_text())
    code = ("import sys; sys.modules['hnn_core'] = None; from eilab.cluster.cli import main; "
            f"sys.exit(main(['train', {str(cfg)!r}, '--out', {str(tmp_path / 'out')!r}]))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "pip install 'eilab[detailed]'" in res.stderr and "hnn_core" in res.stderr
    assert not (tmp_path / "out").exists()


@needs_hnn
@pytest.mark.parametrize("cell", ["L2_pyramidal", "L5_basket", "L2_basket"])
def test_the_other_hnn_cells_replay_their_own_output(cell: str) -> None:
    from eilab.ml.surrogate_hnn import chunk_trials, group_names, replay

    tr = chunk_trials(cell, [CellInput(40.0, 2.0, 10.0, 1.0)], K_E, K_I, 100.0, DT, 3)
    assert tr["input"].shape == (1, round(100.0 / DT), len(group_names(cell)))
    v, spikes, _ = replay(cell, tr["input"], DT)
    np.testing.assert_allclose(tr["v"], v.astype(np.float32), rtol=0, atol=1e-4)
    np.testing.assert_array_equal(tr["spike_times_ms"], spikes[0])
    assert np.ptp(v[0, round(20.0 / DT):]) > 5.0, "the input moves V"


@needs_hnn
def test_eilab_train_an_l5_surrogate_with_dendritic_targets(tmp_path: Path) -> None:
    """A tiny L5 pyramidal surrogate with data.dendrites through eilab train: the net has one extra output per
    dendritic section, meta.json and the scaling say so, the history has the dendritic loss, and the trained
    directory loads as a surrogate (for a network) whose V and spike outputs stay the first two."""
    import json

    import torch

    from eilab.ml.surrogate_hnn import dendrite_sections
    from eilab.ml.surrogate_net import load_surrogate
    from tests.test_surrogate import TINY

    cfg = tmp_path / "l5.toml"
    cfg.write_text(TINY.format(extra='cell = "L5_pyramidal"\ndendrites = true\ndt_ms = 0.025\nk_e = 20\nk_i = 10\n'
                                     'w_e_pa = [0.5, 3.0]\nw_i_pa = [0.5, 2.0]\nfi_w_e_pa = 1.0\nfi_w_i_pa = 1.0\n'
                                     'psp_total_pa = 2.0').replace("cells_per_chunk = 4", "cells_per_chunk = 2")
                   .replace("fi_t_ms = 300.0", "fi_t_ms = 200.0"))
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "eilab.cluster.cli", "train", str(cfg), "--out", str(out), "--quiet"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    meta = json.loads((out / "meta.json").read_text())
    n = len(dendrite_sections(CELL))
    assert meta["n_dendrites"] == n and len(meta["scaling"]["d_sd"]) == n
    history = json.loads((out / "metrics.json").read_text())["training"]["history"]
    assert all(h["train_dendrite_mse"] > 0 for h in history)
    s = load_surrogate(out)
    assert s.net.head.out_features == 2 + n
    assert s.net(torch.zeros(1, 5, meta["n_in"])).shape == (1, 5, 2 + n)
