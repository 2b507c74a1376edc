"""Every test runs on the main thread of the pytest process (so forks are
single-threaded, as in a user's program), under an alarm, and must leave no
child behind (but the fork server of the forkserver start method, which
lives as long as the program)."""

import os
import signal

import pytest
from procs import children

TEST_BOUND = 120  # seconds; a hang fails the run instead of eating CI's time


def _alarm(signum, frame):
    raise TimeoutError("test exceeded %d s" % TEST_BOUND)


def _fork_server(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip() == "forkbridge-srv"
    except OSError:
        return False


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
    left = {pid for pid in children() - before if not _fork_server(pid)}
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
    assert not left, "test left child processes behind: %s" % sorted(left)
