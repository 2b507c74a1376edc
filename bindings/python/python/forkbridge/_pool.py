"""Pool: N identical ``MessageProcess`` workers behind one handle, with calls
spread among them, dead workers replaced, and back-pressure.

# Design

A call is a command with a reply (``_call``): ``submit`` sends it to a
worker and returns a ``CallFuture``; the worker's ``c__<command>`` runs and
its return value (or exception) comes back. The pool is the Rust core's
``Pool`` in Python, over Python workers: the core's pool makes typed
(serde) calls to Rust backends, while a Python backend speaks dynamic
messages and is made by a Python factory and ``MessageProcess.start``.
Its bookkeeping (policies, in-flight calls, keys, resends) is plain
Python beside the native handles, which give the sockets, the exit fds and
the status counters.

It is driven by the caller's thread. Every method, and a future's
``result()``, waits in one ``poll(2)`` on every worker's socket and exit
fd, reads what arrived, completes futures, replaces workers that ended and
resends the idempotent calls they held. A thread that did this in the
background would complete futures without being asked, but it would make
the parent threaded, and under the default start method a threaded parent
may not fork (``ForkWithThreadsError``): no worker could be restarted. A
program that wants the pool on a thread of its own gives its workers
``start_method = "forkserver"`` (or ``"spawn"``) and drives the pool from
that thread only; the pool's lock serialises callers, it does not make a
second driver useful.

Many calls in flight per worker (up to ``max_in_flight``) keep every
worker busy while the caller submits more; the bound is the back-pressure:
``submit`` waits for room, ``submit_with(block=False)`` raises
``PoolFull`` at once and ``submit_with(timeout=...)`` after the timeout, as
``queue.Queue.put`` does. What happens to the calls of a worker that dies
is in ``_pooldrive``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import time
from typing import Any, Iterable, Iterator, Literal

from ._call import request
from ._child import Factory
from ._errors import PoolFull, WorkerGone
from ._events import Hook
from ._future import CallFuture
from ._message import _rebuild
from ._native import BackendGone
from ._policy import RestartPolicy
from ._pooldrive import Call, Driver
from ._status import ProcessState, Status
from ._timeout import deadline as _deadline

Dispatch = Literal["round_robin", "least_outstanding"]
_DISPATCH = ("round_robin", "least_outstanding")


def _positive(n: object, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError("%s must be an int, not %r" % (what, n))
    if n < 1:
        raise ValueError("%s must be at least 1, not %d" % (what, n))
    return n


def _count(n: object, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError("%s must be an int, not %r" % (what, n))
    if n < 0:
        raise ValueError("%s must not be negative, not %d" % (what, n))
    return n


class Pool(Driver):
    """N identical workers taking calls::

        class Squarer(MessageProcess):
            def c__square(self, x):
                return x * x                      # a call's reply

        with Pool(Squarer, workers=4, idempotent={"square"}) as pool:
            pool.call("square", x=12)             # 144
            futures = [pool.submit("square", x=x) for x in range(100)]
            print(sum(f.result(timeout=10) for f in futures))

    ``factory(name)`` makes each worker, a new ``MessageProcess`` not
    started (a subclass taking its name, or any callable returning one):
    now, and again for each replacement. Workers are named ``name-0``,
    ``name-1``, ... A call of command ``c`` runs the worker's
    ``c__c(**kwargs)`` and answers with its return value; the handler's
    exception comes back as ``RemoteError``. Arguments and results cross as
    ``MessageObject`` parameters do (pickled unless they are plain builtin
    values: only for trusted workers, see SECURITY.md).

    Options: ``dispatch`` — ``"round_robin"`` (default) or
    ``"least_outstanding"`` (the worker with the fewest calls in flight:
    uneven calls spread better); ``max_in_flight`` — calls in flight per
    worker (default 16); ``restart`` — the workers' ``RestartPolicy``
    (default ``RestartPolicy.always()``: 5 restarts in 60 s, then the
    worker is given up; ``"never"`` lets the pool shrink as workers die);
    ``spares`` — workers kept besides the ``workers`` (default 0), see
    below; ``idempotent`` — commands safe to run twice, resent once when their
    worker dies; ``call_timeout`` — the bound of ``call()``; ``on_event`` —
    called with every ``ProcessExited``, ``ProcessRestarted``,
    ``ProcessTookOver`` and ``ProcessGaveUp``, in the driving thread.

    A spare is started and idle (``ProcessState.STANDBY`` in ``status()``)
    and takes no calls. When a worker that takes calls dies, a running
    spare takes its place in the same pass (``ProcessTookOver``, logged
    at INFO), so the dead worker's resent idempotent calls are answered
    without waiting for a start; the dead worker's slot, once its policy
    restarts it, is the new spare. That start waits while a caller waits
    for a call (``result()``, ``wait``, ``as_completed``) and another
    worker takes calls: it happens at the pool's next use outside a wait
    (``poll``, ``submit``, ...). If a worker stays down (given up) and a
    spare runs, the spare takes its place too. Spares stay out of
    ``size()``, ``serving()`` and ``resize``. A spare costs a process and
    its memory, no CPU while it waits.

    A keyed call (``submit_with(..., key=k)``) goes to the worker that took
    ``k`` last while that worker lives (the least loaded one takes a new
    key); when it dies, the key moves with the next call.

    Messages a worker sends on its own (``send_out__``, its ``"error"``
    reports of failed casts) wait for ``recv()``. ``stop()`` (also on
    leaving a ``with`` block) stops every worker within one bound and ends
    the calls still in flight with ``WorkerGone``.
    """

    def __init__(
        self,
        factory: Factory,
        workers: int = 2,
        *,
        name: str = "pool",
        dispatch: Dispatch = "round_robin",
        max_in_flight: int = 16,
        restart: RestartPolicy | None = None,
        spares: int = 0,
        idempotent: Iterable[str] = (),
        call_timeout: float | None = None,
        on_event: Hook | None = None,
    ) -> None:
        if not callable(factory):
            raise TypeError("the factory must be callable, not %r" % (factory,))
        n = _positive(workers, "workers")
        n_spares = _count(spares, "spares")
        if not isinstance(name, str):
            raise TypeError("the pool's name is a str, not %r" % (name,))
        if dispatch not in _DISPATCH:
            raise ValueError(
                "dispatch must be one of %s, not %r" % (", ".join(_DISPATCH), dispatch)
            )
        if restart is None:
            restart = RestartPolicy.always()
        elif not isinstance(restart, RestartPolicy):
            raise TypeError("restart must be a RestartPolicy, not %r" % (restart,))
        if isinstance(idempotent, str):
            raise TypeError("idempotent is a collection of command names, not one str")
        commands = frozenset(idempotent)
        for c in commands:
            if not isinstance(c, str):
                raise TypeError("idempotent holds command names (str), not %r" % (c,))
        _deadline(call_timeout, "Pool: call_timeout")  # NaN raises
        if on_event is not None and not callable(on_event):
            raise TypeError("on_event must be callable, not %r" % (on_event,))
        super().__init__(
            factory, name, dispatch, _positive(max_in_flight, "max_in_flight"), restart, on_event
        )
        self.idempotent = commands
        self.call_timeout = call_timeout
        self._target = n
        try:
            for _ in range(n):
                self._add_worker()
            for _ in range(n_spares):
                self._add_worker(spare=True)
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return "<Pool %r: %d serving of %d>" % (self.name, self.serving(), self.size())

    # ---- size ----------------------------------------------------------

    def size(self) -> int:
        """Workers the pool keeps (serving or restarting), leaving ones and
        spares aside."""
        return self._size()

    def serving(self) -> int:
        """Workers taking calls now (not restarting, leaving, given up or
        spare)."""
        return sum(1 for w in self._workers if w.takes_calls())

    def resize(self, n: int) -> None:
        """Grows or shrinks the pool to ``n`` workers while it runs. New
        workers start now; leaving ones (the newest first) take no new
        calls, finish the ones they hold, then stop: no call is lost to a
        shrink. Spares are not counted and stay. Raises a new worker's start
        error (the ones started before it stay)."""
        n = _positive(n, "the pool's size")
        with self._lock:
            self._check_open()
            self._target = n
            keeping = self.size()
            while keeping < n:
                self._add_worker()
                keeping += 1
            for w in reversed(self._workers):
                if keeping <= n:
                    break
                if not w.kept():
                    continue
                w.leaving = True
                self._release(w.child.incarnation)
                w.child.drain()
                keeping -= 1
            self._maintain()
            self._resolve()

    def status(self) -> list[Status]:
        """A snapshot of every worker, spares (state ``STANDBY`` while they
        run), leaving and given-up ones included, with its calls in
        flight."""
        with self._lock:
            out = []
            for w in self._workers:
                status = w.child.status(len(w.calls))
                if w.spare and status.state is ProcessState.RUNNING:
                    status = dataclasses.replace(status, state=ProcessState.STANDBY)
                out.append(status)
            return out

    # ---- calls -----------------------------------------------------------

    def submit(self, command: str, /, **kwargs: Any) -> CallFuture:
        """Sends the call ``c__<command>(**kwargs)`` to a worker and returns
        its future; waits while every worker has ``max_in_flight`` calls in
        flight. Raises ``RestartLimitError`` (or ``WorkerGone``) when no
        worker is left to take it, ``TypeError`` / ``ValueError`` for
        arguments that cannot be sent (nothing is sent then)."""
        return self._submit(command, kwargs, None, None, None)

    def submit_with(
        self,
        command: str,
        kwargs: dict[str, Any] | None = None,
        *,
        key: Any = None,
        idempotent: bool | None = None,
        block: bool = True,
        timeout: float | None = None,
    ) -> CallFuture:
        """``submit`` with options: ``key`` (any hashable but ``None``) sends
        it to the worker that has the key; ``idempotent`` overrides the
        pool's marking of the command; ``block=False`` raises ``PoolFull``
        at once instead of waiting for room, and ``timeout`` after that
        many seconds (as ``queue.Queue.put``)."""
        if kwargs is None:
            kwargs = {}
        elif not isinstance(kwargs, dict):
            raise TypeError("kwargs must be a dict, not %r" % (kwargs,))
        if key is not None:
            hash(key)  # an unhashable key is a TypeError here
        if idempotent is not None and not isinstance(idempotent, bool):
            raise TypeError("idempotent must be a bool or None, not %r" % (idempotent,))
        return self._submit(command, kwargs, key, idempotent, timeout if block else 0.0)

    def call(self, command: str, /, **kwargs: Any) -> Any:
        """``submit(command, **kwargs).result()``, all of it within the
        pool's ``call_timeout`` (``TimeoutError`` past it)."""
        deadline = _deadline(self.call_timeout)
        if deadline is None:
            return self.submit(command, **kwargs).result()
        try:
            future = self._submit(command, kwargs, None, None, self.call_timeout)
        except PoolFull as e:
            raise TimeoutError(
                "pool '%s': no room for the call within the call_timeout" % self.name
            ) from e
        return future.result(max(0.0, deadline - time.monotonic()))

    def cast(self, command: str, /, **kwargs: Any) -> None:
        """Sends the one-way command ``MessageObject(command, **kwargs)`` to
        a worker chosen as for a call. Casts are not counted in flight and
        not resent: one sent to a worker that dies before reading it is
        lost with it."""
        if not isinstance(command, str):
            raise TypeError("a command is a str, not %r" % (command,))
        message = _rebuild(command, dict(kwargs))
        with self._lock:
            self._check_open()
            while True:
                self._maintain()
                i = self._pick(None, None)
                if i is None:
                    self._refuse_if_empty()
                    self._pump(None)
                    continue
                process = self._workers[i].child.process
                assert process is not None
                try:
                    process._native.send_any(message)
                except BackendGone:
                    self._service(i, True)
                    continue
                self._resolve()
                return

    def wait(
        self,
        futures: Iterable[CallFuture],
        timeout: float | None = None,
        return_when: str = concurrent.futures.ALL_COMPLETED,
    ) -> tuple[set[CallFuture], set[CallFuture]]:
        """``concurrent.futures.wait`` for this pool's futures, driving the
        pool meanwhile: ``(done, not_done)`` once ``return_when``
        (``FIRST_COMPLETED``, ``FIRST_EXCEPTION``, ``ALL_COMPLETED``) holds
        or ``timeout`` seconds have passed."""
        fs = self._own(futures)
        if return_when not in (
            concurrent.futures.FIRST_COMPLETED,
            concurrent.futures.FIRST_EXCEPTION,
            concurrent.futures.ALL_COMPLETED,
        ):
            raise ValueError(
                "return_when must be FIRST_COMPLETED, FIRST_EXCEPTION or ALL_COMPLETED"
            )
        deadline = _deadline(timeout, "Pool.wait: the timeout")
        finished: list[CallFuture] = []
        failed = [False]

        def note(f: concurrent.futures.Future[Any]) -> None:
            assert isinstance(f, CallFuture)
            finished.append(f)
            if not f.cancelled() and f.exception(0) is not None:
                failed[0] = True

        for f in fs:
            f.add_done_callback(note)

        def satisfied() -> bool:
            if len(finished) == len(fs):
                return True
            if return_when == concurrent.futures.FIRST_COMPLETED:
                return bool(finished)
            return return_when == concurrent.futures.FIRST_EXCEPTION and failed[0]

        with self._lock:
            while not satisfied():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self._pump_waiting(now)
                    break
                self._pump_waiting(deadline)
        done = set(finished)
        return done, fs - done

    def as_completed(
        self, futures: Iterable[CallFuture], timeout: float | None = None
    ) -> Iterator[CallFuture]:
        """``concurrent.futures.as_completed`` for this pool's futures:
        yields each as it completes, driving the pool between them; raises
        ``TimeoutError`` if some are not done ``timeout`` seconds after the
        call."""
        fs = self._own(futures)
        deadline = _deadline(timeout, "Pool.as_completed: the timeout")
        finished: collections.deque[CallFuture] = collections.deque()

        def note(f: concurrent.futures.Future[Any]) -> None:
            assert isinstance(f, CallFuture)
            finished.append(f)

        for f in fs:
            f.add_done_callback(note)
        left = len(fs)
        while left:
            while finished:
                left -= 1
                yield finished.popleft()
            if not left:
                return
            with self._lock:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self._pump_waiting(now)
                    if not finished:
                        raise TimeoutError("%d (of %d) calls unfinished" % (left, len(fs)))
                else:
                    self._pump_waiting(deadline)

    def recv(self, timeout: float | None = 0.0) -> tuple[str, Any]:
        """The next message a worker sent on its own, as ``(worker's name,
        message)``, driving the pool up to ``timeout`` seconds (``None``:
        as long as it takes); ``TimeoutError`` if none came."""
        deadline = _deadline(timeout, "Pool.recv: the timeout")
        with self._lock:
            while not self._inbox:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self._pump(now)
                    if not self._inbox:
                        raise TimeoutError("pool '%s': no message" % self.name)
                    break
                self._pump(deadline)
            return self._inbox.popleft()

    def poll(self, timeout: float | None = 0.0) -> None:
        """Drives the pool once: reads what arrived, completes futures,
        replaces ended workers, waiting up to ``timeout`` seconds for
        something to happen. For a program with no call to wait for that
        wants dead workers replaced now."""
        deadline = _deadline(timeout, "Pool.poll: the timeout")
        with self._lock:
            self._check_open()
            self._pump(deadline)

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stops every worker within ``timeout`` seconds in all (newest
        first: stop request, SIGTERM, SIGKILL as the bound runs out) and
        ends every call still in flight with ``WorkerGone``. A second call
        does nothing."""
        deadline = _deadline(timeout, "Pool.stop: the timeout")
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            for w in reversed(self._workers):
                code = w.child.stop_by(deadline)
                for call in w.calls.values():
                    gone = WorkerGone.of(w.child.name, code, call.command)
                    self._done.append((call.future, gone, True))
                w.calls.clear()
            for _, call, _ in self._retries:
                self._done.append((call.future, WorkerGone.of(self.name, None, call.command), True))
            self._retries.clear()
            self._workers.clear()
            self._resolve()

    def _own(self, futures: Iterable[CallFuture]) -> set[CallFuture]:
        fs = set(futures)
        for f in fs:
            if not isinstance(f, CallFuture) or f._pool is not self:
                raise ValueError("not a future of pool '%s': %r" % (self.name, f))
        return fs

    def _submit(
        self,
        command: str,
        kwargs: dict[str, Any],
        key: Any,
        idempotent: bool | None,
        timeout: float | None,
    ) -> CallFuture:
        if not isinstance(command, str):
            raise TypeError("a command is a str, not %r" % (command,))
        deadline = _deadline(timeout, "Pool.submit: the timeout")
        if idempotent is None:
            idempotent = command in self.idempotent
        call_id = next(self._ids)
        message = request(call_id, command, kwargs)
        with self._lock:
            self._check_open()
            while True:
                self._maintain()
                i = self._pick(key, self.max_in_flight)
                if i is None:
                    self._refuse_if_empty()
                    if deadline is not None and time.monotonic() >= deadline:
                        self._resolve()
                        raise PoolFull(
                            "pool '%s': every worker has %d calls in flight"
                            % (self.name, self.max_in_flight)
                        )
                    self._pump(deadline)
                    continue
                w = self._workers[i]
                process = w.child.process
                assert process is not None
                try:
                    process._native.send_any(message)
                except BackendGone:
                    # What it answered before it died counts: read it first.
                    self._service(i, True)
                    continue
                future = CallFuture(self, command, w.child.name)
                w.calls[call_id] = Call(future, command, key, message if idempotent else None)
                if key is not None:
                    self._keys[key] = w.child.incarnation
                self._resolve()
                return future
