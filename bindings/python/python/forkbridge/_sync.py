"""EventGroup and SyncIndex: events made before the fork, used by index."""

from __future__ import annotations

import collections
import operator
import threading
from types import TracebackType
from typing import Any, Callable

from . import _native
from ._native import Event, NotEnoughEvents
from ._timeout import check as _check_timeout
from ._timeout import for_threading as _for_threading


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

    An index is the event's position, a plain ``int`` in ``range(n)``, as
    in valkka-multiprocess: use it as a list or shared-array index, put it
    in a ``MessageObject``, JSON or a pickle. The free indices form a
    queue: a fresh group hands out 0, 1, ..., n-1, and a released index
    goes to the back, so it comes back only after every index that was free
    when it was released has been reserved (valkka's rotation).
    ``reserve()`` clears the event, so a set that arrived while it was free
    is forgotten.

    ``set(i)`` sets the event at ``i`` whichever reservation holds it:
    the backend has nothing but the number, and the reservations are the
    frontend's memory. So a backend that answers after the frontend stopped
    waiting (a ``SyncIndex`` timeout) and released the index wakes the
    request that reserved that index again, if one has; its wait then
    returns before its own answer. Where waits can time out, check the
    answer itself (a request number in the message and the reply), or make
    the group larger than the requests in flight plus the answers that can
    be late.

    ``relayed=True`` makes the group of a backend served to a frontend on
    another host (``forkbridge.remote.serve``, which finds it among the
    process's attributes): its ``set(i)`` carries ``i`` to the frontend's
    host, where the group given to ``Link.attach(..., events=...)`` sets
    it; ``reserve`` is refused here (the frontend reserves).

    Errors: an index outside ``range(n)`` (negative ones included) is a
    ``ValueError`` in every method, and so is releasing an index or event
    that is not reserved (released twice) or an object that is not one of
    the group's events; exhaustion raises ``NotEnoughEvents`` (an
    ``Exception``). Reserve and release are safe from several threads.
    """

    def __init__(
        self,
        n: int = 10,
        event_class: Callable[[], Any] | None = None,
        pollable: bool = False,
        relayed: bool = False,
    ) -> None:
        self._native: _native.EventGroup | None = None
        if relayed and not _is_default_event_class(event_class):
            raise ValueError("a relayed EventGroup uses forkbridge's events (no event_class)")
        if _is_default_event_class(event_class):
            self._native = _native.EventGroup(n, pollable, relayed)
            self.events: list[Any] = [self._native.fromIndex(i) for i in range(n)]
        else:
            assert event_class is not None
            self.events = [event_class() for _ in range(n)]
        # The free list and marks of a user's event class; the default
        # class keeps them in the native group.
        self._lock = threading.Lock()
        self._free: collections.deque[int] = collections.deque(range(n))
        self._reserved = [False] * n

    def __getstate__(self) -> dict[str, Any]:
        # Under forkserver / spawn the group crosses as its native group
        # (one shared mapping); its events are found again from it.
        state = self.__dict__.copy()
        del state["_lock"]
        if self._native is not None:
            del state["events"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        if self._native is not None:
            self.events = [self._native.fromIndex(i) for i in range(len(self._native))]

    def __len__(self) -> int:
        return len(self.events)

    @property
    def relayed(self) -> bool:
        """Whether its sets go to a frontend on another host."""
        return self._native is not None and self._native.relayed

    def _slot(self, i: Any) -> int:
        try:
            slot = operator.index(i)
        except TypeError:
            raise TypeError(
                "an event index is an int from EventGroup.reserve, not %s" % type(i).__name__
            ) from None
        if not 0 <= slot < len(self.events):
            raise ValueError(
                "event index %r is out of range for an EventGroup of %d" % (i, len(self.events))
            )
        return slot

    def reserve(self) -> tuple[int, Any]:
        """``(index, event)`` with the event cleared; the index is the
        oldest free one."""
        if self._native is not None:
            return self._native.reserve()
        with self._lock:
            if not self._free:
                raise NotEnoughEvents(
                    "all %d events of the group are reserved" % len(self.events)
                )
            i = self._free.popleft()
            self._reserved[i] = True
        event = self.events[i]
        # Set first: clearing a fresh libValkka EventFd fails (valkka's
        # order).
        event.set()
        event.clear()
        return i, event

    def release(self, event: Any) -> None:
        """Returns a reserved event to the back of the free list."""
        if self._native is not None:
            self._native.release(event)
            return
        self.release_ind(self._index_of(event, "release"))

    def release_ind(self, index: int) -> None:
        """``release`` by the event's index."""
        if self._native is not None:
            self._native.release_ind(index)
            return
        slot = self._slot(index)
        with self._lock:
            if not self._reserved[slot]:
                raise ValueError(
                    "event %d of this EventGroup is not reserved (released twice?)" % slot
                )
            self._reserved[slot] = False
            self._free.append(slot)

    def set(self, i: int) -> None:
        """Sets the event at index ``i`` (backend), reserved or not."""
        if self._native is not None:
            self._native.set(i)
            return
        self.events[self._slot(i)].set()

    def fromIndex(self, i: int) -> Any:
        """The event at index ``i``, reserved or not."""
        if self._native is not None:
            return self._native.fromIndex(i)
        return self.events[self._slot(i)]

    def asIndex(self, event: Any) -> int:
        """The index of one of the group's events."""
        if self._native is not None:
            return self._native.asIndex(event)
        return self._index_of(event, "asIndex")

    def _index_of(self, event: Any, method: str) -> int:
        try:
            return self.events.index(event)
        except ValueError:
            raise ValueError(
                "EventGroup.%s: %r is not an event of this EventGroup" % (method, event)
            ) from None

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
    event is released at once and the error propagates (valkka's waits
    forever: nobody may ever set it). A block left early without an
    exception (``return``, ``break``, ``continue``) cannot be told from one
    that sent its request, so it waits like a normal end: give a
    ``timeout`` (seconds) where that can happen; a wait that runs out
    raises ``TimeoutError``, and the event is released either way. A
    timeout of zero or less does not wait (the event must be set already);
    ``inf`` waits as long as ``None`` does; NaN raises ``ValueError`` here.

    After a timeout, or an error raised after the request was sent, the
    backend's answer may still come: it sets the index's event whoever
    holds it then (see ``EventGroup``).
    """

    def __init__(self, event_group: EventGroup, timeout: float | None = None) -> None:
        _check_timeout(timeout, "SyncIndex: the timeout")
        self.event_group = event_group
        self.eg = event_group  # valkka's name for it
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
            elif not self.event.wait(_for_threading(self.timeout)):
                raise TimeoutError(
                    "SyncIndex: event %s was not set within %s s" % (self.index, self.timeout)
                )
        finally:
            self.event_group.release(self.event)


