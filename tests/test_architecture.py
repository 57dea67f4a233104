"""The import rules of docs/architecture.md, checked on the source (every import statement, also inside
functions) and, for the reader and the analysis package, on what importing them really loads."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

FOLDERS = {"sim": "eilab.sim", "analysis": "eilab.analysis", "ml": "eilab.ml", "cluster": "eilab.cluster"}
KERNELS = {"rng", "models", "step", "network", "weights", "plasticity", "cycles"}


def imports_of(path: Path) -> set[str]:
    """Every eilab module a source file imports (module names; `from eilab.sim import x` counts as eilab.sim.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("eilab")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("eilab"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def modules() -> dict[str, set[str]]:
    return {f"{pkg}.{p.stem}": imports_of(p) for folder, pkg in FOLDERS.items()
            for p in sorted((ROOT / folder).glob("*.py")) if p.stem != "__init__"}


@pytest.mark.parametrize(("layer", "forbidden"), [
    ("eilab.sim.", ("eilab.analysis", "eilab.ml", "eilab.cluster")),
    ("eilab.analysis.", ("eilab.sim.store", "eilab.sim.rundir", "eilab.sim.engine", "eilab.sim.build", "eilab.cluster",
                         "eilab.ml")),
    ("eilab.ml.", ("eilab.sim.store", "eilab.sim.rundir", "eilab.sim.engine", "eilab.cluster")),
    *[(f"eilab.sim.{k}", ("eilab.sim.engine", "eilab.sim.build", "eilab.sim.store", "eilab.sim.rate"))
      for k in sorted(KERNELS)],
])
def test_layers_import_only_what_docs_architecture_allows(layer: str, forbidden: tuple[str, ...]) -> None:
    bad = {(m, i) for m, found in modules().items() if m.startswith(layer) for i in found
           if i.startswith(forbidden)}
    assert not bad, f"imports docs/architecture.md forbids: {sorted(bad)}"


def test_the_reader_imports_only_the_config() -> None:
    allowed = {"eilab.sim.config", "eilab.sim.config.Config", "eilab.sim.expressions"}
    assert imports_of(ROOT / "sim" / "reader.py") <= allowed
    assert all(i.startswith("eilab.sim.expressions") for i in imports_of(ROOT / "sim" / "config.py"))


def loaded_after(statement: str) -> dict:
    code = (f"import sys, json, zarr; before = dict(zarr.config.get('threading')); {statement}; "
            "import matplotlib; print(json.dumps({'modules': sorted(sys.modules), "
            "'zarr': zarr.config.get('threading') == before, 'backend': matplotlib.get_backend()}))")
    env = {"MPLBACKEND": "svg", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_importing_the_reader_loads_no_engine_mpi_or_plotting() -> None:
    seen = loaded_after("import eilab.sim.reader")
    mods = set(seen["modules"])
    assert not mods & {"numba", "mpi4py", "matplotlib.pyplot", "eilab.sim.store", "eilab.sim.engine"}
    assert {m for m in mods if m.startswith("eilab.")} <= {"eilab.sim", "eilab.sim.reader", "eilab.sim.config",
                                                            "eilab.sim.expressions", "eilab.sim.kernel_cache"}
    assert seen["zarr"], "importing the reader changed zarr's settings"


def test_importing_analysis_keeps_the_users_matplotlib_backend() -> None:
    seen = loaded_after("import eilab.analysis.report")
    assert seen["backend"] == "svg"
    assert "eilab.sim.store" not in seen["modules"] and "mpi4py" not in seen["modules"]


def test_kernels_are_cached_in_a_folder_keyed_by_every_simulation_source() -> None:
    """numba keys its cache by each function's own file; step.advance inlines models.py: a folder per version
    of all the sources keeps a kernel compiled from old models out (sim/kernel_cache.py)."""
    from eilab.sim.kernel_cache import source_digest

    for first in ("import numba; import eilab.sim.step", "import eilab.sim.step; import numba"):
        code = f"{first}; print(numba.config.CACHE_DIR)"
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert Path(res.stdout.strip()).name == source_digest()


def test_commands_that_open_no_run_load_neither_zarr_nor_the_engine(tmp_path: Path) -> None:
    """`eilab configs` and a config refused with exit 2 open no run: they import neither zarr (a third of a
    start-up) nor the engine and numba, so that such commands answer at once."""
    code = ("import sys, json; from eilab.cluster.cli import main; "
            "codes = [main(['configs']), main(['run', 'ring600', '--out', 'r', '--set', 'run.t_ms=-1'])]; "
            "print(json.dumps({'codes': codes, 'modules': sorted(sys.modules)}))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    seen = json.loads(res.stdout.splitlines()[-1])
    assert seen["codes"] == [0, 2] and "run.t_ms" in res.stderr and not (tmp_path / "r").exists()
    assert not set(seen["modules"]) & {"zarr", "numba", "eilab.sim.reader", "eilab.sim.store", "eilab.sim.engine"}
