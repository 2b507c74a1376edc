"""AsyncBackMessageProcess's order and endings: commands are awaited one
after another (concurrency only through tasks), pending tasks get
task_grace seconds to finish on stop and are then cancelled, and handler
failures and unknown commands come back as "error" reports while the loop
goes on."""

import asyncio
import time

import pytest

from forkbridge import AsyncBackMessageProcess, BackendGone, MessageObject


class Ordered(AsyncBackMessageProcess):
    task_grace = 2.0

    async def c__slow(self, name="slow", delay=0.3):
        await asyncio.sleep(delay)
        await self.send_out__(MessageObject("done", name=name))

    async def c__fast(self, name="fast"):
        await self.send_out__(MessageObject("done", name=name))

    def c__plain(self, name="plain"):
        self.back_pipe.send(MessageObject("done", name=name))

    async def c__echo(self, **kwargs):
        await self.send_out__(MessageObject("echoed", **kwargs))

    async def task__(self, name, delay):
        await asyncio.sleep(delay)
        await self.send_out__(MessageObject("done", name=name))

    async def c__later(self, name="later", delay=0.2):
        asyncio.get_event_loop().create_task(self.task__(name, delay))

    async def stubborn__(self):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await self.send_out__(MessageObject("cancelled"))
            raise

    async def c__forever(self):
        asyncio.get_event_loop().create_task(self.stubborn__())
        await self.send_out__(MessageObject("started"))

    async def c__boom(self):
        await asyncio.sleep(0)
        raise ValueError("async boom")

    def c__plain_boom(self):
        raise KeyError("plain boom")

    async def c__takes_x(self, x):
        await self.send_out__(MessageObject("took", x=x))


@pytest.fixture
def ordered():
    p = Ordered("svc")
    p.start()
    yield p
    p.stop()


def names(pipe, n):
    return [pipe.recv(timeout=5)["name"] for _ in range(n)]


# ---- AsyncBackMessageProcess: "c__ methods are coroutines (plain functions
# work too), awaited one after another; start tasks with create_task for
# concurrency".


def test_commands_are_awaited_one_after_another(ordered):
    ordered.sendMessageToBack(MessageObject("slow"))
    ordered.sendMessageToBack(MessageObject("fast"))
    assert names(ordered.getPipe(), 2) == ["slow", "fast"]


def test_a_burst_of_slow_fast_and_plain_commands_keeps_its_order(ordered):
    expected = []
    for i in range(5):
        ordered.sendMessageToBack(MessageObject("slow", name="s%d" % i, delay=0.05 * (5 - i)))
        ordered.sendMessageToBack(MessageObject("plain", name="p%d" % i))
        ordered.sendMessageToBack(MessageObject("fast", name="f%d" % i))
        expected += ["s%d" % i, "p%d" % i, "f%d" % i]
    assert names(ordered.getPipe(), 15) == expected


# ---- task_grace: "Seconds pending tasks get to finish after the stop
# request before they are cancelled"; README: "on stop, pending tasks get
# task_grace (1 s) to finish and are then cancelled".


def test_task_grace_lets_pending_tasks_finish(ordered):
    ordered.sendMessageToBack(MessageObject("later", name="a", delay=0.3))
    ordered.sendMessageToBack(MessageObject("later", name="b", delay=0.2))
    ordered.stop()  # the stop request right behind the commands
    assert ordered.exitcode == 0
    got = [ordered.getPipe().recv(timeout=5) for _ in range(3)]
    assert got[2] is None  # the goodbye, after both tasks' messages
    assert sorted(m["name"] for m in got[:2]) == ["a", "b"]
    pipe = ordered.getPipe()
    with pytest.raises(BackendGone):
        pipe.recv(timeout=5)


def test_tasks_past_the_grace_are_cancelled():
    class Short(Ordered):
        task_grace = 0.3

    p = Short("short")
    p.start()
    try:
        p.sendMessageToBack(MessageObject("forever"))
        assert p.getPipe().recv(timeout=5)() == "started"
        started = time.monotonic()
        p.stop()
        assert time.monotonic() - started < 4  # not the task's hour
    finally:
        p.stop()
    assert p.exitcode == 0
    pipe = p.getPipe()
    assert pipe.recv(timeout=5)() == "cancelled"
    assert pipe.recv(timeout=5) is None
    with pytest.raises(BackendGone):
        pipe.recv(timeout=5)


# ---- MessageProcess (inherited): "An exception there, or an unknown
# command, is ... reported to the frontend as MessageObject("error",
# kind=..., command=..., error=..., process=...); the backend keeps
# running"; README (Differences): a c__ method that raises is "Logged, and
# sent to the frontend as MessageObject("error", kind="handler_error", ...);
# the backend goes on", an unknown command sends "MessageObject("error",
# kind="unknown_command", ...)".


def check_error(err, kind, command, text):
    assert err() == "error"
    assert err["kind"] == kind
    assert err["command"] == command
    assert text in err["error"]
    assert err["process"] == "svc"


def test_async_errors_are_reported_and_the_loop_goes_on(ordered):
    pipe = ordered.getPipe()
    ordered.sendMessageToBack(MessageObject("nonesuch"))
    check_error(pipe.recv(timeout=5), "unknown_command", "nonesuch", "c__nonesuch")
    ordered.sendMessageToBack(MessageObject("boom"))
    check_error(pipe.recv(timeout=5), "handler_error", "boom", "ValueError: async boom")
    ordered.sendMessageToBack(MessageObject("plain_boom"))
    check_error(pipe.recv(timeout=5), "handler_error", "plain_boom", "KeyError")
    ordered.sendMessageToBack(MessageObject("takes_x", y=1))  # wrong parameters
    check_error(pipe.recv(timeout=5), "handler_error", "takes_x", "TypeError")
    ordered.sendMessageToBack(MessageObject("takes_x"))  # a missing one
    check_error(pipe.recv(timeout=5), "handler_error", "takes_x", "TypeError")
    ordered.sendMessageToBack(MessageObject("echo", alive=True))
    assert pipe.recv(timeout=5)["alive"] is True
    assert ordered.is_alive()
