"""Shared parts of the peer benchmark scripts (NEST and Brian2 C++ standalone).

The scripts do `import common`: run as `python benchmarks/peers/<script>.py`, a script's
own folder is first on sys.path.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

# Runs the binary and writes its peak RSS (KiB) to argv[1].
RSS_WRAPPER = (
    "import resource,subprocess,sys;rc=subprocess.call(sys.argv[2:]);"
    "open(sys.argv[1],'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss));"
    "sys.exit(rc)"
)


# -- command line -----------------------------------------------------------------------------

def make_parser(doc: str, *, order: bool = False) -> argparse.ArgumentParser:
    """Parser described by the first line of `doc`, with --order (if asked), --t-ms and --seed."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    if order:
        ap.add_argument("--order", type=int, default=2500)
    ap.add_argument("--t-ms", type=float, default=1000.0)
    ap.add_argument("--seed", type=int, default=12345)
    return ap


def add_i_ext_pa(ap: argparse.ArgumentParser) -> None:
    """Add --i-ext-pa, a constant input current in pA (COBA scripts)."""
    ap.add_argument("--i-ext-pa", type=float, default=0.0, help="constant input current")


def add_method(ap: argparse.ArgumentParser, default: str) -> None:
    """Add --method, the Brian2 state-update method (default: the published example's)."""
    ap.add_argument("--method", default=default, help=f"Brian2 state-update method (default {default})")


def add_build_dir(ap: argparse.ArgumentParser) -> None:
    """Add --build-dir, the Brian2 standalone project directory."""
    ap.add_argument("--build-dir", type=Path, default=None,
                    help="standalone project directory (default: a temp dir, removed after)")


# -- model helpers ------------------------------------------------------------------------------

