"""A backend's life from start to reaping, on real processes: what arrives
before a crash, the stop request's place in the stream, postRun__ /
asyncPost__ and the goodbye None, return_out__ values read by recv(),
Duplex.send and bare objects, ignoreSIGINT, SystemExit codes, stop()'s
SIGTERM step, kill(), a second stop(), and allow_threads on the class."""

import asyncio
import os
import signal
import sys
import threading
import time

import pytest

from forkbridge import (
    AsyncBackMessageProcess,
    BackendGone,
    ForkWithThreadsError,
    MessageObject,
    MessageProcess,
)

BIG = 300 * 1024  # over large_message_threshold (256 KiB): the shared-memory lane


class Worker(MessageProcess):
    stop_timeout = 2.0
    kill_timeout = 2.0

    def c__echo(self, **kwargs):
        self.send_out__(MessageObject("echoed", **kwargs))

    def c__burst_then_die(self, n=0):
        for i in range(n):
            if i % 100 == 50:
                self.send_out__(MessageObject("big", i=i, data=bytes([i % 256]) * BIG))
            else:
                self.send_out__(i)
        os.kill(os.getpid(), signal.SIGKILL)

    def c__give_back(self, value=None):
        self.return_out__(value)
        self.send_out__(MessageObject("after"))

    def c__quit(self, code="none"):
        if code == "none":
            sys.exit()
        sys.exit(code)

    def c__sleep_forever(self):
        # SIGTERM keeps its default disposition: it ends the process.
        self.send_out__(MessageObject("sleeping"))
        while True:
            time.sleep(0.05)


class AsyncWorker(AsyncBackMessageProcess):
    stop_timeout = 2.0
    kill_timeout = 2.0

    async def c__echo(self, **kwargs):
        await self.send_out__(MessageObject("echoed", **kwargs))

    async def c__burst_then_die(self, n=0):
        for i in range(n):
            if i % 100 == 50:
                await self.send_out__(MessageObject("big", i=i, data=bytes([i % 256]) * BIG))
            else:
                await self.send_out__(i)
        os.kill(os.getpid(), signal.SIGKILL)

    async def c__quit(self, code="none"):
        if code == "none":
            sys.exit()
        sys.exit(code)


# ---- README (Differences), a dead backend: "recv() returns what the
# backend sent, then raises BackendGone"


@pytest.mark.parametrize("cls", [Worker, AsyncWorker])
def test_everything_sent_before_a_crash_arrives_in_order_then_backend_gone(cls):
    p = cls("crasher")
    p.start()
    try:
        p.sendMessageToBack(MessageObject("burst_then_die", n=1000))
        pipe = p.getPipe()
        for i in range(1000):
            got = pipe.recv(timeout=5)
            if i % 100 == 50:
                assert got() == "big" and got["i"] == i
                assert got["data"] == bytes([i % 256]) * BIG
            else:
                assert got == i
        with pytest.raises(BackendGone):
            pipe.recv(timeout=5)
        p.join(5)
        assert p.exitcode == -signal.SIGKILL
    finally:
        p.stop()


# ---- _process.py requestStop: "Asks the backend to stop after the
# commands sent before."


@pytest.mark.parametrize("cls", [Worker, AsyncWorker])
def test_request_stop_comes_after_the_commands_sent_before_it(cls):
    p = cls("stopper")
    p.start()
    try:
        for i in range(500):
            p.sendMessageToBack(MessageObject("echo", i=i))
        p.requestStop()
        pipe = p.getPipe()
        assert [pipe.recv(timeout=5)["i"] for _ in range(500)] == list(range(500))
        assert pipe.recv(timeout=5) is None  # the goodbye
        with pytest.raises(BackendGone):
            pipe.recv(timeout=5)
        p.join(5)
        assert p.exitcode == 0
    finally:
        p.stop()


# ---- postRun__ ("runs after the loop, just before the process exits"),
# asyncPost__ ("runs in the loop after the last command"), README
# (Differences): the "I am leaving" None "comes after postRun__, from both
# classes".


class Posting(Worker):
    def postRun__(self):
        self.send_out__(MessageObject("post"))


class AsyncPosting(AsyncWorker):
    async def asyncPost__(self):
        asyncio.get_running_loop()  # inside the loop: raises otherwise
        await asyncio.sleep(0)
        await self.send_out__(MessageObject("async-post"))

    def postRun__(self):
        self.back_pipe.send(MessageObject("post"))


