"""SLURM jobs: the site defaults (~/.config/eilab/slurm.toml), the job options of `eilab submit`, rendering the
sbatch templates of slurm/ (the package eilab.slurm), and the calls to sbatch, squeue and sacct. What a job runs
is an ordinary `eilab` command; this module only writes and submits the script around it (README, "On a
cluster")."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from eilab.sim.config import ConfigError, format_validation_error

SITE_ENV = "EILAB_SLURM_CONFIG"  # names the site file instead of ~/.config/eilab/slurm.toml
NAME = re.compile(r"[A-Za-z0-9_.+-]+")
TIME = re.compile(r"(\d+-\d+(:\d+(:\d+)?)?|\d+(:\d+(:\d+)?)?)")  # sbatch --time: MM, MM:SS, H:MM:SS, D-H[:MM[:SS]]
MEM = re.compile(r"\d+[KMGT]?")
GPUS = re.compile(r"([A-Za-z0-9_-]+:)?\d+")
ARRAY = re.compile(r"\d+(-\d+(:\d+)?)?(,\d+(-\d+(:\d+)?)?)*(%\d+)?")
DEPENDENCY = re.compile(r"(after|afterany|afterok|afternotok|aftercorr|afterburstbuffer)(:\d+(_\d+)?(\+\d+)?)+"
                        r"([,?](after|afterany|afterok|afternotok|aftercorr)(:\d+(_\d+)?(\+\d+)?)+)*|singleton")


class JobOptions(BaseModel):
    """The resources one `eilab submit` asks for, by sbatch option name (with _ for -)."""

    model_config = ConfigDict(extra="forbid")
    nodes: int | None = Field(None, ge=1)
    ntasks_per_node: int | None = Field(None, ge=1)
    cpus_per_task: int | None = Field(None, ge=1)
    gpus: str | None = None
    mem: str | None = None
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    array: str | None = None
    dependency: str | None = None

    @field_validator("partition", "account", "qos")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return _matching(v, NAME, "a SLURM name (letters, digits, _ . + -)")

    @field_validator("time")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        return _matching(v, TIME, "a SLURM time: MINUTES, HH:MM:SS or D-HH:MM:SS, e.g. 2:00:00")

    @field_validator("mem")
    @classmethod
    def _mem(cls, v: str | None) -> str | None:
        return _matching(v, MEM, "memory per node such as 4000 (MB) or 16G")

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, v: str | None) -> str | None:
        return _matching(v, GPUS, "a GPU count, or TYPE:COUNT such as a100:2")

    @field_validator("array")
    @classmethod
    def _array(cls, v: str | None) -> str | None:
        return _matching(v, ARRAY, "task indices such as 0-3, 1,3,5 or 0-15%4")

    @field_validator("dependency")
    @classmethod
    def _dependency(cls, v: str | None) -> str | None:
        return _matching(v, DEPENDENCY, "such as afterok:JOBID[:JOBID...] or afterany:JOBID")


class SiteConfig(BaseModel):
    """A site's settings for every job (~/.config/eilab/slurm.toml); `eilab submit` options override `defaults`."""

    model_config = ConfigDict(extra="forbid")
    defaults: JobOptions = Field(default_factory=JobOptions, description="partition, account, time, mem, ...")
    modules: list[str] = Field(default_factory=list, description="`module load` these first")
    setup: list[str] = Field(default_factory=list, description="shell lines after the modules (e.g. a venv)")
    launcher: Literal["mpiexec", "srun"] = Field("mpiexec", description="starts the MPI ranks in the allocation: "
                                                 "mpiexec (eilab[mpi]'s MPICH), or srun for an MPI built for SLURM")
    srun_mpi: str = Field("pmi2", description="srun --mpi= plugin that the site's MPI speaks")
    signal_s: int = Field(300, ge=10, description="SIGUSR1 this many seconds (to 30 s more: SLURM tests limits "
                          "every 30 s) before the time limit")
    eilab: str | None = Field(None, description="the eilab command in jobs (default: this Python -m eilab...)")


def _matching(value: str | None, pattern: re.Pattern, what: str) -> str | None:
    if value is not None and not pattern.fullmatch(value):
        raise ValueError(f"{value!r} is not {what}")
    return value


def options(given: dict[str, object]) -> JobOptions:
    """JobOptions from `eilab submit`'s parsed options, or ConfigError naming the option (--time ...)."""
    try:
        return JobOptions.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as e:
        err = e.errors()[0]
        flag = "--" + str(err["loc"][0]).replace("_", "-")
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{flag}: {msg} (see `man sbatch`)") from None


def time_s(text: str) -> int:
    """Seconds of a SLURM time: MM, MM:SS, HH:MM:SS, or D-HH, D-HH:MM, D-HH:MM:SS."""
    days, dash, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if dash:  # D-H[:M[:S]]
        parts = [*parts, 0, 0][:3]
    elif len(parts) < 3:  # M or M:S
        parts = [0, *parts, 0][:3]
    h, m, s = parts
    return ((int(days or 0) * 24 + h) * 60 + m) * 60 + s


def site_config_path() -> tuple[Path, bool]:
    """The site file and whether the user named it (EILAB_SLURM_CONFIG), so that it must exist."""
    if os.environ.get(SITE_ENV):
        return Path(os.environ[SITE_ENV]), True
    home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return home / "eilab" / "slurm.toml", False