def traub_steady_gates(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steady-state m, h, n of the Traub-Miles rates of Brette et al. (2007) benchmark 3 at
    u = V - V_T (mV): the COBAHH initial state of configs/cobahh.toml (gates at rest for V(0))."""
    def ratio(x: np.ndarray) -> np.ndarray:  # x / (exp(x) - 1), continuous at 0
        small = np.abs(x) < 1e-7
        return np.where(small, 1.0 - 0.5 * x, x / np.expm1(np.where(small, 1.0, x)))

    am, bm = 1.28 * ratio((13.0 - u) / 4.0), 1.4 * ratio((u - 40.0) / 5.0)
    ah, bh = 0.128 * np.exp((17.0 - u) / 18.0), 4.0 / (1.0 + np.exp((40.0 - u) / 5.0))
    an, bn = 0.16 * ratio((15.0 - u) / 5.0), 0.5 * np.exp((10.0 - u) / 40.0)
    return am / (am + bm), ah / (ah + bh), an / (an + bn)


# -- measurements and report ------------------------------------------------------------------

def self_peak_rss_mb() -> float:
    """Peak RSS of this process in MiB, one decimal."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def spike_stats(spikes: int, n_e: int, ne: int, ni: int, t_ms: float, synapses: int) -> dict[str, Any]:
    """Report keys spikes, mean/E/I rates (Hz) and synapses, from total and excitatory spike counts."""
    sec = t_ms / 1000.0
    return {
        "spikes": spikes, "mean_rate_hz": round(spikes / (ne + ni) / sec, 3),
        "rate_e_hz": round(n_e / ne / sec, 3),
        "rate_i_hz": round((spikes - n_e) / ni / sec, 3),
        "synapses": synapses,
    }


# -- NEST --------------------------------------------------------------------------------------

def import_nest() -> tuple[ModuleType, float]:
    """Import nest quietly (PYNEST_QUIET); return it and the seconds the import took."""
    t0 = time.perf_counter()
    os.environ.setdefault("PYNEST_QUIET", "1")
    import nest
    return nest, time.perf_counter() - t0


def reset_nest(nest: ModuleType, dt: float, seed: int) -> None:
    """Errors-only verbosity, fresh kernel with resolution dt (ms), one thread and rng_seed."""
    nest.verbosity = nest.VerbosityLevel.ERROR  # NEST 3.10 form of set_verbosity("M_ERROR")
    nest.ResetKernel()
    nest.SetKernelStatus({"resolution": dt, "local_num_threads": 1, "rng_seed": seed})


def simulate_nest(nest: ModuleType, t_ms: float) -> tuple[float, float]:
    """Run nest.Simulate(t_ms); return its wall time and this process's CPU time over it, seconds (one
    thread: the CPU time is what the wall time would be on an idle core)."""
    t0, c0 = time.perf_counter(), time.process_time()
    nest.Simulate(t_ms)
    return time.perf_counter() - t0, time.process_time() - c0


def nest_report(nest: ModuleType, label: dict[str, Any], n_neurons: int, args: argparse.Namespace,
                import_s: float, build_s: float, simulate: tuple[float, float],
                stats: dict[str, Any]) -> dict[str, Any]:
    """The NEST JSON report; `label` names the network, `simulate` is simulate_nest's (wall, CPU) seconds,
    `stats` holds spikes, rates, synapses and extras."""
    return {
        "simulator": "nest", "version": nest.__version__, **label,
        "n_neurons": n_neurons, "t_ms": args.t_ms, "import_s": round(import_s, 3),
        "build_s": round(build_s, 3), "simulate_s": round(simulate[0], 3), "simulate_cpu_s": round(simulate[1], 3),
        **stats,
        "peak_rss_mb": self_peak_rss_mb(),
        "seed": args.seed, "threads": nest.local_num_threads,
    }


def nest_ei_bernoulli(nest: ModuleType, nodes: Any, ne: int, p: float, we: float, wi: float,
                      delay: float) -> tuple[Any, int]:
    """Connect the first ne `nodes` (E, weight we) and the rest (I, weight -wi) to all `nodes` with
    pairwise_bernoulli p (autapses allowed, as Brian's connect(p=...)) and the delay (ms); one
    spike_recorder records every node. Returns it and the number of recurrent synapses."""
    conn = {"rule": "pairwise_bernoulli", "p": p}
    nest.Connect(nodes[:ne], nodes, conn, {"weight": we, "delay": delay})
    nest.Connect(nodes[ne:], nodes, conn, {"weight": -wi, "delay": delay})
    synapses = int(nest.num_connections)
    rec = nest.Create("spike_recorder")
    nest.Connect(nodes, rec)
    return rec, synapses


def nest_ei_report(nest: ModuleType, label: dict[str, Any], args: argparse.Namespace, nodes: Any, ne: int,
                   rec: Any, synapses: int, import_s: float, t0: float) -> dict[str, Any]:
    """Simulate args.t_ms and return the NEST report of an E/I network (E: the first ne nodes) whose
    build began at t0 (perf_counter)."""
    build_s = time.perf_counter() - t0
    simulate = simulate_nest(nest, args.t_ms)
    senders = np.asarray(rec.get("events", "senders"))
    n_e = int(np.count_nonzero(senders <= nodes[ne - 1].global_id))
    stats = spike_stats(int(senders.size), n_e, ne, len(nodes) - ne, args.t_ms, synapses)
    return nest_report(nest, label, len(nodes), args, import_s, build_s, simulate, stats)


# -- Brian2 C++ standalone ---------------------------------------------------------------------

def import_brian2() -> tuple[ModuleType, float]:
    """Import brian2; return it and the seconds the import took."""
    t0 = time.perf_counter()
    import brian2
    return brian2, time.perf_counter() - t0


def standalone_dir(build_dir: Path | None, prefix: str) -> Path:
    """`build_dir`, or a new temporary directory named with `prefix` when it is None."""
    return build_dir or Path(tempfile.mkdtemp(prefix=prefix))


def setup_standalone(b2: ModuleType, build_dir: Path, dt: Any, seed: int) -> Path:
    """C++ standalone device in build_dir, no OpenMP, clock dt (a Brian2 time) and seed set.

    The binary is run under RSS_WRAPPER.

    Returns the file the wrapper writes the binary's peak RSS (KiB) to.
    """
    rss_file = build_dir.resolve() / "main_maxrss_kib.txt"
    b2.set_device("cpp_standalone", directory=str(build_dir), build_on_run=False)
    b2.prefs.devices.cpp_standalone.openmp_threads = 0
    b2.prefs.devices.cpp_standalone.run_cmd_unix = [
        sys.executable, "-c", RSS_WRAPPER, str(rss_file), "./main"]
    b2.defaultclock.dt = dt
    b2.seed(seed)
    return rss_file


def build_and_run(b2: ModuleType, net: Any, t_ms: float, namespace: dict[str, Any], build_dir: Path,
                  t0: float) -> float:
    """Generate and compile `net` run for t_ms, then run the binary.

    Returns build_s: seconds from t0 (taken before setup_standalone) to the end of compilation.
    """
    net.run(t_ms * b2.ms, namespace=namespace)
    b2.device.build(directory=str(build_dir), compile=True, run=False)
    build_s = time.perf_counter() - t0
    b2.device.run(with_output=False)
    return build_s


def brian2_report(b2: ModuleType, label: dict[str, Any], n_neurons: int, args: argparse.Namespace,
                  import_s: float, build_s: float, stats: dict[str, Any], rss_file: Path,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Brian2 JSON report (timings from the device, binary's RSS from rss_file); `extra` goes last."""
    dev = b2.device
    return {
        "simulator": "brian2", "version": b2.__version__, **label,
        "n_neurons": n_neurons, "t_ms": args.t_ms, "import_s": round(import_s, 3),
        "build_s": round(build_s, 3), "compile_s": round(dev.timers["compile"]["make"], 3),
        "simulate_s": round(dev._last_run_time, 3),
        "binary_s": round(dev.timers["run_binary"], 3),
        **stats,
        "peak_rss_mb": round(int(rss_file.read_text()) / 1024, 1),
        "python_peak_rss_mb": self_peak_rss_mb(),
        "seed": args.seed, "threads": 1, **(extra or {}),
    }


def brian2_ei_report(b2: ModuleType, label: dict[str, Any], args: argparse.Namespace, neurons: Any, ne: int,
                     on_pre: tuple[str, str], p: float, namespace: dict[str, Any], build_dir: Path,
                     rss_file: Path, import_s: float, t0: float) -> dict[str, Any]:
    """Connect the first ne `neurons` (E, on_pre[0]) and the rest (I, on_pre[1]) to all with
    connect(p=p) and a delay of one step, record every spike, build (from t0), run args.t_ms and
    return the Brian2 report (with the state-update method args.method)."""
    dt = b2.defaultclock.dt
    syn_e = b2.Synapses(neurons[:ne], neurons, on_pre=on_pre[0], delay=dt)
    syn_e.connect(p=p)
    syn_i = b2.Synapses(neurons[ne:], neurons, on_pre=on_pre[1], delay=dt)
    syn_i.connect(p=p)
    mon = b2.SpikeMonitor(neurons)
    net = b2.Network(neurons, syn_e, syn_i, mon)
    build_s = build_and_run(b2, net, args.t_ms, namespace, build_dir, t0)
    counts = np.asarray(mon.count)
    n = len(neurons)
    stats = spike_stats(int(counts.sum()), int(counts[:ne].sum()), ne, n - ne, args.t_ms, len(syn_e) + len(syn_i))
    return brian2_report(b2, label, n, args, import_s, build_s, stats, rss_file, extra={"method": args.method})


def remove_temp_dir(build_dir: Path, given: Path | None) -> None:
    """Delete build_dir if it was a temporary one (no --build-dir given)."""
    if given is None:
        shutil.rmtree(build_dir, ignore_errors=True)
