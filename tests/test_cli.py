"""The `eilab` command as a user meets it: runs, summaries, and bad input (exit 2, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w

from conftest import CONFIGS, eilab, small_network
from eilab.sim.reader import open_run


def write(tmp_path: Path, cfg: dict, name: str = "cfg.toml") -> Path:
    p = tmp_path / name
    p.write_text(tomli_w.dumps(cfg))
    return p


def test_run_writes_complete_store_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "run1"
    res = eilab("run", str(write(tmp_path, small_network())), "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "rate (Hz)" in res.stdout and str(out) in res.stdout
    run = open_run(out)
    assert run.status == "complete"
    times, _ = run.spikes()
    summary = run.attrs["summary"]
    assert summary["spikes"] == times.size > 0
    assert run.attrs["seed"] == 3 and "numba" in run.attrs["versions"]


def test_seed_option_and_override(tmp_path: Path) -> None:
    out = tmp_path / "r"
    res = eilab("run", str(write(tmp_path, small_network())), "--out", str(out), "--quiet", "--seed", "11",
                "--set", "run.t_ms=50", "--set", "populations.E.n=40")
    assert res.returncode == 0, res.stderr
    run = open_run(out)
    assert run.attrs["seed"] == 11 and run.t_ms == 50.0
    assert run.populations["E"]["n"] == 40 and run.counts().shape == (50, 60)


BAD_CASES = [
    ("unknown key", lambda c: c["run"].update(duration=3), "run.duration: unknown key"),
    ("unknown param", lambda c: c["populations"][0]["params"].update(tau=3.0), "params for model 'lif_delta'"),
    ("wrong type", lambda c: c["run"].update(t_ms="1 s"), "run.t_ms"),
    ("negative size", lambda c: c["populations"][0].update(n=-5), "populations.0.n"),
    ("delay below dt", lambda c: c["projections"][0].update(delay_ms=0.05), "below the time step"),
    ("delay off grid", lambda c: c["projections"][0].update(delay_ms=0.15), "not a multiple of dt"),
    ("unknown population", lambda c: c["projections"][0].update(pre="X"), "projections.0.pre"),
    ("negative weight", lambda c: c["projections"][2].update(weight=-1.0), "projections.2.weight"),
    ("missing file", lambda c: c["drive"].append({"target": "E", "kind": "current", "file": "nope.npy"}),
     "drive.2.file"),
    ("bad expression", lambda c: c["run"].update(t_ms="= 2 * undefined_name"), "undefined_name"),
    ("probe out of range", lambda c: c["record"]["probes"][0].update(neurons=[500]), "record.probes.0.neurons"),
]


@pytest.mark.parametrize(("label", "mutate", "message"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_exits_2_without_run_dir(tmp_path: Path, label: str, mutate, message: str) -> None:
    cfg = small_network()
    mutate(cfg)
    out = tmp_path / "out"
    res = eilab("run", str(write(tmp_path, cfg)), "--out", str(out), "--quiet")
    assert res.returncode == 2, (label, res.stdout, res.stderr)
    assert message in res.stderr, res.stderr
    assert not out.exists()


def test_missing_config_file(tmp_path: Path) -> None:
    res = eilab("run", str(tmp_path / "absent.toml"), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "no such config file" in res.stderr
    assert not (tmp_path / "o").exists()


def test_existing_run_is_never_overwritten_without_force(tmp_path: Path) -> None:
    cfg = write(tmp_path, small_network(t_ms=20.0))
    out = tmp_path / "run"
    assert eilab("run", str(cfg), "--out", str(out), "--quiet").returncode == 0
    first = open_run(out).attrs["started"]
    res = eilab("run", str(cfg), "--out", str(out), "--quiet")
    assert res.returncode == 2 and "--force" in res.stderr
    assert open_run(out).attrs["started"] == first
    assert eilab("run", str(cfg), "--out", str(out), "--quiet", "--force").returncode == 0
    assert open_run(out).attrs["started"] != first


def test_force_refuses_to_delete_a_non_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "data.txt").write_text("keep me")
    res = eilab("run", str(write(tmp_path, small_network(t_ms=20.0))), "--out", str(out), "--force", "--quiet")
    assert res.returncode == 2 and (out / "data.txt").read_text() == "keep me"


def test_bench_prints_one_json_line() -> None:
    res = eilab("bench", "brunel", "--order", "100", "--t-ms", "100")
    assert res.returncode == 0, res.stderr
    line = json.loads(res.stdout.strip().splitlines()[-1])
    assert line["n_neurons"] == 500 and line["synapses"] == 500 * (40 + 10)
    for key in ("build_s", "simulate_s", "spikes", "synaptic_events", "peak_rss_mb", "bytes_per_synapse"):
        assert key in line
    assert line["bytes_per_synapse"] <= 8


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.toml")))
def test_bundled_configs_validate(name: str) -> None:
    from eilab.sim.config import load_config

    cfg, _ = load_config(CONFIGS / name)
    assert cfg.n_total > 0
