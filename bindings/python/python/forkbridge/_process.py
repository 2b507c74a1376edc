"""MessageProcess and AsyncBackMessageProcess: valkka-multiprocess's
classes on forkbridge's fork and intercom.

The frontend half (methods called in the parent) sends through the native
handle; the backend half (``run``, ``readPipes__``, ``c__`` methods) runs in
the forked child exactly as in valkka-multiprocess, so subclasses that
override ``run``, ``readPipes__`` or ``preRun__`` keep working. What differs
is listed in the README's "Differences from valkka-multiprocess".
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import logging
import os
import signal
import sys
import threading
import traceback
import weakref
from typing import Any, ClassVar

from . import _call, _cross, _native, _status
from ._log import format_logger
from ._message import MessageObject, _rebuild
from ._pipe import _RETURN, BackPipe, Duplex
from ._select import safe_select
from ._timeout import check as _check_timeout

_live: weakref.WeakSet[MessageProcess] = weakref.WeakSet()


def _stdin_from_devnull() -> None:
    # As multiprocessing does, the backend does not read the terminal; done
    # on fd 0 itself, so sys.stdin keeps working (at end of file) and no
    # Python file objects are built in every new child.
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return
    try:
        if fd != 0:
            os.dup2(fd, 0)
    finally:
        if fd != 0:
            os.close(fd)


class _Elsewhere:
    """The frontend's handle, as a pickled backend sees it: not here."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        raise RuntimeError(
            "the frontend handle of process '%s' stayed with the frontend: it cannot be used "
            "in the backend (a backend reaches its frontend with send_out__)" % self._name
        )


class ForkWithThreadsError(RuntimeError):
    """``start()`` was called while other Python threads are alive.

    A forked child gets a copy of every lock those threads hold, held
    forever. Start processes before threads (``MainContext`` does), or pass
    ``start(allow_threads=True)`` / set ``allow_threads = True`` on the class
    when you know the threads hold nothing the child needs.
    """


