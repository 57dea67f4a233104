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
from typing import TYPE_CHECKING

from eilab.cluster.comm import world
from eilab.sim.config import Config, ConfigError, load_config
from eilab.sim.interrupt import Interrupted
from eilab.sim.rundir import RunDirError

if TYPE_CHECKING:
    from eilab.sim.engine import RunSummary

EXIT_BAD_INPUT = 2
ANALYSIS_MODULES = ("scipy", "matplotlib", "xarray")  # the analysis extra
BENCH_NETWORKS = ("brunel", "coba", "cuba", "cobahh", "ring600")  # bundled configs that `eilab bench` times
SIZE_CHECK_HELP = ("run even if the estimated memory or disk (connectivity, state, counts, probes) exceeds what "
                   "this machine has available (e.g. for a run spread over several machines)")


def configs_dir() -> Path:
    """The bundled configs: the package eilab.configs, beside eilab.cluster both in the source tree (configs/,
    editable install) and in an installed wheel (site-packages/eilab/configs/)."""
    return Path(__file__).resolve().parent.parent / "configs"


def bundled_configs() -> dict[str, Path]:
    """The bundled configs by name (file name without .toml)."""
    return {p.stem: p for p in sorted(configs_dir().glob("*.toml"))}


def resolve_config(name: str) -> Path:
    """The config a user means: a file that exists wins; a bare name (`ring600` or `ring600.toml`) is then looked
    up among the bundled configs. Anything else is left to load_config, which names the missing file."""
    path = Path(name)
    if path.is_file() or path.name != name:
        return path
    bundled = bundled_configs()
    stem = name.removesuffix(".toml")
    if stem not in bundled:
        raise ConfigError(f"{name}: no such config file, nor a bundled config of that name; bundled: "
                          f"{', '.join(bundled)} (`eilab configs` describes them), or give the path to a .toml file")
    return bundled[stem]


