"""The start methods forkserver and spawn: a MessageProcess subclass whose
instance pickles runs unchanged under them (commands, preRun__, events, a
shared numpy array, asyncio backends), faults behave as under fork, and a
parent with a live thread holding a lock starts workers that have one
thread. The fork server is this pytest process's child for the whole run;
conftest does not count it as a leftover."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from procs import open_fds

import forkbridge
from forkbridge import (
    AsyncBackMessageProcess,
    BackendGone,
    EventGroup,
    ForkWithThreadsError,
    MessageObject,
    MessageProcess,
    SyncIndex,
    shared_array,
)

METHODS = ["forkserver", "spawn"]
SERVER_COMM = "forkbridge-srv"

# Taken by the backend in c__lock: a module-level lock, so the worker has
# its own (the parent's may be held by a thread).
LOCK = threading.Lock()


class Worker(MessageProcess):
    stop_timeout = 3.0
    kill_timeout = 1.0

    def __init__(self, name="worker", method="spawn", shape=(4, 8)):
        super().__init__(name)
        self.method = method
        self.event_group = EventGroup(4)
        self.array = shared_array(shape, "uint16")
        self.greeting = "hello"
        self.prepared = None

    def preRun__(self):
        self.prepared = "prepared in %d" % os.getpid()

    def c__echo(self, **kwargs):
        self.send_out__(MessageObject("echo", greeting=self.greeting, **kwargs))

    def c__prepared(self):
        self.return_out__(self.prepared)

    def c__fill(self, value=0, event_index=None):
        self.array[:] = value
        self.event_group.set(event_index)

    def c__fail(self):
        raise ValueError("on purpose")

    def c__threads(self):
        with LOCK:
            self.return_out__(threading.active_count())

    def c__ignore_term_and_block(self):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.send_out__(MessageObject("blocking"))
        while True:
            time.sleep(0.05)

    def fill(self, value):
        with SyncIndex(self.event_group, timeout=10) as i:
            self.sendMessageToBack(MessageObject("fill", value=value, event_index=i))
        return self.array


class ForkServerWorker(Worker):
    start_method = "forkserver"


class SpawnWorker(Worker):
    start_method = "spawn"


CLASSES = {"forkserver": ForkServerWorker, "spawn": SpawnWorker}


class StubbornForkServer(ForkServerWorker):
    stop_timeout = 0.3
    kill_timeout = 0.3


class StubbornSpawn(SpawnWorker):
    stop_timeout = 0.3
    kill_timeout = 0.3


STUBBORN = {"forkserver": StubbornForkServer, "spawn": StubbornSpawn}


class AsyncWorker(AsyncBackMessageProcess):
    async def c__double(self, x=0):
        await asyncio.sleep(0)
        await self.send_out__(MessageObject("doubled", x=2 * x))


def started(method, cls=None, **kwargs):
    p = (cls or CLASSES[method])(**kwargs)
    p.start()
    return p


def recv(p, timeout=10):
    return p.getPipe().recv(timeout=timeout)


def server_pids():
    """The fork servers among this process's children."""
    pids = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open("/proc/self/task/%s/children" % task) as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            continue
        for pid in kids:
            try:
                with open("/proc/%d/comm" % pid) as f:
                    if f.read().strip() == SERVER_COMM:
                        pids.append(pid)
            except OSError:
                pass
    return pids


@pytest.mark.parametrize("method", METHODS)
def test_start_stop_commands_and_pre_run(method):
    p = started(method)
    try:
        assert p.is_alive() and p.pid != os.getpid()
        p.sendMessageToBack(MessageObject("echo", x=1, y=[1, "two"]))
        msg = recv(p)
        assert msg() == "echo" and msg["x"] == 1 and msg["y"] == [1, "two"]
        assert msg["greeting"] == "hello"
        p.sendMessageToBack(MessageObject("prepared"))
        assert p.returnFromBack(timeout=10) == "prepared in %d" % p.pid
        p.sendPing([1])
        assert recv(p)() == "pong"
    finally:
        p.stop()
    assert p.exitcode == 0
    assert not p.is_alive()


@pytest.mark.parametrize("method", METHODS)
def test_event_group_sync_index_and_a_shared_array(method):
    p = started(method)
    try:
        for value in (1, 7, 65535):
            assert (p.fill(value) == value).all()
    finally:
        p.stop()


@pytest.mark.parametrize("method", METHODS)
def test_the_global_setting_and_an_async_backend(method):
    forkbridge.set_start_method(method, force=True)
    try:
        assert forkbridge.get_start_method() == method
        p = AsyncWorker("async")
        p.start()
    finally:
        forkbridge.set_start_method(None, force=True)
    try:
        p.sendMessageToBack(MessageObject("double", x=21))
        assert recv(p)["x"] == 42
    finally:
        p.stop()
    assert p.exitcode == 0


def test_unknown_start_methods_are_refused():
    with pytest.raises(ValueError, match="cannot find start method"):
        forkbridge.set_start_method("vfork")
    assert forkbridge.get_start_method() == "fork"
    assert forkbridge.get_start_method(allow_none=True) is None

    class Odd(Worker):
        start_method = "threads"

    p = Odd()
    with pytest.raises(ValueError, match="threads"):
        p.start()
    assert p.pid is None


