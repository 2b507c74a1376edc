"""What the frontend does with what it cannot read: a frame that does not
decode or is over ``max_message_size``, and a value that does not unpickle
in the frontend. Each is raised once, in its turn, as ``UnreadableMessage``
(a ``ForkbridgeError`` and a ``ValueError``), by the reader it was meant
for; the next receive returns the message after it, and nothing else is
lost (the backend side of these faults is in test_faults.py)."""

import os
import time

import pytest

from forkbridge import (
    ForkbridgeError,
    MessageObject,
    MessageProcess,
    UnreadableMessage,
    safe_select,
)

LIMIT = 64 << 10

#: The frontend's pid: loading `Unloadable` raises here only, so the
#: backend (a fork of this process) pickles and loads it fine.
FRONTEND = os.getpid()


def _load():
    if os.getpid() == FRONTEND:
        raise RuntimeError("this object does not load in the frontend")
    return "loaded"


class Unloadable:
    def __reduce__(self):
        return (_load, ())


def _frame(kind, body):
    """A raw frame as wire.rs lays it out: length (kind + body, u32 LE),
    kind, body."""
    return (1 + len(body)).to_bytes(4, "little") + bytes([kind]) + body


BAD_FRAMES = {
    "garbage-body": _frame(0, b"\xff\xff"),
    "unknown-kind": _frame(99, b"\x00"),
    "unknown-control": _frame(1, b"\x09"),
    "empty": (0).to_bytes(4, "little"),
    "over-the-limit": (LIMIT + 1).to_bytes(4, "little") + bytes(LIMIT + 1),
}


def _write_all(fd, data):
    view = memoryview(data)
    deadline = time.monotonic() + 5
    while view:
        assert time.monotonic() < deadline, "the frontend does not read"
        safe_select([], [fd], [], 1)
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            pass


class Sender(MessageProcess):
    """A backend that sends what its commands say, in order: ("msg", seq)
    a valid message, ("raw", name) a bad frame written on its socket,
    ("obj", seq) a MessageObject with a parameter that does not load in the
    frontend, ("plain", None) such an object alone, ("ret", v) a
    return_out__ value, ("badret", None) one that does not load."""

    stop_timeout = 2.0
    kill_timeout = 0.5
    max_message_size = LIMIT
    large_message_threshold = None

    def c__send(self, items=()):
        for what, arg in items:
            if what == "msg":
                self.send_out__(MessageObject("valid", seq=arg))
            elif what == "raw":
                _write_all(self.back_pipe.fileno(), BAD_FRAMES[arg])
            elif what == "obj":
                self.send_out__(MessageObject("bad", seq=arg, value=Unloadable()))
            elif what == "plain":
                self.send_out__(Unloadable())
            elif what == "ret":
                self.return_out__(arg)
            elif what == "badret":
                self.return_out__(Unloadable())


@pytest.fixture
def sender():
    p = Sender("sender")
    p.start()
    yield p
    p.stop()
    assert p.exitcode == 0


def _valid(obj, seq):
    return obj.__class__ is MessageObject and obj() == "valid" and obj["seq"] == seq


def _assert_nothing_more(p):
    """Nothing left for either reader: no duplicate, no leftover."""
    assert not p.getPipe().poll(0.2)
    with pytest.raises(TimeoutError):
        p.returnFromBack(0)


def _assert_bad_frame(e):
    assert isinstance(e, ForkbridgeError) and isinstance(e, ValueError)
    assert e.command == ""
    text = str(e)
    assert "process 'sender'" in text, text
    assert "malformed frame" in text or "exceeds the maximum of %d bytes" % LIMIT in text, text


def _assert_unloadable(e, command):
    assert isinstance(e, ForkbridgeError) and isinstance(e, ValueError)
    assert e.command == command
    assert isinstance(e.__cause__, RuntimeError)
    assert "does not load in the frontend" in str(e)
    assert "process 'sender'" in str(e)


@pytest.mark.parametrize("name", list(BAD_FRAMES))
def test_a_bad_frame_is_raised_once_and_the_next_recv_returns_the_next_message(sender, name):
    sender.sendMessageToBack(MessageObject("send", items=[("raw", name), ("msg", 1)]))
    with pytest.raises(UnreadableMessage) as info:
        sender.getPipe().recv(timeout=5)
    _assert_bad_frame(info.value)
    assert _valid(sender.getPipe().recv(timeout=5), 1)
    _assert_nothing_more(sender)


@pytest.mark.parametrize("name", list(BAD_FRAMES))
def test_a_select_loop_sees_the_message_after_a_bad_frame(sender, name):
    # A loop that waits on the fd and calls recv() once per readable event:
    # the bad frame wakes it once (recv raises), the valid message once more.
    pipe = sender.getPipe()
    fd = pipe.fileno()
    sender.sendMessageToBack(MessageObject("send", items=[("raw", name), ("msg", 2)]))
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        if not safe_select([fd], [], [], 0.5)[0]:
            continue
        try:
            got.append(pipe.recv(0))
        except UnreadableMessage as e:
            got.append(e)
        except TimeoutError:
            # Readable without a whole frame yet (a large one arriving).
            pass
    assert len(got) == 2, got
    _assert_bad_frame(got[0])
    assert _valid(got[1], 2)
    _assert_nothing_more(sender)


