"""What a supervisor or a pool reports about its processes: one frozen
dataclass per kind of event (the Rust core's ``SupervisorEvent`` variants),
all ``SupervisorEvent`` s, so a program matches on the class::

    match sup.wait_event(1.0):
        case ProcessRestarted(name=name, restarts=n):
            print(name, "is back, restart", n)
        case ProcessMessage(name=name, message=msg):
            handle(name, msg)

Every state change is also logged on the ``forkbridge.supervise`` logger
(exits at WARNING for a failure and INFO for a clean exit, restarts and
spares' takeovers at INFO, give-ups at ERROR), so a program that only logs sees every restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from ._errors import RestartLimitError, _exit_text

logger = logging.getLogger("forkbridge.supervise")
# A library's logger stays silent until the program configures logging
# (without this, Python's last-resort handler would print warnings).
logger.addHandler(logging.NullHandler())


@dataclass(frozen=True)
class SupervisorEvent:
    """A change in a supervised process, or something it sent; ``name``
    is the process's (``""`` for ``FdReady``)."""

    name: str

    def log(self) -> None:
        """Logs the event, if it is a state change."""


@dataclass(frozen=True)
class ProcessMessage(SupervisorEvent):
    """The process sent ``message`` (a ``MessageObject``, or what its
    backend gave ``send_out__``). A supervisor's children only: a pool
    keeps its workers' own messages for ``Pool.recv``."""

    message: Any


@dataclass(frozen=True)
class ProcessExited(SupervisorEvent):
    """The process ended: ``exitcode`` as ``multiprocessing`` has it
    (``None``: not collected); ``restart_in`` is the seconds until its
    replacement starts, ``None`` if it will not be restarted."""

    pid: int | None
    exitcode: int | None
    restart_in: float | None

    def log(self) -> None:
        pid = "" if self.pid is None else " (pid %d)" % self.pid
        then = "not restarted" if self.restart_in is None else "restart in %.3g s" % self.restart_in
        level = logging.INFO if self.exitcode == 0 else logging.WARNING
        logger.log(level, "%s%s exited: %s; %s", self.name, pid, _exit_text(self.exitcode), then)


@dataclass(frozen=True)
class ProcessRestarted(SupervisorEvent):
    """A replacement for an ended process started (it keeps the name):
    its ``pid``, the ``restarts`` of this process so far (this one
    included), and ``down_for`` seconds from the exit seen to the start."""

    pid: int | None
    restarts: int
    down_for: float

    def log(self) -> None:
        logger.info(
            "%s restarted as pid %s (restart %d, down %.3g s)",
            self.name,
            self.pid,
            self.restarts,
            self.down_for,
        )


@dataclass(frozen=True)
class ProcessTookOver(SupervisorEvent):
    """A pool's spare ``name`` took the place of the worker ``replaces``,
    which died: the spare takes calls from now on (the dead worker's
    resent calls among them), and the dead worker's slot, once its policy
    restarts it, is the new spare. Pools with spares only."""

    replaces: str

    def log(self) -> None:
        logger.info("spare %s took over from %s", self.name, self.replaces)


@dataclass(frozen=True)
class ProcessGaveUp(SupervisorEvent):
    """The process hit its restart limit and stays down; ``error`` holds
    its last exit codes."""

    error: RestartLimitError

    def log(self) -> None:
        logger.error("%s: %s", self.name, self.error)


@dataclass(frozen=True)
class FdReady(SupervisorEvent):
    """One of the program's own fds given to ``Supervisor.wait_event`` is
    readable: ``index`` in that sequence."""

    index: int


#: Called with each event by a supervisor or a pool, in the driving thread.
Hook = Callable[[SupervisorEvent], None]


def emit(events: list[SupervisorEvent], hook: Hook | None) -> None:
    """Logs each state change and hands it to ``hook`` (whose exceptions
    are logged: the bookkeeping around it must finish)."""
    for event in events:
        event.log()
        if hook is not None:
            try:
                hook(event)
            except Exception:
                logger.exception("the on_event hook failed on %r", event)
