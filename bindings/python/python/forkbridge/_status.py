"""Status: a snapshot of one process, for a program (or a supervisor, a
pool, a dashboard) that watches its workers.

The fields are the Rust core's ``Status``, read from the native handle in
one call that never waits, reaps or touches the socket (one read of
``/proc/<pid>/stat`` while the backend runs: cheap enough for every
second, not for every message). Exit statuses are ``multiprocessing``'s
exit codes and times are seconds, as everywhere in the package. A frozen
dataclass: a program keeps snapshots, compares them (rates are differences
of counters) and passes them on; nothing in one refers to the process.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._process import MessageProcess


class ProcessState(enum.StrEnum):
    """Where a process is in its life (``Status.state``); compares equal
    to its lowercase name (``"running"``)."""

    #: Made and not started yet.
    IDLE = "idle"
    #: Started, and not known to have ended.
    RUNNING = "running"
    #: Ended (stopped, or seen dead); ``Status.last_exit`` once collected.
    EXITED = "exited"
    #: Dead, and a supervisor or pool starts a replacement soon.
    RESTARTING = "restarting"
    #: Leaving a pool that shrank: takes no new calls, finishes its own.
    DRAINING = "draining"
    #: It died too often: past its restart limit, it stays down.
    GIVEN_UP = "given_up"
    #: A pool's spare: started and idle, taking no calls until a worker
    #: that takes them dies and it takes that worker's place.
    STANDBY = "standby"


@dataclasses.dataclass(frozen=True)
class Status:
    """A snapshot of one process (``MessageProcess.status()``,
    ``Pool.status()``, ``Supervisor.status()``)."""

    #: The process's name.
    name: str
    #: The backend's pid once started (kept after it exits, for logs).
    pid: int | None
    state: ProcessState
    #: ``"fork"``, ``"forkserver"`` or ``"spawn"``.
    start_method: str
    #: Times a supervisor or pool replaced it after it died (0 for a bare
    #: process).
    restarts: int
    #: How the last backend ended, as ``multiprocessing``'s exit code
    #: (negative: the signal), once collected; ``None`` while it runs.
    last_exit: int | None
    #: Frames the frontend sent (messages, calls, the stop request) and
    #: their encoded bytes.
    messages_sent: int
    bytes_sent: int
    #: Frames received from the backend (whether or not read yet) and
    #: their bytes.
    messages_received: int
    bytes_received: int
    #: Pool calls sent to it and not answered yet (0 outside a pool).
    calls_in_flight: int
    #: Bytes sent that the socket has not taken yet.
    queued_out_bytes: int
    #: Messages received and waiting for a ``recv``.
    queued_in: int
    #: The backend's resident memory (pages shared with other processes
    #: count in each) and its user plus system CPU time in seconds, from
    #: ``/proc``; ``None`` when it is not running.
    rss_bytes: int | None
    cpu_time: float | None


def snapshot(process: MessageProcess) -> Status:
    """``process``'s snapshot: the native one, plus what its pipe holds."""
    fields = process._native.status()
    pipe = process._pipe
    if pipe is not None:
        fields["queued_in"] += len(pipe._stash)
    fields["state"] = ProcessState(fields["state"])
    return Status(**fields)
