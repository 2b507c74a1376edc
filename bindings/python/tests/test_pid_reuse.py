"""Signals reach the backend through its pidfd, never a process that took
its pid after something else reaped it (SIGCHLD ignored): `kill()` and
`terminate()` on such a handle leave the new owner of the pid alone.

The pid is made to be reused on purpose: as root, /proc/sys/kernel/
ns_last_pid chooses the next pid. Without that right the case is skipped
(it cannot be staged reliably otherwise)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from forkbridge import MessageProcess
from procs import alive, children

NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"


class Idle(MessageProcess):
    pass


def _fork_with_pid(pid: int) -> int | None:
    """A sleeping child with exactly `pid`, or None if another process took
    it first (retried by the caller)."""
    with open(NS_LAST_PID, "w") as f:
        f.write(str(pid - 1))
    child = os.fork()
    if child == 0:
        try:
            time.sleep(30)
        finally:
            os._exit(0)
    if child != pid:
        _kill_and_wait(child)
        return None
    return child


def _kill_and_wait(pid: int) -> None:
    """Kills a child; SIGCHLD is ignored, so the kernel reaps it: wait
    until it is no longer listed."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid in children() and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.skipif(not os.access(NS_LAST_PID, os.W_OK), reason="needs root to choose pids")
@pytest.mark.parametrize("method", ["kill", "terminate"])
def test_a_signal_never_reaches_a_process_that_reused_a_reaped_backends_pid(method: str) -> None:
    old = signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps children
    decoy = None
    try:
        p = Idle()
        p.start()
        pid = p.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # dies, and is reaped at once
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not alive(pid)
        for _ in range(20):
            decoy = _fork_with_pid(pid)
            if decoy is not None:
                break
        assert decoy == pid, "could not stage the pid's reuse"
        getattr(p, method)()
        time.sleep(0.2)
        assert alive(decoy), "the signal reached the process that reused the pid"
        p.stop()
    finally:
        if decoy is not None:
            _kill_and_wait(decoy)
        signal.signal(signal.SIGCHLD, old)