@pytest.mark.parametrize(
    "cls, expected",
    [
        (Posting, ["echoed", "post", None]),
        (AsyncPosting, ["echoed", "async-post", "post", None]),
    ],
)
def test_post_run_then_the_goodbye_none(cls, expected):
    p = cls("poster")
    p.start()
    p.sendMessageToBack(MessageObject("echo", last=True))
    p.stop()
    assert p.exitcode == 0
    pipe = p.getPipe()
    got = []
    for _ in expected:
        obj = pipe.recv(timeout=5)
        got.append(obj if obj is None else obj())
    assert got == expected
    with pytest.raises(BackendGone):
        pipe.recv(timeout=5)


# ---- returnFromBack: "The next value the backend sent with return_out__";
# Duplex keeps "return_out__ values read by recv(): each kept for its
# reader" (only a comment says so).


def test_a_return_value_read_by_recv_is_kept_for_return_from_back():
    p = Worker("returner")
    p.start()
    try:
        p.sendMessageToBack(MessageObject("give_back", value=42))
        # recv() meets the return value first, keeps it, and returns the
        # object sent after it.
        assert p.getPipe().recv(timeout=5)() == "after"
        assert p.returnFromBack(timeout=5) == 42
        # Nothing else was kept for recv().
        with pytest.raises(TimeoutError):
            p.getPipe().recv(timeout=0.2)
    finally:
        p.stop()


# ---- Duplex.send: "Sends obj to the backend (as sendMessageToBack)";
# sendMessageToBack: "Sends a MessageObject (or any object) to the backend".


@pytest.mark.parametrize("cls", [Worker, AsyncWorker])
def test_duplex_send_reaches_the_backend(cls):
    p = cls("duplex")
    p.start()
    try:
        p.getPipe().send(MessageObject("echo", x=1))
        got = p.getPipe().recv(timeout=5)
        assert got() == "echoed" and got["x"] == 1
    finally:
        p.stop()
    assert p.exitcode == 0


class Objects(Worker):
    def routeMainPipe__(self, obj):
        if isinstance(obj, MessageObject) or obj is None:
            super().routeMainPipe__(obj)
        else:
            self.send_out__(("got", obj))


def test_a_bare_object_reaches_the_backend_and_leaves_it_running():
    # The default backend logs a stray object and goes on.
    p = Worker("bare")
    p.start()
    try:
        p.sendMessageToBack({"raw": 1})
        p.getPipe().send({"raw": 2})
        p.sendMessageToBack(MessageObject("echo", alive=True))
        assert p.getPipe().recv(timeout=5)["alive"] is True
        assert p.is_alive()
    finally:
        p.stop()
    assert p.exitcode == 0

    # A backend that routes objects itself receives them, in order.
    p = Objects("objects")
    p.start()
    try:
        p.sendMessageToBack({"raw": 1})
        p.getPipe().send([2, "two"])
        p.sendMessageToBack(MessageObject("echo", alive=True))
        assert p.getPipe().recv(timeout=5) == ("got", {"raw": 1})
        assert p.getPipe().recv(timeout=5) == ("got", [2, "two"])
        assert p.getPipe().recv(timeout=5)["alive"] is True
    finally:
        p.stop()
    assert p.exitcode == 0


# ---- ignoreSIGINT: "Call before start(): the backend ignores SIGINT
# (Ctrl-C)."


@pytest.mark.parametrize("cls", [Worker, AsyncWorker])
def test_ignore_sigint_keeps_the_backend_alive_through_ctrl_c(cls):
    p = cls("stoic")
    p.ignoreSIGINT()
    p.start()
    try:
        os.kill(p.pid, signal.SIGINT)  # at once, and again once it runs
        p.sendMessageToBack(MessageObject("echo", n=1))
        assert p.getPipe().recv(timeout=5)["n"] == 1
        for _ in range(3):
            os.kill(p.pid, signal.SIGINT)
        time.sleep(0.1)
        p.sendMessageToBack(MessageObject("echo", n=2))
        assert p.getPipe().recv(timeout=5)["n"] == 2
        assert p.is_alive()
    finally:
        p.stop()
    assert p.exitcode == 0


