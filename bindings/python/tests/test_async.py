"""AsyncBackMessageProcess: asyncio in the child."""

import asyncio
import time

import pytest

from forkbridge import AsyncBackMessageProcess, MessageObject, exclog, exclogmsg


class Service(AsyncBackMessageProcess):
    task_grace = 0.3

    async def asyncPre__(self):
        self.prepared = True

    async def c__echo(self, **kwargs):
        await self.send_out__(MessageObject("echoed", **kwargs))

    def c__plain(self, x=None):
        # valkka kills the backend on a plain def (it awaits None).
        self.back_pipe.send(MessageObject("plain", x=x))

    async def c__prepared(self):
        await self.send_out__(MessageObject("prepared", value=self.prepared))

    async def c__boom(self):
        raise ValueError("async boom")

    @exclog
    async def slow__(self, name=None, delay=0.0):
        await asyncio.sleep(delay)
        await self.send_out__(MessageObject("done", name=name))

    async def c__later(self, name=None, delay=0.0):
        asyncio.get_event_loop().create_task(self.slow__(name=name, delay=delay))

    @exclogmsg
    async def failing__(self, slot=None):
        raise RuntimeError("camera %s unreachable" % slot)

    async def c__fail(self, slot=None):
        asyncio.get_event_loop().create_task(self.failing__(slot=slot))

    async def c__forever(self):
        asyncio.get_event_loop().create_task(asyncio.sleep(3600))


@pytest.fixture
def service():
    p = Service("svc")
    p.start()
    yield p
    p.stop()


def test_round_trip(service):
    service.sendMessageToBack(MessageObject("echo", x=[1, 2]))
    got = service.getPipe().recv(timeout=5)
    assert got() == "echoed" and got["x"] == [1, 2]


def test_duplex_fds(service):
    pipe = service.getPipe()
    assert pipe.getReadFd() == pipe.fileno() == service.getReadFd()


def test_async_pre_ran(service):
    service.sendMessageToBack(MessageObject("prepared"))
    assert service.getPipe().recv(timeout=5)["value"] is True


def test_plain_def_handlers_work(service):
    service.sendMessageToBack(MessageObject("plain", x=3))
    assert service.getPipe().recv(timeout=5)["x"] == 3


def test_handler_exception_keeps_the_loop(service):
    service.sendMessageToBack(MessageObject("boom"))
    err = service.getPipe().recv(timeout=5)
    assert err() == "error" and "async boom" in err["error"]
    service.sendMessageToBack(MessageObject("echo", alive=True))
    assert service.getPipe().recv(timeout=5)["alive"] is True


def test_tasks_run_concurrently(service):
    service.sendMessageToBack(MessageObject("later", name="slow", delay=0.4))
    service.sendMessageToBack(MessageObject("later", name="fast", delay=0.0))
    pipe = service.getPipe()
    assert pipe.recv(timeout=5)["name"] == "fast"
    assert pipe.recv(timeout=5)["name"] == "slow"


def test_exclogmsg_reports_the_slot(service):
    service.sendMessageToBack(MessageObject("fail", slot=7))
    err = service.getPipe().recv(timeout=5)
    assert err() == "error" and err["slot"] == 7 and "unreachable" in err["error"]


def test_stop_with_a_pending_task_is_bounded(service):
    service.sendMessageToBack(MessageObject("forever"))
    started = time.monotonic()
    service.stop()
    assert time.monotonic() - started < 3
    assert service.exitcode == 0
