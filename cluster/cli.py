"""The `eilab` command. Bad input exits with status 2 and a message naming the field or file."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import traceback
from datetime import datetime
from pathlib import Path

from eilab.cluster.comm import world
from eilab.cluster.partition import block_size, bounds
from eilab.sim.config import Config, ConfigError, load_config
from eilab.sim.store import RunExistsError, RunNotCompleteError

EXIT_BAD_INPUT = 2
BENCH_CONFIGS = {"brunel": "brunel.toml", "coba": "coba.toml", "ring600": "ring600.toml"}


def configs_dir() -> Path:
    """The bundled configs/ folder (beside the package sources)."""
    return Path(__file__).resolve().parent.parent / "configs"


def default_run_dir(config_path: str, seed: int) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(config_path).stem}-{stamp}-seed{seed}"


def _format_summary(summary: dict) -> str:
    lines = [f"{'population':<12}{'n':>8}{'spikes':>12}{'rate (Hz)':>12}"]
    for name, p in summary["populations"].items():
        lines.append(f"{name:<12}{p['n']:>8}{p['spikes']:>12}{p['rate_hz']:>12.3f}")
    t = summary["timings"]
    lines.append(
        f"{summary['spikes']} spikes, mean rate {summary['mean_rate_hz']:.3f} Hz, {summary['synapses']} synapses; "
        f"build {t['build_s']:.2f} s, simulate {t['simulate_s']:.2f} s, wall {t['wall_s']:.2f} s"
    )
    lines.append(f"run stored in {summary['run_dir']}")
    return "\n".join(lines)


def run_on_world(cfg: Config, raw: dict, out: Path, force: bool, progress: bool, separate_phases: bool = False) -> dict:
    """Run on however many ranks this process was started with (mpiexec/srun), or on one."""
    from eilab.sim.engine import run

    comm = world()
    block = block_size(cfg.n_total)
    out = Path(comm.bcast(str(out)))
    return run(cfg, raw, out, force=force, progress=progress, comm=comm, separate_phases=separate_phases,
               bounds=bounds(cfg.n_total, comm.size, block), block=block)


def cmd_run(args: argparse.Namespace) -> int:
    overrides = list(args.set or [])
    if args.seed is not None:
        overrides.append(f"run.seed={args.seed}")
    cfg, raw = load_config(args.config, overrides)
    out = Path(args.out) if args.out else default_run_dir(args.config, cfg.run.seed)
    summary = run_on_world(cfg, raw, out, args.force, cfg.run.progress and not args.quiet)
    if world().rank == 0:
        print(_format_summary(summary))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from eilab.sim.engine import resume
    from eilab.sim.store import open_run

    comm = world()
    try:
        run = open_run(args.run_dir, allow_incomplete=True)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from None
    n, block = int(run.attrs["n_neurons"]), int(run.attrs["partition_block"])
    summary = resume(args.run_dir, progress=not args.quiet, comm=comm, bounds=bounds(n, comm.size, block))
    if comm.rank == 0:
        print(_format_summary(summary))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from eilab.analysis.report import analyze, headline
    from eilab.sim.store import open_run

    try:
        open_run(args.run_dir)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from None
    summary = analyze(args.run_dir, skip_ms=args.skip_ms, spectrum=not args.no_spectrum)
    print(headline(summary))
    print(f"summary written to {Path(summary['run']) / 'summary.json'}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    config = configs_dir() / BENCH_CONFIGS[args.network]
    overrides = [f"run.t_ms={args.t_ms}", "run.progress=false", *(args.set or [])]
    if args.network == "brunel":
        overrides.append(f"vars.order={args.order}")
    cfg, raw = load_config(config, overrides)
    comm = world()
    tmp = Path(comm.bcast(tempfile.mkdtemp(prefix="eilab-bench-")))
    try:
        s = run_on_world(cfg, raw, tmp / "run", force=False, progress=False, separate_phases=args.separate_phases)
    finally:
        comm.barrier()
        if comm.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
    if comm.rank != 0:
        return 0
    t = s["timings"]
    extra = {"profile": phase_profile(s)} if args.profile else {}
    print(json.dumps({
        "simulator": "eilab", "network": args.network, "order": args.order if args.network == "brunel" else None,
        "n_neurons": cfg.n_total, "t_ms": cfg.run.t_ms, "n_ranks": s["n_ranks"], "build_s": t["build_s"],
        "jit_s": t["jit_s"], "simulate_s": t["simulate_s"],
        **{k: t[k] for k in ("update_s", "drive_s", "neuron_s", "bookkeeping_s", "exchange_s", "deliver_s",
                             "record_s")}, "spikes": s["spikes"],
        "synaptic_events": s["synaptic_events"], "synapses": s["synapses"],
        "bytes_per_synapse": s["connectivity_bytes"] / max(1, s["synapses"]),
        "mean_rate_hz": s["mean_rate_hz"],
        **{f"rate_{k}_hz": v["rate_hz"] for k, v in s["populations"].items()},
        "peak_rss_mb": s["peak_rss_mb"], "peak_rss_mb_per_rank": s["peak_rss_mb_per_rank"],
        "per_rank": [{k: r[k] for k in ("update_s", "drive_ahead_s", "exchange_s", "deliver_s")}
                     for r in s["timings_per_rank"]], **extra,
    }))
    return 0


def phase_profile(summary: dict) -> dict:
    """Time per unit of work of each phase, summed over ranks: ns per neuron-step (drive and
    arrivals, neuron update, spike bookkeeping) and ns per synaptic event (delivery, and the whole
    simulate phase); exchange and recording in seconds."""
    ranks = summary["timings_per_rank"]
    steps = sum(r["neuron_steps"] for r in ranks)
    events = max(1, summary["synaptic_events"])

    def total(key: str) -> float:
        return sum(r[key] for r in ranks)

    return {
        "drive_ns_per_neuron_step": 1e9 * total("drive_s") / steps,
        "neuron_ns_per_neuron_step": 1e9 * total("neuron_s") / steps,
        "bookkeeping_ns_per_neuron_step": 1e9 * total("bookkeeping_s") / steps,
        "deliver_ns_per_event": 1e9 * total("deliver_s") / events,
        "simulate_ns_per_event": 1e9 * total("simulate_s") / events,
        "exchange_s": total("exchange_s"), "record_s": total("record_s"),
        "neuron_steps": steps, "synaptic_events": events,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eilab", description="E/I spiking-network experiments")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="simulate a config into a run directory")
    p.add_argument("config", help="TOML config, e.g. configs/ring600.toml")
    p.add_argument("--out", help="run directory (default runs/<config>-<time>-seed<N>)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value, e.g. --set run.t_ms=500 --set vars.order=500")
    p.add_argument("--seed", type=int, help="random seed (same as --set run.seed=N)")
    p.add_argument("--force", action="store_true", help="replace an existing run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    r = sub.add_parser("resume", help="continue a killed run from its last checkpoint (any number of ranks)")
    r.add_argument("run_dir", help="the run directory")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_resume)

    a = sub.add_parser("analyze", help="statistics, MFEs, balance and spectra of a run: summary.json and figures")
    a.add_argument("run_dir", help="the run directory")
    a.add_argument("--skip-ms", type=float, default=100.0, help="initial transient left out, ms")
    a.add_argument("--no-spectrum", action="store_true", help="skip the eigenvalues of the connectivity")
    a.set_defaults(func=cmd_analyze)

    b = sub.add_parser("bench", help="time a bundled network and print one JSON line")
    b.add_argument("network", choices=sorted(BENCH_CONFIGS))
    b.add_argument("--order", type=int, default=2500, help="Brunel order N (N_E = 4N, N_I = N)")
    b.add_argument("--t-ms", type=float, default=1000.0, help="simulated time, ms")
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override")
    b.add_argument("--profile", action="store_true",
                   help="add the time per phase: ns per neuron-step (drive, update, bookkeeping), ns per event")
    b.add_argument("--separate-phases", action="store_true",
                   help="one kernel call per slice with exchange and delivery outside, as on several ranks")
    b.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, RunExistsError, RunNotCompleteError) as e:
        print(f"eilab: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BaseException:
        comm = world()
        if comm.size > 1:  # the other ranks would wait in a collective for ever: end the whole job
            traceback.print_exc()
            sys.stderr.flush()
            comm.abort(1)
        raise


if __name__ == "__main__":
    sys.exit(main())
