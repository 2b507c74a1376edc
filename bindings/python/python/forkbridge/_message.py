"""MessageObject: a command and its keyword parameters (a native class:
see ``_native.MessageObject`` for why)."""

from __future__ import annotations

from typing import Any

from ._native import MessageObject

__all__ = ["MessageObject"]


def _rebuild(command: Any, kwargs: dict[str, Any]) -> MessageObject:
    """Unpickles a MessageObject (its ``__reduce__`` names this function)."""
    msg = MessageObject(command)
    msg.kwargs = kwargs
    return msg
