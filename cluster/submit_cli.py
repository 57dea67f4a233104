"""`eilab submit {run,resume,study,tune,analyze,train} ...` and `eilab status RUN_DIR`: registered on the `eilab`
parser by `add_parsers`. A submission checks the eilab command it wraps as that command would (bad input: exit
2 before anything is written), renders the job script from slurm/ (eilab.cluster.slurm), writes it into
`<RUN_DIR>.slurm/` beside the run (or study, or training) and calls sbatch; README, "On a cluster"."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from eilab.cluster import slurm
from eilab.sim.config import ConfigError

SLURM_OPTIONS = {k: v for k, v in slurm.DIRECTIVE_NOTES.items() if k not in ("job-name", "output")}  # with help
KINDS = {"run": "eilab run CONFIG ... on MPI ranks (requeued at the time limit, then resumed)",
         "resume": "eilab resume RUN_DIR on MPI ranks", "study": "eilab study optimize CONFIG: one worker per "
         "array task", "tune": "eilab tune CONFIG on a Ray cluster inside the allocation",
         "analyze": "eilab analyze RUN_DIR (chain it with --dependency=afterok:JOBID)", "train": "eilab train CONFIG"}


@dataclass
class Job:
    """What a submission runs: the eilab arguments, where its files go, and the template with its own values."""

    argv: list[str]
    target: Path  # the run, study runs or training directory; job files go beside it
    template: str
    values: dict[str, str] = field(default_factory=dict)


def slurm_parser() -> argparse.ArgumentParser:
    """The SLURM options wherever they stand among the eilab arguments (exact names only: no abbreviations)."""
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False, argument_default=argparse.SUPPRESS)
    for name, text in SLURM_OPTIONS.items():
        p.add_argument(f"--{name}", help=text)
    p.add_argument("--dry-run", action="store_true", help="print the job script; write and submit nothing")
    return p


def eilab_args(command: list[str]) -> argparse.Namespace:
    """`eilab COMMAND ...` parsed by eilab's own parser (argparse exits 2 naming a bad argument)."""
    from eilab.cluster.cli import build_parser

    return build_parser().parse_args(command)


def run_job(rest: list[str], site: slurm.SiteConfig) -> Job:
    from eilab.cluster.cli import default_run_dir, resolve_config
    from eilab.sim.config import load_config

    ns = eilab_args(["run", *rest])
    config = resolve_config(ns.config)
    cfg, _ = load_config(config, [*(ns.set or []), *([f"run.seed={ns.seed}"] if ns.seed is not None else [])])
    out = Path(ns.out or default_run_dir(str(config), cfg.run.seed)).absolute()
    if out.exists() and any(out.iterdir()) and not ns.force:
        raise ConfigError(f"{out} is not empty; choose another --out, or pass --force to replace the run there")
    if cfg.run.checkpoint_every_ms <= 0:
        print(f"eilab: note: {config} writes no checkpoints (run.checkpoint_every_ms = 0): at the time limit the job "
              "starts it over once, then stops; add --set run.checkpoint_every_ms=... to have it requeued and resumed",
              file=sys.stderr)
    argv = ["run", *rest, *([] if ns.out else ["--out", str(out)]), *([] if ns.quiet else ["--quiet"])]
    return Job(argv, out, "run.sbatch", chain_values(site, out, ["resume", str(out), "--quiet"],
                                                     [*argv, *([] if ns.force else ["--force"])]))


def resume_job(rest: list[str], site: slurm.SiteConfig) -> Job:
    from eilab.sim.reader import open_run

    ns = eilab_args(["resume", *rest])
    run_dir = Path(ns.run_dir).absolute()
    try:
        status = open_run(run_dir, allow_incomplete=True).status
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from None
    if status == "complete":
        raise ConfigError(f"{run_dir}: the run is complete already; nothing to resume")
    argv = ["resume", str(run_dir), "--quiet"]
    return Job(argv, run_dir, "run.sbatch", chain_values(site, run_dir, argv, argv))


