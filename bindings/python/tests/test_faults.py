"""The core's fault promises, from Python, on real processes."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import ctrl_c
from procs import alive
import pytest

from forkbridge import (
    AsyncBackMessageProcess,
    BackendGone,
    ForkWithThreadsError,
    MessageObject,
    MessageProcess,
    safe_select,
)


class Worker(MessageProcess):
    stop_timeout = 0.5
    kill_timeout = 0.5

    def c__boom(self):
        raise ValueError("boom")

    def c__echo(self, **kwargs):
        self.send_out__(MessageObject("echoed", **kwargs))

    def c__hang(self):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.send_out__(MessageObject("hanging"))
        while True:
            time.sleep(0.05)

    def c__exit(self, code=0):
        os._exit(code)


@pytest.fixture
def worker():
    p = Worker("worker")
    p.start()
    yield p
    p.stop()


def test_exception_in_handler_is_reported_and_the_loop_goes_on(worker):
    worker.sendMessageToBack(MessageObject("boom"))
    worker.sendMessageToBack(MessageObject("echo", after=True))
    err = worker.getPipe().recv(timeout=5)
    assert err() == "error" and err["kind"] == "handler_error"
    assert err["command"] == "boom" and "ValueError: boom" in err["error"]
    assert err["process"] == "worker"
    assert worker.getPipe().recv(timeout=5)["after"] is True


def test_wrong_parameters_do_not_kill_the_backend(worker):
    worker.sendMessageToBack(MessageObject("boom", unexpected=1))
    assert worker.getPipe().recv(timeout=5)["kind"] == "handler_error"
    worker.sendMessageToBack(MessageObject("echo", x=1))
    assert worker.getPipe().recv(timeout=5)["x"] == 1


def test_unknown_command_is_reported(worker):
    worker.sendMessageToBack(MessageObject("nonesuch"))
    err = worker.getPipe().recv(timeout=5)
    assert err["kind"] == "unknown_command" and err["command"] == "nonesuch"
    assert worker.is_alive()


def test_backend_killed_is_seen_by_recv():
    p = Worker("victim")
    p.start()
    os.kill(p.pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(BackendGone):
        p.getPipe().recv(timeout=10)
    assert time.monotonic() - started < 2
    p.join(timeout=5)
    assert p.exitcode == -signal.SIGKILL
    p.stop()


def test_backend_exit_code_is_reported():
    p = Worker("exiter")
    p.start()
    p.sendMessageToBack(MessageObject("exit", code=3))
    with pytest.raises(EOFError):
        p.getPipe().recv(timeout=10)
    p.stop()
    assert p.exitcode == 3


def test_stop_is_bounded_when_the_backend_hangs(worker):
    worker.sendMessageToBack(MessageObject("hang"))
    assert worker.getPipe().recv(timeout=5)() == "hanging"
    started = time.monotonic()
    worker.stop()
    assert time.monotonic() - started < 5
    assert worker.exitcode == -signal.SIGKILL


def test_exception_in_pre_run_ends_the_process_with_1():
    class BadStart(MessageProcess):
        def preRun__(self):
            raise RuntimeError("no model file")

    p = BadStart("bad")
    p.start()
    p.join(timeout=10)
    assert p.exitcode == 1


def test_fork_with_threads_is_refused_with_their_names():
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="busy-thread")
    t.start()
    try:
        p = Worker("threads")
        with pytest.raises(ForkWithThreadsError, match="busy-thread"):
            p.start()
        # Opting in works.
        p.start(allow_threads=True)
        p.sendMessageToBack(MessageObject("echo", ok=1))
        assert p.getPipe().recv(timeout=5)["ok"] == 1
        p.stop()
    finally:
        stop.set()
        t.join()


def test_blocking_calls_release_the_gil(worker):
    counter = [0]
    done = threading.Event()

    def spin():
        while not done.is_set():
            counter[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        with pytest.raises(TimeoutError):
            worker.getPipe().recv(timeout=0.3)
    finally:
        done.set()
        t.join()
    assert counter[0] > 1000


def test_ctrl_c_interrupts_a_blocked_recv(worker):
    started = time.monotonic()
    with ctrl_c.from_a_thread(0.2), pytest.raises(KeyboardInterrupt):
        worker.getPipe().recv()
    assert time.monotonic() - started < 2


def test_ctrl_c_interrupts_a_recv_blocked_in_the_read(worker):
    # The only Python thread blocks in the socket read itself (not in
    # poll): SIGINT from another process must still end it.
    assert threading.active_count() == 1
    started = time.monotonic()
    with ctrl_c.from_a_process(0.2), pytest.raises(KeyboardInterrupt):
        worker.getPipe().recv()
    assert time.monotonic() - started < 2
    # The handle still works afterwards.
    worker.sendMessageToBack(MessageObject("echo", after=True))
    assert worker.getPipe().recv(timeout=5)["after"] is True


PARENT = textwrap.dedent(
    """
    import sys, time
    from forkbridge import MessageProcess, AsyncBackMessageProcess

    class Sync(MessageProcess):
        pass

    class Async(AsyncBackMessageProcess):
        pass

    procs = [Sync("s1"), Sync("s2"), Async("a1")]
    procs[1].ignoreSIGINT()
    for p in procs:
        p.start()
    print(" ".join(str(p.pid) for p in procs), flush=True)
    time.sleep(60)
    """
)


def test_backends_die_with_a_killed_parent():
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True
    )
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 3 and all(alive(p) for p in pids)
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 3
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(alive(p) for p in pids), "orphans left behind"
    finally:
        parent.kill()
        parent.wait()


FORGETFUL = textwrap.dedent(
    """
    from forkbridge import MessageProcess
    p = MessageProcess("forgotten")
    p.start()
    print(p.pid, flush=True)
    # no stop(): valkka-multiprocess hangs here at exit
    """
)


def test_forgetting_stop_does_not_hang_the_exit():
    proc = subprocess.run(
        [sys.executable, "-c", FORGETFUL], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 3
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(pid)


def test_ctrl_c_interrupts_a_send_blocked_on_a_full_socket(worker):
    worker.sendMessageToBack(MessageObject("hang"))  # stops reading
    assert worker.getPipe().recv(timeout=5)() == "hanging"

    started = time.monotonic()
    with ctrl_c.from_a_thread(0.3), pytest.raises(KeyboardInterrupt):
        for _ in range(100000):
            worker.sendMessageToBack(MessageObject("echo", pad=b"x" * 65536))
    assert time.monotonic() - started < 3


class Spawner(MessageProcess):
    def c__spawn(self):
        pid = os.fork()
        if pid == 0:  # a grandchild that keeps the intercom open
            time.sleep(10)
            os._exit(0)
        self.send_out__(MessageObject("spawned", pid=pid))


def test_backend_death_is_seen_while_its_child_holds_the_socket():
    p = Spawner("spawner")
    p.start()
    grandchild = None
    try:
        p.sendMessageToBack(MessageObject("spawn"))
        grandchild = p.getPipe().recv(timeout=5)["pid"]
        os.kill(p.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(BackendGone):
            p.getPipe().recv(timeout=10)
        # No end of stream (the grandchild holds the socket): the pidfd,
        # looked at once per wait slice, tells.
        assert time.monotonic() - started < 2
        assert p.exitcode == -signal.SIGKILL
    finally:
        if grandchild:
            os.kill(grandchild, signal.SIGKILL)
        p.stop()


def test_stop_and_join_return_when_something_else_reaped_the_backend():
    # With SIGCHLD ignored the kernel reaps children itself: the exit code
    # is unknown, the backend is gone, and a clean-up loop goes on.
    old = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        workers = [Worker(f"reaped-{i}") for i in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.stop()
        assert [w.exitcode for w in workers] == [None] * 3
        assert not any(w.is_alive() for w in workers)
        w = Worker("joined")
        w.start()
        w.requestStop()
        w.join(5)
        assert w.exitcode is None and not w.is_alive()
        w.stop()
    finally:
        signal.signal(signal.SIGCHLD, old)


def test_errors_keep_the_reason_the_core_gave():
    from forkbridge import serve

    # No frontend started this process: the core says so, and Python
    # hears the reason, not only "invalid argument".
    assert "FORKBRIDGE_FD" not in os.environ
    with pytest.raises(ValueError, match="FORKBRIDGE_FD is not set"):
        serve(Worker("orphan"))


def test_max_message_size_holds_on_the_shared_memory_lane_both_ways():
    class Limited(Worker):
        max_message_size = 1 << 20
        large_message_threshold = 64 << 10

        def c__big(self, n=0):
            try:
                self.send_out__(MessageObject("big", data=b"x" * n))
            except ValueError as e:
                self.send_out__(MessageObject("refused", error=str(e)))

    p = Limited("limited")
    p.start()
    try:
        for _ in range(3):
            with pytest.raises(ValueError, match="exceeds the maximum"):
                p.sendMessageToBack(MessageObject("echo", data=b"y" * (2 << 20)))
        # Under the limit, through the lane, it crosses.
        p.sendMessageToBack(MessageObject("echo", data=b"z" * (900 << 10)))
        assert len(p.getPipe().recv(10)["data"]) == 900 << 10
        p.sendMessageToBack(MessageObject("big", n=2 << 20))
        reply = p.getPipe().recv(10)
        assert reply() == "refused" and "exceeds the maximum" in reply["error"]
    finally:
        p.stop()
    assert p.exitcode == 0


def test_ctrl_c_during_a_slow_stop_kills_the_backend_and_raises_at_once():
    class Slow(Worker):
        stop_timeout = 3.0
        kill_timeout = 3.0

    p = Slow("slow")
    p.start()
    p.sendMessageToBack(MessageObject("hang"))  # ignores SIGTERM, never returns
    assert p.getPipe().recv(10)() == "hanging"
    started = time.monotonic()
    with ctrl_c.from_a_thread(0.3), pytest.raises(KeyboardInterrupt):
        p.stop()
    took = time.monotonic() - started
    assert took < 1.5, "Ctrl-C was held %.1f s" % took
    # The backend did not outlive the interrupted stop: killed and reaped.
    assert not p.is_alive()
    assert p.exitcode == -signal.SIGKILL
    p.stop()  # a second stop returns at once


# ---- how every Python loop reads commands, and what it cannot read ---------


LIMIT = 64 << 10


class Reader:
    """Handlers for every loop variant below (plain functions that send
    through back_pipe, so the asyncio backend runs them too)."""

    stop_timeout = 1.0
    kill_timeout = 0.5
    #: Small, so that a frame over it is cheap to write (and no frame
    #: takes the shared-memory lane).
    max_message_size = LIMIT
    large_message_threshold = None

    def c__nap(self, seconds=0.3):
        # Keeps the backend busy so that what is sent next arrives together
        # and is read in one go.
        time.sleep(seconds)

    def c__echo(self, **kwargs):
        self.back_pipe.send(MessageObject("echoed", **kwargs))

    def c__pair(self):
        # A command whose argument is the command after it.
        nxt = self.back_pipe.recv(timeout=2)
        self.back_pipe.send(MessageObject("paired", next=nxt(), kwargs=nxt.kwargs))


class NativeLoop(Reader, MessageProcess):
    pass


class ListeningLoop(Reader, MessageProcess):
    def __init__(self, name):
        super().__init__(name)
        self.listening = True


class OwnSelectLoop(Reader, MessageProcess):
    def readPipes__(self, timeout):
        if safe_select([self.back_pipe], [], [], timeout)[0]:
            self.handleBackPipe__(self.back_pipe)


class AsyncLoop(Reader, AsyncBackMessageProcess):
    pass


@pytest.fixture(params=[NativeLoop, ListeningLoop, OwnSelectLoop, AsyncLoop])
def reader(request):
    p = request.param(request.param.__name__)
    p.start()
    yield p
    p.stop()
    assert p.exitcode == 0


def test_a_handler_takes_the_next_command_even_if_the_loop_read_it_already(reader):
    reader.sendMessageToBack(MessageObject("nap"))
    # Read by the loop in one go, after the nap: "pair" takes "echo" as
    # its argument, and "echo" must not run on its own as well.
    reader.sendMessageToBack(MessageObject("pair"))
    reader.sendMessageToBack(MessageObject("echo", seq=1))
    reader.sendMessageToBack(MessageObject("echo", seq=2))
    got = reader.getPipe().recv(timeout=5)
    assert got() == "paired", got
    assert got["next"] == "echo" and got["kwargs"] == {"seq": 1}
    got = reader.getPipe().recv(timeout=5)
    assert got() == "echoed" and got["seq"] == 2, got
    reader.sendMessageToBack(MessageObject("echo", seq=3))
    assert reader.getPipe().recv(timeout=5)["seq"] == 3


def _explode():
    raise RuntimeError("this object cannot be loaded")


class Unloadable:
    """Pickles fine; unpickling it raises."""

    def __reduce__(self):
        return (_explode, ())


def test_a_value_the_backend_cannot_unpickle_is_a_handler_error_and_the_loop_goes_on(reader):
    # A class made after the fork: the backend has no such attribute.
    late = type("LateClass", (), {"__module__": __name__})
    globals()["LateClass"] = late
    try:
        reader.sendMessageToBack(MessageObject("nap"))
        reader.sendMessageToBack(MessageObject("echo", seq=1))
        reader.sendMessageToBack(MessageObject("echo", seq=2, value=late()))
        reader.sendMessageToBack(MessageObject("echo", seq=3, value=Unloadable()))
        reader.sendMessageToBack(Unloadable())  # not a MessageObject
        reader.sendMessageToBack(MessageObject("echo", seq=4))
        got = [reader.getPipe().recv(timeout=5) for _ in range(5)]
    finally:
        del globals()["LateClass"]
    assert got[0]() == "echoed" and got[0]["seq"] == 1
    for err in got[1:4]:
        assert err() == "error" and err["kind"] == "handler_error", err
        assert err["process"] == reader.name
    assert got[1]["command"] == "echo" and "LateClass" in got[1]["error"]
    assert got[2]["command"] == "echo"
    assert "RuntimeError: this object cannot be loaded" in got[2]["error"]
    assert "RuntimeError: this object cannot be loaded" in got[3]["error"]
    assert got[4]() == "echoed" and got[4]["seq"] == 4


def _frame(kind, body):
    """A raw frame as wire.rs lays it out: length (kind + body, u32 LE),
    kind, body."""
    return (1 + len(body)).to_bytes(4, "little") + bytes([kind]) + body


BAD_FRAMES = [
    _frame(0, b"\xff\xff"),  # a message body that does not decode
    _frame(99, b"\x00"),  # an unknown kind
    _frame(1, b"\x09"),  # an unknown control code
    (0).to_bytes(4, "little"),  # an empty frame
    (LIMIT + 1).to_bytes(4, "little") + bytes(LIMIT + 1),  # over the limit
]


def _write_raw(p, data):
    """Writes bytes on the frontend's end of the socket (non-blocking),
    as a buggy peer would."""
    fd = p.getPipe().fileno()
    view = memoryview(data)
    deadline = time.monotonic() + 5
    while view:
        assert time.monotonic() < deadline, "the backend does not read"
        safe_select([], [fd], [], 1)
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            pass


def _is_bad_frame_report(err, name):
    return (
        err() == "error"
        and err["kind"] == "decode"
        and err["command"] == ""
        and err["process"] == name
        and ("malformed frame" in err["error"] or "exceeds the maximum" in err["error"])
    )


def test_a_malformed_or_oversized_frame_is_reported_and_the_loop_goes_on(reader):
    pipe = reader.getPipe()
    for seq, bad in enumerate(BAD_FRAMES):
        # The bad frame and the command after it arrive during the nap and
        # are read together: that command must still run, without waiting
        # for another one.
        reader.sendMessageToBack(MessageObject("nap", seconds=0.2))
        _write_raw(reader, bad)
        reader.sendMessageToBack(MessageObject("echo", seq=seq))
        err = pipe.recv(timeout=5)
        assert _is_bad_frame_report(err, reader.name), (bad[:8], err)
        got = pipe.recv(timeout=5)
        assert got() == "echoed" and got["seq"] == seq, (bad[:8], got)
    # A handler's own recv skips (and reports) a bad frame too.
    reader.sendMessageToBack(MessageObject("nap", seconds=0.2))
    reader.sendMessageToBack(MessageObject("pair"))
    _write_raw(reader, BAD_FRAMES[0])
    reader.sendMessageToBack(MessageObject("echo", seq="next"))
    assert _is_bad_frame_report(pipe.recv(timeout=5), reader.name)
    got = pipe.recv(timeout=5)
    assert got() == "paired" and got["kwargs"] == {"seq": "next"}, got
