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
``queue.Queue.put`` does.

When a worker dies, each call it held ends once, and never in silence: a
call of an idempotent command goes once more to another worker (or, with
no other, to the replacement); any other ends with ``WorkerGone`` (a
``BackendGone``) carrying the worker's exit code. The replacement starts
at once (a policy's first restart has no delay), in the same pass that saw
the death.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import logging
import threading
import time
from typing import Any, Iterable, Iterator, Literal

from ._call import REPLY, is_call_fault, request
from ._child import Child, Factory
from ._errors import PoolFull, RemoteError, RestartLimitError, WorkerGone
from ._future import CallFuture
from ._message import MessageObject, _rebuild
from ._native import BackendGone, UnreadableMessage
from ._policy import RestartPolicy
from ._status import ProcessState, Status
from ._supervisor import Hook, emit
from ._timeout import deadline as _deadline
from ._watch import wait

logger = logging.getLogger("forkbridge.supervise")

Dispatch = Literal["round_robin", "least_outstanding"]
_DISPATCH = ("round_robin", "least_outstanding")
_LIVE = (ProcessState.RUNNING, ProcessState.RESTARTING)


class _Call:
    """A call sent to a worker and not answered yet."""

    __slots__ = ("future", "command", "key", "message")

    def __init__(
        self, future: CallFuture, command: str, key: Any, message: MessageObject | None
    ) -> None:
        self.future = future
        self.command = command
        #: Its key, which follows a resend to the new worker.
        self.key = key
        #: The message, kept for an idempotent call not yet sent twice.
        self.message = message


class _Worker:
    __slots__ = ("child", "calls", "leaving", "stopping")

    def __init__(self, child: Child) -> None:
        self.child = child
        #: In the order sent, which is the order the backend answers in.
        self.calls: dict[int, _Call] = {}
        #: Leaving the pool: removed once ended.
        self.leaving = False
        #: Its stop request was sent (once drained).
        self.stopping = False


def _positive(n: object, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError("%s must be an int, not %r" % (what, n))
    if n < 1:
        raise ValueError("%s must be at least 1, not %d" % (what, n))
    return n


class Pool:
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
    ``idempotent`` — commands safe to run twice, resent once when their
    worker dies; ``call_timeout`` — the bound of ``call()``; ``on_event`` —
    called with every ``ProcessExited``, ``ProcessRestarted`` and
    ``ProcessGaveUp``, in the driving thread.

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
        idempotent: Iterable[str] = (),
        call_timeout: float | None = None,
        on_event: Hook | None = None,
    ) -> None:
        if not callable(factory):
            raise TypeError("the factory must be callable, not %r" % (factory,))
        n = _positive(workers, "workers")
        if not isinstance(name, str):
            raise TypeError("the pool's name is a str, not %r" % (name,))
        if dispatch not in _DISPATCH:
            raise ValueError("dispatch must be one of %s, not %r" % (", ".join(_DISPATCH), dispatch))
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
        self.name = name
        self.dispatch = dispatch
        self.max_in_flight = _positive(max_in_flight, "max_in_flight")
        self.restart = restart
        self.idempotent = commands
        self.call_timeout = call_timeout
        self._factory = factory
        self._hook = on_event
        self._workers: list[_Worker] = []
        self._numbered = 0
        self._cursor = 0
        self._ids = itertools.count(1)
        #: Key -> the incarnation of the worker it sticks to.
        self._keys: dict[Any, int] = {}
        #: Idempotent calls whose worker died: (id, call, incarnation to avoid).
        self._retries: collections.deque[tuple[int, _Call, int]] = collections.deque()
        self._inbox: collections.deque[tuple[str, Any]] = collections.deque()
        #: Outcomes to hand to their futures once the bookkeeping is done
        #: (their callbacks may call the pool): (future, value, failed).
        self._done: collections.deque[tuple[CallFuture, Any, bool]] = collections.deque()
        self._lock = threading.RLock()
        self._stopped = False
        try:
            for _ in range(n):
                self._add_worker()
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
        """Workers the pool keeps (serving or restarting), leaving ones
        aside."""
        return sum(1 for w in self._workers if not w.leaving and w.child.state in _LIVE)

    def serving(self) -> int:
        """Workers taking calls now (not restarting, leaving or given up)."""
        return sum(1 for w in self._workers if w.child.is_serving())

    def resize(self, n: int) -> None:
        """Grows or shrinks the pool to ``n`` workers while it runs. New
        workers start now; leaving ones (the newest first) take no new
        calls, finish the ones they hold, then stop: no call is lost to a
        shrink. Raises a new worker's start error (the ones started before
        it stay)."""
        n = _positive(n, "the pool's size")
        with self._lock:
            self._check_open()
            keeping = self.size()
            while keeping < n:
                self._add_worker()
                keeping += 1
            for w in reversed(self._workers):
                if keeping <= n:
                    break
                if w.leaving or w.child.state not in _LIVE:
                    continue
                w.leaving = True
                self._release(w.child.incarnation)
                w.child.drain()
                keeping -= 1
            self._maintain()
            self._resolve()

    def status(self) -> list[Status]:
        """A snapshot of every worker, leaving and given-up ones included,
        with its calls in flight."""
        with self._lock:
            return [w.child.status(len(w.calls)) for w in self._workers]

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
            raise ValueError("return_when must be FIRST_COMPLETED, FIRST_EXCEPTION or ALL_COMPLETED")
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
                    self._pump(now)
                    break
                self._pump(deadline)
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
                    self._pump(now)
                    if not finished:
                        raise TimeoutError("%d (of %d) calls unfinished" % (left, len(fs)))
                else:
                    self._pump(deadline)

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

    # ---- the driver ------------------------------------------------------

    def _drive_until(self, future: CallFuture, timeout: float | None) -> None:
        """Drives the pool until ``future`` is done or ``timeout`` passed."""
        deadline = _deadline(timeout, "CallFuture.result: the timeout")
        with self._lock:
            while not future.done():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    if not self._stopped:
                        self._pump(now)  # a last look at what is ready
                    return
                self._pump(deadline)

    def _check_open(self) -> None:
        if self._stopped:
            raise RuntimeError("pool '%s' is stopped" % self.name)

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
                w.calls[call_id] = _Call(future, command, key, message if idempotent else None)
                if key is not None:
                    self._keys[key] = w.child.incarnation
                self._resolve()
                return future

    def _pick(self, key: Any, bound: int | None) -> int | None:
        """The worker for a call: its key's, else by the dispatch."""

        def room(w: _Worker) -> bool:
            return bound is None or len(w.calls) < bound

        if key is not None:
            owner = self._keys.get(key)
            if owner is not None:
                for i, w in enumerate(self._workers):
                    if w.child.incarnation == owner and w.child.is_serving():
                        return i if room(w) else None
        n = len(self._workers)
        if n == 0:
            return None
        start = self._cursor % n
        order = [(start + k) % n for k in range(n)]
        open_ = [i for i in order if self._workers[i].child.is_serving() and room(self._workers[i])]
        if not open_:
            return None
        if key is None and self.dispatch == "round_robin":
            pick = open_[0]
        else:  # the fewest in flight; ties in turn
            pick = min(open_, key=lambda i: len(self._workers[i].calls))
        self._cursor = pick + 1
        return pick

    def _refuse_if_empty(self) -> None:
        """Raises when no worker serves or will."""
        if any(not w.leaving and w.child.state in _LIVE for w in self._workers):
            return
        for w in reversed(self._workers):
            e = w.child.gave_up
            if e is not None:
                raise RestartLimitError(
                    str(e), name=e.name, restarts=e.restarts, exitcodes=e.exitcodes
                )
        raise WorkerGone("pool '%s' has no worker left" % self.name, worker=self.name)

    def _pump(self, deadline: float | None) -> None:
        """One wait on every worker's socket and exit fd, until something
        arrives, a restart is due, or ``deadline``; then handles it all."""
        self._maintain()
        wake = deadline
        for w in self._workers:
            at = w.child.restart_at
            if at is not None:
                wake = at if wake is None else min(wake, at)
        got = wait([w.child.process for w in self._workers], [], wake)
        if got is None:
            self._resolve()
            raise RuntimeError("pool '%s': nothing to wait for" % self.name)
        for i, exited in sorted(got[0].items()):
            self._service(i, exited)
        self._maintain()
        self._resolve()

    def _service(self, i: int, exited: bool) -> None:
        """Reads everything worker ``i`` sent; handles its end."""
        w = self._workers[i]
        process = w.child.process
        if process is None:
            return
        pipe = process._pipe
        while True:
            try:
                obj = pipe.recv(0.0)
            except TimeoutError:
                break
            except BackendGone:
                exited = True
                break
            except UnreadableMessage as e:
                if e.command == REPLY:
                    self._fail_oldest(w, e)
                else:
                    logger.warning("%s: %s", w.child.name, e)
                continue
            if obj.__class__ is MessageObject:
                if obj.command == REPLY:
                    self._answer(w, obj.kwargs)
                    continue
                if is_call_fault(obj):
                    kw = obj.kwargs
                    error = RemoteError(
                        "%s: %s" % (kw.get("kind"), kw.get("error")),
                        type_name=str(kw.get("kind")),
                        text=str(kw.get("error")),
                        worker=w.child.name,
                    )
                    self._fail_oldest(w, error)
                    continue
            elif obj is None:
                continue  # the backend's goodbye: its end follows
            self._inbox.append((w.child.name, obj))
        if exited:
            self._ended(i)

    def _answer(self, w: _Worker, reply: dict[str, Any]) -> None:
        call_id = reply.get("id")
        call = w.calls.pop(call_id, None) if isinstance(call_id, int) else None
        if call is None:
            logger.debug("%s: dropping the reply to call %r", w.child.name, call_id)
            return
        if "type" not in reply:
            self._done.append((call.future, reply.get("value"), False))
            return
        type_name, text = str(reply.get("type")), str(reply.get("error"))
        error = RemoteError(
            "%s: %s" % (type_name, text),
            type_name=type_name,
            text=text,
            remote_traceback=str(reply.get("traceback", "")),
            worker=w.child.name,
            command=call.command,
        )
        self._done.append((call.future, error, True))

    def _fail_oldest(self, w: _Worker, error: BaseException) -> None:
        """The backend answers calls in the order sent: a fault it could
        not tie to a call is the oldest unanswered one's."""
        if not w.calls:
            logger.warning("%s: %s", w.child.name, error)
            return
        call_id = next(iter(w.calls))
        call = w.calls.pop(call_id)
        if isinstance(error, RemoteError):
            error.command = call.command
        self._done.append((call.future, error, True))

    def _ended(self, i: int) -> None:
        """Worker ``i`` ended: its exit code collected, its calls resent or
        failed, its keys released, its restart decided."""
        w = self._workers[i]
        incarnation = w.child.incarnation
        events = w.child.ended(time.monotonic())
        code = w.child.last_exit
        self._release(incarnation)
        for call_id, call in w.calls.items():
            if call.message is not None:
                self._retries.append((call_id, call, incarnation))
            else:
                gone = WorkerGone.of(w.child.name, code, call.command)
                self._done.append((call.future, gone, True))
        w.calls = {}
        emit(events, self._hook)

    def _release(self, incarnation: int) -> None:
        if incarnation in self._keys.values():
            self._keys = {k: v for k, v in self._keys.items() if v != incarnation}

    def _maintain(self) -> None:
        """Restarts due, drained workers stopped and removed, resends
        placed."""
        now = time.monotonic()
        for w in self._workers:
            emit(w.child.restart_if_due(now), self._hook)
            process = w.child.process
            if w.leaving and not w.stopping and not w.calls and process is not None:
                w.stopping = True
                process._native.request_stop(0.0)  # queued if the socket is full
        before = len(self._workers)
        self._workers = [w for w in self._workers if not (w.leaving and w.child.process is None)]
        if len(self._workers) != before:
            self._cursor = 0
        if self._retries:
            self._place_retries()

    def _place_retries(self) -> None:
        """Sends each waiting resend to a serving worker other than the one
        it died with (the in-flight bound does not apply: these calls were
        admitted already); with none left to take them, they fail."""
        waiting: collections.deque[tuple[int, _Call, int]] = collections.deque()
        while self._retries:
            call_id, call, avoid = self._retries.popleft()
            targets = [
                w
                for w in self._workers
                if w.child.is_serving() and w.child.incarnation != avoid
            ]
            if not targets:
                waiting.append((call_id, call, avoid))
                continue
            w = min(targets, key=lambda t: len(t.calls))
            process = w.child.process
            assert process is not None and call.message is not None
            message, call.message = call.message, None  # sent twice at most
            try:
                process._native.send_any(message)
            except BackendGone:
                pass  # it died too: its end fails the call
            w.calls[call_id] = call
            call.future.worker = w.child.name
            if call.key is not None and call.key not in self._keys:
                self._keys[call.key] = w.child.incarnation
        if waiting and not any(not w.leaving and w.child.state in _LIVE for w in self._workers):
            for _, call, _ in waiting:
                gone = WorkerGone.of(self.name, None, call.command)
                self._done.append((call.future, gone, True))
            waiting.clear()
        self._retries = waiting

    def _add_worker(self) -> None:
        name = "%s-%d" % (self.name, self._numbered)
        self._numbered += 1
        self._workers.append(_Worker(Child(name, self._factory, self.restart)))

    def _resolve(self) -> None:
        """Hands the outcomes to their futures (their callbacks run now,
        with the bookkeeping done)."""
        while self._done:
            future, outcome, failed = self._done.popleft()
            if future.done():
                continue
            if failed:
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

