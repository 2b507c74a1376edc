"""MessageProcess: messages, values, lifecycle, on real forks."""

import enum
import os
import select
import sys
import time

import pytest
from procs import open_fds

from forkbridge import BackendGone, EventGroup, MessageObject, MessageProcess, SyncIndex, safe_select


class Color(enum.IntEnum):
    RED = 1


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


class Echo(MessageProcess):
    def __init__(self, name="echo", greeting="hi", *, extra=None):
        # A subclass __init__ with its own signature, as users write them.
        super().__init__(name)
        self.greeting = greeting
        self.extra = extra

    def c__echo(self, **kwargs):
        self.send_out__(MessageObject("echoed", **kwargs))

    def c__object(self, obj=None):
        self.send_out__(obj)

    def c__greet(self):
        self.send_out__(MessageObject("greeting", text=self.greeting, extra=self.extra))

    def c__pid(self):
        self.send_out__(os.getpid())

    def c__give_back(self, value=None):
        self.send_out__(MessageObject("noise"))
        self.return_out__(value)


@pytest.fixture
def echo():
    p = Echo("echo", "hello", extra=[1])
    p.start()
    yield p
    p.stop()


VALUES = [
    None,
    True,
    False,
    0,
    -(2**63),
    2**64 - 1,
    2**100,
    1.5,
    float("inf"),
    "ünïcode",
    b"\x00\xff",
    [1, [2, [3]]],
    (1, "two", (3.0,)),
    {"k": 1, 2: "int key", (1, 2): "tuple key"},
    {1, 2, 3},
    frozenset({"a"}),
    bytearray(b"xy"),
    Color.RED,
    Point(1, 2),
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:30] for v in VALUES])
def test_values_round_trip_exactly(echo, value):
    echo.sendMessageToBack(MessageObject("echo", value=value))
    got = echo.getPipe().recv(timeout=5)["value"]
    assert got == value
    assert type(got) is type(value)


def test_plain_objects_cross_both_ways(echo):
    echo.sendMessageToBack(MessageObject("object", obj={"plain": "dict"}))
    assert echo.getPipe().recv(timeout=5) == {"plain": "dict"}
    echo.sendMessageToBack(MessageObject("object", obj=MessageObject("nested", a=1)))
    got = echo.getPipe().recv(timeout=5)
    assert got() == "nested" and got["a"] == 1


def test_subclass_init_state_reaches_the_backend(echo):
    echo.sendMessageToBack(MessageObject("greet"))
    got = echo.getPipe().recv(timeout=5)
    assert (got["text"], got["extra"]) == ("hello", [1])


def test_the_backend_is_another_process(echo):
    echo.sendMessageToBack(MessageObject("pid"))
    assert echo.getPipe().recv(timeout=5) == echo.pid != os.getpid()


def test_ping_pong(echo):
    echo.sendPing([4, 5])
    got = echo.getPipe().recv(timeout=5)
    assert got() == "pong" and got["lis"] == [1, 2, 3]


def test_select_sees_every_message_of_a_burst(echo):
    # Many replies arrive in one write; a select loop reading one message
    # per wake-up must still see each of them.
    for i in range(200):
        echo.sendMessageToBack(MessageObject("echo", i=i))
    pipe = echo.getPipe()
    for i in range(200):
        ready, _, _ = select.select([pipe], [], [], 5)
        assert ready, "message %d not signalled" % i
        assert pipe.recv()["i"] == i


def test_messages_sent_before_start_are_delivered():
    p = Echo()
    p.sendMessageToBack(MessageObject("echo", early=True))
    p.start()
    try:
        assert p.getPipe().recv(timeout=5)["early"] is True
    finally:
        p.stop()


def test_return_from_back_keeps_other_objects_for_the_pipe(echo):
    echo.sendMessageToBack(MessageObject("give_back", value=42))
    assert echo.returnFromBack(timeout=5) == 42
    assert echo.getPipe().recv(timeout=5)() == "noise"


