"""eilab as a cluster user installs it: bundled configs found by name, and a wheel in a fresh virtualenv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import tomli_w

from conftest import CONFIGS, ROOT, eilab, small_network
from eilab.sim.config import load_config
from eilab.sim.reader import open_run

BUNDLED = sorted(p.stem for p in CONFIGS.glob("*.toml"))


def first_comment(path: Path) -> str:
    return next(line for line in path.read_text().splitlines() if line.startswith("#")).lstrip("#").strip()


def test_configs_lists_every_bundled_config_with_its_description() -> None:
    res = eilab("configs")
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line for line in res.stdout.splitlines()[:len(BUNDLED)]}
    assert sorted(rows) == BUNDLED
    for name in BUNDLED:
        assert first_comment(CONFIGS / f"{name}.toml") in rows[name]


def test_bundled_configs_reference_no_files() -> None:
    """A bundled config must run from any directory: no drive file (the only path a config may hold) in it."""
    for path in CONFIGS.glob("*.toml"):
        cfg, _ = load_config(path)
        assert all(d.file is None for d in cfg.drive), path.name


def test_bare_name_runs_the_bundled_config_from_anywhere(tmp_path: Path) -> None:
    out = tmp_path / "r"
    res = eilab("run", "ring600", "--out", str(out), "--quiet", "--set", "run.t_ms=20", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert open_run(out).attrs["n_neurons"] == 600


def test_an_existing_file_wins_over_a_bundled_name(tmp_path: Path) -> None:
    (tmp_path / "ring600").write_text(tomli_w.dumps(small_network(t_ms=20.0)))
    out = tmp_path / "r"
    res = eilab("run", "ring600", "--out", str(out), "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert open_run(out).attrs["n_neurons"] == 100  # small_network, not the 600-neuron ring


def test_unknown_name_exits_2_listing_the_bundled_names(tmp_path: Path) -> None:
    out = tmp_path / "r"
    res = eilab("run", "ring6000", "--out", str(out), cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "ring6000" in res.stderr and all(name in res.stderr for name in BUNDLED)
    assert not out.exists()


def build_wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the sources named in pyproject.toml (no build/ left in the repository)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    src = tmp_path / "src"
    for name in ["pyproject.toml", project["project"]["readme"]]:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, src / name)
    for folder in project["tool"]["setuptools"]["package-dir"].values():
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "-w", str(dist), "--no-deps", "-q"], check=True,
                   timeout=600)
    (wheel,) = dist.glob("eilab-*.whl")
    return wheel


def test_wheel_in_a_fresh_venv_runs_bundled_configs(tmp_path: Path) -> None:
    """Slow (a minute or more): builds the wheel, installs it and its dependencies into a new virtualenv, and
    compiles the numba kernels into an empty NUMBA_CACHE_DIR, as on a cluster with a shared file system."""
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-compile",
                    str(wheel)], check=True, timeout=600)  # this pip into the new venv: no pip of its own to set up
    cache, work = tmp_path / "numba-cache", tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "NUMBA_CACHE_DIR")}
    env |= {"PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}", "NUMBA_CACHE_DIR": str(cache)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, cwd=work, env=env, timeout=600)

    where = run("python", "-c", "import eilab.cluster.cli as m; print(m.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(venv), where  # the installed copy, not the repository's

    listed = run("eilab", "configs")
    assert listed.returncode == 0, listed.stderr
    assert all(f"\n{name} " in f"\n{listed.stdout}" for name in BUNDLED), listed.stdout

    out = tmp_path / "ring"
    ring = run("eilab", "run", "ring600", "--out", str(out), "--quiet", "--set", "run.t_ms=200")
    assert ring.returncode == 0, ring.stderr
    assert open_run(out).attrs["n_neurons"] == 600 and open_run(out).t_ms == 200.0
    assert list(cache.rglob("*.nbi")), "numba wrote no cache index into NUMBA_CACHE_DIR"
    assert not list(venv.rglob("eilab/**/*.nbi")), "numba cached beside the installed package"

    bench = run("eilab", "bench", "brunel", "--order", "500", "--t-ms", "100")
    assert bench.returncode == 0, bench.stderr
    line = json.loads(bench.stdout.strip().splitlines()[-1])
    # Brunel (2000) order N = 500: 4N + N neurons, each with epsilon (4N + N) inputs, epsilon = 0.1
    assert line["n_neurons"] == 2500 and line["synapses"] == 2500 * 250
    assert line["spikes"] > 0