def first_comment(path: Path) -> str:
    """The first comment line of a config file: its one-line description ('' if it has none)."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def default_run_dir(config_path: str, seed: int) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(config_path).stem}-{stamp}-seed{seed}"


def _format_summary(summary: RunSummary) -> str:
    lines = [f"{'population':<12}{'n':>8}{'spikes':>12}{'rate (Hz)':>12}"]
    for name, p in summary.populations.items():
        lines.append(f"{name:<12}{p['n']:>8}{p['spikes']:>12}{p['rate_hz']:>12.3f}")
    t = summary.timings
    lines.append(
        f"{summary.spikes} spikes, mean rate {summary.mean_rate_hz:.3f} Hz, {summary.synapses} synapses; "
        f"build {t['build_s']:.2f} s, simulate {t['simulate_s']:.2f} s, wall {t['wall_s']:.2f} s"
    )
    lines.append(f"run stored in {summary.run_dir}")
    return "\n".join(lines)


def run_on_world(cfg: Config, raw: dict, out: Path, force: bool, progress: bool, separate_phases: bool = False,
                 keep_others: bool = False) -> RunSummary:
    """Run on however many ranks this process was started with (mpiexec/srun), or on one."""
    from eilab.sim.engine import run

    comm = world()
    out = Path(comm.bcast(str(out)))
    return run(cfg, raw, out, force=force, progress=progress, comm=comm, separate_phases=separate_phases,
               keep_others=keep_others)


def cmd_run(args: argparse.Namespace) -> int:
    overrides = list(args.set or [])
    if args.seed is not None:
        overrides.append(f"run.seed={args.seed}")
    config = resolve_config(args.config)
    cfg, raw = load_config(config, overrides)
    out = Path(args.out) if args.out else default_run_dir(str(config), cfg.run.seed)
    if not args.no_size_check:
        from eilab.sim.budget import check_size

        check_size(cfg, out, world())
    summary = run_on_world(cfg, raw, out, args.force, cfg.run.progress and not args.quiet,
                           keep_others=args.keep_other_files)
    if world().rank == 0:
        print(_format_summary(summary))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from eilab.sim.engine import resume
    from eilab.sim.reader import open_run

    comm = world()
    try:
        open_run(args.run_dir, allow_incomplete=True)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from None
    summary = resume(args.run_dir, progress=not args.quiet, comm=comm)
    if comm.rank == 0:
        print(_format_summary(summary))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    if world().size > 1:
        raise ConfigError("eilab analyze runs in one process: run it without mpiexec")
    try:
        from eilab.analysis.report import analyze, headline
    except ImportError as e:
        if (e.name or "").partition(".")[0] not in ANALYSIS_MODULES:
            raise
        raise ConfigError(f"eilab analyze needs the analysis extra ({', '.join(ANALYSIS_MODULES)}; {e.name} is "
                          "missing): pip install 'eilab[analysis]'") from None
    from eilab.sim.reader import open_run

    try:
        open_run(args.run_dir)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from None
    summary = analyze(args.run_dir, skip_ms=args.skip_ms, spectrum=not args.no_spectrum)
    print(headline(summary))
    print(f"summary written to {Path(summary['run']) / 'summary.json'}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    config = bundled_configs()[args.network]
    overrides = [f"run.t_ms={args.t_ms}", "run.progress=false", *(args.set or [])]
    if args.network == "brunel":
        overrides.append(f"vars.order={args.order}")
    cfg, raw = load_config(config, overrides)
    comm = world()
    if not args.no_size_check:
        from eilab.sim.budget import check_size

        check_size(cfg, tempfile.gettempdir(), comm)
    tmp = Path(comm.bcast(tempfile.mkdtemp(prefix="eilab-bench-")))
    try:
        s = run_on_world(cfg, raw, tmp / "run", force=False, progress=False, separate_phases=args.separate_phases)
    finally:
        comm.barrier()
        if comm.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
    if comm.rank != 0:
        return 0
    t = s.timings
    extra = {"profile": phase_profile(s)} if args.profile else {}
    print(json.dumps({
        "simulator": "eilab", "network": args.network, "order": args.order if args.network == "brunel" else None,
        "n_neurons": cfg.n_total, "t_ms": cfg.run.t_ms, "n_ranks": s.n_ranks, "build_s": t["build_s"],
        "jit_s": t["jit_s"], "simulate_s": t["simulate_s"], "simulate_cpu_s": t["simulate_cpu_s"],
        **{k: t[k] for k in ("update_s", "drive_s", "neuron_s", "bookkeeping_s", "exchange_s", "deliver_s",
                             "record_s")}, "spikes": s.spikes,
        "synaptic_events": s.synaptic_events, "synapses": s.synapses,
        "bytes_per_synapse": s.connectivity_bytes / max(1, s.synapses),
        "mean_rate_hz": s.mean_rate_hz,
        **{f"rate_{k}_hz": v["rate_hz"] for k, v in s.populations.items()},
        "peak_rss_mb": s.peak_rss_mb, "peak_rss_mb_per_rank": s.peak_rss_mb_per_rank,
        "per_rank": [{k: r[k] for k in ("update_s", "drive_ahead_s", "exchange_s", "deliver_s")}
                     for r in s.timings_per_rank], **extra,
    }))
    return 0


def cmd_configs(args: argparse.Namespace) -> int:
    bundled = bundled_configs()
    width = max(map(len, bundled))
    for name, path in bundled.items():
        print(f"{name:<{width}}  {first_comment(path)}")
    print(f"\nrun one with `eilab run NAME`; copy one from {configs_dir()} to change it")
    return 0


def phase_profile(summary: RunSummary) -> dict:
    """Time per unit of work of each phase, summed over ranks: ns per neuron-step (drive and
    arrivals, neuron update, spike bookkeeping) and ns per synaptic event (delivery, and the whole
    simulate phase); exchange and recording in seconds."""
    ranks = summary.timings_per_rank
    steps = sum(r["neuron_steps"] for r in ranks)
    events = max(1, summary.synaptic_events)

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
    p.add_argument("config", help="TOML config file, or the name of a bundled config (eilab configs lists them), "
                   "e.g. ring600")
    p.add_argument("--out", help="run directory (default runs/<config>-<time>-seed<N>)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value, e.g. --set run.t_ms=500 --set vars.order=500")
    p.add_argument("--seed", type=int, help="random seed (same as --set run.seed=N)")
    p.add_argument("--force", action="store_true",
                   help="replace the run in an existing run directory (only eilab's own files: run.zarr, figures/, "
                        "summary.json); a directory holding other files is refused")
    p.add_argument("--keep-other-files", action="store_true",
                   help="with --force: replace the run even though the directory holds other files, keeping them")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-size-check", action="store_true", help=SIZE_CHECK_HELP)
    p.set_defaults(func=cmd_run)

    r = sub.add_parser("resume", help="continue a killed run from its last checkpoint (any number of ranks)")
    r.add_argument("run_dir", help="the run directory")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_resume)

    a = sub.add_parser("analyze", help="statistics, MFEs, balance and spectra of a run: summary.json and figures")
    a.add_argument("run_dir", help="the run directory")
    a.add_argument("--skip-ms", type=float, help="initial transient left out, ms (default 100, at most a fifth of "
                   "the run)")
    a.add_argument("--no-spectrum", action="store_true", help="skip the eigenvalues of the connectivity")
    a.set_defaults(func=cmd_analyze)

    b = sub.add_parser("bench", help="time a bundled network and print one JSON line")
    b.add_argument("network", choices=BENCH_NETWORKS)
    b.add_argument("--order", type=int, default=2500, help="Brunel order N (N_E = 4N, N_I = N)")
    b.add_argument("--t-ms", type=float, default=1000.0, help="simulated time, ms")
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override")
    b.add_argument("--profile", action="store_true",
                   help="add the time per phase: ns per neuron-step (drive, update, bookkeeping), ns per event")
    b.add_argument("--separate-phases", action="store_true",
                   help="one kernel call per slice with exchange and delivery outside, as on several ranks")
    b.add_argument("--no-size-check", action="store_true", help=SIZE_CHECK_HELP)
    b.set_defaults(func=cmd_bench)

    c = sub.add_parser("configs", help="list the bundled configs (run one with `eilab run NAME`)")
    c.set_defaults(func=cmd_configs)
    from eilab.cluster.study_cli import add_parsers as add_search_parsers  # study, dashboard, tune

    add_search_parsers(sub)
    from eilab.cluster.train import add_parsers as add_train_parsers  # train, predict

    add_train_parsers(sub)
    from eilab.cluster.submit_cli import add_parsers as add_submit_parsers  # submit, status (SLURM)

    add_submit_parsers(sub)
    return parser


def raised_by(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """The exception classes `names` of `module` if it is imported (only its code raises them), else none: the
    run store's modules load zarr, which commands that stop at bad input or never open a store need not import."""
    found = sys.modules.get(module)
    return tuple(getattr(found, name) for name in names) if found else ()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, RunDirError, *raised_by("eilab.sim.reader", "RunNotCompleteError", "RunDamagedError")) as e:
        if world().rank == 0:  # raised alike on every rank (eilab.sim.engine.run): said once
            print(f"eilab: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Interrupted as e:
        if world().rank == 0:
            print(f"eilab: {e}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:  # outside a run, or a second Ctrl-C while a run winds down
        print("eilab: stopped at once by Ctrl-C (a run being written is marked failed)", file=sys.stderr)
        return 130
    except raised_by("eilab.sim.store", "StorageError") as e:  # the disk filled up, the file system went away
        print(f"eilab: error: {e}", file=sys.stderr)
        if world().size > 1:  # the other ranks would wait in a collective for ever
            world().abort(1)
        return 1
    except BaseException:
        comm = world()
        if comm.size > 1:  # the other ranks would wait in a collective for ever: end the whole job
            traceback.print_exc()
            sys.stderr.flush()
            comm.abort(1)
        raise


if __name__ == "__main__":
    sys.exit(main())