def test_recv_timeout_and_poll(echo):
    pipe = echo.getPipe()
    with pytest.raises(TimeoutError):
        pipe.recv(timeout=0.05)
    assert not pipe.poll(0.05)
    echo.sendMessageToBack(MessageObject("echo", x=1))
    assert pipe.poll(5)
    assert pipe.recv(timeout=0)["x"] == 1


def test_stop_is_clean_and_idempotent():
    p = Echo()
    p.start()
    assert p.is_alive()
    p.stop()
    assert p.exitcode == 0 and not p.is_alive()
    p.stop()
    assert p.exitcode == 0
    # valkka's backend says goodbye with a None; here it comes after postRun__.
    assert p.getPipe().recv(timeout=5) is None
    with pytest.raises(BackendGone):
        p.getPipe().recv(timeout=5)


def test_start_twice_and_stop_before_start():
    p = Echo()
    p.stop()  # nothing to stop: returns (valkka raises AssertionError)
    p.start()
    with pytest.raises(RuntimeError):
        p.start()
    p.stop()


def test_multiprocessing_process_names(echo):
    assert echo.name == "echo"
    assert str(echo) == "<Echo.echo>"
    assert echo.logger.name == "Echo.echo"
    assert isinstance(echo.pid, int) and echo.exitcode is None
    echo.join(timeout=0.05)
    assert echo.is_alive()
    echo.terminate()
    echo.join(timeout=5)
    assert echo.exitcode == -15


def test_go_is_start():
    p = Echo()
    p.go()
    p.stop()
    assert p.exitcode == 0


def test_many_start_stop_cycles_leak_nothing():
    for _ in range(3):  # warm-up: lazily created module state
        p = Echo()
        p.start()
        p.stop()
    del p
    before = open_fds()
    for _ in range(50):
        p = Echo()
        p.start()
        p.sendMessageToBack(MessageObject("echo", x=1))
        assert p.getPipe().recv(timeout=5)["x"] == 1
        p.stop()
        del p
    assert open_fds() == before


def test_large_messages_take_shared_memory(echo):
    blob = os.urandom(4 << 20)
    echo.sendMessageToBack(MessageObject("echo", blob=blob))
    assert echo.getPipe().recv(timeout=10)["blob"] == blob
    assert echo._native.large_messages_sent >= 1


def test_numpy_arrays_cross(echo):
    np = pytest.importorskip("numpy")
    a = np.arange(512 * 512, dtype=np.float32).reshape(512, 512)
    echo.sendMessageToBack(MessageObject("echo", a=a, scalar=np.float64(2.5)))
    got = echo.getPipe().recv(timeout=10)
    assert (got["a"] == a).all() and got["a"].dtype == np.float32
    assert type(got["scalar"]) is np.float64
    # The array's data came out of band and is the array's own, writable.
    got["a"][0, 0] = -1.0
    assert got["a"][0, 0] == -1.0 and a[0, 0] == 0.0
    # Non-contiguous arrays and Fortran order survive too.
    f = np.asfortranarray(a)[::2]
    echo.sendMessageToBack(MessageObject("echo", f=f))
    back = echo.getPipe().recv(timeout=10)["f"]
    assert (back == f).all() and back.shape == f.shape


