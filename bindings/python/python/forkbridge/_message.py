"""MessageObject: a command and its keyword parameters."""

from __future__ import annotations

from typing import Any

from . import _native


class MessageObject:
    """A command plus keyword parameters, what crosses the intercom.

    ``msg()`` returns the command and ``msg["key"]`` a parameter, as in
    valkka-multiprocess::

        msg = MessageObject("a-command", par1=1, par2=2)
        msg()          # "a-command"
        msg["par1"]    # 1

    Parameters cross natively when they are ``None``, ``bool``, ``int``,
    ``float``, ``str``, ``bytes``, ``list``, ``tuple`` or ``dict`` (so a Rust
    end reads them), and pickled otherwise.
    """

    __slots__ = ("command", "kwargs")

    def __init__(self, command: Any, **kwargs: Any) -> None:
        self.command = command
        self.kwargs = kwargs

    def __call__(self) -> Any:
        return self.command

    def __getitem__(self, key: str) -> Any:
        return self.kwargs[key]

    def get(self, key: str, default: Any = None) -> Any:
        """A parameter, or ``default`` when the message has none by that name."""
        return self.kwargs.get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.kwargs

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MessageObject):
            return NotImplemented
        return self.command == other.command and self.kwargs == other.kwargs

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        return "<MessageObject: %s: %s>" % (self.command, self.kwargs)

    __repr__ = __str__

    def __reduce__(self) -> Any:
        return (_rebuild, (self.command, self.kwargs))


def _rebuild(command: Any, kwargs: dict[str, Any]) -> MessageObject:
    return _make(command, kwargs)


def _make(command: Any, kwargs: dict[str, Any]) -> MessageObject:
    """A MessageObject from a decoded message, without re-copying kwargs."""
    msg = MessageObject.__new__(MessageObject)
    msg.command = command
    msg.kwargs = kwargs
    return msg


# The native side builds received messages as this class and sends
# instances of exactly this class as messages (anything else is pickled).
_native._register_message_class(MessageObject)
