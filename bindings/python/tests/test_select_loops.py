"""select loops on both ends (the _pipe module docs): once the frontend has
its fd, a select loop that calls recv() once per readable event sees every
message, large ones included; what poll(), returnFromBack(), a send that
waited for room, or a recv() before the fd was handed out read ahead does
not make the fd readable, and ``while pipe.poll(0): pipe.recv()`` takes it
all. The backend's loops run the commands a handler's send read ahead."""

import select
import time

import pytest

from forkbridge import (
    AsyncBackMessageProcess,
    EventGroup,
    MessageObject,
    MessageProcess,
    safe_select,
)

BIG_FLOATS = 1 << 17  # 512 KiB of float32: over large_message_threshold
QUIET = 0.3  # how long an fd that should be idle is watched


def shared(array):
    """Whether a received array is a view of a lane slot."""
    base = array
    while getattr(base, "base", None) is not None:
        base = base.base
    owner = base.obj if isinstance(base, memoryview) else base
    return bool(getattr(owner, "shared", False))


class Sender(MessageProcess):
    stop_timeout = 2.0
    kill_timeout = 1.0
    # A received large array is a view of its slot: the test can tell it
    # came through shared memory.
    lend_received_buffers = True

    def __init__(self, name):
        super().__init__(name)
        self.sent = EventGroup(2)  # made before the fork: set in the backend

    def c__burst(self, n=0, big=(), done=None):
        import numpy as np

        for i in range(n):
            if i in big:
                self.send_out__(MessageObject("big", i=i, a=np.full(BIG_FLOATS, i, np.float32)))
            else:
                self.send_out__(i)
        if done is not None:
            self.sent.set(done)

    def c__burst_then_nap(self, n=0, nap=0.0, done=None):
        self.c__burst(n, (), done)
        time.sleep(nap)  # not reading: the frontend's next send must wait

    def c__burst_then_return(self, n=0, big=(), value=None):
        self.c__burst(n, big)
        self.return_out__(value)

    def c__sink(self, data=b""):
        pass


@pytest.fixture
def sender():
    pytest.importorskip("numpy")
    p = Sender("sender")
    p.start()
    yield p
    p.stop()
    assert p.exitcode == 0


def burst_sent(p, **kwargs):
    """Has the backend send a burst, and returns once all of it is in the
    socket (or read ahead)."""
    i, event = p.sent.reserve()
    try:
        p.sendMessageToBack(MessageObject(kwargs.pop("command", "burst"), done=i, **kwargs))
        assert event.wait(10), "the backend did not send its burst"
    finally:
        p.sent.release(event)


def check(got, i, big):
    if i in big:
        assert got() == "big" and got["i"] == i, (i, got)
        assert (got["a"] == i).all()
        return shared(got["a"])
    assert got == i, (i, got)
    return False


def readable(pipe, timeout=QUIET):
    return bool(select.select([pipe], [], [], timeout)[0])


def drained(pipe):
    """The remedy the docs give: everything read ahead, in order."""
    out = []
    while pipe.poll(0):
        out.append(pipe.recv())
    return out


def assert_drained_in_order(pipe, n, big):
    """The remedy takes the whole burst of `n`, in order; then nothing is
    left (checked with the burst's views of lane slots dropped)."""
    got = drained(pipe)
    assert len(got) == n
    for i, obj in enumerate(got):
        check(obj, i, big)
    del got, obj
    assert_nothing_left(pipe)


def assert_nothing_left(pipe):
    assert not readable(pipe)
    with pytest.raises(TimeoutError):
        pipe.recv(0.1)


# ---- the plain path: select, then one recv() per readable event ----------


@pytest.mark.parametrize("arrived", [False, True], ids=["while-sent", "all-arrived"])
def test_select_and_one_recv_per_readable_event_see_every_message(sender, arrived):
    pipe = sender.getPipe()
    pipe.fileno()
    if arrived:
        # The whole burst waits in the socket before the first select (two
        # large messages: the lane's two slots, none waiting for a reader).
        n, big = 200, (10, 150)
        burst_sent(sender, n=n, big=big)
    else:
        # Read as it comes, every tenth message through the lane.
        n, big = 300, tuple(range(5, 300, 10))
        sender.sendMessageToBack(MessageObject("burst", n=n, big=big))
    lane = 0
    for i in range(n):
        assert readable(pipe, 10), "message %d not signalled" % i
        got = pipe.recv()
        lane += check(got, i, big)
        del got  # a kept view would hold its slot
    assert lane > 0, "no large message came through shared memory"
    assert_nothing_left(pipe)


