"""Timeouts as every wait of the package takes them: ``None`` waits as long
as it takes, zero or less does not wait (but still takes what is ready),
``inf`` and anything past what the clock holds wait as long as ``None``
does, and NaN is a ``ValueError`` raised before anything is done (a NaN
compares false with everything, so a wait built on it would end at once or
never, depending on how each comparison is written)."""

from __future__ import annotations

import threading
import time


def check(timeout: float | None, what: str = "a timeout") -> None:
    """Raises ``ValueError`` ("<what> cannot be NaN") for a NaN."""
    if timeout is not None and timeout != timeout:
        raise ValueError("%s cannot be NaN" % what)


def deadline(timeout: float | None, what: str = "a timeout") -> float | None:
    """The ``time.monotonic()`` at which a wait of ``timeout`` seconds ends
    (``None``: never; ``inf`` for ``inf``)."""
    if timeout is None:
        return None
    check(timeout, what)
    return time.monotonic() + max(0.0, float(timeout))


def left(deadline: float | None) -> float | None:
    """What is left of a wait until ``deadline``, never less than zero."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def for_threading(timeout: float | None) -> float | None:
    """``timeout`` (NaN refused already) as ``threading`` waits and user
    event classes built on them or on ``select`` take it: they refuse values
    past ``threading.TIMEOUT_MAX`` (``inf``, ``sys.maxsize``) with
    ``OverflowError``, so those become ``None`` ("as long as it takes"),
    and ``select`` refuses negative ones, so those become zero."""
    if timeout is None or not timeout < threading.TIMEOUT_MAX:
        return None
    return max(0.0, timeout)
