"""safe_select: ``select.select`` without its limits."""

from __future__ import annotations

import errno
import math
import os
import select
import time
from typing import Any, Sequence

from ._timeout import deadline as _deadline

_READ = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
_WRITE = select.POLLOUT | select.POLLERR
_EXCEPT = select.POLLPRI


def _fd(obj: Any) -> int:
    if isinstance(obj, int):
        return obj
    return int(obj.fileno())


def safe_select(
    l1: Sequence[Any],
    l2: Sequence[Any],
    l3: Sequence[Any],
    timeout: float | None = None,
) -> tuple[list[Any], list[Any], list[Any]]:
    """Like ``select.select(l1, l2, l3, timeout)``, on ``poll(2)``.

    Accepts ints and objects with ``fileno()`` and returns the same objects.
    Unlike ``select.select`` it takes descriptors above 1023, and a signal
    whose handler returns does not end the wait early (the remaining time is
    waited, as PEP 475 does); a handler that raises (``KeyboardInterrupt``)
    raises out of it, as with ``select``. A closed descriptor raises
    ``OSError`` (``EBADF``), a negative one ``ValueError``, as with
    ``select``.
    """
    poller = select.poll()
    masks: dict[int, int] = {}
    for objs, mask in ((l1, _READ), (l2, _WRITE), (l3, _EXCEPT)):
        for obj in objs:
            fd = _fd(obj)
            masks[fd] = masks.get(fd, 0) | mask
    for fd, mask in masks.items():
        poller.register(fd, mask)
    ready = dict(_poll(poller, timeout))
    if not ready:
        return [], [], []
    for fd, events in ready.items():
        if events & select.POLLNVAL:
            # select() raises for a closed fd; returning "nothing ready"
            # at once would spin a select loop instead.
            raise OSError(errno.EBADF, "%s (fd %d)" % (os.strerror(errno.EBADF), fd))
    out: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    for objs, mask, result in ((l1, _READ, out[0]), (l2, _WRITE, out[1]), (l3, _EXCEPT, out[2])):
        for obj in objs:
            if ready.get(_fd(obj), 0) & mask:
                result.append(obj)
    return out


# poll(2) takes at most this many milliseconds (a C int): about 24.8 days.
_POLL_MAX_MS = 2**31 - 1


def _poll(poller: select.poll, timeout: float | None) -> list[tuple[int, int]]:
    """``poller.poll`` for ``timeout`` seconds, however long: ``None`` and
    ``inf`` wait as long as it takes (as ``select.select`` does), longer
    waits than ``poll(2)`` takes are waited in pieces, NaN is an error."""
    deadline = _deadline(timeout, "safe_select: the timeout")
    if deadline is None or deadline == math.inf:
        return poller.poll(None)
    while True:
        left_ms = (deadline - time.monotonic()) * 1000
        ready = poller.poll(max(0, min(_POLL_MAX_MS, math.ceil(left_ms))))
        if ready or left_ms <= _POLL_MAX_MS:
            return ready
