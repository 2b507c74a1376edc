"""EventGroup and SyncIndex: events made before the fork, used by index."""

from __future__ import annotations

import collections
from types import TracebackType
from typing import Any, Callable

from . import _native
from ._native import Event, NotEnoughEvents
from ._timeout import check as _check_timeout


def _is_default_event_class(event_class: Any) -> bool:
    if event_class is None or event_class is Event:
        return True
    # multiprocessing.Event (a bound method of the default context) or
    # multiprocessing.synchronize.Event: forkbridge's shared events do the
    # same job without a named semaphore per event.
    module = getattr(event_class, "__module__", "") or ""
    return module.startswith("multiprocessing") and getattr(event_class, "__name__", "") == "Event"


class EventGroup:
    """``n`` process-shared events made before the fork, reserved and
    released by the frontend, set by index in the backend::

        eg = EventGroup(10)                      # in __init__, before start()
        i, event = eg.reserve()                  # frontend
        self.sendMessageToBack(MessageObject("ping", event_index=i))
        eg.set(event_index)                      # backend, in c__ping
        event.wait(5.0); eg.release(event)       # frontend

    With the default ``event_class`` (``None``, ``multiprocessing.Event`` or
    ``forkbridge.Event``) the events are forkbridge's futex words in shared
    memory; ``pollable=True`` gives each an eventfd (``event.getFd()``) for
    ``select``. Any other class with ``set`` / ``clear`` / ``wait`` (such as
    libValkka's ``EventFd``) is instantiated ``n`` times and used as is.

    With the default class, indices are ints that also encode a generation:
    a backend that sets an event after the frontend released it sets
    nothing (``set`` returns False), so a late answer never wakes the next
    request. With another class the index is the event's position and
    ``set`` sets whichever reservation holds it now, as in
    valkka-multiprocess. Releasing twice,
    or an index never reserved, raises ``ValueError``; exhaustion raises
    ``NotEnoughEvents`` (an ``Exception``).
    """

    def __init__(
        self, n: int = 10, event_class: Callable[[], Any] | None = None, pollable: bool = False
    ) -> None:
        self._native: _native.EventGroup | None = None
        if _is_default_event_class(event_class):
            self._native = _native.EventGroup(n, pollable)
            self.events: list[Any] = [self._native.fromIndex(i) for i in range(n)]
        else:
            assert event_class is not None
            self.events = [event_class() for _ in range(n)]
        self.index: collections.deque[int] = collections.deque(range(n))
        self._reserved = [False] * n

    def __len__(self) -> int:
        return len(self.events)

    def reserve(self) -> tuple[int, Any]:
        """``(index, event)`` with the event cleared."""
        if self._native is not None:
            i, event = self._native.reserve()
            return i, event
        if not self.index:
            raise NotEnoughEvents("all %d events of the group are reserved" % len(self.events))
        i = self.index.popleft()
        self._reserved[i] = True
        event = self.events[i]
        event.set()
        event.clear()
        return i, event

    def release(self, event: Any) -> None:
        if self._native is not None:
            self._native.release(event)
            return
        self.release_ind(self.asIndex(event))

    def release_ind(self, index: int) -> None:
        if self._native is not None:
            self._native.release_ind(index)
            return
        if not (0 <= index < len(self.events)) or not self._reserved[index]:
            raise ValueError("event %r is not reserved in this group" % (index,))
        self._reserved[index] = False
        self.index.append(index)

    def set(self, i: int) -> bool:
        """Sets the event reserved as ``i`` (backend); False if that
        reservation is already over."""
        if self._native is not None:
            return self._native.set(i)
        self.events[i].set()
        return True

    def fromIndex(self, i: int) -> Any:
        if self._native is not None:
            return self._native.fromIndex(i)
        return self.events[i]

    def asIndex(self, event: Any) -> int:
        if self._native is not None:
            return self._native.asIndex(event)
        try:
            return self.events.index(event)
        except ValueError:
            raise ValueError("event not in this EventGroup") from None

    def __str__(self) -> str:
        if self._native is not None:
            return str(self._native)
        marks = " ".join(("R" if r else "f") + str(i) for i, r in enumerate(self._reserved))
        return "<EventGroup: %s >" % marks


class SyncIndex:
    """Reserve an event, send its index, wait until the backend sets it,
    release it::

        with SyncIndex(self.event_group) as i:
            self.sendMessageToBack(MessageObject("ping", event_index=i))

    The wait happens when the block ends normally. If the block raises, the
    event is released at once and the error propagates: nobody will set it
    (valkka's waits forever). A block left early without an exception
    (``return``, ``break``, ``continue``) cannot be told from one that sent
    its request, so it waits like a normal end: give a ``timeout``
    (seconds) where that can happen; a wait that runs out raises
    ``TimeoutError``, and the event is released either way. A timeout of
    zero or less does not wait (the event must be set already); ``inf``
    waits as long as ``None`` does; NaN raises ``ValueError`` here.
    """

    def __init__(self, event_group: EventGroup, timeout: float | None = None) -> None:
        _check_timeout(timeout, "SyncIndex: the timeout")
        self.event_group = event_group
        self.timeout = timeout
        self.event: Any = None
        self.index: int | None = None

    def __enter__(self) -> int:
        self.index, self.event = self.event_group.reserve()
        return self.index

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is not None:
                return
            if self.timeout is None:
                self.event.wait()
            elif not self.event.wait(self.timeout):
                raise TimeoutError(
                    "SyncIndex: event %s was not set within %s s" % (self.index, self.timeout)
                )
        finally:
            self.event_group.release(self.event)


