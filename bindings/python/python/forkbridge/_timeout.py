"""Timeouts as every wait of the package takes them: ``None`` waits as long
as it takes, zero or less does not wait (but still takes what is ready),
``inf`` and anything past what the clock holds wait as long as ``None``
does, and NaN is a ``ValueError`` raised before anything is done (a NaN
compares false with everything, so a wait built on it would end at once or
never, depending on how each comparison is written)."""

from __future__ import annotations

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
    if timeout != timeout:
        raise ValueError("%s cannot be NaN" % what)
    return time.monotonic() + max(0.0, float(timeout))


def left(deadline: float | None) -> float | None:
    """What is left of a wait until ``deadline``, never less than zero."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())
