"""What produced a run: package versions, host, and the eilab source commit."""

from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from eilab.sim.config import Config
from eilab.sim.network import population_offsets

PACKAGES = ("eilab", "numpy", "numba", "llvmlite", "zarr", "pydantic", "mpi4py", "scipy")


@cache
def versions() -> dict[str, str]:
    """Versions of Python and the packages a run depends on, looked up once per process."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@cache
def git_commit() -> str | None:
    """Commit of the eilab source tree, with '+dirty' when it has uncommitted changes; looked up once per process
    (the source a process runs is the one it imported; a study worker runs many runs)."""
    src = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def host() -> dict[str, str]:
    return {"node": platform.node(), "machine": platform.machine(), "system": platform.platform()}


def run_attrs(cfg: Config, raw: dict, n_ranks: int) -> dict[str, Any]:
    """The attributes a new run starts with: config as given and resolved, seed, provenance."""
    offs = population_offsets(cfg)
    return {
        "config": cfg.model_dump(mode="json"),
        "config_given": raw,
        "seed": cfg.run.seed,
        "dt_ms": cfg.run.dt_ms,
        "t_ms": cfg.run.t_ms,
        "n_neurons": cfg.n_total,
        "populations": [{"name": p.name, "type": p.type, "n": p.n, "gid0": offs[p.name], "model": p.model}
                        for p in cfg.populations],
        "n_ranks": n_ranks,
        "versions": dict(versions()),
        "git_commit": git_commit(),
        "host": host(),
        "started": datetime.now(UTC).isoformat(),
    }
