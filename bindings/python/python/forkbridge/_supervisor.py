"""Supervisor: a set of processes restarted by their policies, waited on in
one poll, and stopped in reverse start order within one bound.

# Design

It is the Rust core's ``Supervisor`` in Python, over Python
``MessageProcess`` es: the core's supervisor restarts processes it makes
itself from Rust backends, while a Python child is made by a Python
factory (``Child(name)``) and started by ``MessageProcess.start`` — with
its fork protocol, its start methods and its checks. The native handle
gives what Python cannot do cheaply (the pidfd, the traffic counters, the
``/proc`` figures); the policy, the bookkeeping and the wait are a few
hundred lines of Python beside it.

It is driven by the caller's thread: ``wait_event`` waits in one
``poll(2)`` on every child's socket and exit fd (and the program's own
fds), restarts the children whose time has come, and returns the next
event. No thread runs behind the program's back, because under the
default start method a parent with a second Python thread may not fork
(``ForkWithThreadsError``): a supervisor thread would make every restart
fail. So a restart happens while the program waits for events; a program
busy elsewhere calls ``wait_event(0)`` now and then.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any, Sequence

from ._child import Child, Factory, read_ready
from ._events import FdReady, Hook, ProcessMessage, SupervisorEvent, emit
from ._native import UnreadableMessage
from ._policy import RestartPolicy
from ._process import MessageProcess
from ._status import Status
from ._timeout import deadline as _deadline
from ._watch import fd_of, wait

logger = logging.getLogger("forkbridge.supervise")

class Supervisor:
    """Owns processes, restarts each by its ``RestartPolicy``, and reports
    what happens as ``SupervisorEvent`` s::

        sup = Supervisor()
        sup.add("camera", Camera)             # Camera("camera"), started
        sup.add("detector", lambda name: Detector(name, model="m.onnx"),
                RestartPolicy.always())
        while running:
            event = sup.wait_event(1.0)       # a message, an exit, a restart
            ...
        sup.stop()                            # reverse start order, one bound

    A child is made by ``factory(name)``, which returns a new
    ``MessageProcess``, not started: at ``add`` and for each restart. The
    supervisor reads the children's pipes (their messages come out of
    ``wait_event`` as ``ProcessMessage``); the program sends to a child
    with ``sup.process(name).sendMessageToBack(...)``, and does not
    ``recv`` from it itself. Restarts happen inside ``wait_event`` (see the
    module docs): without it, a dead child stays dead.

    ``stop()`` stops every child within ``stop_timeout`` seconds in all,
    newest first (each its stop request, then SIGTERM, then SIGKILL by its
    own timeouts, cut short as the common bound runs out; then the rest are
    killed at once). Leaving a ``with`` block stops it too.
    """

    def __init__(self, *, stop_timeout: float = 10.0, on_event: Hook | None = None) -> None:
        _deadline(stop_timeout, "Supervisor: stop_timeout")  # NaN raises
        if on_event is not None and not callable(on_event):
            raise TypeError("on_event must be callable, not %r" % (on_event,))
        self.stop_timeout = stop_timeout
        self._hook = on_event
        self._children: list[Child] = []
        self._events: collections.deque[SupervisorEvent] = collections.deque()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def add(
        self, name: str, factory: Factory, policy: RestartPolicy | None = None
    ) -> MessageProcess:
        """Starts a child named ``name``, made by ``factory(name)`` (a
        ``MessageProcess`` subclass, or any callable returning a new one),
        restarted by ``policy`` (default: ``RestartPolicy()``, on failure);
        returns its process. Raises ``ValueError`` if a child has that
        name, ``TypeError`` for a factory that is not callable or does not
        return a ``MessageProcess``, and the first start's error (nothing
        is supervised then)."""
        if not isinstance(name, str):
            raise TypeError("a child's name is a str, not %r" % (name,))
        if not callable(factory):
            raise TypeError("the factory must be callable, not %r" % (factory,))
        if policy is None:
            policy = RestartPolicy()
        elif not isinstance(policy, RestartPolicy):
            raise TypeError("policy must be a RestartPolicy, not %r" % (policy,))
        if any(c.name == name for c in self._children):
            raise ValueError("a child is named '%s' already" % name)
        child = Child(name, factory, policy)
        self._children.append(child)
        assert child.process is not None
        return child.process

    def process(self, name: str) -> MessageProcess | None:
        """The child's process while it runs (``None`` while it restarts,
        after it ended for good, or for no such child)."""
        for c in self._children:
            if c.name == name:
                return c.process
        return None

    def names(self) -> list[str]:
        """The children's names, in start order."""
        return [c.name for c in self._children]

    def status(self) -> list[Status]:
        """A snapshot of every child, in start order."""
        return [c.status() for c in self._children]

    def wait_event(
        self, timeout: float | None = None, fds: Sequence[Any] = ()
    ) -> SupervisorEvent | None:
        """The next event, waiting up to ``timeout`` seconds (``None``: as
        long as it takes; zero: only what is ready), or ``None`` if none
        came. ``fds`` are the program's own (ints or objects with
        ``fileno()``: a listening socket, a ``Duplex``): one that is
        readable is an ``FdReady`` with its index. With no child running,
        no restart due and no ``fds``, a wait without a timeout raises
        ``RuntimeError`` instead of never returning."""
        deadline = _deadline(timeout, "Supervisor.wait_event: the timeout")
        extra = [fd_of(f) for f in fds]
        while True:
            self._maintain()
            if self._events:
                return self._events.popleft()
            done = deadline is not None and time.monotonic() >= deadline
            # A last look at what is ready once the time is up.
            self._wait_once(extra, time.monotonic() if done else deadline)
            if self._events:
                return self._events.popleft()
            if done:
                return None

    def stop(self) -> None:
        """Stops every child, newest first, within ``stop_timeout`` in all
        (see the class docs); none is restarted after this."""
        deadline = _deadline(self.stop_timeout)
        for child in reversed(self._children):
            child.stop_by(deadline)

    def _queue(self, events: list[SupervisorEvent]) -> None:
        emit(events, self._hook)
        self._events.extend(events)

    def _maintain(self) -> None:
        now = time.monotonic()
        for child in self._children:
            self._queue(child.restart_if_due(now))

    def _wait_once(self, extra: list[int], deadline: float | None) -> None:
        wake = deadline
        for c in self._children:
            if c.restart_at is not None:
                wake = c.restart_at if wake is None else min(wake, c.restart_at)
        got = wait([c.process for c in self._children], extra, wake)
        if got is None:
            raise RuntimeError("nothing to wait for: no child runs and no fd was given")
        ready, ready_extra = got
        for i, exited in sorted(ready.items()):
            self._drain(self._children[i], exited)
        self._events.extend(FdReady("", k) for k in ready_extra)

    def _drain(self, child: Child, exited: bool) -> None:
        """Takes every message ``child`` sent as events; handles its end."""
        process = child.process
        if process is None:
            return

        def unreadable(e: UnreadableMessage) -> None:
            logger.warning("%s: %s", child.name, e)

        def take(obj: Any) -> None:
            self._events.append(ProcessMessage(child.name, obj))

        exited = read_ready(process, take, unreadable) or exited
        if exited:
            now = time.monotonic()
            self._queue(child.ended(now))
            self._queue(child.restart_if_due(now))