class MessageProcess:
    """A forked worker with a frontend (methods in this process) and a
    backend (an event loop in the child) that talk in ``MessageObject`` s.

    ::

        class MyProcess(MessageProcess):
            def c__myStuff(self, parameter=None):       # backend
                print("Regards from other side of the fork!", parameter)

            def myStuff(self, parameter=None):          # frontend
                self.sendMessageToBack(MessageObject("myStuff", parameter=parameter))

        p = MyProcess(name="my-process")
        p.start()
        p.myStuff(parameter="gotcha!")
        p.stop()

    A command ``X`` runs the backend method ``c__X(**kwargs)``. An exception
    there, an unknown command, a parameter the backend cannot unpickle (a
    class defined after ``start()``, a loader that raises), or a frame that
    is malformed or over ``max_message_size`` is logged on ``self.logger``
    and reported to the frontend as ``MessageObject("error", kind=...,
    command=..., error=..., process=...)``; the backend keeps running.
    """

    #: Seconds ``run``'s Python loop gives each ``readPipes__`` call when
    #: ``listening`` is False (``listening``: zero). That loop runs when
    #: ``readPipes__``, ``handleBackPipe__`` or ``routeMainPipe__`` is
    #: overridden or ``listening`` is set; otherwise the backend waits for
    #: commands without a timeout. ``inf``: until a command arrives; zero
    #: or less: not at all.
    timeout: ClassVar[float] = 1.0
    #: ``stop()``: seconds for the backend to finish after the stop request
    #: before SIGTERM, then seconds after SIGTERM before SIGKILL (zero or
    #: less: at once; ``inf``, ``sys.maxsize``: no limit; NaN:
    #: ``ValueError`` when the process is made).
    stop_timeout: ClassVar[float] = 5.0
    kill_timeout: ClassVar[float] = 1.0
    #: Messages whose strings/bytes/pickles (and parameter names) hold at
    #: least this many bytes go through shared memory instead of the socket,
    #: up to a slot's size: 16 MiB, or four times this if that is more
    #: (larger ones take the socket). None: never.
    large_message_threshold: ClassVar[int | None] = 256 * 1024
    #: Received numpy arrays and buffers that came through shared memory
    #: are writable views of the slot they arrived in instead of copies
    #: (both ends of this process): one copy per frame instead of two. For
    #: code that is done with each frame soon: the lane has two slots each
    #: way, so one frame kept (say the previous one, to diff against) leaves
    #: it the other, but two kept send later large messages through the
    #: socket until one is dropped. Off: frames are copied out at once.
    lend_received_buffers: ClassVar[bool] = False
    #: Largest message either side accepts, in bytes.
    max_message_size: ClassVar[int] = 256 * 1024 * 1024
    #: Seconds both sides spin on the socket before sleeping when they wait
    #: (0: never). A request and its reply then skip two sleeps and
    #: wake-ups (~25 µs each on VMs) at the price of a busy CPU while
    #: waiting; bursts stop costing a wake-up per message. However long
    #: (``inf``: never sleep), a spinning wait still lets Ctrl-C in.
    spin_before_sleep: ClassVar[float] = 0.0
    #: Fork even when other Python threads are alive (see ForkWithThreadsError).
    allow_threads: ClassVar[bool] = False
    #: Send backend errors (handler exceptions, unknown commands) to the
    #: frontend as "error" MessageObjects, besides logging them.
    report_errors: ClassVar[bool] = True
    #: How ``start()`` makes the backend: ``"fork"``, ``"forkserver"`` or
    #: ``"spawn"`` (see ``forkbridge.set_start_method``); ``None``: the
    #: program's setting (``fork`` unless set). Under ``forkserver`` and
    #: ``spawn`` the instance is pickled at ``start()``: every attribute
    #: must pickle (``EventGroup``, ``Event``, ``SharedBuffer`` and
    #: ``shared_array`` arrays cross as shared memory), and the program
    #: needs the ``if __name__ == "__main__":`` guard.
    start_method: ClassVar[str | None] = None

    def __init__(self, name: str = "MessageProcess") -> None:
        self.name = name
        self.pre = type(self).__name__ + "." + name
        self.logger = logging.getLogger(self.pre)
        self.loop = True
        self.listening = False
        self.sigint = True
        self.daemon = False
        threshold = self.large_message_threshold
        self._native = _native.Process(
            name,
            stop_timeout=self.stop_timeout,
            kill_timeout=self.kill_timeout,
            max_frame_size=self.max_message_size,
            large_threshold=threshold,
            large_slot=max(16 << 20, 4 * (threshold or 0)),
            spin=self.spin_before_sleep,
            lend=self.lend_received_buffers,
        )
        self._pipe = Duplex(self._native)
        if type(self).sendMessageToBack is MessageProcess.sendMessageToBack:
            # The method's native twin, bound here: no Python frame per send.
            self.sendMessageToBack = self._native.send_message_to_back  # type: ignore[method-assign]
        self.back_pipe: BackPipe | None = None
        self._started = False
        self._exitcode: int | None = None
        _live.add(self)

    def __str__(self) -> str:
        return "<" + self.pre + ">"

    # ---- frontend -------------------------------------------------------

    def start(self, allow_threads: bool | None = None) -> None:
        """Starts the backend by the class's ``start_method`` (else the
        program's, ``fork`` by default). Raises ``ForkWithThreadsError``
        when forking while other Python threads are alive (unless
        allowed), ``RuntimeError`` when started twice, at interpreter
        shutdown, while a worker imports a program without the main guard,
        or when a spawned worker could not start (its reason in the
        message; a forkserver worker, which ``start()`` does not wait for,
        sends it as an "error" message of kind "pre_run" and ends), ``TypeError`` naming the attribute that does not
        pickle (forkserver, spawn: nothing is started then), ``ValueError``
        when a wait the backend makes (``timeout``, ``task_grace``) is NaN
        or the start method is unknown."""
        if self._started:
            raise RuntimeError("cannot start a process twice")
        method = _cross._check(
            self.start_method if self.start_method is not None else _cross.get_start_method()
        )
        for name in ("timeout", "task_grace"):
            # Refused here rather than in the backend, where it would end
            # the loop (timeout) or not wait at all (task_grace).
            _check_timeout(getattr(self, name, None), "%s: %s" % (self.pre, name))
        if sys.is_finalizing():
            raise RuntimeError(
                "cannot %s at interpreter shutdown"
                % ("fork" if method == "fork" else "start a process")
            )
        if method != "fork":
            self._start_pickled(method)
            return
        # A worker importing a program without the main guard: the same
        # error as under the other methods, not a fork from its import.
        _cross.check_not_importing_main()
        allow = self.allow_threads if allow_threads is None else allow_threads
        if not allow:
            others = [t for t in threading.enumerate() if t is not threading.current_thread()]
            if others:
                names = ", ".join(repr(t.name) for t in others)
                raise ForkWithThreadsError(
                    "%s: refusing to fork with %d other Python thread(s) alive (%s): the child "
                    "would inherit their locks, held forever. Start processes before threads, "
                    "or pass start(allow_threads=True)." % (self.pre, len(others), names)
                )
        sys.audit("os.fork")
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        self._native.start(self._bootstrap)
        self._started = True

    def _start_pickled(self, method: str) -> None:
        payload, fds, prep = _cross.dump_process(self)
        try:
            if method == "forkserver":
                command = _cross.server_command(prep)
                _native.set_fork_server_command(command)
            else:
                command = _cross.spawn_command()
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            self._native.start_foreign(method, command, payload, fds)
        finally:
            fds.close()
        self._started = True

    # What stays with the frontend when the process is pickled for a
    # forkserver or spawn worker: the handle and its pipe.
    _FRONTEND_ONLY: ClassVar[tuple[str, ...]] = (
        "_native",
        "_pipe",
        "back_pipe",
        "sendMessageToBack",
        "_started",
        "_exitcode",
    )

    def __getstate__(self) -> dict[str, Any]:
        """The instance as it crosses to a forkserver or spawn worker:
        every attribute but the frontend's handle."""
        state = self.__dict__.copy()
        for name in self._FRONTEND_ONLY:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._native = _Elsewhere(self.name)  # type: ignore[assignment]
        self._pipe = None  # type: ignore[assignment]
        self.back_pipe = None
        self._started = True
        self._exitcode = None

    def go(self) -> None:
        """Synonym of ``start()``."""
        self.start()

    def sendMessageToBack(self, message: Any) -> None:
        """Sends a ``MessageObject`` (or any object) to the backend."""
        if message is None:
            self.requestStop()
        else:
            self._native.send_any(message)

    def getPipe(self) -> Duplex:
        """The frontend's end of the intercom: ``fileno()`` for ``select``,
        ``recv()``, ``poll()`` (see ``Duplex`` for what a ``select`` loop
        must drain)."""
        return self._pipe

    def requestStop(self) -> None:
        """Asks the backend to stop after the commands sent before."""
        self._native.request_stop()

    def waitStop(self, timeout: float | None = None) -> None:
        """Waits for the backend to end (``join``)."""
        self.join(timeout)

    def stop(self) -> None:
        """Stops the backend and waits for it, within a bound: the stop
        request, then SIGTERM after ``stop_timeout`` s, then SIGKILL after
        ``kill_timeout`` s. A second call returns at once. If something
        else reaped the backend (SIGCHLD set to ``SIG_IGN``, another
        handler calling ``waitpid``), it returns too, with ``exitcode``
        left ``None`` (unknown). Ctrl-C during the wait is not held for the
        bounds: the backend is killed at once (SIGKILL) and reaped, and
        ``KeyboardInterrupt`` is raised."""
        code = self._native.stop()
        if code is not None:
            self._exitcode = code

    def ignoreSIGINT(self) -> None:
        """Call before ``start()``: the backend ignores SIGINT (Ctrl-C)."""
        self.sigint = False
        self._native.set_ignore_sigint(True)

    def sendPing(self, lis: Any) -> None:
        """Sends ``MessageObject("ping", lis=lis)``; ``c__ping`` answers."""
        self.sendMessageToBack(MessageObject("ping", lis=lis))

    def returnFromBack(self, timeout: float | None = None) -> Any:
        """The next value the backend sent with ``return_out__``, waiting up
        to ``timeout`` s (``None``: as long as it takes; then
        ``TimeoutError``). Other objects that arrive meanwhile stay for
        ``getPipe().recv()``, and so does a message it cannot read; they do
        not make the pipe's fd readable (a ``select`` loop drains them
        with ``while pipe.poll(0): pipe.recv()``). A value that does not
        unpickle here raises ``UnreadableMessage`` and is skipped: the next
        call returns the next value."""
        return self._pipe._recv_return(timeout)

    @classmethod
    def formatLogger(cls, level: int | None = logging.INFO) -> None:
        """Adds valkka's stream handler to logger ``ClassName`` (the parent
        of every ``ClassName.name``) unless one exists, and sets its level."""
        format_logger(cls.__name__, level)

    def setDebug(self) -> None:
        self.logger.setLevel(logging.DEBUG)

    def status(self) -> _status.Status:
        """A snapshot of the process: its state, pid, start method, last
        exit code, messages and bytes each way, what waits in its buffers,
        and the backend's resident memory and CPU time. It never waits,
        reaps the backend or touches the socket (the state turns
        ``"exited"`` once a receive saw the backend end, or ``join`` /
        ``is_alive`` / ``stop`` collected it)."""
        return _status.snapshot(self)

    # ---- multiprocessing.Process names ---------------------------------

    def join(self, timeout: float | None = None) -> None:
        """Waits up to ``timeout`` s (``None``: as long as it takes) for the
        backend to end; ``exitcode`` says how, or stays ``None`` if it still
        runs or something else reaped it."""
        code = self._native.join(timeout)
        if code is not None:
            self._exitcode = code

    def is_alive(self) -> bool:
        return self._started and self._native.is_alive()

    def terminate(self) -> None:
        """Sends SIGTERM to the backend."""
        self._native.signal(signal.SIGTERM)

    def kill(self) -> None:
        """Sends SIGKILL to the backend."""
        self._native.signal(signal.SIGKILL)

    @property
    def pid(self) -> int | None:
        return self._native.pid

    @property
    def exitcode(self) -> int | None:
        if self._exitcode is None and self._started:
            self._exitcode = self._native.exitcode
        return self._exitcode

    # ---- backend ---------------------------------------------------------

    def _bootstrap(self, intercom: _native.Intercom) -> int:
        """The child's entry point: ``run()`` with multiprocessing's exit
        rules; the native side then calls ``_exit``."""
        _live.clear()
        self.back_pipe = BackPipe(intercom, self._unreadable)
        code = 0
        try:
            _stdin_from_devnull()
            self.run()
        except SystemExit as e:
            if e.code is None:
                code = 0
            elif isinstance(e.code, int):
                code = e.code
            else:
                sys.stderr.write(str(e.code) + "\n")
                code = 1
        except BaseException:
            sys.stderr.write("Process %s:\n" % self.pre)
            traceback.print_exc()
            code = 1
        finally:
            # Join the non-daemon threads the backend started, as
            # multiprocessing does (skipped when there are none: it costs a
            # few dozen page faults in a fresh child).
            if threading.active_count() > 1:
                try:
                    threading._shutdown()  # type: ignore[attr-defined]
                except Exception:
                    pass
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
        return code

    def run(self) -> None:
        """The backend's loop: ``preRun__``, commands until the stop request
        (or the frontend's end), ``postRun__``. Rarely overridden."""
        self.preRun__()
        try:
            cls = type(self)
            fast = (
                cls.readPipes__ is MessageProcess.readPipes__
                and cls.handleBackPipe__ is MessageProcess.handleBackPipe__
                and cls.routeMainPipe__ is MessageProcess.routeMainPipe__
            )
            while self.loop:
                if fast and not self.listening:
                    self._serve()
                else:
                    self.readPipes__(timeout=0 if self.listening else self.timeout)
        finally:
            self.postRun__()
        self._goodbye()

    def _serve(self) -> None:
        # The common case runs in native code: block until commands arrive
        # (no periodic wake-up), then call their c__ methods, with the
        # semantics of handleBackPipe__ and routeMainPipe__ below.
        assert self.back_pipe is not None
        try:
            self.back_pipe._intercom.serve(self)
        except EOFError:
            self.logger.debug("frontend gone: leaving")
            self.loop = False

    def readPipes__(self, timeout: float) -> None:
        """Waits up to ``timeout`` s on the intercom and handles what came.
        Override to wait on more fds: select on ``[self.back_pipe, ...]`` and
        call ``self.handleBackPipe__(self.back_pipe)`` when it is readable."""
        assert self.back_pipe is not None
        ready = safe_select([self.back_pipe], [], [], timeout)[0]
        if ready:
            self.handleBackPipe__(self.back_pipe)

    def handleBackPipe__(self, p: BackPipe) -> None:
        """Runs every command readable now (so none waits unseen in a
        buffer), one at a time: a handler that calls ``p.recv()`` takes the
        next one, which the loop then does not run. The frontend's end
        stops the loop."""
        while self.loop:
            try:
                obj = p.recv(0)
            except TimeoutError:
                return
            except EOFError:
                self.logger.debug("frontend gone: leaving")
                self.loop = False
                return
            self.routeMainPipe__(obj)

    def routeMainPipe__(self, obj: Any) -> None:
        method = self._handler(obj)
        if method is None:
            return
        try:
            method(**obj.kwargs)
        except Exception as e:
            self._handler_failed(obj, e)

    def _handler(self, obj: Any) -> Any:
        """The ``c__`` method for ``obj``, or None once a stop request, a
        stray object or an unknown command has been dealt with."""
        if obj is None:
            self.loop = False
            return None
        if not isinstance(obj, MessageObject):
            self.logger.warning("routeMainPipe : not a MessageObject: %r", obj)
            return None
        method = getattr(self, "c__%s" % obj.command, None)
        if method is None:
            self._unknown(obj)
        return method

    def _unknown(self, obj: MessageObject) -> None:
        method_name = "c__%s" % obj.command
        self.logger.warning("routeMainPipe : no such method %s", method_name)
        self._report(_native.FAULT_UNKNOWN_COMMAND, obj.command, "no such method " + method_name)

    def _handler_failed(self, obj: MessageObject, e: Exception) -> None:
        self.logger.error(
            "routeMainPipe : %s(%s) failed: %s\n%s",
            "c__%s" % obj.command,
            ", ".join(obj.kwargs),
            e,
            "".join(traceback.format_exception(e)),
        )
        self._report(_native.FAULT_HANDLER_ERROR, obj.command, "%s: %s" % (type(e).__name__, e))

    def _unreadable(self, kind: str, command: str, error: str) -> None:
        """A command the loop could not read, logged and reported to the
        frontend: one with a value that does not load here (``kind``
        "handler_error", as if its handler had raised: a pickle of a class
        made after the fork, or whose loader raises; ``command`` is empty
        for an object that is not a ``MessageObject``), or a frame that does
        not decode or is over ``max_message_size`` ("decode", no command,
        as a Rust backend reports it). The loop goes on with the next
        command."""
        if command:
            self.logger.error("routeMainPipe : c__%s: %s", command, error)
        else:
            self.logger.error("routeMainPipe : %s", error)
        self._report(kind, command, error)

    def _report(self, kind: str, command: Any, error: str) -> None:
        if self.back_pipe is None:
            return
        if not self.report_errors and command != _call.CALL:
            # A call's caller waits for an answer: it is told regardless.
            return
        try:
            # Not send_out__: the async class's is a coroutine.
            self.back_pipe.send(self._error_message(kind, command, error))
        except Exception as e:  # the frontend is gone: nothing to tell
            self.logger.debug("could not report %s: %s", kind, e)

    def _error_message(self, kind: str, command: Any, error: str) -> MessageObject:
        # The core's error report: its "command" parameter cannot go through
        # MessageObject's constructor, whose first argument has that name.
        params = {"kind": kind, "command": str(command), "error": error, "process": self.name}
        return _rebuild("error", params)

    def _goodbye(self) -> None:
        # valkka's sync backend sends None when it leaves; here it comes
        # after postRun__, so it really means "finished".
        try:
            assert self.back_pipe is not None
            self.back_pipe.send(None)
        except Exception:
            pass

    def preRun__(self) -> None:
        """Backend: runs after the fork, before the loop (import heavy
        libraries, load models here)."""

    def postRun__(self) -> None:
        """Backend: runs after the loop, just before the process exits."""

    def send_out__(self, obj: Any) -> None:
        """Backend: sends ``obj`` (preferably a ``MessageObject``) to the
        frontend's ``getPipe()``."""
        assert self.back_pipe is not None, "send_out__ is a backend method"
        self.back_pipe._intercom.send_any(obj)

    def return_out__(self, obj: Any) -> None:
        """Backend: sends ``obj`` to the frontend's ``returnFromBack()``."""
        assert self.back_pipe is not None, "return_out__ is a backend method"
        self.back_pipe.send(MessageObject(_RETURN, value=obj))

    def c__ping(self, lis: Any = []) -> None:  # noqa: B006 (valkka's signature)
        """Backend demo: prints ``lis`` and answers ``pong``."""
        print("c__ping:", lis)
        self.send_out__(MessageObject("pong", lis=[1, 2, 3]))

    def c____call__(self, **kwargs: Any) -> None:
        """Backend: runs a ``Pool`` call, ``c__<command>(**kwargs)``, and
        sends its return value (or its exception) back to the pool (see
        ``forkbridge.Pool``)."""
        _call.run(self, kwargs)


