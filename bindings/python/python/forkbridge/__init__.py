"""forkbridge: structured multiprocessing on forked workers.

valkka-multiprocess's API on a Rust core: change
``from valkka.multiprocess import X`` to ``from forkbridge import X``.
"""

from ._context import MainContext
from ._log import exclog, exclogmsg
from ._message import MessageObject
from ._native import BackendGone, Event, ForkbridgeError, NotEnoughEvents
from ._pipe import BackPipe, Duplex
from ._process import (
    AsyncBackMessageProcess,
    ForkWithThreadsError,
    MessageProcess,
    ProgramProcess,
    serve,
)
from ._select import safe_select
from ._sync import EventGroup, SyncIndex

__version__ = "0.1.0"

__all__ = [
    "AsyncBackMessageProcess",
    "BackPipe",
    "BackendGone",
    "Duplex",
    "Event",
    "EventGroup",
    "ForkWithThreadsError",
    "ForkbridgeError",
    "MainContext",
    "MessageObject",
    "MessageProcess",
    "NotEnoughEvents",
    "ProgramProcess",
    "SyncIndex",
    "exclog",
    "exclogmsg",
    "safe_select",
    "serve",
]
