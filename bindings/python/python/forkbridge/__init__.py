"""forkbridge: structured multiprocessing on forked workers.

valkka-multiprocess's API on a Rust core: change
``from valkka.multiprocess import X`` to ``from forkbridge import X``.

A worker is a ``MessageProcess`` subclass: ``c__<command>`` methods run in
the forked backend, plain methods in the frontend::

    from forkbridge import MessageObject, MessageProcess

    class Doubler(MessageProcess):
        def c__double(self, x=0):                      # backend
            self.send_out__(MessageObject("doubled", x=2 * x))

    p = Doubler("doubler")
    p.start()                                          # fork
    p.sendMessageToBack(MessageObject("double", x=21))
    print(p.getPipe().recv(timeout=5)["x"])            # 42
    p.stop()                                           # bounded, always reaped

Faults are typed and bounded: an exception in ``c__double`` comes back as a
``MessageObject("error", ...)`` and the backend goes on; a dead backend
makes ``recv`` raise ``BackendGone`` (an ``EOFError``), and a message the
frontend cannot read ``UnreadableMessage`` (the next ``recv`` goes on);
``stop()`` escalates to SIGTERM and SIGKILL. ``AsyncBackMessageProcess`` runs asyncio in the
backend, ``EventGroup`` / ``SyncIndex`` synchronise through events made
before the fork, ``MainContext`` starts processes before threads, and
``ProgramProcess`` / ``serve`` connect backends written in other languages.
``Pool`` runs calls (``c__`` methods that return a value) on N workers it
restarts, ``Supervisor`` restarts any processes by a ``RestartPolicy``, and
``status()`` gives a process's ``Status``. The README's "Differences from
valkka-multiprocess" lists what behaves differently, and why.
"""

from ._context import MainContext
from ._cross import SharedBuffer, get_start_method, set_start_method, shared_array
from ._errors import PoolFull, RemoteError, RestartLimitError, WorkerGone
from ._events import (
    FdReady,
    ProcessExited,
    ProcessGaveUp,
    ProcessMessage,
    ProcessRestarted,
    ProcessTookOver,
    SupervisorEvent,
)
from ._future import CallFuture
from ._log import exclog, exclogmsg
from ._message import MessageObject
from ._native import (
    BackendGone,
    Event,
    ForkbridgeError,
    NotEnoughEvents,
    UnreadableMessage,
)
from ._pipe import BackPipe, Duplex
from ._policy import RestartPolicy
from ._pool import Pool
from ._process import (
    AsyncBackMessageProcess,
    ForkWithThreadsError,
    MessageProcess,
    ProgramProcess,
    serve,
)
from ._select import safe_select
from ._status import ProcessState, Status
from ._supervisor import Supervisor
from ._sync import EventGroup, SyncIndex

__version__ = "0.1.0"

__all__ = [
    "AsyncBackMessageProcess",
    "BackPipe",
    "BackendGone",
    "CallFuture",
    "Duplex",
    "Event",
    "EventGroup",
    "FdReady",
    "ForkWithThreadsError",
    "ForkbridgeError",
    "MainContext",
    "MessageObject",
    "MessageProcess",
    "NotEnoughEvents",
    "Pool",
    "PoolFull",
    "ProcessExited",
    "ProcessGaveUp",
    "ProcessMessage",
    "ProcessRestarted",
    "ProcessState",
    "ProcessTookOver",
    "ProgramProcess",
    "RemoteError",
    "RestartLimitError",
    "RestartPolicy",
    "SharedBuffer",
    "Status",
    "Supervisor",
    "SupervisorEvent",
    "SyncIndex",
    "UnreadableMessage",
    "WorkerGone",
    "exclog",
    "exclogmsg",
    "get_start_method",
    "safe_select",
    "serve",
    "set_start_method",
    "shared_array",
]