@pytest.mark.parametrize("name", list(BAD_FRAMES))
def test_poll_counts_a_bad_frame_as_ready_and_recv_raises_it(sender, name):
    pipe = sender.getPipe()
    sender.sendMessageToBack(MessageObject("send", items=[("raw", name), ("msg", 3)]))
    assert pipe.poll(5)
    assert pipe.poll(0)  # still there: poll does not consume it
    with pytest.raises(UnreadableMessage) as info:
        pipe.recv(0)
    _assert_bad_frame(info.value)
    assert pipe.poll(5)
    assert _valid(pipe.recv(0), 3)
    _assert_nothing_more(sender)


@pytest.mark.parametrize("kind", ["parameter", "plain-object"])
@pytest.mark.parametrize("use_poll", [False, True], ids=["recv", "poll-then-recv"])
def test_a_value_that_does_not_unpickle_is_raised_once_and_recv_goes_on(sender, kind, use_poll):
    pipe = sender.getPipe()
    item = ("obj", 4) if kind == "parameter" else ("plain", None)
    sender.sendMessageToBack(MessageObject("send", items=[item, ("msg", 4)]))
    if use_poll:
        assert pipe.poll(5)
    with pytest.raises(UnreadableMessage) as info:
        pipe.recv(timeout=5)
    if kind == "parameter":
        _assert_unloadable(info.value, "bad")
        assert "parameter 'value'" in str(info.value)
    else:
        _assert_unloadable(info.value, "")
    assert _valid(pipe.recv(timeout=5), 4)
    _assert_nothing_more(sender)


def test_a_burst_keeps_its_order_and_loses_nothing(sender):
    items = [
        ("msg", 0),
        ("raw", "garbage-body"),
        ("msg", 1),
        ("obj", 99),
        ("msg", 2),
        ("raw", "over-the-limit"),
        ("plain", None),
        ("msg", 3),
    ]
    sender.sendMessageToBack(MessageObject("send", items=items))
    got = []
    for _ in items:
        try:
            got.append(sender.getPipe().recv(timeout=5))
        except UnreadableMessage as e:
            got.append(e)
    assert _valid(got[0], 0)
    _assert_bad_frame(got[1])
    assert _valid(got[2], 1)
    _assert_unloadable(got[3], "bad")
    assert _valid(got[4], 2)
    _assert_bad_frame(got[5])
    _assert_unloadable(got[6], "")
    assert _valid(got[7], 3)
    _assert_nothing_more(sender)


def test_a_return_value_that_does_not_unpickle_is_raised_by_return_from_back(sender):
    sender.sendMessageToBack(MessageObject("send", items=[("badret", None), ("ret", 5)]))
    with pytest.raises(UnreadableMessage) as info:
        sender.returnFromBack(timeout=5)
    _assert_unloadable(info.value, "__return__")
    assert sender.returnFromBack(timeout=5) == 5
    _assert_nothing_more(sender)


def test_recv_leaves_an_unloadable_return_value_to_return_from_back(sender):
    # recv() reads past the return value (it is not recv's) and keeps the
    # error for returnFromBack, which raises it in its turn.
    sender.sendMessageToBack(
        MessageObject("send", items=[("badret", None), ("msg", 6), ("ret", 6)])
    )
    assert _valid(sender.getPipe().recv(timeout=5), 6)
    assert not sender.getPipe().poll(0.3)  # return values do not count
    with pytest.raises(UnreadableMessage) as info:
        sender.returnFromBack(0)
    _assert_unloadable(info.value, "__return__")
    assert sender.returnFromBack(timeout=5) == 6
    _assert_nothing_more(sender)


def test_poll_leaves_an_unloadable_return_value_to_return_from_back(sender):
    sender.sendMessageToBack(MessageObject("send", items=[("badret", None)]))
    assert not sender.getPipe().poll(0.5)
    with pytest.raises(UnreadableMessage):
        sender.returnFromBack(timeout=5)
    _assert_nothing_more(sender)


@pytest.mark.parametrize(
    "bad", [("raw", "garbage-body"), ("raw", "over-the-limit"), ("obj", 7), ("plain", None)]
)
def test_return_from_back_leaves_what_it_cannot_read_to_recv(sender, bad):
    # Not a return value (or not known to be one): returnFromBack goes on
    # waiting for its value, and recv() raises the error in its turn.
    sender.sendMessageToBack(MessageObject("send", items=[bad, ("ret", 7), ("msg", 7)]))
    assert sender.returnFromBack(timeout=5) == 7
    assert sender.getPipe().poll(0)
    with pytest.raises(UnreadableMessage) as info:
        sender.getPipe().recv(0)
    if bad[0] == "raw":
        _assert_bad_frame(info.value)
    else:
        _assert_unloadable(info.value, "bad" if bad[0] == "obj" else "")
    assert _valid(sender.getPipe().recv(timeout=5), 7)
    _assert_nothing_more(sender)


def test_the_backend_goes_on_after_the_frontend_could_not_read(sender):
    names = list(BAD_FRAMES)
    items = [("raw", n) for n in names] + [("obj", 0), ("plain", None), ("badret", None)]
    sender.sendMessageToBack(MessageObject("send", items=items + [("msg", 8)]))
    for _ in range(len(items) - 1):
        with pytest.raises(UnreadableMessage):
            sender.getPipe().recv(timeout=5)
    assert _valid(sender.getPipe().recv(timeout=5), 8)
    with pytest.raises(UnreadableMessage):
        sender.returnFromBack(timeout=5)
    # The intercom still works both ways, and the stop is orderly.
    sender.sendMessageToBack(MessageObject("send", items=[("msg", 9), ("ret", 9)]))
    assert _valid(sender.getPipe().recv(timeout=5), 9)
    assert sender.returnFromBack(timeout=5) == 9
    assert sender.is_alive()
