"""The run directory: who may write it, and what `--force` may replace.

A run directory holds what eilab wrote (`run.zarr`, `figures/`, `summary.json`, job scripts) and,
while a process writes it, the lock file `.eilab.lock`. The lock is a POSIX record lock (fcntl),
which the kernel drops when the holder dies, so a killed run can be resumed at once; the file
names the holder (host, pid, command, start time) for the message the next process prints.
Beside it the writer keeps `.eilab.reserve` (64 KiB), freed when the disk fills up so that the
run can still be marked failed.

`--force` replaces only eilab's own entries and refuses a directory that holds anything else,
unless told to keep those other entries (`keep_others`): nothing of a user's is ever deleted.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

LOCK_NAME = ".eilab.lock"
RESERVE_NAME = ".eilab.reserve"
RESERVE_BYTES = 1 << 16
OWN_ENTRIES = frozenset({"run.zarr", "figures", "summary.json", "job.sbatch", "job.out", LOCK_NAME, RESERVE_NAME})


class RunDirError(RuntimeError):
    """A run directory cannot be used as asked (exists, foreign files, not writable, locked)."""


class RunExistsError(RunDirError, FileExistsError):
    """The directory holds a run (or other files) and replacing it was not asked for."""


class RunLockedError(RunDirError):
    """Another process is writing this run directory."""


class RunLock:
    """An exclusive lock on a run directory, held from `acquire` until `release` (or process death)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise RunLockedError naming the holder. The lock file is checked to be the
        one on disk after locking, so a holder that removed it on release cannot be raced."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EACCES, errno.EAGAIN):
                    raise RunLockedError(f"{self.path.parent} is being written by another process "
                                         f"({_holder(self.path)}); wait for it to end, or stop it first") from None
                raise
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "command": " ".join(sys.argv[:3]),
                  "since": datetime.now(UTC).isoformat(timespec="seconds")}
        self.fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(holder).encode())
            (self.path.parent / RESERVE_NAME).write_bytes(bytes(RESERVE_BYTES))
        except OSError:
            self.release()
            raise
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        free_reserve(self.path.parent)
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None


def free_reserve(run_dir: Path) -> None:
    """Give the reserved space back (a full disk, or the end of writing)."""
    (run_dir / RESERVE_NAME).unlink(missing_ok=True)


def _holder(path: Path) -> str:
    try:
        h = json.loads(path.read_text())
        return f"pid {h['pid']} on {h['host']} since {h['since']}: {h['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def claim(run_dir: Path, force: bool = False, keep_others: bool = False) -> RunLock:
    """Create (or, with `force`, clear eilab's entries of) `run_dir` and lock it for writing.

    Refuses, before anything is changed: an unwritable location, a directory locked by another
    process, an existing run without `force`, and entries eilab did not write unless `keep_others`.
    """
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(run_dir).acquire()
    except (OSError, RunDirError) as e:
        if created and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()
        if isinstance(e, RunDirError):
            raise
        raise RunDirError(f"cannot write the run directory {run_dir}: {e.strerror or e}; "
                          "choose a writable place with --out") from None
    try:
        entries = sorted(p.name for p in run_dir.iterdir() if p.name not in (LOCK_NAME, RESERVE_NAME))
        if entries and not force:
            raise RunExistsError(f"{run_dir} is not empty ({_listing(entries)}); choose another --out, or pass "
                                 "--force to replace an earlier run there")
        foreign = [e for e in entries if e not in OWN_ENTRIES]
        if foreign and not keep_others:
            raise RunExistsError(f"{run_dir} holds files eilab did not write ({_listing(foreign)}); --force replaces "
                                 "only a run's own files: choose another --out, or add --keep-other-files to replace "
                                 "the run and keep them")
        for name in entries:
            if name in OWN_ENTRIES:
                p = run_dir / name
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    except BaseException:
        lock.release()
        raise
    return lock


def lock_existing(run_dir: Path) -> RunLock:
    """Lock an existing run directory (resume) or raise RunLockedError / RunDirError."""
    try:
        return RunLock(run_dir).acquire()
    except RunDirError:
        raise
    except OSError as e:
        raise RunDirError(f"cannot lock {run_dir}: {e.strerror or e}; the run directory must be writable") from None


def _listing(names: list[str], most: int = 5) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