@pytest.mark.parametrize("method", METHODS)
def test_an_exception_in_a_handler_is_reported_and_the_loop_goes_on(method):
    p = started(method)
    try:
        p.sendMessageToBack(MessageObject("fail"))
        err = recv(p)
        assert err() == "error" and "on purpose" in err["error"]
        p.sendMessageToBack(MessageObject("echo", x=2))
        assert recv(p)["x"] == 2
    finally:
        p.stop()


@pytest.mark.parametrize("method", METHODS)
def test_a_killed_worker_is_seen_at_once(method):
    p = started(method)
    try:
        os.kill(p.pid, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(BackendGone):
            recv(p, timeout=10)
        assert time.monotonic() - t0 < 5
        p.join(5)
        assert p.exitcode == -signal.SIGKILL
    finally:
        p.stop()


@pytest.mark.parametrize("method", METHODS)
def test_stopping_a_backend_that_ignores_sigterm_is_bounded(method):
    p = started(method, STUBBORN[method])
    p.sendMessageToBack(MessageObject("ignore_term_and_block"))
    assert recv(p)() == "blocking"
    t0 = time.monotonic()
    p.stop()
    assert time.monotonic() - t0 < 4
    assert p.exitcode == -signal.SIGKILL


@pytest.mark.parametrize("method", METHODS)
def test_fifty_starts_and_stops_leak_no_fds(method):
    started(method).stop()  # the fork server, if any, exists from here on
    before = open_fds()
    for _ in range(50):
        p = started(method)
        p.stop()
        assert p.exitcode == 0
    del p
    assert open_fds() <= before


def test_with_a_thread_holding_a_lock_fork_refuses_and_the_others_start():
    held = threading.Lock()
    held.acquire()
    release = threading.Event()

    def hold():
        with LOCK:
            release.wait(30)

    t = threading.Thread(target=hold, name="holder")
    t.start()
    try:
        with pytest.raises(ForkWithThreadsError):
            Worker().start()  # the default, fork
        for method in METHODS:
            p = started(method)
            try:
                p.sendMessageToBack(MessageObject("threads"))
                assert p.returnFromBack(timeout=10) == 1
            finally:
                p.stop()
    finally:
        release.set()
        held.release()
        t.join(10)


def test_an_attribute_that_does_not_pickle_is_named_and_nothing_starts():
    p = SpawnWorker()
    p.lock = threading.Lock()
    with pytest.raises(TypeError, match="SpawnWorker.attr 'lock': cannot pickle"):
        p.start()
    assert p.pid is None and not p.is_alive()
    del p.lock
    p.start()  # nothing had started: the same process starts now
    p.stop()
    assert p.exitcode == 0


def test_shared_objects_do_not_pickle_outside_a_start():
    import pickle

    with pytest.raises(TypeError, match="crosses only to a backend"):
        pickle.dumps(EventGroup(2))
    with pytest.raises(TypeError, match="crosses only to a backend"):
        pickle.dumps(forkbridge.Event())


NO_GUARD = """\
import forkbridge
from forkbridge import MessageProcess

class P(MessageProcess):
    start_method = %r

print("importing", flush=True)
p = P("noguard")
p.start()
p.stop()
print("finished", flush=True)
"""


@pytest.mark.parametrize("method", METHODS)
def test_a_program_without_the_main_guard_fails_with_the_runtime_error(method, tmp_path):
    script = tmp_path / "noguard.py"
    script.write_text(NO_GUARD % method)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert "RuntimeError" in out.stderr, out.stdout + out.stderr
    assert "bootstrapping phase" in out.stderr
    if method == "spawn":
        # start() waits for the spawned worker: it raises the worker's error.
        assert out.returncode != 0, out.stdout + out.stderr
        assert "finished" not in out.stdout
    # The parent imported once, its one worker (or the server) once more.
    assert out.stdout.count("importing") <= 3, out.stdout


def test_killing_the_fork_server_ends_its_workers_and_a_later_start_works():
    p = started("forkserver")
    try:
        servers = server_pids()
        assert len(servers) == 1
        os.kill(servers[0], signal.SIGKILL)
        with pytest.raises(BackendGone):
            recv(p, timeout=10)
    finally:
        p.stop()
    os.waitpid(servers[0], 0)
    q = started("forkserver")
    try:
        q.sendMessageToBack(MessageObject("echo", x=3))
        assert recv(q)["x"] == 3
        assert server_pids() and server_pids()[0] != servers[0]
    finally:
        q.stop()


def _explode(parent):
    if os.getpid() != parent:
        raise OSError("no such device in the worker")
    return "fine"


class Fragile:
    def __reduce__(self):
        return (_explode, (os.getpid(),))


def test_a_backend_that_does_not_unpickle_in_the_worker_is_reported():
    p = SpawnWorker()
    p.fragile = Fragile()
    with pytest.raises(RuntimeError, match="OSError: no such device in the worker"):
        p.start()
    assert p.pid is None or not p.is_alive()

    q = ForkServerWorker()
    q.fragile = Fragile()
    q.start()  # not waited for: the reason comes as a message
    try:
        err = recv(q)
        assert err() == "error" and err["kind"] == "pre_run"
        assert "no such device in the worker" in err["error"]
        with pytest.raises(BackendGone):
            recv(q)
        q.join(5)
        assert q.exitcode == 2
    finally:
        q.stop()
