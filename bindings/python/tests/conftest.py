"""Every test runs on the main thread of the pytest process (so forks are
single-threaded, as in a user's program), under an alarm, and must leave no
child behind."""

import os
import signal

import pytest
from procs import children

TEST_BOUND = 120  # seconds; a hang fails the run instead of eating CI's time


def _alarm(signum, frame):
    raise TimeoutError("test exceeded %d s" % TEST_BOUND)


@pytest.fixture(autouse=True)
def bounded_and_clean():
    before = children()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TEST_BOUND)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    left = children() - before
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
    assert not left, "test left child processes behind: %s" % sorted(left)