class AsyncBackMessageProcess(MessageProcess):
    """A ``MessageProcess`` whose backend runs asyncio: ``c__`` methods are
    coroutines (plain functions work too), awaited one after another; start
    tasks with ``asyncio.get_event_loop().create_task`` for concurrency.
    ``asyncPre__`` / ``asyncPost__`` run inside the loop, around it.
    """

    #: Seconds pending tasks get to finish after the stop request before
    #: they are cancelled.
    task_grace: ClassVar[float] = 1.0

    def __init__(self, name: str = "AsyncMessageProcess") -> None:
        super().__init__(name)

    def getPipe(self) -> Duplex:
        """The frontend's ``Duplex``: ``getReadFd()`` / ``fileno()`` for
        ``select``, ``recv()``."""
        return self._pipe

    def getReadFd(self) -> int:
        return self._pipe.getReadFd()

    def getWriteFd(self) -> int:
        return self._pipe.getWriteFd()

    def run(self) -> None:
        self.preRun__()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.async_run__())
            loop.run_until_complete(self._finish_tasks(loop))
        finally:
            try:
                loop.close()
            finally:
                self.postRun__()
        self._goodbye()

    async def async_run__(self) -> None:
        assert self.back_pipe is not None
        loop = asyncio.get_running_loop()
        back_pipe = self.back_pipe
        fd = back_pipe.fileno()
        intercom = back_pipe._intercom
        # The future the loop below sleeps on when no command is ready.
        waiter: list[asyncio.Future[None] | None] = [None]

        def readable() -> None:
            # What arrived is read into the intercom's queue (not run), so
            # the fd stops looking readable while a handler is awaited; the
            # loop below, or a handler's back_pipe.recv(), takes the
            # commands from there one at a time.
            if not intercom.read_ahead():
                loop.remove_reader(fd)  # the frontend is gone: recv says so
            w = waiter[0]
            if w is not None and not w.done():
                w.set_result(None)

        loop.add_reader(fd, readable)
        try:
            try:
                await self.asyncPre__()
            except Exception as e:
                self.logger.critical("asyncPre__ failed with %s\n%s", e, traceback.format_exc())
            while True:
                try:
                    obj = back_pipe.recv(0)
                except TimeoutError:
                    sleep: asyncio.Future[None] = loop.create_future()
                    waiter[0] = sleep
                    await sleep
                    continue
                except EOFError:
                    break
                if obj is None:
                    break
                await self.routeMainPipe__(obj)
        finally:
            loop.remove_reader(fd)
            await self.asyncPost__()

    async def _finish_tasks(self, loop: asyncio.AbstractEventLoop) -> None:
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks(loop) if t is not current]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self.task_grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=self.task_grace)

    async def routeMainPipe__(self, obj: Any) -> None:  # type: ignore[override]
        method = self._handler(obj)
        if method is None:
            return
        try:
            result = method(**obj.kwargs)
            if inspect.isawaitable(result):
                await result
        except Exception as e:
            self._handler_failed(obj, e)

    async def asyncPre__(self) -> None:
        """Backend coroutine: runs in the loop before the first command."""

    async def asyncPost__(self) -> None:
        """Backend coroutine: runs in the loop after the last command."""

    async def send_out__(self, obj: Any) -> None:  # type: ignore[override]
        """Backend coroutine: sends ``obj`` to the frontend."""
        assert self.back_pipe is not None, "send_out__ is a backend method"
        self.back_pipe.send(obj)

    async def c__ping(self, lis: Any = []) -> None:  # type: ignore[override]  # noqa: B006
        print("c__ping:", lis)
        await self.send_out__(MessageObject("pong", lis=[1, 2, 3]))

    async def c____call__(self, **kwargs: Any) -> None:  # type: ignore[override]
        """Backend: runs a ``Pool`` call, awaiting a coroutine handler."""
        await _call.run_async(self, kwargs)


