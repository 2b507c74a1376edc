"""Calls: a command that gets a reply, over the package's messages.

A Python backend speaks ``MessageObject`` s, not the Rust core's typed
calls, so a pool's call is one more command: ``MessageObject("__call__",
__id__=<id>, __command__=<cmd>, **kwargs)``, run by the backend method
``c____call__`` that every ``MessageProcess`` inherits. It runs
``c__<cmd>(**kwargs)`` and sends back ``MessageObject("__reply__", id=<id>,
value=<its return value>)``, or, if it raised, ``id``, ``type`` (the
exception's class name), ``error`` (its text) and ``traceback``.

Why a command of its own rather than a reserved parameter on the user's
command: the call then goes through the loop like any other command (the
native loop, a subclass's ``routeMainPipe__`` or ``readPipes__`` that looks
up ``c__`` methods by name, the asyncio loop), so nothing a program sees
changes, and a program that never calls sees nothing at all. Values cross
as a ``MessageObject``'s parameters do (natively, or pickled per value: see
SECURITY.md).

One fault cannot carry the call's id: a call whose argument does not load
in the backend never reaches ``c____call__``; the loop reports it as an
``"error"`` message with command ``"__call__"`` (even with
``report_errors`` off). A backend runs its calls one at a time, in the
order sent, and answers them in that order, so the frontend gives such a
report to the oldest call it has not had an answer to (the same for a reply
the frontend cannot unpickle).
"""

from __future__ import annotations

import inspect
import traceback
from typing import TYPE_CHECKING, Any

from ._message import MessageObject, _rebuild

if TYPE_CHECKING:
    from ._process import MessageProcess

CALL = "__call__"
REPLY = "__reply__"
ID = "__id__"
COMMAND = "__command__"


def request(call_id: int, command: str, kwargs: dict[str, Any]) -> MessageObject:
    """The message that calls ``c__<command>(**kwargs)``."""
    for name in (ID, COMMAND):
        if name in kwargs:
            raise ValueError("%r is reserved for the call protocol: not a parameter name" % name)
    params = dict(kwargs)
    params[ID] = call_id
    params[COMMAND] = command
    return _rebuild(CALL, params)


def _method(process: MessageProcess, command: Any) -> Any:
    if not isinstance(command, str) or command == CALL:
        raise TypeError("not a command to call: %r" % (command,))
    method = getattr(process, "c__" + command, None)
    if method is None:
        raise AttributeError("no such method c__%s" % command)
    return method


def run(process: MessageProcess, kwargs: dict[str, Any]) -> None:
    """Backend: runs the call in ``kwargs`` and sends its reply."""
    call_id = kwargs.pop(ID, None)
    try:
        value = _method(process, kwargs.pop(COMMAND, None))(**kwargs)
    except Exception as e:
        _fail(process, call_id, e)
        return
    _answer(process, call_id, value)


async def run_async(process: MessageProcess, kwargs: dict[str, Any]) -> None:
    """Backend: as ``run``, awaiting a handler that is a coroutine."""
    call_id = kwargs.pop(ID, None)
    try:
        value = _method(process, kwargs.pop(COMMAND, None))(**kwargs)
        if inspect.isawaitable(value):
            value = await value
    except Exception as e:
        _fail(process, call_id, e)
        return
    _answer(process, call_id, value)


def _send(process: MessageProcess, params: dict[str, Any]) -> None:
    assert process.back_pipe is not None, "calls run in the backend"
    process.back_pipe.send(_rebuild(REPLY, params))


def _answer(process: MessageProcess, call_id: Any, value: Any) -> None:
    try:
        _send(process, {"id": call_id, "value": value})
    except EOFError:
        process.logger.debug("call %r: the frontend is gone", call_id)
    except Exception as e:  # the value does not encode: say so instead
        _fail(process, call_id, e, "cannot send the result back: ")


def _fail(process: MessageProcess, call_id: Any, e: BaseException, context: str = "") -> None:
    process.logger.debug("call %r failed: %s%s: %s", call_id, context, type(e).__name__, e)
    params = {
        "id": call_id,
        "type": type(e).__name__,
        "error": context + str(e),
        "traceback": "".join(traceback.format_exception(e)),
    }
    try:
        _send(process, params)
    except Exception as e2:  # the frontend is gone: nothing to tell
        process.logger.debug("call %r: could not report its failure: %s", call_id, e2)


def is_call_fault(obj: Any) -> bool:
    """Whether ``obj`` is the backend's report of a call it could not read."""
    return (
        obj.__class__ is MessageObject
        and obj.command == "error"
        and obj.kwargs.get("command") == CALL
    )
