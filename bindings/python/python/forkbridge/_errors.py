"""The errors of supervision and pools: a call's handler failed
(``RemoteError``), its worker died with it (``WorkerGone``), a process died
too often (``RestartLimitError``), a pool refused a call (``PoolFull``).

Each carries what a program acts on as attributes (the worker, the exit
code, the remote exception's type name) besides its text. They pickle (the
attributes included), so a program may pass them on to another process.

``WorkerGone`` is a ``BackendGone`` (so an ``EOFError``) rather than an
error of its own: it means what ``BackendGone`` means everywhere in the
package — the other end went away — so code that already handles a dead
backend handles a dead worker, and the subclass adds which worker, its exit
code and the command. ``RemoteError`` does not rebuild the backend's
exception: its class may not exist, or not unpickle, in the frontend, and
the package's error reports already cross as type name and text.
"""

from __future__ import annotations

from ._native import BackendGone, ForkbridgeError


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        return "killed by signal %d" % -code
    return "exit code %d" % code


class RemoteError(ForkbridgeError):
    """A pool call's backend handler raised (or could not be run: an
    unknown command, arguments it does not take, a result that cannot be
    sent back, an argument that does not load in the backend).

    The exception itself stays in the backend, where its class lives: what
    crosses is ``type_name`` (``"ValueError"``), ``text`` (``str(exc)``)
    and ``remote_traceback`` (the backend's formatted traceback, empty when
    the handler never ran), as the package's ``"error"`` reports carry
    them. ``worker`` and ``command`` name the call."""

    def __init__(
        self,
        message: str = "",
        *,
        type_name: str = "",
        text: str = "",
        remote_traceback: str = "",
        worker: str = "",
        command: str = "",
    ) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.text = text
        self.remote_traceback = remote_traceback
        self.worker = worker
        self.command = command


class WorkerGone(BackendGone):
    """The worker holding a call ended before answering it (a
    ``BackendGone``, so an ``EOFError``): the call was not idempotent, or
    its one resend died too, or the pool was stopped with it in flight.
    The call may or may not have run. ``exitcode`` is the worker's, as
    ``multiprocessing`` reports it (negative: killed by that signal;
    ``None``: not known)."""

    def __init__(
        self,
        message: str = "",
        *,
        worker: str = "",
        exitcode: int | None = None,
        command: str = "",
    ) -> None:
        super().__init__(message)
        self.worker = worker
        self.exitcode = exitcode
        self.command = command

    @classmethod
    def of(cls, worker: str, exitcode: int | None, command: str) -> WorkerGone:
        return cls(
            "worker '%s' ended (%s) with call '%s' in flight"
            % (worker, _exit_text(exitcode), command),
            worker=worker,
            exitcode=exitcode,
            command=command,
        )


class RestartLimitError(ForkbridgeError):
    """A supervised process (or every worker of a pool) hit its restart
    limit and stays down. ``exitcodes`` are its last exit codes, oldest
    first (``None``: not collected, or the start itself failed); there is
    one more than ``restarts`` when the limit was hit within the kept
    history."""

    def __init__(
        self,
        message: str = "",
        *,
        name: str = "",
        restarts: int = 0,
        exitcodes: tuple[int | None, ...] = (),
    ) -> None:
        super().__init__(message)
        self.name = name
        self.restarts = restarts
        self.exitcodes = exitcodes

    @classmethod
    def of(cls, name: str, restarts: int, exitcodes: tuple[int | None, ...]) -> RestartLimitError:
        text = "process '%s' given up after %d restarts" % (name, restarts)
        if exitcodes:
            text += "; last exits: " + ", ".join(_exit_text(c) for c in exitcodes)
        return cls(text, name=name, restarts=restarts, exitcodes=exitcodes)


class PoolFull(ForkbridgeError):
    """A call submitted without waiting (``block=False``) found every
    worker it may go to at its ``max_in_flight`` bound."""