class ProgramProcess(MessageProcess):
    """A backend that is another program, in any language that speaks
    forkbridge's wire format: the process is forked as usual, then ``exec``s
    ``argv`` with its end of the intercom in the fd named by the
    ``FORKBRIDGE_FD`` environment variable. A Rust program adopts it with
    ``forkbridge::Intercom::from_env()``, a Python script with
    :func:`serve`. The frontend is the usual one: ``sendMessageToBack``,
    ``getPipe().recv()``, a bounded ``stop()``::

        p = ProgramProcess("square", ["target/release/examples/square_backend"])
        p.start()
        p.sendMessageToBack(MessageObject("square", x=12.0))
        p.getPipe().recv(timeout=5)     # <MessageObject: squared: {'x': 12.0, 'y': 144.0}>

    Values the program cannot read natively arrive there as opaque pickles.
    Large messages go through the socket (a shared mapping does not survive
    ``exec``). The message size limit does not cross ``exec`` either: the
    program sets its own (a Python one served with ``serve`` takes its
    class's ``max_message_size``; a Rust one has 64 MiB unless it calls
    ``Intercom::set_max_frame_size``), and reports a larger message.
    """

    large_message_threshold = None

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> None:
        super().__init__(name)
        self.argv = list(argv)
        self.env = env

    def run(self) -> None:
        assert self.back_pipe is not None
        fd = self.back_pipe.fileno()
        os.set_inheritable(fd, True)
        env = dict(os.environ if self.env is None else self.env)
        env["FORKBRIDGE_FD"] = str(fd)
        try:
            os.execvpe(self.argv[0], self.argv, env)
        except OSError as e:
            sys.stderr.write("%s: cannot run %s: %s\n" % (self.pre, self.argv[0], e))
            sys.stderr.flush()
            os._exit(127)


def serve(process: MessageProcess) -> None:
    """Runs ``process``'s backend in *this* process, on the intercom
    inherited from a frontend that started this program (a Rust
    ``Intercom::exec``, or a ``ProgramProcess``), then exits with its code.
    For backend programs::

        if __name__ == "__main__":
            serve(Squarer("squarer"))

    The backend takes and sends messages of up to its class's
    ``max_message_size``, as a forked one does (give the frontend the same
    limit); a larger one from the frontend is reported and skipped.
    """
    intercom = _native.Intercom.from_env(process.max_message_size)
    code = process._bootstrap(intercom)
    sys.exit(code)


def _stop_all() -> None:
    # valkka's processes are non-daemon multiprocessing children: a program
    # that forgets stop() hangs at exit. Here every process still running
    # is stopped, within its bound.
    for p in list(_live):
        try:
            if p._started and p.pid is not None and os.getpid() != p.pid:
                p.stop()
        except Exception:
            pass


atexit.register(_stop_all)