def test_numpy_arrays_of_every_kind_cross_again_and_again(echo):
    # The second and later arrays of a kind skip pickle.dumps (the binding
    # remembers the in-band part): they must still come back identical.
    np = pytest.importorskip("numpy")
    base = np.arange(60, dtype=np.float64).reshape(3, 4, 5)
    readonly = np.arange(6, dtype=np.int16)
    readonly.flags.writeable = False
    arrays = [
        base,
        base + 1,  # same kind, other data
        base.reshape(4, 3, 5),  # same dtype, other shape
        np.asfortranarray(base),  # Fortran order
        base.astype(">i4"),  # big-endian
        base.astype(np.float32).reshape(6, 10),
        np.array(7, dtype=np.uint8),  # 0-d
        np.zeros((0, 3), dtype=np.float32),  # empty
        readonly,
        np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),  # structured
        np.array(["x", "yz"]),
        np.zeros(3, dtype=np.dtype(np.float64, metadata={"unit": "m"})),  # metadata
        np.zeros(3, dtype="(2,)f4"),  # subarray dtype
        np.array(["2026-12-01"], dtype="datetime64[D]"),
        np.array(["2026-12-01"], dtype="datetime64[s]"),  # equal str prefix, other unit
        base[:, ::2],  # not contiguous
        np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]),  # a subclass
    ]
    for round_ in range(3):
        for i, a in enumerate(arrays):
            echo.sendMessageToBack(MessageObject("echo", a=a, i=i))
            back = echo.getPipe().recv(timeout=10)
            got = back["a"]
            assert back["i"] == i
            assert type(got) is type(a), (round_, i)
            assert got.dtype == a.dtype and got.shape == a.shape, (round_, i)
            assert np.array_equal(np.asarray(got), np.asarray(a)), (round_, i)
            assert got.flags.f_contiguous == a.flags.f_contiguous, (round_, i)
            assert got.flags.writeable == a.flags.writeable, (round_, i)
            assert got.flags.c_contiguous == a.flags.c_contiguous or not a.flags.forc, (round_, i)
            assert got.dtype.metadata == a.dtype.metadata, (round_, i)
            if isinstance(a, np.ma.MaskedArray):
                assert (got.mask == a.mask).all()


def received_buffer(array):
    """The object that owns a received array's memory."""
    base = array
    while getattr(base, "base", None) is not None:
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


class LendingEcho(Echo):
    lend_received_buffers = True


@pytest.fixture
def lending_echo():
    p = LendingEcho()
    p.start()
    yield p
    p.stop()


def echo_frame(echo, value):
    """A 1 MiB float32 frame of `value`, echoed: the array received back."""
    np = pytest.importorskip("numpy")
    echo.sendMessageToBack(MessageObject("echo", a=np.full(1 << 18, value, dtype=np.float32)))
    return echo.getPipe().recv(timeout=10)["a"]


def test_lane_arrays_are_copied_out_by_default(echo):
    kept = [echo_frame(echo, i) for i in range(4)]
    assert not any(received_buffer(a).shared for a in kept)
    assert [int(a[0]) for a in kept] == [0, 1, 2, 3]


def test_lane_arrays_are_writable_views_that_stay_intact(lending_echo):
    np = pytest.importorskip("numpy")
    echo = lending_echo
    # Kept arrays hold their slots: later frames must not overwrite them
    # (the sender takes the socket while both slots are held).
    kept = [echo_frame(echo, i) for i in range(6)]
    assert received_buffer(kept[0]).shared and received_buffer(kept[1]).shared
    assert not received_buffer(kept[-1]).shared  # came through the socket
    for i, got in enumerate(kept):
        assert got.dtype == np.float32 and got.shape == (1 << 18,)
        assert (got == i).all(), i
    kept[0][:] = -1.0  # the slot is the receiver's until the view is gone
    assert (kept[0] == -1.0).all() and (kept[1] == 1).all()
    del kept, got
    # Slots given back: large frames take shared memory again, intact.
    sent = echo._native.large_messages_sent
    for i in range(4):
        back = echo_frame(echo, 10 + i)
        assert received_buffer(back).shared and (back == 10 + i).all()
        del back
    assert echo._native.large_messages_sent == sent + 4


def test_a_kept_reference_frame_leaves_the_lane_its_other_slot(lending_echo):
    echo = lending_echo
    # Video code keeps a reference frame (a background to subtract) for
    # good: the other slot carries every later frame, and none changes.
    frames = []
    for i in range(8):
        frames.append(echo_frame(echo, i))
        assert received_buffer(frames[-1]).shared, i
        assert (frames[-1] == i).all() and (frames[0] == 0).all()
        if i > 0:
            del frames[-1]
    del frames


