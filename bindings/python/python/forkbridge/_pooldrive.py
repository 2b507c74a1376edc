"""The machinery under ``Pool``: its workers and their calls in flight, and
the one loop that drives them — wait on every worker, read replies into
futures, notice deaths, restart, resend.

# Design

Each call in flight is recorded with the worker it went to, in the order
sent, which is the order a backend answers in (it runs one command at a
time): a reply names its call's id, and the one fault that cannot (a call
whose argument did not load in the backend) belongs to the oldest call
unanswered.

When a worker dies, each call it held ends once, and never in silence: the
replies it sent before dying are read first; then a call of an idempotent
command goes once more to another worker (or, with no other, to the
replacement, which starts in the same pass that saw the death: a policy's
first restart has no delay), and any other ends with ``WorkerGone``
carrying the worker's exit code. Keys held by the dead worker are released:
the next call with one picks a new worker.

Spares are workers started and idle, which take no calls. When a worker
that takes calls dies, a running spare takes its place in the same pass
(``ProcessTookOver``), and the dead worker's slot, restarted by its
policy, is the new spare: the resent calls go to the spare already
running instead of waiting for a start. So resends are placed before any
restart starts, and a spare's replacement does not start while a caller
waits for a call (unless no worker takes calls): its start would hold up
that call's answer; it starts at the pool's next use outside a wait. A
pool smaller than asked (a worker given up, or down for good) promotes a
running spare to fill the gap. Spares stay out of ``size``, ``serving``
and ``resize``.

Outcomes are handed to their futures only once a pass's bookkeeping is
done, because a future's callbacks may call the pool again.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from typing import Any

from ._call import REPLY, is_call_fault
from ._child import Child, Factory, read_ready
from ._errors import RemoteError, RestartLimitError, WorkerGone
from ._events import Hook, ProcessTookOver, emit
from ._future import CallFuture
from ._message import MessageObject
from ._native import BackendGone, UnreadableMessage
from ._policy import RestartPolicy
from ._status import ProcessState
from ._timeout import deadline as _deadline
from ._watch import wait

logger = logging.getLogger("forkbridge.supervise")

LIVE = (ProcessState.RUNNING, ProcessState.RESTARTING)


class Call:
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


class Worker:
    __slots__ = ("child", "calls", "leaving", "stopping", "spare")

    def __init__(self, child: Child, spare: bool) -> None:
        self.child = child
        #: In the order sent, which is the order the backend answers in.
        self.calls: dict[int, Call] = {}
        #: Leaving the pool: removed once ended.
        self.leaving = False
        #: Its stop request was sent (once drained).
        self.stopping = False
        #: Started and idle, waiting to take a dead worker's place.
        self.spare = spare

    def takes_calls(self) -> bool:
        """Whether new calls may go to it."""
        return not self.spare and self.child.is_serving()

    def kept(self) -> bool:
        """Whether it counts towards the pool's size: a worker (not a
        spare) that serves, or will after its restart."""
        return not self.leaving and not self.spare and self.child.state in LIVE


class Driver:
    """A pool's state and its driving loop (see the module docs); ``Pool``
    adds the checked, public methods."""

    def __init__(
        self,
        factory: Factory,
        name: str,
        dispatch: str,
        max_in_flight: int,
        restart: RestartPolicy,
        on_event: Hook | None,
    ) -> None:
        self.name = name
        self.dispatch = dispatch
        self.max_in_flight = max_in_flight
        self.restart = restart
        self._factory = factory
        self._hook = on_event
        self._workers: list[Worker] = []
        #: How many workers (spares aside) the program asked for.
        self._target = 0
        #: A caller waits for calls: spares' restarts wait until it returns.
        self._waiting = False
        self._numbered = 0
        self._cursor = 0
        self._ids = itertools.count(1)
        #: Key -> the incarnation of the worker it sticks to.
        self._keys: dict[Any, int] = {}
        #: Idempotent calls whose worker died: (id, call, incarnation to avoid).
        self._retries: collections.deque[tuple[int, Call, int]] = collections.deque()
        #: What workers sent on their own, for ``Pool.recv``.
        self._inbox: collections.deque[tuple[str, Any]] = collections.deque()
        #: Outcomes to hand to their futures once the bookkeeping is done:
        #: (future, value, failed).
        self._done: collections.deque[tuple[CallFuture, Any, bool]] = collections.deque()
        # Serialises callers; the pool is meant to be driven by one thread.
        self._lock = threading.RLock()
        self._stopped = False

    def _drive_until(self, future: CallFuture, timeout: float | None) -> None:
        """Drives the pool until ``future`` is done or ``timeout`` passed."""
        deadline = _deadline(timeout, "CallFuture.result: the timeout")
        with self._lock:
            while not future.done():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    if not self._stopped:
                        self._pump_waiting(now)  # a last look at what is ready
                    return
                self._pump_waiting(deadline)

    def _pump_waiting(self, deadline: float | None) -> None:
        """``_pump`` for a caller waiting for calls' answers: a spare's
        replacement does not start meanwhile (see the module docs)."""
        was, self._waiting = self._waiting, True
        try:
            self._pump(deadline)
        finally:
            self._waiting = was

    def _restart_waits(self, w: Worker) -> bool:
        """Whether ``w``'s restart, if due, waits: a spare's replacement is
        not needed for the calls waited for while another worker takes
        calls, and its start would hold up their answers."""
        return self._waiting and w.spare and any(o.takes_calls() for o in self._workers)

    def _check_open(self) -> None:
        if self._stopped:
            raise RuntimeError("pool '%s' is stopped" % self.name)

    def _pick(self, key: Any, bound: int | None) -> int | None:
        """The worker for a call: its key's, else by the dispatch."""

        def room(w: Worker) -> bool:
            return bound is None or len(w.calls) < bound

        if key is not None:
            owner = self._keys.get(key)
            if owner is not None:
                for i, w in enumerate(self._workers):
                    if w.child.incarnation == owner and w.takes_calls():
                        return i if room(w) else None
        workers = self._workers
        n = len(workers)
        if n == 0:
            return None
        first = key is None and self.dispatch == "round_robin"
        start = self._cursor % n
        pick: int | None = None
        fewest = 0
        # One pass in turn from the cursor, no list built (this runs per
        # call): the first open worker, or the fewest in flight, ties in
        # turn.
        for k in range(n):
            i = (start + k) % n
            w = workers[i]
            if not (w.takes_calls() and room(w)):
                continue
            if first:
                pick = i
                break
            if pick is None or len(w.calls) < fewest:
                pick, fewest = i, len(w.calls)
        if pick is None:
            return None
        self._cursor = pick + 1
        return pick

    def _any_live(self) -> bool:
        """Whether a worker (or spare) not leaving serves, or will after
        its restart."""
        return any(not w.leaving and w.child.state in LIVE for w in self._workers)

    def _refuse_if_empty(self) -> None:
        """Raises when no worker serves or will."""
        if self._any_live():
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
            if at is not None and not self._restart_waits(w):
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

        def unreadable(e: UnreadableMessage) -> None:
            if e.command == REPLY:
                self._fail_oldest(w, e)
            else:
                logger.warning("%s: %s", w.child.name, e)

        def take(obj: Any) -> None:
            if obj.__class__ is MessageObject:
                if obj.command == REPLY:
                    self._answer(w, obj.kwargs)
                    return
                if is_call_fault(obj):
                    kw = obj.kwargs
                    error = RemoteError(
                        "%s: %s" % (kw.get("kind"), kw.get("error")),
                        type_name=str(kw.get("kind")),
                        text=str(kw.get("error")),
                        worker=w.child.name,
                    )
                    self._fail_oldest(w, error)
                    return
            self._inbox.append((w.child.name, obj))

        exited = read_ready(process, take, unreadable) or exited
        if exited:
            self._ended(i)

    def _answer(self, w: Worker, reply: dict[str, Any]) -> None:
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

    def _fail_oldest(self, w: Worker, error: BaseException) -> None:
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
        if not w.spare and not w.leaving:
            self._take_over(i)

    def _take_over(self, i: int) -> None:
        """A running spare takes the place of worker ``i``, which ended:
        the spare takes calls from now on, and ``i``, when it restarts, is
        a spare. Nothing happens without a running spare."""
        for spare in self._workers:
            if spare.spare and not spare.leaving and spare.child.is_serving():
                break
        else:
            return
        down = self._workers[i]
        spare.spare = False
        down.spare = True
        emit([ProcessTookOver(spare.child.name, down.child.name)], self._hook)

    def _fill(self) -> None:
        """Running spares take the places of workers that stay down, while
        the pool is smaller than asked."""
        while self._size() < self._target:
            for i, w in enumerate(self._workers):
                if (
                    not w.spare
                    and not w.leaving
                    and w.child.state in (ProcessState.EXITED, ProcessState.GIVEN_UP)
                ):
                    break
            else:
                return
            before = self._size()
            self._take_over(i)
            if self._size() == before:
                return

    def _size(self) -> int:
        return sum(1 for w in self._workers if w.kept())

    def _release(self, incarnation: int) -> None:
        if incarnation in self._keys.values():
            self._keys = {k: v for k, v in self._keys.items() if v != incarnation}

    def _maintain(self) -> None:
        """Restarts due, drained workers stopped and removed, resends
        placed."""
        # Resends first, to the workers (and spares) already running: a
        # restart's start would hold them up.
        self._fill()
        if self._retries:
            self._place_retries()
        now = time.monotonic()
        left = False
        for w in self._workers:
            if not self._restart_waits(w):
                emit(w.child.restart_if_due(now), self._hook)
            if w.leaving:
                process = w.child.process
                if process is None:
                    left = True
                elif not w.stopping and not w.calls:
                    w.stopping = True
                    process._native.request_stop(0.0)  # queued if the socket is full
        # The list is rebuilt only when a worker left: this runs per call.
        if left:
            self._workers = [w for w in self._workers if not (w.leaving and w.child.process is None)]
            self._cursor = 0
        self._fill()
        if self._retries:
            self._place_retries()

    def _place_retries(self) -> None:
        """Sends each waiting resend to a serving worker other than the one
        it died with (the in-flight bound does not apply: these calls were
        admitted already); with none left to take them, they fail."""
        waiting: collections.deque[tuple[int, Call, int]] = collections.deque()
        while self._retries:
            call_id, call, avoid = self._retries.popleft()
            targets = [
                w
                for w in self._workers
                if w.takes_calls() and w.child.incarnation != avoid
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
        if waiting and not self._any_live():
            for _, call, _ in waiting:
                gone = WorkerGone.of(self.name, None, call.command)
                self._done.append((call.future, gone, True))
            waiting.clear()
        self._retries = waiting

    def _add_worker(self, spare: bool = False) -> None:
        name = "%s-%d" % (self.name, self._numbered)
        self._numbered += 1
        self._workers.append(Worker(Child(name, self._factory, self.restart), spare))

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
