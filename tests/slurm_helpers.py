"""A real one-node SLURM for the tests: munged, slurmctld and slurmd (Debian's slurm-wlm and munge) on this
machine with its CPUs, everything (config, key, state, spool, logs, sockets) in one folder, found by clients
through SLURM_CONF. Built for a container: no cgroups (proctrack/linuxproc, task/none), SlurmUser root.
slurmctld logs at debug2, so that a test can tell when it next tests time limits (next_limit_check)."""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "srun")


def free_ports(n: int) -> list[int]:
    """n TCP ports free on loopback now."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def slurm_conf(root: Path, host: str, cpus: int, memory_mb: int, ports: list[int]) -> str:
    """slurm.conf of a one-node cluster named `host` (loopback), its files under `root`."""
    return f"""ClusterName=eilabtest
SlurmctldDebug=debug2
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket,cred_expire=10
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=600
JobRequeue=1
MaxJobCount=1000
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


@dataclass
class Slurm:
    """A running one-node SLURM: `env` holds SLURM_CONF for its clients."""

    root: Path
    env: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def log_tail(self, lines: int = 30) -> str:
        text = []
        for name in ("slurmctld.log", "slurmd.log", "munged.log"):
            path = self.root / name
            if path.exists():
                text.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(text)

    def stop(self) -> None:
        """Cancel every job and wait (30 s at most) until their processes are gone, then stop the daemons
        (SIGTERM, then SIGKILL after 10 s), each by its own process id."""
        if len(self.procs) == 3:
            subprocess.run(["scancel", "--full", "--user", "root"], env=self.env, timeout=30)
            with contextlib.suppress(RuntimeError):  # the daemons are stopped all the same
                wait_for(lambda: not self.jobs_left(), 30, "end of the cancelled jobs")
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


    def jobs_left(self) -> bool:
        """Whether squeue still lists a job (pending, running or completing)."""
        res = subprocess.run(["squeue", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env, timeout=10)
        return res.returncode == 0 and bool(res.stdout.strip())


def missing_programs() -> list[str]:
    return [name for name in PROGRAMS if shutil.which(name) is None]


def start_slurm(root: Path, timeout_s: float = 60) -> Slurm:
    """Start munged, slurmctld and slurmd in the foreground (children of this process) and wait until the node
    takes jobs; raises RuntimeError with the daemons' logs when it does not come up."""
    host = socket.gethostname().split(".")[0]
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True)
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    memory_mb = max(1024, int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20) // 2)
    (root / "slurm.conf").write_text(slurm_conf(root, host, os.cpu_count() or 1, memory_mb, free_ports(2)))
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    slurm = Slurm(root, env)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT, "env": env}
    try:
        slurm.procs.append(subprocess.Popen(
            ["munged", "-F", "--force", f"--socket={root}/munge.socket", f"--key-file={key}",
             f"--log-file={root}/munged.log", f"--pid-file={root}/munged.pid", f"--seed-file={root}/munged.seed"],
            **quiet))
        wait_for(lambda: (root / "munge.socket").exists(), 10, "munged socket")
        slurm.procs.append(subprocess.Popen(["slurmctld", "-D", "-i"], **quiet))
        slurm.procs.append(subprocess.Popen(["slurmd", "-D", "-N", host], **quiet))
        wait_for(lambda: node_idle(env), timeout_s, "an idle node")
    except RuntimeError as e:
        slurm.stop()
        raise RuntimeError(f"{e}\n{slurm.log_tail()}") from None
    return slurm


def node_idle(env: dict[str, str]) -> bool:
    res = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=env, timeout=10)
    return res.returncode == 0 and res.stdout.strip() == "idle"


def wait_for(check: object, timeout_s: float, what: str) -> None:
    """Poll `check()` every 0.2 s until it is true; RuntimeError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"SLURM test cluster: no {what} after {timeout_s:g} s")
        time.sleep(0.2)


LIMIT_CHECK_S = 30  # slurmctld tests time limits (and sends --signal) every 30 s: PERIODIC_TIMEOUT in SLURM 22.05


def next_limit_check(root: Path) -> float:
    """When (time.time()) slurmctld tests time limits next: LIMIT_CHECK_S after the last test, which it logs at
    debug2 as 'Testing job time limits'."""
    lines: list[str] = []

    def logged() -> bool:
        lines[:] = [line for line in (root / "slurmctld.log").read_text(errors="replace").splitlines()
                    if "Testing job time limits" in line]
        return bool(lines)

    wait_for(logged, LIMIT_CHECK_S + 10, "time-limit test in slurmctld.log")
    stamp = lines[-1][1:lines[-1].index("]")]  # [2026-11-30T17:20:01.123] debug2: Testing job time limits ...
    return datetime.datetime.fromisoformat(stamp).timestamp() + LIMIT_CHECK_S


def wait_job(job_id: str, env: dict[str, str], timeout_s: float = 180) -> str:
    """Wait until the job (every task of an array) has ended; its final state."""
    ended = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
    states: list[str] = []

    def done() -> bool:
        res = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, env=env,
                             timeout=10)
        states[:] = [w.partition("=")[2] for w in res.stdout.split() if w.startswith("JobState=")]
        return bool(states) and all(s in ended for s in states)

    wait_for(done, timeout_s, f"end of job {job_id}")
    return "COMPLETED" if all(s == "COMPLETED" for s in states) else ",".join(states)