def load_site() -> SiteConfig:
    """The site defaults; none when the default file is absent. ConfigError naming the file and key."""
    path, named = site_config_path()
    if not path.is_file():
        if named:
            raise ConfigError(f"{SITE_ENV}={path}: no such file; create it (README, 'On a cluster') or unset "
                              f"{SITE_ENV} to use ~/.config/eilab/slurm.toml")
        return SiteConfig()
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        return SiteConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, str(path)).replace("invalid config", "invalid SLURM site "
                                                                        "config")) from None


def templates_dir() -> Path:
    """The sbatch templates: the package eilab.slurm, slurm/ in the source tree and in an installed wheel."""
    return Path(__file__).resolve().parent.parent / "slurm"


def render(template: str, values: dict[str, str]) -> str:
    """The template `template` (e.g. run.sbatch) with every {{name}} replaced by values[name]."""
    text = (templates_dir() / template).read_text()
    missing = sorted(set(re.findall(r"\{\{(\w+)\}\}", text)) - set(values))
    if missing:
        raise KeyError(f"{template}: no value for {', '.join(missing)}")
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)


DIRECTIVE_NOTES = {
    "job-name": "name in squeue", "output": "stdout and stderr of the job (%j: job id, %A_%a: array task)",
    "nodes": "machines", "ntasks-per-node": "MPI ranks (or study workers) per machine",
    "cpus-per-task": "cores per rank or worker", "gpus": "GPUs of the job (COUNT or TYPE:COUNT)",
    "mem": "memory per machine (e.g. 16G)", "time": "time limit (MINUTES, HH:MM:SS or D-HH:MM:SS)",
    "partition": "queue", "account": "account charged", "qos": "quality of service",
    "array": "one task per index (e.g. 0-3)", "dependency": "start only after these jobs (e.g. afterok:JOBID)",
}


def directives(name: str, output: Path, opts: JobOptions, site: SiteConfig) -> str:
    """The #SBATCH lines of a job: the options given, else the site's defaults, each with what it is for."""
    merged = {**site.defaults.model_dump(exclude_none=True), **opts.model_dump(exclude_none=True)}
    values = {"job-name": name, "output": str(output),
              **{k.replace("_", "-"): str(v) for k, v in merged.items() if v is not None}}
    width = max(38, *(len(f"#SBATCH --{k}={v}") for k, v in values.items()))  # comments in one column
    return "\n".join(f"{f'#SBATCH --{k}={v}':<{width}}  # {DIRECTIVE_NOTES[k]}" for k, v in values.items())


def setup_lines(site: SiteConfig) -> str:
    """Module loads and the site's setup lines (or a comment saying there are none)."""
    lines = [f"module load {shlex.quote(m)}" for m in site.modules] + site.setup
    return "\n".join(lines) or "# (none: the environment sbatch was called from is used)"


def eilab_command(site: SiteConfig) -> str:
    """How a job calls eilab: the site's command, else this very Python (its virtualenv) with -m."""
    return site.eilab or f"{shlex.quote(sys.executable)} -m eilab.cluster.cli"


def program(site: SiteConfig, name: str) -> str:
    """A program of eilab's environment (e.g. ray) in jobs: the one beside this Python when the site names no
    eilab command and it is there, else `name` on the job's PATH."""
    here = Path(sys.executable).with_name(name)
    return shlex.quote(str(here)) if site.eilab is None and here.is_file() else name


def launcher(site: SiteConfig) -> tuple[str, str]:
    """The command that starts one process per task of the allocation, and the one that passes SIGTERM on to
    those processes: scancel signals the job's steps (srun itself would kill its step on SIGTERM), mpiexec
    forwards the signal to its ranks."""
    if site.launcher == "srun":
        return f"srun --mpi={shlex.quote(site.srun_mpi)}", 'scancel --signal=TERM "$SLURM_JOB_ID"'
    return 'mpiexec -n "${SLURM_NTASKS:-$SLURM_JOB_NUM_NODES}"', 'kill -TERM "$ranks"'  # srun's default: 1 a node


def sbatch_path() -> str:
    found = shutil.which("sbatch")
    if found is None:
        raise ConfigError("sbatch not found on PATH: submit from a SLURM login node (or load its module), or "
                          "add --dry-run to print the job script without submitting it")
    return found


def sbatch(script: Path) -> str:
    """Submit `script` (from its folder's parent, the job's working directory); the job id. ConfigError with
    sbatch's message when SLURM refuses it (unknown partition, account, limits)."""
    res = subprocess.run([sbatch_path(), "--parsable", str(script)], capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise ConfigError(f"sbatch refused {script}: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout.strip().split(";")[0]


def job_states(job_ids: list[str]) -> dict[str, str]:
    """Each job's state (array tasks as JOBID_N) from squeue while it is queued or running, else from sacct
    where accounting is on; jobs neither knows are left out."""
    states: dict[str, str] = {}
    for cmd in (["squeue", "-h", "-o", "%i %T %R", "-j"], ["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j"]):
        todo = [j for j in job_ids if not any(k == j or k.startswith(f"{j}_") for k in states)]
        if not todo or shutil.which(cmd[0]) is None:
            continue
        res = subprocess.run([*cmd, ",".join(todo)], capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            continue
        for line in res.stdout.splitlines():
            job, _, state = line.replace("|", " ", 1).partition(" ")
            if job:
                states[job] = state.strip()
    return states
