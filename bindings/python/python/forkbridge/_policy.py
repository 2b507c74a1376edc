"""RestartPolicy: when a dead process comes back, how often, and how soon;
and the bookkeeping that applies it to one process.

It mirrors the Rust core's ``RestartPolicy`` (same fields, defaults and
arithmetic), so a Python program and a Rust one restart alike: Erlang/OTP's
sliding window bounds a crash loop's total cost, a doubling delay up to a
cap spreads its restarts out (systemd, Kubernetes), and the first restart
in the window is immediate, so a process killed once is back in the time a
start takes. It is plain Python, not the core's object: a Python
supervisor's children are Python ``MessageProcess`` es that the Rust
supervisor cannot restart (see ``_supervisor``).
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Literal

from ._errors import RestartLimitError

When = Literal["never", "on_failure", "always"]
_WHEN = ("never", "on_failure", "always")

#: How many exit codes a history keeps for its error (the core's too).
_KEPT = 16


def _seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("RestartPolicy.%s must be a number of seconds, not %r" % (what, value))
    value = float(value)
    if value != value or value < 0:
        raise ValueError("RestartPolicy.%s must be zero or more seconds, not %r" % (what, value))
    return value


@dataclass(frozen=True)
class RestartPolicy:
    """How a supervised process is restarted: ``when`` (``"never"``,
    ``"on_failure"``: killed by a signal or a non-zero exit code, or
    ``"always"``), at most ``max_restarts`` restarts within any ``window``
    seconds (``None``: no limit), after a delay doubling from ``backoff``
    up to ``max_backoff`` seconds.

    The first restart within the window is immediate; the ``k``-th (k ≥ 2)
    waits ``backoff × 2**(k−2)``, at most ``max_backoff`` (which is raised
    to ``backoff`` if below it). Restarts older than the window are
    forgotten. A process that would need more than ``max_restarts``
    restarts within the window is given up: it stays down, and its
    supervisor reports ``RestartLimitError`` with its last exit codes.

    Defaults, as the Rust core's: ``"on_failure"``, 5 restarts in 60 s,
    backoff from 0.1 s to 10 s. A process the program stopped (or, in a
    pool, removed) is never restarted.

    >>> p = RestartPolicy("on_failure", max_restarts=3, window=10, backoff=0.05, max_backoff=2)
    >>> [p.delay(k) for k in (1, 2, 4, 30)]
    [0.0, 0.05, 0.2, 2.0]
    """

    when: When = "on_failure"
    max_restarts: int | None = 5
    window: float = 60.0
    backoff: float = 0.1
    max_backoff: float = 10.0

    def __post_init__(self) -> None:
        if self.when not in _WHEN:
            raise ValueError(
                "RestartPolicy.when must be one of %s, not %r" % (", ".join(_WHEN), self.when)
            )
        limit = self.max_restarts
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError("RestartPolicy.max_restarts must be an int or None, not %r" % (limit,))
        if limit is not None and limit < 0:
            raise ValueError("RestartPolicy.max_restarts must be zero or more, not %d" % limit)
        backoff = _seconds(self.backoff, "backoff")
        object.__setattr__(self, "window", _seconds(self.window, "window"))
        object.__setattr__(self, "backoff", backoff)
        max_backoff = _seconds(self.max_backoff, "max_backoff")
        object.__setattr__(self, "max_backoff", max(backoff, max_backoff))

    @classmethod
    def never(cls) -> RestartPolicy:
        """An ended process stays ended."""
        return cls("never")

    @classmethod
    def on_failure(
        cls,
        *,
        max_restarts: int | None = 5,
        window: float = 60.0,
        backoff: float = 0.1,
        max_backoff: float = 10.0,
    ) -> RestartPolicy:
        """Restarted unless it exited with code 0."""
        return cls("on_failure", max_restarts, window, backoff, max_backoff)

    @classmethod
    def always(
        cls,
        *,
        max_restarts: int | None = 5,
        window: float = 60.0,
        backoff: float = 0.1,
        max_backoff: float = 10.0,
    ) -> RestartPolicy:
        """Restarted whenever it ends, unless the program stopped it."""
        return cls("always", max_restarts, window, backoff, max_backoff)

    def delay(self, k: int) -> float:
        """Seconds before the ``k``-th restart within the window (k from 1)."""
        if k <= 1:
            return 0.0
        try:
            grown = self.backoff * 2.0 ** (k - 2)
        except OverflowError:
            grown = math.inf
        return min(grown, self.max_backoff)

    def wants(self, exitcode: int | None) -> bool:
        """Whether an exit with ``exitcode`` (``multiprocessing``'s: negative
        for a signal; ``None``: unknown, or the start failed) calls for a
        restart."""
        if self.when == "never":
            return False
        if self.when == "always":
            return True
        return exitcode != 0


class Restarts:
    """One process's restart history under a policy (the core's
    ``Restarts``)."""

    __slots__ = ("name", "policy", "recent", "total", "exits")

    def __init__(self, name: str, policy: RestartPolicy) -> None:
        self.name = name
        self.policy = policy
        #: When each restart within the window was decided, oldest first.
        self.recent: collections.deque[float] = collections.deque()
        #: Restarts in all.
        self.total = 0
        #: The last exit codes, oldest first.
        self.exits: collections.deque[int | None] = collections.deque(maxlen=_KEPT)

    def exited(self, exitcode: int | None, now: float) -> float | None | RestartLimitError:
        """Records an exit at ``now`` (``time.monotonic()``) and decides:
        the time to restart at, ``None`` to stay down, or the error of a
        process given up."""
        self.exits.append(exitcode)
        if not self.policy.wants(exitcode):
            return None
        window = self.policy.window
        while self.recent and now - self.recent[0] >= window:
            self.recent.popleft()
        limit = self.policy.max_restarts
        if limit is not None and len(self.recent) >= limit:
            return self.given_up()
        self.recent.append(now)
        self.total += 1
        return now + self.policy.delay(len(self.recent))

    def given_up(self) -> RestartLimitError:
        return RestartLimitError.of(self.name, self.total, tuple(self.exits))