@pytest.mark.parametrize("cls", [Worker, AsyncWorker])
def test_without_ignore_sigint_ctrl_c_ends_the_backend(cls):
    p = cls("tender")
    p.start()
    try:
        p.sendMessageToBack(MessageObject("echo", n=1))
        assert p.getPipe().recv(timeout=5)["n"] == 1
        os.kill(p.pid, signal.SIGINT)
        p.join(5)
        assert p.exitcode is not None and p.exitcode != 0
    finally:
        p.stop()


# ---- _bootstrap: the child exits with run()'s result under
# multiprocessing's rules (SystemExit's code; None is 0; any other object
# is printed to stderr and gives 1).


@pytest.mark.parametrize("cls", [Worker, AsyncWorker])
@pytest.mark.parametrize("code, exitcode", [(3, 3), ("none", 0), ("bye", 1)])
def test_system_exit_in_a_backend_sets_the_exit_code(cls, code, exitcode, capfd):
    p = cls("quitter")
    p.start()
    try:
        p.sendMessageToBack(MessageObject("quit", code=code))
        p.join(5)
        assert p.exitcode == exitcode
    finally:
        p.stop()
    assert p.exitcode == exitcode
    if code == "bye":
        assert "bye\n" in capfd.readouterr().err


# ---- stop(): "the stop request, then SIGTERM after stop_timeout s, then
# SIGKILL after kill_timeout s".


def test_stop_sends_sigterm_after_stop_timeout():
    class Stuck(Worker):
        stop_timeout = 0.3
        kill_timeout = 30.0  # SIGKILL must not be needed

    p = Stuck("stuck")
    p.start()
    try:
        p.sendMessageToBack(MessageObject("sleep_forever"))
        assert p.getPipe().recv(timeout=5)() == "sleeping"
        started = time.monotonic()
        p.stop()
        took = time.monotonic() - started
    finally:
        p.stop()
    assert p.exitcode == -signal.SIGTERM
    assert 0.3 <= took < 10, took


# ---- kill(): "Sends SIGKILL to the backend."


@pytest.mark.parametrize("cls", [Worker, AsyncWorker])
def test_kill_sends_sigkill(cls):
    p = cls("killed")
    p.start()
    try:
        p.sendMessageToBack(MessageObject("echo", up=True))
        assert p.getPipe().recv(timeout=5)["up"] is True
        p.kill()
        with pytest.raises(BackendGone):
            p.getPipe().recv(timeout=5)
        p.join(5)
        assert p.exitcode == -signal.SIGKILL
    finally:
        p.stop()
    assert p.exitcode == -signal.SIGKILL


# ---- stop(): "A second call returns at once."


class Slow(Worker):
    # A second stop() that ran the sequence again on a backend that is
    # gone would wait these out.
    stop_timeout = 3.0
    kill_timeout = 3.0


@pytest.mark.parametrize("first_end", ["stop", "kill"])
def test_a_second_stop_returns_at_once(first_end):
    p = Slow("twice")
    p.start()
    p.sendMessageToBack(MessageObject("echo", up=True))
    assert p.getPipe().recv(timeout=5)["up"] is True
    if first_end == "kill":
        p.kill()
    p.stop()
    code = p.exitcode
    assert code == (0 if first_end == "stop" else -signal.SIGKILL)
    started = time.monotonic()
    p.stop()
    assert time.monotonic() - started < 1.0
    assert p.exitcode == code and not p.is_alive()


# ---- ForkWithThreadsError: "set allow_threads = True on the class when you
# know the threads hold nothing the child needs"; allow_threads: "Fork even
# when other Python threads are alive".


@pytest.mark.parametrize("base", [Worker, AsyncWorker])
def test_allow_threads_on_the_class_lets_start_fork_with_threads_alive(base):
    class Tolerant(base):
        allow_threads = True

    done = threading.Event()
    t = threading.Thread(target=done.wait, name="live-thread")
    t.start()
    try:
        # Without the attribute the same start is refused.
        with pytest.raises(ForkWithThreadsError, match="live-thread"):
            base("strict").start()
        p = Tolerant("tolerant")
        p.start()
        try:
            p.sendMessageToBack(MessageObject("echo", ok=1))
            assert p.getPipe().recv(timeout=5)["ok"] == 1
        finally:
            p.stop()
        assert p.exitcode == 0
    finally:
        done.set()
        t.join()