def test_frontend_handle_is_refused_in_the_child():
    class Nested(MessageProcess):
        def c__try(self):
            try:
                self.sendMessageToBack(MessageObject("x"))
                self.send_out__("no error")
            except RuntimeError as e:
                self.send_out__(str(e))

    p = Nested("nested")
    p.start()
    try:
        p.sendMessageToBack(MessageObject("try"))
        assert "belongs to pid" in p.getPipe().recv(timeout=5)
    finally:
        p.stop()


def test_spin_before_sleep_answers_like_sleeping():
    class Spinner(Echo):
        spin_before_sleep = 0.0005

    p = Spinner()
    p.start()
    try:
        for i in range(100):
            p.sendMessageToBack(MessageObject("echo", i=i))
            assert p.getPipe().recv(timeout=5)["i"] == i
    finally:
        p.stop()
    assert p.exitcode == 0


def test_a_thread_blocked_in_recv_does_not_delay_senders(echo):
    import threading
    import time

    got = []

    def reader():
        pipe = echo.getPipe()
        while len(got) < 50:
            got.append(pipe.recv(timeout=10)["i"])

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.1)  # the reader is blocked in recv now
    started = time.monotonic()
    for i in range(50):
        echo.sendMessageToBack(MessageObject("echo", i=i))
        time.sleep(0.001)
    sent = time.monotonic() - started
    t.join(timeout=10)
    assert got == list(range(50))
    # Each send waiting for the reader's 50 ms wait slice would take 2.5 s.
    assert sent < 1.0


def test_a_full_socket_does_not_stall_each_send():
    import time

    class Sink(MessageProcess):
        def __init__(self):
            super().__init__("sink")
            self.count = 0

        def c__data(self, pad=b""):
            self.count += 1

        def c__count(self):
            self.send_out__(self.count)

    p = Sink()
    p.start()
    try:
        started = time.monotonic()
        # ~60 MB: the socket fills hundreds of times. A send that waited for
        # readability instead of room would sleep out a 50 ms wait slice each
        # time (> 10 s); a correct one follows the reader.
        for _ in range(30000):
            p.sendMessageToBack(MessageObject("data", pad=b"x" * 2000))
        p.sendMessageToBack(MessageObject("count"))
        assert p.getPipe().recv(timeout=30) == 30000
        assert time.monotonic() - started < 8
    finally:
        p.stop()


def test_backend_threads_are_joined_before_the_backend_exits(tmp_path):
    import threading
    import time

    marker = tmp_path / "done"

    class Threaded(MessageProcess):
        def c__later(self, path=""):
            def work():
                time.sleep(0.2)
                with open(path, "w") as f:
                    f.write("done")

            threading.Thread(target=work).start()  # not a daemon

    p = Threaded("threaded")
    p.start()
    p.sendMessageToBack(MessageObject("later", path=str(marker)))
    p.stop()  # the stop request comes first; the thread still finishes
    assert p.exitcode == 0
    assert marker.read_text() == "done"


def test_send_message_to_back_none_stops_and_overrides_are_honoured():
    # sendMessageToBack is bound to a native method per instance; None
    # still asks the backend to stop, and a keyword argument still works.
    p = Echo()
    p.start()
    p.sendMessageToBack(message=MessageObject("echo", n=1))
    assert p.getPipe().recv(timeout=5)["n"] == 1
    p.sendMessageToBack(None)
    p.join(5)
    assert p.exitcode == 0
    p.stop()

    sent = []

    class Recording(Echo):
        def sendMessageToBack(self, message):
            sent.append(message)
            super().sendMessageToBack(message)

    q = Recording()
    q.start()
    q.sendMessageToBack(MessageObject("echo", n=2))
    assert q.getPipe().recv(timeout=5)["n"] == 2
    assert [m() for m in sent] == ["echo"]
    q.stop()


