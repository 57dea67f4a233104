"""Stopping a run cleanly on SIGTERM (what SLURM sends at the time limit) or Ctrl-C (SIGINT).

The handlers only note the signal; the engine asks at the end of each window whether any rank
has seen one (a collective, so every rank stops at the same step), writes a last checkpoint when
the run has checkpoints, marks the run `interrupted` and raises `Interrupted`. A second Ctrl-C
while the run winds down stops at once (KeyboardInterrupt).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from eilab.sim.exchange import Comm

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):  # noqa: N818 (a stop, not an error)
    """The run stopped on a signal at `time_ms`; `checkpointed` says whether it can be resumed."""

    def __init__(self, signum: int, time_ms: float, checkpointed: bool) -> None:
        self.signum, self.time_ms, self.checkpointed = signum, time_ms, checkpointed
        name = signal.Signals(signum).name
        then = "continue it with `eilab resume`" if checkpointed else "it has no checkpoint to resume from"
        super().__init__(f"stopped by {name} at t = {time_ms:g} ms; the run is marked 'interrupted'; {then}")


class StopRequests:
    """Context manager: while active, SIGTERM and SIGINT set `signum` instead of ending the process."""

    def __init__(self) -> None:
        self.signum = 0
        self._saved: dict[int, Any] = {}

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum
        if signum == signal.SIGINT:  # a second Ctrl-C ends at once
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            self._saved = {s: signal.signal(s, self._note) for s in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._saved.items():
            signal.signal(s, handler)
        self._saved = {}

    def agreed(self, comm: Comm) -> int:
        """Collective: the first signal any rank received (0: none), the same on every rank."""
        if comm.size == 1:
            return self.signum
        return max(comm.allgather(self.signum))
