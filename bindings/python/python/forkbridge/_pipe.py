"""The two ends of the intercom as Python sees them.

``Duplex`` is what ``getPipe()`` returns in the frontend: ``fileno()``
(usable with ``select``), ``recv()``, ``poll()``, plus valkka's
``getReadFd()`` / ``getWriteFd()``. ``BackPipe`` is the backend's end
(``self.back_pipe`` in the child).

The fd is readable while the socket holds bytes, and says nothing about
messages already read out of it into this process. Once ``fileno()`` (or
``getReadFd()``) has been called, ``recv()`` reads the socket one frame at
a time, so a ``select`` loop that calls ``recv()`` once per readable event
sees every message the backend sends, large ones included (their frames in
the socket name their shared-memory slots, in order). (A ``return_out__``
value makes the fd readable too, and is kept for ``returnFromBack()``: a
``recv()`` that must not wait past it checks ``poll(0)`` first.) Four things read
ahead, leaving messages in this process while the fd looks idle:
``poll()`` and ``returnFromBack()`` (they keep what they read for
``recv()``), a send that waited for room in a full socket (it reads
meanwhile, so that two ends sending to each other never both block), and
``recv()`` calls made before ``fileno()`` was first called (they read
whatever the socket holds). After any of those, drain before going back
to ``select``::

    while pipe.poll(0):
        handle(pipe.recv())

(``poll(0)`` never waits and looks at what was read ahead first.) A loop
that ends each wake-up with this drain, and calls nothing that reads
ahead between the drain and its next ``select``, leaves nothing behind. The
backend's loops take the commands a handler's send read ahead before
they wait again.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Callable

from . import _native
from ._message import MessageObject
from ._timeout import check as _check_timeout
from ._timeout import deadline as _deadline
from ._timeout import left as _left

if TYPE_CHECKING:
    from ._process import MessageProcess

_RETURN = "__return__"


def _is_return(obj: Any) -> bool:
    return obj.__class__ is MessageObject and obj.command == _RETURN


class _Unread:
    """An ``UnreadableMessage`` read ahead, for its reader to raise in turn
    (``recv()``, or ``returnFromBack()`` for a ``return_out__`` value)."""

    __slots__ = ("error",)

    def __init__(self, error: _native.UnreadableMessage) -> None:
        self.error = error


def _take(queue: collections.deque[Any]) -> Any:
    """The oldest entry of ``queue``, raised if it is an unreadable one."""
    obj = queue.popleft()
    if obj.__class__ is _Unread:
        raise obj.error
    return obj


class Duplex:
    """The frontend's end of a process's intercom (``getPipe()``).

    ``recv()`` returns the next object the backend sent (a
    ``MessageObject``, or any object given to ``send_out__``), waiting
    as long as it takes, or up to ``timeout`` seconds (then ``TimeoutError``).
    When the backend has ended and everything it sent was read, ``recv()``
    raises ``BackendGone``, an ``EOFError`` (valkka's pipe blocks forever).

    A message that cannot be read here is skipped and raised in its turn as
    ``UnreadableMessage`` (a ``ForkbridgeError`` and a ``ValueError``): a
    frame that does not decode or is over ``max_message_size``, or an
    object that does not unpickle in this process (its loader's exception
    is the ``__cause__``). The next ``recv()`` returns the message after
    it, as the Rust frontend's ``recv`` does; nothing else is lost.
    ``poll()`` counts it as something ``recv()`` would return (it raises
    it). A ``return_out__`` value that does not load is raised by
    ``returnFromBack()`` instead, in its turn; a frame that does not decode
    cannot be told to be one, so it goes to ``recv()``.
    """

    __slots__ = ("_native", "_stash", "_returns", "__weakref__")

    def __init__(self, native: _native.Process) -> None:
        self._native = native
        # Objects read while looking for a return_out__ value, and
        # return_out__ values read by recv(): each kept for its reader.
        self._stash: collections.deque[Any] = collections.deque()
        self._returns: collections.deque[Any] = collections.deque()

    def fileno(self) -> int:
        """The socket's fd, for ``select``: readable while the socket holds
        bytes. From the first call on, ``recv()`` reads one frame at a
        time; messages read ahead before or since wait without making it
        readable (see the module docs: drain with ``poll(0)``)."""
        return self._native.fileno()

    def getReadFd(self) -> int:
        """``fileno()``, valkka's name."""
        return self._native.fileno()

    def getWriteFd(self) -> int:
        """``fileno()``, valkka's name (one socket carries both ways)."""
        return self._native.fileno()

    def recv(self, timeout: float | None = None) -> Any:
        # The common case (no timeout, an ordinary object) costs no Python
        # call besides the native one: this is every message's path.
        deadline = None if timeout is None else _deadline(timeout)  # NaN raises
        if self._stash:
            return _take(self._stash)
        while True:
            try:
                obj = self._native.recv(None if deadline is None else _left(deadline))
            except _native.UnreadableMessage as e:
                if e.command != _RETURN:
                    raise
                self._returns.append(_Unread(e))
                continue
            if obj.__class__ is not MessageObject or obj.command != _RETURN:
                return obj
            self._returns.append(obj.kwargs.get("value"))

    def _recv_return(self, timeout: float | None = None) -> Any:
        # The timeout bounds the whole wait, however many other objects
        # arrive meanwhile (they stay for recv()).
        deadline = _deadline(timeout)
        if self._returns:
            return _take(self._returns)
        while True:
            try:
                obj = self._native.recv(_left(deadline))
            except _native.UnreadableMessage as e:
                if e.command == _RETURN:
                    raise
                self._stash.append(_Unread(e))
                continue
            if _is_return(obj):
                return obj.kwargs.get("value")
            self._stash.append(obj)

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether ``recv()`` would return within ``timeout`` seconds (an
        object, or ``BackendGone`` or ``UnreadableMessage``). A ``return_out__`` value that arrives
        meanwhile is kept for ``returnFromBack`` and does not count: only
        ``returnFromBack`` returns it. (The fd, for ``select``, is readable
        for such a value too: call ``poll()`` before a ``recv()`` that must
        not wait.) What it reads waits here for ``recv()`` without making
        the fd readable: ``while pipe.poll(0): pipe.recv()`` takes it all."""
        deadline = _deadline(timeout)
        if self._stash:
            return True
        while self._native.poll(_left(deadline)):
            try:
                obj = self._native.recv(0.0)
            except _native.BackendGone:
                return True
            except _native.UnreadableMessage as e:
                if e.command != _RETURN:
                    self._stash.append(_Unread(e))
                    return True
                self._returns.append(_Unread(e))
                continue
            if not _is_return(obj):
                self._stash.append(obj)
                return True
            self._returns.append(obj.kwargs.get("value"))
        return False

    def send(self, obj: Any) -> None:
        """Sends ``obj`` to the backend, as ``sendMessageToBack`` does any
        object but ``None``: here ``None`` is sent as an object, not as the
        stop request (a Python backend's loop, given ``None``, stops all the
        same; a Rust backend receives an object)."""
        self._native.send_any(obj)

    def __repr__(self) -> str:
        return "<forkbridge.Duplex fd=%d>" % self._native.fileno()


class BackPipe:
    """The backend's end (``self.back_pipe`` in the child).

    A command it receives with a value that does not load here (a pickle of
    a class this process lacks, or whose loader raises) is reported to the
    frontend like a handler's exception and skipped; so is a frame that is
    malformed or over the size limit.
    """

    __slots__ = ("_intercom", "_fault")

    def __init__(
        self, intercom: _native.Intercom, fault: Callable[[str, str, str], None]
    ) -> None:
        self._intercom = intercom
        # Called with (kind, command, error) for each command skipped.
        self._fault = fault

    def fileno(self) -> int:
        return self._intercom.fileno()

    def getReadFd(self) -> int:
        return self._intercom.fileno()

    def getWriteFd(self) -> int:
        return self._intercom.fileno()

    def recv(self, timeout: float | None = None) -> Any:
        """The next command, waiting up to ``timeout`` seconds (``None``: as
        long as it takes; then ``TimeoutError``); ``None`` is the
        frontend's stop request. In a handler, that is the command sent
        after the handler's own, even when the loop has read it already:
        the loop then does not run it."""
        return self._intercom.recv(self._fault, timeout)

    def drain(self) -> list[Any]:
        """Every command readable now, in order (``None``: stop request).
        Commands that cannot be read are reported as they are read, before
        the ones before them in the list run, and left out."""
        return self._intercom.drain(self._fault)

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether ``recv()`` would return within ``timeout`` seconds
        (``None``: as long as it takes)."""
        _check_timeout(timeout)  # a NaN raises whatever is ready
        if self._intercom.has_buffered():
            return True
        from ._select import safe_select

        return bool(safe_select([self], [], [], timeout)[0])

    def send(self, obj: Any) -> None:
        self._intercom.send_any(obj)

    def __repr__(self) -> str:
        return "<forkbridge.BackPipe fd=%d>" % self._intercom.fileno()