def test_message_object_behaves_as_the_seeds_class():
    import pickle

    m = MessageObject("cmd", a=1, b=[2])
    assert m() == "cmd" and m["a"] == 1 and m.get("z", 5) == 5 and "b" in m
    assert m == MessageObject("cmd", a=1, b=[2]) and m != MessageObject("cmd")
    assert str(m) == "<MessageObject: cmd: {'a': 1, 'b': [2]}>"
    assert pickle.loads(pickle.dumps(m)) == m
    assert MessageObject(command="kw", a=1).kwargs == {"a": 1}
    with pytest.raises(KeyError):
        m["missing"]
    with pytest.raises(TypeError):
        hash(m)
    for bad in (lambda: MessageObject(), lambda: MessageObject("a", "b"), lambda: MessageObject("a", command="b")):
        with pytest.raises(TypeError):
            bad()

    # Subclasses written for valkka-multiprocess's pure-Python class keep working.
    class Tagged(MessageObject):
        def __init__(self, command, **kwargs):
            super().__init__(command, **kwargs)
            self.tag = "t"

    class Fixed(MessageObject):
        def __init__(self, x):
            super().__init__("fixed", x=x)

    class Plain(MessageObject):
        pass

    t, f, p = Tagged("tagged", a=1), Fixed(3), Plain("plain", z=1)
    assert (t(), t["a"], t.tag) == ("tagged", 1, "t")
    assert (f(), f.kwargs) == ("fixed", {"x": 3})
    assert (p(), p.kwargs) == ("plain", {"z": 1})


@pytest.mark.parametrize("huge", [sys.maxsize, float(sys.maxsize), float("inf"), 1e300])
def test_a_huge_timeout_means_no_limit_in_every_wait(huge):
    class Patient(Echo):
        stop_timeout = huge
        kill_timeout = huge

    p = Patient("patient")
    p.start()
    try:
        pipe = p.getPipe()
        p.sendMessageToBack(MessageObject("echo", x=1))
        assert safe_select([pipe], [], [], huge)[0] == [pipe]
        assert pipe.poll(huge)
        assert pipe.recv(huge)["x"] == 1
        p.sendMessageToBack(MessageObject("give_back", value=7))
        assert p.returnFromBack(huge) == 7
        group = EventGroup(1)
        with SyncIndex(group, timeout=huge) as i:
            group.set(i)
        i, event = group.reserve()
        event.set()
        assert event.wait(huge)
        group.release(event)
    finally:
        p.stop()
    assert p.exitcode == 0
    q = Patient("joined")
    q.start()
    q.requestStop()
    q.join(huge)
    assert q.exitcode == 0


class Chatty(Echo):
    def c__chatter(self, n=0, every=0.1):
        for i in range(n):
            self.send_out__(MessageObject("noise", i=i))
            time.sleep(every)

    def c__late(self, after=0.0, value=None):
        time.sleep(after)
        self.return_out__(value)


def test_return_from_back_timeout_bounds_the_whole_wait():
    p = Chatty("chatty")
    p.start()
    try:
        # Unrelated messages keep arriving, one every 0.1 s, for 3 s.
        p.sendMessageToBack(MessageObject("chatter", n=30, every=0.1))
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            p.returnFromBack(timeout=0.5)
        took = time.monotonic() - started
        assert 0.5 <= took < 1.5, took
        # What arrived meanwhile is kept for recv(), in order.
        assert p.getPipe().recv(5)["i"] == 0
    finally:
        p.stop()


def test_a_late_return_value_does_not_make_poll_say_recv_would_return():
    p = Chatty("late")
    p.start()
    try:
        p.sendMessageToBack(MessageObject("late", after=0.4, value=7))
        with pytest.raises(TimeoutError):
            p.returnFromBack(timeout=0.1)
        time.sleep(0.6)  # the late value is in the socket now
        pipe = p.getPipe()
        assert not pipe.poll(0.2), "poll said recv would return"
        with pytest.raises(TimeoutError):
            pipe.recv(0.2)
        assert p.returnFromBack(timeout=5) == 7
        p.sendMessageToBack(MessageObject("echo", x=1))
        assert pipe.poll(5) and pipe.recv(0)["x"] == 1
    finally:
        p.stop()
