"""One ``poll(2)`` on many processes: each one's socket and exit fd (and a
program's own fds), for the supervisor and the pool.

Both are driven by the caller's thread (see ``_supervisor``), so this is
the only place they block. A process counts as ready when its socket is
readable, its exit fd is (it ended, though a process it forked may hold
the socket open), its handle already knows it ended, or messages already
read wait in its handle or pipe (the fd says nothing of those). Fds are
fetched anew each time: an exit fd is closed once the exit is collected.
"""

from __future__ import annotations

import math
import select
import time
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from ._process import MessageProcess

_IN = select.POLLIN
# poll(2) takes at most this many milliseconds (a C int).
_POLL_MAX_MS = 2**31 - 1


def fd_of(obj: Any) -> int:
    """An fd given as an int or an object with ``fileno()``."""
    fd = obj if isinstance(obj, int) and not isinstance(obj, bool) else None
    if fd is None:
        fileno = getattr(obj, "fileno", None)
        if fileno is None:
            raise TypeError("not an fd: %r (an int or an object with fileno())" % (obj,))
        fd = int(fileno())
    if fd < 0:
        raise ValueError("not an fd: %d" % fd)
    return fd


def wait(
    processes: Sequence[MessageProcess | None],
    extra: Sequence[int],
    wake: float | None,
) -> tuple[dict[int, bool], list[int]] | None:
    """Waits until a process is ready, an ``extra`` fd is readable, or
    ``wake`` (``time.monotonic()``; ``None``: as long as it takes). Returns
    the ready processes' indices, each with whether its exit fd said it
    ended, and the indices of the readable ``extra`` fds; ``None`` when
    there is nothing to wait for and no ``wake`` (a wait that would never
    end)."""
    poller = select.poll()
    # fd -> (the process's index, whether it is its exit fd); -1 - k for
    # extra fd k.
    owners: dict[int, tuple[int, bool]] = {}
    ready: dict[int, bool] = {}
    for i, process in enumerate(processes):
        if process is None:
            continue
        native = process._native
        if native.has_buffered() or process._pipe._stash:
            ready[i] = False
        exit_fd = native.exit_fd
        if exit_fd is None:
            ready[i] = True  # the handle saw it end
            continue
        fd = process._pipe.fileno()
        poller.register(fd, _IN)
        owners[fd] = (i, False)
        poller.register(exit_fd, _IN)
        owners[exit_fd] = (i, True)
    for k, fd in enumerate(extra):
        if fd not in owners:
            poller.register(fd, _IN)
            owners[fd] = (-1 - k, False)
    if ready:
        timeout_ms: int | None = 0
    elif not owners and wake is None:
        return None
    elif wake is None or wake == math.inf:
        timeout_ms = None
    else:
        left_ms = (wake - time.monotonic()) * 1000
        timeout_ms = max(0, min(_POLL_MAX_MS, math.ceil(left_ms)))
    ready_extra: list[int] = []
    for fd, _events in poller.poll(timeout_ms):
        owner, ended = owners[fd]
        if owner < 0:
            ready_extra.append(-1 - owner)
        else:
            ready[owner] = ready.get(owner, False) or ended
    # A wait that ended early for no fd (poll's millisecond rounding) is
    # not an error: the caller loops until its own deadline.
    return ready, sorted(ready_extra)
