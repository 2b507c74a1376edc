"""CallFuture: a ``concurrent.futures.Future`` whose waits drive its pool.

A pool has no thread of its own (see ``_pool``), so nothing would ever
complete a future that is merely waited on: ``result()`` and
``exception()`` therefore run the pool — read the workers' replies, replace
dead workers, resend — until this future is done or the timeout passes.
Everything else is ``Future``'s: ``done()``, ``add_done_callback`` (run by
whichever call drove the pool to the answer), ``cancel()`` (always False:
a call is on its way to a worker from the moment ``submit`` returns). Use
the pool's ``wait`` and ``as_completed`` for many futures:
``concurrent.futures.wait`` would only sleep, driving nothing.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Protocol


class _Driver(Protocol):
    def _drive_until(self, future: CallFuture, timeout: float | None) -> None: ...


class CallFuture(concurrent.futures.Future[Any]):
    """The result of ``Pool.submit``: the call's return value, or its
    exception — ``RemoteError`` if the handler raised, ``WorkerGone`` if
    its worker died with it (see ``Pool``)."""

    def __init__(self, pool: _Driver, command: str, worker: str) -> None:
        super().__init__()
        self._pool = pool
        #: The command called.
        self.command = command
        #: The worker the call went to (the second one after a resend).
        self.worker = worker
        # Sent already: nothing can cancel it.
        self.set_running_or_notify_cancel()

    def result(self, timeout: float | None = None) -> Any:
        """The call's return value, driving the pool up to ``timeout``
        seconds (``None``: until the call is answered or its worker dies);
        raises the call's exception, or ``TimeoutError`` (the call stays in
        flight: a later ``result()`` may still get it)."""
        if not self.done():
            self._pool._drive_until(self, timeout)
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The call's exception (``None`` if it returned), driving the
        pool as ``result()`` does."""
        if not self.done():
            self._pool._drive_until(self, timeout)
        return super().exception(0)

    def __repr__(self) -> str:
        state = "done" if self.done() else "in flight"
        return "<CallFuture %s on %s: %s>" % (self.command, self.worker, state)
