"""One supervised process: how to make it, the process while it lives, its
restart history, and its bounded stop. The supervisor and the pool both
hold these (the Rust core's ``supervise/child.rs``, in Python because the
processes are Python ``MessageProcess`` es)."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import signal
import time
from typing import Any, Callable

from ._errors import RestartLimitError
from ._events import ProcessExited, ProcessGaveUp, ProcessRestarted, SupervisorEvent
from ._native import BackendGone, UnreadableMessage
from ._policy import Restarts, RestartPolicy
from ._process import MessageProcess
from ._status import ProcessState, Status, snapshot

logger = logging.getLogger("forkbridge.supervise")

#: Makes a process, not started yet, named by its argument.
Factory = Callable[[str], MessageProcess]

#: How long a process that was sent SIGKILL gets to be reaped.
_KILL_REAP = 5.0

#: One incarnation of a process is told apart from the next by this.
_incarnations = itertools.count(1)


def make(factory: Factory, name: str) -> MessageProcess:
    """``factory(name)``, checked, started."""
    process = factory(name)
    if not isinstance(process, MessageProcess):
        raise TypeError(
            "the factory of '%s' returned %r: it must return a MessageProcess" % (name, process)
        )
    if process._started:
        raise ValueError(
            "the factory of '%s' returned a process already started: it must return a new one"
            % name
        )
    process.start()
    return process


def collect(process: MessageProcess) -> int | None:
    """The exit code of a process whose stream ended (``None``: reaped
    elsewhere). One whose stream broke while it lives cannot serve: it is
    killed."""
    native = process._native
    code = native.join(0.0)
    if code is None and native.is_alive():
        native.signal(signal.SIGKILL)
        code = native.join(_KILL_REAP)
    if code is not None:
        process._exitcode = code
    return code


def read_ready(
    process: MessageProcess,
    take: Callable[[Any], None],
    unreadable: Callable[[UnreadableMessage], None],
) -> bool:
    """Hands ``take`` every message ``process`` sent that can be read
    without waiting, in order, and ``unreadable`` each one that did not
    load, in its place; whether the stream ended. The backend's goodbye
    (``None``) is skipped: its end follows."""
    pipe = process._pipe
    while True:
        try:
            obj = pipe.recv(0.0)
        except TimeoutError:
            return False
        except BackendGone:
            return True
        except UnreadableMessage as e:
            unreadable(e)
            continue
        if obj is not None:
            take(obj)


def stop_by(process: MessageProcess, deadline: float | None) -> int | None:
    """Stops ``process`` as ``MessageProcess.stop`` does (the stop request,
    SIGTERM after ``stop_timeout``, SIGKILL after ``kill_timeout``), each
    step cut short when ``deadline`` (``time.monotonic()``) comes; its exit
    code. An exception in a wait (Ctrl-C) kills it at once, then goes on."""
    native = process._native

    def within(seconds: float) -> float:
        if deadline is None:
            return seconds
        return max(0.0, min(seconds, deadline - time.monotonic()))

    try:
        first = time.monotonic() + within(process.stop_timeout)
        native.request_stop(within(process.stop_timeout))
        code = native.join(max(0.0, first - time.monotonic()))
        if code is None and native.is_alive():
            native.signal(signal.SIGTERM)
            code = native.join(within(process.kill_timeout))
        if code is None and native.is_alive():
            native.signal(signal.SIGKILL)
            code = native.join(_KILL_REAP)
    except BaseException:
        native.signal(signal.SIGKILL)
        native.join(_KILL_REAP)
        raise
    if code is not None:
        process._exitcode = code
    return code


class Child:
    """A supervised process and its restarts."""

    def __init__(self, name: str, factory: Factory, policy: RestartPolicy) -> None:
        self.name = name
        self.factory = factory
        self.restarts = Restarts(name, policy)
        # The first start's failure is the caller's: nothing is supervised.
        self.process: MessageProcess | None = make(factory, name)
        self.state = ProcessState.RUNNING
        self.incarnation = next(_incarnations)
        self.restart_at: float | None = None
        self.down_since: float | None = None
        self.last_exit: int | None = None
        #: The last incarnation's final snapshot, shown while it is down.
        self.last_status: Status | None = None
        self.gave_up: RestartLimitError | None = None

    def is_serving(self) -> bool:
        """Whether it takes new work."""
        return self.state is ProcessState.RUNNING and self.process is not None

    def drain(self) -> None:
        """Takes no more work; ended for good at its next exit."""
        if self.process is not None:
            self.state = ProcessState.DRAINING
        else:
            self.state = ProcessState.EXITED
            self.restart_at = None

    def ended(self, now: float) -> list[SupervisorEvent]:
        """The process ended (its stream or exit fd said so): collects its
        exit code, decides by the policy, and returns what to report. A
        draining one is never restarted."""
        process = self.process
        if process is None:
            return []
        self.process = None
        pid = process.pid
        code = collect(process)
        self.last_status = snapshot(process)
        self.last_exit = code
        self.down_since = now
        decision = None if self.state is ProcessState.DRAINING else self.restarts.exited(code, now)
        restart_in = max(0.0, decision - now) if isinstance(decision, float) else None
        events: list[SupervisorEvent] = [ProcessExited(self.name, pid, code, restart_in)]
        events.extend(self._decided(decision))
        return events

    def _decided(self, decision: float | None | RestartLimitError) -> list[SupervisorEvent]:
        if isinstance(decision, float):
            self.state = ProcessState.RESTARTING
            self.restart_at = decision
            return []
        if decision is None:
            self.state = ProcessState.EXITED
            return []
        self.state = ProcessState.GIVEN_UP
        self.gave_up = decision
        return [ProcessGaveUp(self.name, decision)]

    def restart_if_due(self, now: float) -> list[SupervisorEvent]:
        """Starts the replacement if its time has come; what to report. A
        start that fails counts as an exit without a code."""
        if self.restart_at is None or self.restart_at > now:
            return []
        self.restart_at = None
        try:
            process = make(self.factory, self.name)
        except Exception as e:
            logger.warning("%s: restart failed: %s: %s", self.name, type(e).__name__, e)
            self.last_exit = None
            return self._decided(self.restarts.exited(None, now))
        self.process = process
        self.state = ProcessState.RUNNING
        self.incarnation = next(_incarnations)
        down_for = 0.0 if self.down_since is None else time.monotonic() - self.down_since
        self.down_since = None
        return [ProcessRestarted(self.name, process.pid, self.restarts.total, down_for)]

    def stop_by(self, deadline: float | None) -> int | None:
        """Stops the process by ``deadline`` and keeps it down; its exit
        code."""
        self.restart_at = None
        if self.state is not ProcessState.GIVEN_UP:
            self.state = ProcessState.EXITED
        process = self.process
        if process is None:
            return None
        self.process = None
        code = stop_by(process, deadline)
        if code is not None:
            self.last_exit = code
        self.last_status = snapshot(process)
        return code

    def status(self, calls: int = 0) -> Status:
        """Its snapshot; ``calls`` in flight as its owner counts them."""
        if self.process is not None:
            base = snapshot(self.process)
        else:
            assert self.last_status is not None, "a child starts with a process"
            base = self.last_status
        return dataclasses.replace(
            base,
            state=self.state,
            restarts=self.restarts.total,
            last_exit=base.last_exit if base.last_exit is not None else self.last_exit,
            calls_in_flight=calls,
        )
