"""A backend that dies while the frontend waits (SECURITY.md: "every wait of
the frontend ends with Disconnected and the exit status, after the messages
it sent before dying"): each wait on the intercom ends at once with
BackendGone, and the exit status is there. An event is not tied to a
process: a wait on one alone ends at its timeout, and a select on a
pollable event's fd together with the pipe sees the death at once."""

import os
import signal
import threading
import time

import pytest

from forkbridge import BackendGone, EventGroup, MessageObject, MessageProcess, safe_select


class Doomed(MessageProcess):
    stop_timeout = 2.0
    kill_timeout = 1.0
    large_message_threshold = None  # big sends fill the socket

    def c__stall(self):
        # Neither reads nor answers from now on.
        self.send_out__(MessageObject("stalled"))
        while True:
            time.sleep(0.05)


def killed_after(p, delay):
    """SIGKILL to the backend from another thread after `delay` s."""
    t = threading.Timer(delay, os.kill, (p.pid, signal.SIGKILL))
    t.start()
    return t


def stalled(p):
    """Has the backend stop reading and answering; returns once it has."""
    p.sendMessageToBack(MessageObject("stall"))
    assert p.getPipe().recv(timeout=10)() == "stalled"


def _send_on_a_full_socket(p):
    for _ in range(1000):
        p.sendMessageToBack(MessageObject("x", pad=bytes(1 << 20)))


def _recv(p):
    p.getPipe().recv()


def _poll(p):
    # "Whether recv would return": it would, with BackendGone.
    assert p.getPipe().poll(30)
    p.getPipe().recv(0)


def _return_from_back(p):
    p.returnFromBack()


WAITS = {
    "send-on-a-full-socket": _send_on_a_full_socket,
    "recv": _recv,
    "poll": _poll,
    "return-from-back": _return_from_back,
}


@pytest.mark.parametrize("wait", WAITS)
def test_a_wait_on_the_intercom_ends_when_the_backend_dies(wait):
    p = Doomed("doomed")
    p.start()
    try:
        stalled(p)
        timer = killed_after(p, 0.3)
        started = time.monotonic()
        try:
            with pytest.raises(BackendGone):
                WAITS[wait](p)
        finally:
            timer.join()
        assert time.monotonic() - started < 3
        p.join(5)
        assert p.exitcode == -signal.SIGKILL
    finally:
        p.stop()
    assert p.exitcode == -signal.SIGKILL


def test_join_ends_when_the_backend_dies():
    p = Doomed("joined")
    p.start()
    try:
        stalled(p)
        timer = killed_after(p, 0.3)
        started = time.monotonic()
        p.join()
        timer.join()
        assert time.monotonic() - started < 3
        assert p.exitcode == -signal.SIGKILL
    finally:
        p.stop()


def test_an_event_wait_ends_at_its_timeout_but_a_select_with_the_pipe_sees_the_death():
    group = EventGroup(2, pollable=True)
    p = Doomed("setter")
    p.start()
    try:
        pipe = p.getPipe()
        stalled(p)
        _, event = group.reserve()
        os.kill(p.pid, signal.SIGKILL)
        p.join(5)
        # Nobody will set it, and the event cannot know: its wait runs out.
        started = time.monotonic()
        assert not event.wait(0.5)
        assert time.monotonic() - started >= 0.5
        # Waiting for "the event or the backend's end" in one select: the
        # pipe is readable (end of stream) and recv says why.
        ready = safe_select([event.getFd(), pipe], [], [], 5)[0]
        assert ready == [pipe]
        with pytest.raises(BackendGone):
            pipe.recv(0)
        group.release(event)
    finally:
        p.stop()
    assert p.exitcode == -signal.SIGKILL
