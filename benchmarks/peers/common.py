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


def add_build_dir(ap: argparse.ArgumentParser) -> None:
    """Add --build-dir, the Brian2 standalone project directory."""
    ap.add_argument("--build-dir", type=Path, default=None,
                    help="standalone project directory (default: a temp dir, removed after)")


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


def simulate_nest(nest: ModuleType, t_ms: float) -> float:
    """Run nest.Simulate(t_ms); return its wall time in seconds."""
    t0 = time.perf_counter()
    nest.Simulate(t_ms)
    return time.perf_counter() - t0


def nest_report(nest: ModuleType, label: dict[str, Any], n_neurons: int, args: argparse.Namespace,
                import_s: float, build_s: float, simulate_s: float, stats: dict[str, Any]) -> dict[str, Any]:
    """The NEST JSON report; `label` names the network, `stats` holds spikes, rates, synapses and extras."""
    return {
        "simulator": "nest", "version": nest.__version__, **label,
        "n_neurons": n_neurons, "t_ms": args.t_ms, "import_s": round(import_s, 3),
        "build_s": round(build_s, 3), "simulate_s": round(simulate_s, 3),
        **stats,
        "peak_rss_mb": self_peak_rss_mb(),
        "seed": args.seed, "threads": nest.local_num_threads,
    }


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


def remove_temp_dir(build_dir: Path, given: Path | None) -> None:
    """Delete build_dir if it was a temporary one (no --build-dir given)."""
    if given is None:
        shutil.rmtree(build_dir, ignore_errors=True)