def chain_values(site: slurm.SiteConfig, run_dir: Path, resume: list[str], restart: list[str]) -> dict[str, str]:
    """How a requeued start of run.sbatch continues: `resume` from the last checkpoint, or `restart` (replacing
    the partial run) when there is none; `has_checkpoint` tells which."""
    return {"resume": quoted(site, resume), "restart": quoted(site, restart),
            "has_checkpoint": quoted(site, ["status", str(run_dir), "--has-checkpoint"])}


def analyze_job(rest: list[str], dependent: bool) -> Job:
    from eilab.sim.reader import open_run

    ns = eilab_args(["analyze", *rest])
    if not dependent:  # chained after the simulation, the run may not exist yet
        try:
            open_run(ns.run_dir)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(f"{e}; to analyse a run still to be simulated, chain the analysis with "
                              "--dependency=afterok:JOBID") from None
    return Job(["analyze", *rest], Path(ns.run_dir).absolute(), "single.sbatch", {"kind": "analyze"})


def train_job(rest: list[str]) -> Job:
    ns = eilab_args(["train", *rest])
    if not Path(ns.config).is_file():
        raise ConfigError(f"{ns.config}: no such training config file")
    out = Path(ns.out) if ns.out else Path("runs") / f"train-{Path(ns.config).stem}"
    return Job(["train", *rest], out.absolute(), "single.sbatch", {"kind": "train"})


def search_job(kind: str, rest: list[str], site: slurm.SiteConfig) -> Job:
    """A study array (`study optimize` per task) or a Ray search, on the storage the config names (or --storage),
    passed to every task explicitly so that all share it."""
    from eilab.cluster.study_cli import search_modules

    search_modules()
    from eilab.cluster import study

    ns = eilab_args(["study", "optimize", *rest] if kind == "study" else ["tune", *rest])
    if kind == "tune" and ns.address:
        raise ConfigError("--address: the job starts its own Ray cluster and joins it; leave --address out")
    s = study.load_study(ns.config, ns.storage)
    argv = ([*(["study", "optimize"] if kind == "study" else ["tune"]), *rest]
            + ([] if ns.storage else ["--storage", s.storage_url]))
    values = {"storage": study.redact(s.storage_url)} if kind == "study" else {"ray": slurm.program(site, "ray")}
    return Job(argv, s.runs_dir.absolute(), f"{kind}.sbatch", values)


def quoted(site: slurm.SiteConfig, argv: list[str]) -> str:
    return f"{slurm.eilab_command(site)} {shlex.join(argv)}"


def jobs_dir(target: Path) -> Path:
    """Where a target's job scripts, outputs and job list go: `<target>.slurm/` beside it."""
    return target.parent / f"{target.name}.slurm"


def script_for(kind: str, job: Job, opts: slurm.JobOptions, site: slurm.SiteConfig) -> str:
    folder = jobs_dir(job.target)
    output = folder / (f"{kind}-%A_%a.out" if opts.array else f"{kind}-%j.out")
    limit = opts.time or site.defaults.time
    if job.template == "run.sbatch" and limit and slurm.time_s(limit) <= site.signal_s:
        raise ConfigError(f"--time {limit}: no longer than the {site.signal_s} s before the limit at which the job "
                          "asks for SIGTERM (signal_s in the SLURM site config): give a longer --time")
    launch, stop = slurm.launcher(site)
    return slurm.render(job.template, {
        "directives": slurm.directives(f"eilab-{kind}-{job.target.name}", output, opts, site),
        "setup": slurm.setup_lines(site), "command": quoted(site, job.argv), "launcher": launch,
        "stop": stop, "signal_s": str(site.signal_s), **job.values})


def plan(kind: str, rest: list[str], opts: slurm.JobOptions, site: slurm.SiteConfig) -> Job:
    if kind == "run":
        return run_job(rest, site)
    if kind == "resume":
        return resume_job(rest, site)
    if kind == "analyze":
        return analyze_job(rest, opts.dependency is not None)
    if kind == "train":
        return train_job(rest)
    return search_job(kind, rest, site)


