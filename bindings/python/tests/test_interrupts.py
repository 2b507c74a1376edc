"""Signals out of the waits that test_faults.py does not cover: Ctrl-C
raises KeyboardInterrupt out of join, Event.wait, SyncIndex, returnFromBack
and safe_select (README: "Ctrl-C raises KeyboardInterrupt out of any
wait"), whether another Python thread sends it or another process does
(the frontend then waits in the read itself), and safe_select lets a
signal handler's exception out ("a handler that raises ... raises out of
it, as with select")."""

import os
import signal
import threading
import time

import ctrl_c
import pytest

from forkbridge import EventGroup, MessageObject, MessageProcess, SyncIndex, safe_select


class Idle(MessageProcess):
    stop_timeout = 0.5
    kill_timeout = 0.5

    def c__echo(self, **kwargs):
        self.send_out__(MessageObject("echoed", **kwargs))

    def c__hang(self):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.send_out__(MessageObject("hanging"))
        while True:
            time.sleep(0.05)


CTRL_C = ctrl_c.WAYS


def interrupted(how, wait):
    """Runs ``wait()`` with Ctrl-C coming 0.2 s later; it must raise
    KeyboardInterrupt, promptly."""
    started = time.monotonic()
    took = None
    try:
        with CTRL_C[how](0.2):
            try:
                wait()
            except KeyboardInterrupt:
                took = time.monotonic() - started
                raise
            time.sleep(2)  # wait() returned: the Ctrl-C to come lands here
    except KeyboardInterrupt:
        pass
    assert took is not None, "wait() returned instead of raising KeyboardInterrupt"
    assert took < 2, "Ctrl-C was held %.1f s" % took


@pytest.fixture
def idle():
    p = Idle("idle")
    p.start()
    yield p
    p.stop()


@pytest.mark.parametrize("how", CTRL_C)
def test_ctrl_c_interrupts_join(idle, how):
    idle.sendMessageToBack(MessageObject("hang"))
    assert idle.getPipe().recv(timeout=5)() == "hanging"
    interrupted(how, idle.join)
    assert idle.is_alive()  # join only waited


@pytest.mark.parametrize("how", CTRL_C)
def test_ctrl_c_interrupts_join_with_an_idle_backend(idle, how):
    interrupted(how, idle.join)
    # The handle still works afterwards.
    idle.sendMessageToBack(MessageObject("echo", after=True))
    assert idle.getPipe().recv(timeout=5)["after"] is True


@pytest.mark.parametrize("pollable", [False, True])
@pytest.mark.parametrize("how", CTRL_C)
def test_ctrl_c_interrupts_event_wait(how, pollable):
    eg = EventGroup(2, pollable=pollable)
    _, event = eg.reserve()
    interrupted(how, event.wait)
    assert not event.is_set()
    eg.release(event)


@pytest.mark.parametrize("how", CTRL_C)
def test_ctrl_c_interrupts_sync_index(how):
    eg = EventGroup(1)

    def wait():
        with SyncIndex(eg):
            pass  # nothing sent: nobody will set it

    interrupted(how, wait)


@pytest.mark.parametrize("how", CTRL_C)
def test_ctrl_c_interrupts_return_from_back(idle, how):
    interrupted(how, idle.returnFromBack)
    idle.sendMessageToBack(MessageObject("echo", after=True))
    assert idle.getPipe().recv(timeout=5)["after"] is True


@pytest.mark.parametrize("how", CTRL_C)
def test_ctrl_c_interrupts_return_from_back_while_other_objects_arrive(idle, how):
    # Objects that are not the return value keep the wait going; Ctrl-C
    # still ends it, and they stay for recv().
    for i in range(3):
        idle.sendMessageToBack(MessageObject("echo", i=i))
    interrupted(how, idle.returnFromBack)
    assert [idle.getPipe().recv(timeout=5)["i"] for _ in range(3)] == [0, 1, 2]


@pytest.mark.parametrize("timeout", [None, 30.0])
@pytest.mark.parametrize("how", CTRL_C)
def test_ctrl_c_interrupts_safe_select(how, timeout):
    r, w = os.pipe()
    try:
        interrupted(how, lambda: safe_select([r], [], [], timeout))
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("how", CTRL_C)
def test_ctrl_c_interrupts_safe_select_on_a_process_pipe(idle, how):
    interrupted(how, lambda: safe_select([idle.getPipe()], [], [], None))


class Raised(Exception):
    pass


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_safe_select_lets_a_raising_signal_handler_out(timeout):
    def handler(signum, frame):
        raise Raised("from the handler")

    old = signal.signal(signal.SIGUSR1, handler)
    r, w = os.pipe()
    t = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        t.start()
        started = time.monotonic()
        with pytest.raises(Raised, match="from the handler"):
            safe_select([r], [], [], timeout)
        assert time.monotonic() - started < 3
    finally:
        t.join()
        signal.signal(signal.SIGUSR1, old)
        os.close(r)
        os.close(w)
