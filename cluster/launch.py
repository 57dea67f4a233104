"""Job launchers for searches: worker processes on this machine (`eilab study optimize --jobs N` starts N - 1
beside the one it runs itself) and the
optuna-dashboard server (`eilab dashboard`). The search itself (study, samplers, trials) is in study.py."""

from __future__ import annotations

import subprocess
import sys
import time

import optuna


def start_workers(argv: list[str], jobs: int) -> list[subprocess.Popen]:
    """Start `jobs` processes of `eilab <argv>` (each one worker of the same study), a little apart (fewer
    surplus trials from workers asking at once)."""
    cmd = [sys.executable, "-m", "eilab.cluster.cli", *argv]
    procs = []
    for _ in range(jobs):
        procs.append(subprocess.Popen(cmd))
        time.sleep(0.2)
    return procs


def wait_workers(procs: list[subprocess.Popen]) -> int:
    """Wait for the workers; the worst exit status (a worker killed by a signal counts as failed)."""
    codes = [p.wait() for p in procs]
    return max((c if c >= 0 else 1 for c in codes), default=0)


def serve_dashboard(storage: optuna.storages.BaseStorage, host: str, port: int) -> None:
    """Serve optuna-dashboard for every study in `storage` until interrupted (Ctrl-C)."""
    from optuna_dashboard import run_server

    print(f"optuna-dashboard on http://{host}:{port}/dashboard/ (Ctrl-C stops it)", flush=True)
    run_server(storage, host=host, port=port)
