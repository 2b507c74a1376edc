"""How the ends wait: an idle backend uses no CPU until a command arrives
(README), an overridden readPipes__ is still called every `timeout`
seconds and `listening = True` still polls; every wait of the frontend
releases the GIL (README: "a receive, a join, an event, a send on a full
socket"); a 1 MB reply from an asyncio backend takes far less than the
original's 14 s (Q10; a liveness bound, not a benchmark)."""

import os
import threading
import time

import pytest

from forkbridge import (
    AsyncBackMessageProcess,
    EventGroup,
    MessageObject,
    MessageProcess,
    safe_select,
)


class Echo(MessageProcess):
    stop_timeout = 2.0
    kill_timeout = 1.0

    def c__echo(self, **kwargs):
        self.send_out__(MessageObject("echoed", **kwargs))

    def c__nap(self, seconds=0.0):
        time.sleep(seconds)


class AsyncEcho(AsyncBackMessageProcess):
    stop_timeout = 2.0
    kill_timeout = 1.0

    async def c__echo(self, **kwargs):
        await self.send_out__(MessageObject("echoed", **kwargs))


def cpu_and_switches(pid):
    """The process's CPU time in clock ticks, and its context switches
    (every thread's, voluntary or not)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    switches = 0
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/status" % (pid, task)) as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    switches += int(line.split()[1])
    return ticks, switches


@pytest.mark.parametrize("cls, wakeups", [(Echo, 30), (AsyncEcho, 2)])
def test_an_idle_backend_uses_no_cpu_until_a_command_arrives(cls, wakeups):
    p = cls("idle")
    p.start()
    try:
        p.sendMessageToBack(MessageObject("echo", up=True))
        assert p.getPipe().recv(timeout=10)["up"] is True
        time.sleep(0.1)  # past the reply's own wake-ups
        ticks, switches = cpu_and_switches(p.pid)
        time.sleep(1.0)
        ticks_after, switches_after = cpu_and_switches(p.pid)
        # Asleep: no CPU time to speak of (a spinning loop would use the
        # whole second). The asyncio loop does not wake at all; the sync
        # loop wakes once per 50 ms signal slice (README), about 20 times.
        assert ticks_after - ticks <= 2, (ticks, ticks_after)
        assert switches_after - switches <= wakeups, (switches, switches_after)
        # And it wakes for a command.
        p.sendMessageToBack(MessageObject("echo", still=True))
        assert p.getPipe().recv(timeout=10)["still"] is True
    finally:
        p.stop()
    assert p.exitcode == 0


class Counting(Echo):
    def __init__(self, name):
        super().__init__(name)
        self.calls = 0
        self.timeouts = set()

    def readPipes__(self, timeout):
        self.calls += 1
        self.timeouts.add(timeout)
        if safe_select([self.back_pipe], [], [], timeout)[0]:
            self.handleBackPipe__(self.back_pipe)

    def c__calls(self):
        self.send_out__((self.calls, self.timeouts))
        self.calls = 0
        self.timeouts = set()


@pytest.mark.parametrize("listening", [False, True])
def test_an_overridden_read_pipes_is_called_every_timeout_or_polls_when_listening(listening):
    cls = type("Every", (Counting,), {"timeout": 0.1})
    p = cls("every")
    if listening:
        p.listening = True
    p.start()
    try:
        p.sendMessageToBack(MessageObject("calls"))
        p.getPipe().recv(timeout=10)  # counting starts now
        time.sleep(1.0)
        p.sendMessageToBack(MessageObject("calls"))
        calls, timeouts = p.getPipe().recv(timeout=10)
    finally:
        p.stop()
    assert p.exitcode == 0
    if listening:
        # readPipes__(timeout=0), again and again: valkka's listening mode.
        assert timeouts == {0}
        assert calls > 50, calls
    else:
        # Called every 0.1 s while idle: about ten times in the second.
        assert timeouts == {0.1}
        assert 5 <= calls <= 15, calls


# ---- every wait releases the GIL ------------------------------------------


class Spinner:
    """A Python thread that counts as fast as it can: it counts only while
    no other thread holds the GIL."""

    def __init__(self):
        self.count = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.spin, name="spinner")

    def spin(self):
        while not self.done.is_set():
            self.count += 1

    def during(self, wait):
        """How far the thread counted while `wait()` ran."""
        self.thread.start()
        try:
            time.sleep(0.05)  # running
            before = self.count
            wait()
            return self.count - before
        finally:
            self.done.set()
            self.thread.join()


def _join(p):
    p.join(0.3)
    assert p.exitcode is None


def _event_wait(pollable):
    def wait(p):
        group = EventGroup(1, pollable=pollable)
        _, event = group.reserve()
        assert not event.wait(0.3)
        group.release(event)

    return wait


def _recv(p):
    with pytest.raises(TimeoutError):
        p.getPipe().recv(0.3)


def _return_from_back(p):
    with pytest.raises(TimeoutError):
        p.returnFromBack(0.3)


def _send_on_a_full_socket(p):
    # The backend naps without reading: the send waits for room.
    p.sendMessageToBack(MessageObject("nap", seconds=0.3))
    p.sendMessageToBack(MessageObject("sink", pad=bytes(16 << 20)))


WAITS = {
    "join": _join,
    "event-wait": _event_wait(False),
    "pollable-event-wait": _event_wait(True),
    "recv": _recv,
    "return-from-back": _return_from_back,
    "send-on-a-full-socket": _send_on_a_full_socket,
}


class Sink(Echo):
    large_message_threshold = None  # the big send takes the socket

    def c__sink(self, pad=b""):
        pass


@pytest.mark.parametrize("wait", WAITS)
def test_every_wait_releases_the_gil(wait):
    p = Sink("waiting")
    p.start()
    try:
        counted = Spinner().during(lambda: WAITS[wait](p))
        # A wait that held the GIL would leave the spinner a switch
        # interval or two (5 ms each).
        assert counted > 100_000, counted
    finally:
        p.stop()
    assert p.exitcode == 0


@pytest.mark.parametrize("threshold", [None, 256 * 1024], ids=["socket", "lane"])
def test_a_1_mb_reply_from_an_asyncio_backend_takes_well_under_a_second(threshold):
    cls = type("AsyncBig", (AsyncEcho,), {"large_message_threshold": threshold})
    p = cls("async-big")
    p.start()
    try:
        data = os.urandom(1 << 20)
        p.sendMessageToBack(MessageObject("echo", warm=True))
        p.getPipe().recv(timeout=10)
        for _ in range(3):
            started = time.monotonic()
            p.sendMessageToBack(MessageObject("echo", data=data))
            got = p.getPipe().recv(timeout=10)
            took = time.monotonic() - started
            assert got["data"] == data
            assert took < 1.0, took
    finally:
        p.stop()
    assert p.exitcode == 0