def cmd_submit(args: argparse.Namespace) -> int:
    given, rest = slurm_parser().parse_known_args(args.args)
    merged = {k: v for k, v in vars(args).items() if k.replace("_", "-") in SLURM_OPTIONS} | vars(given)
    dry_run = merged.pop("dry_run", False) or args.dry_run
    opts = slurm.options(merged)
    site = slurm.load_site()
    job = plan(args.kind, rest, opts, site)
    script = script_for(args.kind, job, opts, site)
    if dry_run:
        print(script, end="")
        return 0
    slurm.sbatch_path()
    folder = jobs_dir(job.target)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{args.kind}.sbatch"
    tmp = folder / f".{args.kind}.sbatch.tmp"  # SLURM keeps its own copy: named only once it took the job
    tmp.write_text(script)
    try:
        job_id = slurm.sbatch(tmp)
    except ConfigError:
        tmp.unlink()
        if created:
            folder.rmdir()
        raise
    tmp.replace(path)
    with open(folder / "jobs", "a") as f:
        f.write(f"{job_id} {args.kind} {datetime.now().isoformat(timespec='seconds')}\n")
    print(f"job {job_id} submitted: eilab {shlex.join(job.argv)}")
    print(f"script {path}; output {folder}/{args.kind}-{job_id}{'_*' if opts.array else ''}.out; "
          f"`eilab status {job.target}` follows it")
    return 0


def has_checkpoint(run_dir: Path) -> int:
    """0 when the run has a checkpoint to resume from (or is complete: nothing to redo), 1 when it has none (or no
    store yet); for job scripts."""
    from eilab.sim.reader import open_run

    if not (run_dir / "run.zarr").exists():
        return 1
    try:
        run = open_run(run_dir, allow_incomplete=True)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from None
    return 0 if run.status == "complete" or run.attrs.get("checkpoint") else 1


def store_line(run_dir: Path) -> str:
    """The run store's status and how far it got (the last checkpoint, for a run not complete)."""
    from eilab.sim.reader import open_run

    run = open_run(run_dir, allow_incomplete=True)
    if run.status == "complete":
        return f"run: complete, {run.t_ms:g} ms simulated, {run.attrs['summary']['spikes']} spikes"
    ck = run.attrs.get("checkpoint")
    done = f"checkpoint at {ck['step'] * run.dt_ms:g} of {run.t_ms:g} ms" if ck else "no checkpoint yet"
    return f"run: {run.status}, {done}, {len(run.attrs.get('resumed', []))} resumes"


def cmd_status(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir).absolute()
    if args.has_checkpoint:
        return has_checkpoint(run_dir)
    listed = jobs_dir(run_dir) / "jobs"
    jobs = [line.split() for line in listed.read_text().splitlines()] if listed.exists() else []
    if not (run_dir / "run.zarr").exists() and not jobs:
        raise ConfigError(f"{args.run_dir}: neither a run directory nor the target of a job of `eilab submit`")
    try:
        print(store_line(run_dir) if (run_dir / "run.zarr").exists() else "run: not started yet")
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from None
    states = slurm.job_states([j[0] for j in jobs])
    for job_id, kind, when in jobs:
        found = {k: v for k, v in states.items() if k == job_id or k.startswith(f"{job_id}_")}
        text = ", ".join(f"{k} {v}" for k, v in found.items()) or "ended (no longer in squeue; sacct not available)"
        print(f"job {job_id} ({kind}, submitted {when}): {text}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `eilab submit` and `eilab status`."""
    s = sub.add_parser("submit", help="run an eilab command as a SLURM batch job", parents=[slurm_parser()],
                       description="Writes a job script from slurm/ beside the run and submits it with sbatch. "
                       "SLURM options may stand before or after the command's own arguments; site defaults come "
                       f"from ~/.config/eilab/slurm.toml (or ${slurm.SITE_ENV}).",
                       epilog="kinds:\n" + "\n".join(f"  {k:<8} {v}" for k, v in KINDS.items()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("kind", choices=KINDS, help="the eilab command to submit")
    s.add_argument("args", nargs=argparse.REMAINDER, help="its arguments, e.g. ring600 --out runs/r")
    s.set_defaults(func=cmd_submit, dry_run=False)
    st = sub.add_parser("status", help="a run's store status and its SLURM jobs' states")
    st.add_argument("run_dir", help="the run directory")
    st.add_argument("--has-checkpoint", action="store_true", help="print nothing; exit 0 when the run has a "
                    "checkpoint to resume from, 1 when not (job scripts ask this after the time limit)")
    st.set_defaults(func=cmd_status)