# ---- what reads ahead, and the remedy ------------------------------------


def test_after_poll_drain_with_poll_zero(sender):
    pipe = sender.getPipe()
    pipe.fileno()
    burst_sent(sender, n=1)
    assert pipe.poll(5)
    # The message poll() read waits for recv(), and the socket is empty.
    assert not readable(pipe)
    assert drained(pipe) == [0]

    n, big = 30, (3,)
    burst_sent(sender, n=n, big=big)
    assert pipe.poll(5)
    assert_drained_in_order(pipe, n, big)


def test_after_return_from_back_drain_with_poll_zero(sender):
    pipe = sender.getPipe()
    pipe.fileno()
    n, big = 30, (7,)
    sender.sendMessageToBack(MessageObject("burst_then_return", n=n, big=big, value=42))
    assert sender.returnFromBack(10) == 42
    # Everything sent before the value was read to find it: kept, not
    # signalled.
    assert not readable(pipe)
    assert_drained_in_order(pipe, n, big)


class SocketSender(Sender):
    large_message_threshold = None  # every message through the socket


@pytest.mark.parametrize("how", ["sendMessageToBack", "Duplex.send"])
def test_after_a_send_that_waited_for_room_drain_with_poll_zero(how):
    p = SocketSender("socket-sender")
    p.start()
    try:
        pipe = p.getPipe()
        pipe.fileno()
        n = 50
        burst_sent(p, command="burst_then_nap", n=n, nap=0.5)
        # The backend naps without reading: this send, far over the
        # socket's buffer, waits for room and reads the burst meanwhile.
        sink = MessageObject("sink", data=bytes(16 << 20))
        if how == "Duplex.send":
            pipe.send(sink)
        else:
            p.sendMessageToBack(sink)
        assert not readable(pipe)
        assert drained(pipe) == list(range(n))
        assert_nothing_left(pipe)
    finally:
        p.stop()
    assert p.exitcode == 0


def test_after_recv_before_the_fd_was_handed_out_drain_with_poll_zero(sender):
    pipe = sender.getPipe()
    n = 40
    burst_sent(sender, n=n)
    # Before fileno(), recv() reads whatever the socket holds.
    assert pipe.recv(5) == 0
    pipe.fileno()
    assert not readable(pipe)
    assert drained(pipe) == list(range(1, n))
    assert_nothing_left(pipe)


# ---- the backend's loops: a handler's send that waits reads ahead --------


class Flooder:
    stop_timeout = 2.0
    kill_timeout = 1.0
    large_message_threshold = None  # every reply through the socket

    def c__flood(self, n=0, size=0):
        for i in range(n):
            self.back_pipe.send(MessageObject("flood", i=i, pad=bytes(size)))

    def c__echo(self, **kwargs):
        self.back_pipe.send(MessageObject("echoed", **kwargs))


class NativeLoop(Flooder, MessageProcess):
    pass


class ListeningLoop(Flooder, MessageProcess):
    def __init__(self, name):
        super().__init__(name)
        self.listening = True


class OwnSelectLoop(Flooder, MessageProcess):
    timeout = 30.0  # a command left unseen would wait this long

    def readPipes__(self, timeout):
        if safe_select([self.back_pipe], [], [], timeout)[0]:
            self.handleBackPipe__(self.back_pipe)


class AsyncLoop(Flooder, AsyncBackMessageProcess):
    pass


@pytest.mark.parametrize("cls", [NativeLoop, ListeningLoop, OwnSelectLoop, AsyncLoop])
def test_the_backend_runs_the_commands_its_handler_read_ahead(cls):
    p = cls(cls.__name__)
    p.start()
    try:
        n, size = 64, 64 << 10  # 4 MiB: the socket fills many times over
        p.sendMessageToBack(MessageObject("flood", n=n, size=size))
        for i in range(20):
            p.sendMessageToBack(MessageObject("echo", i=i))
        # The handler is stuck in its send (nobody reads): it reads the
        # echoes meanwhile, into its buffer, where its fd does not show them.
        time.sleep(0.3)
        pipe = p.getPipe()
        for i in range(n):
            got = pipe.recv(10)
            assert got() == "flood" and got["i"] == i
        assert [pipe.recv(10)["i"] for _ in range(20)] == list(range(20))
    finally:
        p.stop()
    assert p.exitcode == 0
