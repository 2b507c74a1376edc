"""Every public wait of the package, with every kind of timeout.

The promise, whatever the wait: zero or less does not wait (it returns
what is ready, else raises ``TimeoutError`` or returns False, as the wait's
doc says, at once); a huge or infinite timeout (and ``None`` where taken)
means no limit (it waits for what comes later, and returns what is ready);
NaN raises ``ValueError`` whatever is ready, and leaves it ready. No
``pyo3_runtime.PanicException`` (a ``BaseException``) may come out:
``pytest.raises(ValueError)`` and the plain calls below let one through,
which fails the test.
"""

import asyncio
import os
import signal
import sys
import threading
import time

import pytest

from forkbridge import (
    AsyncBackMessageProcess,
    Event,
    EventGroup,
    MainContext,
    MessageObject,
    MessageProcess,
    NotEnoughEvents,
    SyncIndex,
    safe_select,
)

NAN = float("nan")
NONPOSITIVE = [0, 0.0, -1, -1e300]
HUGE = [float("inf"), sys.maxsize, float(sys.maxsize), 1e300]
VALUES = NONPOSITIVE + [NAN] + HUGE
IDS = ["0", "0.0", "-1", "-1e300", "nan", "inf", "maxsize", "float-maxsize", "1e300"]

#: What comes "later" comes this many seconds after the wait began.
LATER = 0.2
#: A wait that must not wait returns within this.
AT_ONCE = 0.15
#: A bound on everything that is ready or comes later.
BOUND = 5.0


def kind(t):
    if t is None:
        return "none"
    if t != t:
        return "nan"
    return "nonpositive" if t <= 0 else "huge"


timeouts = pytest.mark.parametrize("t", VALUES, ids=IDS)
timeouts_or_none = pytest.mark.parametrize("t", VALUES + [None], ids=IDS + ["None"])


def timed(f, *args):
    """(what f returned or the Exception it raised, seconds it took).
    Anything that is not an Exception (a PanicException) propagates."""
    started = time.monotonic()
    try:
        result = f(*args)
    except Exception as e:
        result = e
    return result, time.monotonic() - started


def check_ready(t, result, took, expected):
    """A wait on something already ready."""
    if kind(t) == "nan":
        assert type(result) is ValueError, result
        assert "NaN" in str(result)
    else:
        assert result == expected, result
    assert took < 1.0, took


def check_later(t, result, took, expected, not_ready):
    """A wait on something that comes LATER seconds after it began:
    ``not_ready`` is what a wait that does not wait gives (a value, or an
    exception type)."""
    k = kind(t)
    if k == "nan":
        assert type(result) is ValueError, result
        assert took < AT_ONCE, took
    elif k == "nonpositive":
        if isinstance(not_ready, type):
            assert type(result) is not_ready, result
        else:
            assert result == not_ready, result
        assert took < AT_ONCE, took
    else:
        assert result == expected, result
        assert LATER * 0.75 <= took < BOUND, took


@pytest.fixture
def another_thread(request):
    """A second Python thread alive during the test (when the parameter
    says so): the waits then take another path (they poll the fd instead of
    waiting in the read)."""
    if not request.param:
        yield False
        return
    done = threading.Event()
    t = threading.Thread(target=done.wait, name="idle")
    t.start()
    try:
        yield True
    finally:
        done.set()
        t.join()


threads = pytest.mark.parametrize(
    "another_thread", [False, True], ids=["alone", "with-a-thread"], indirect=True
)


def later(seconds, f, *args):
    """Runs f(*args) in a thread after `seconds`; join the thread returned."""
    t = threading.Timer(seconds, f, args)
    t.start()
    return t


# ---- the frontend's receives ---------------------------------------------


class Worker(MessageProcess):
    stop_timeout = 2.0
    kill_timeout = 0.5

    def c__echo(self, after=0.0, **kwargs):
        time.sleep(after)
        self.send_out__(MessageObject("echo", **kwargs))

    def c__give(self, value=None, after=0.0):
        time.sleep(after)
        self.return_out__(value)

    def c__nap(self, seconds=LATER):
        time.sleep(seconds)

    def c__take(self, timeout=None, how="recv"):
        # The backend's own waits: back_pipe.recv / poll with `timeout`.
        started = time.monotonic()
        got, error = None, ""
        try:
            if how == "recv":
                obj = self.back_pipe.recv(timeout)
                got = obj() if isinstance(obj, MessageObject) else repr(obj)
            else:
                got = self.back_pipe.poll(timeout)
        except Exception as e:
            error = "%s: %s" % (type(e).__name__, e)
        took = time.monotonic() - started
        self.send_out__(MessageObject("took", got=got, error=error, took=took))


@pytest.fixture(scope="module")
def worker():
    p = Worker("timeouts")
    p.start()
    yield p
    p.stop()
    assert p.exitcode == 0


def leftovers(p):
    """Reads whatever is left (nothing, if no message was lost or
    duplicated), so that the next test starts clean."""
    left = []
    pipe = p.getPipe()
    while pipe.poll(0.02):
        left.append(pipe.recv(0))
    while True:
        try:
            left.append(p.returnFromBack(0))
        except TimeoutError:
            return left


def readable(p):
    """Waits (bounded) until the frontend's socket holds something, without
    reading it."""
    assert safe_select([p.getPipe().fileno()], [], [], BOUND)[0]


@pytest.fixture
def clean(worker):
    """The shared worker; each test takes exactly what it caused."""
    leftovers(worker)
    yield worker
    assert leftovers(worker) == []


wheres = pytest.mark.parametrize("where", ["socket", "polled"])


def echo_ready(p, where, x):
    """Has the backend echo `x`, and returns once the echo waits in the
    socket, or (``polled``) was read by ``poll()`` and kept for ``recv()``."""
    p.sendMessageToBack(MessageObject("echo", x=x))
    if where == "socket":
        readable(p)
    else:
        assert p.getPipe().poll(BOUND)


@timeouts_or_none
@threads
@wheres
def test_recv_returns_what_is_ready(clean, t, another_thread, where):
    pipe = clean.getPipe()
    echo_ready(clean, where, x=1)
    result, took = timed(pipe.recv, t)
    check_ready(t, result, took, MessageObject("echo", x=1))
    if kind(t) == "nan":  # still there
        assert pipe.recv(BOUND)["x"] == 1


@timeouts_or_none
@threads
def test_recv_waits_only_when_asked(clean, t, another_thread):
    clean.sendMessageToBack(MessageObject("echo", after=LATER, x=2))
    result, took = timed(clean.getPipe().recv, t)
    check_later(t, result, took, MessageObject("echo", x=2), TimeoutError)
    if kind(t) in ("nan", "nonpositive"):
        assert clean.getPipe().recv(BOUND)["x"] == 2


@timeouts_or_none
@threads
@wheres
def test_poll_sees_what_is_ready(clean, t, another_thread, where):
    pipe = clean.getPipe()
    echo_ready(clean, where, x=3)
    result, took = timed(pipe.poll, t)
    check_ready(t, result, took, True)
    assert pipe.recv(0)["x"] == 3


@timeouts_or_none
@threads
def test_poll_waits_only_when_asked(clean, t, another_thread):
    clean.sendMessageToBack(MessageObject("echo", after=LATER, x=4))
    result, took = timed(clean.getPipe().poll, t)
    check_later(t, result, took, True, False)
    assert clean.getPipe().recv(BOUND)["x"] == 4


@timeouts_or_none
@threads
def test_return_from_back_returns_what_is_ready(clean, t, another_thread):
    clean.sendMessageToBack(MessageObject("give", value=5))
    readable(clean)
    result, took = timed(clean.returnFromBack, t)
    check_ready(t, result, took, 5)
    if kind(t) == "nan":
        assert clean.returnFromBack(BOUND) == 5


@timeouts_or_none
@threads
def test_return_from_back_waits_only_when_asked(clean, t, another_thread):
    clean.sendMessageToBack(MessageObject("give", value=6, after=LATER))
    result, took = timed(clean.returnFromBack, t)
    check_later(t, result, took, 6, TimeoutError)
    if kind(t) in ("nan", "nonpositive"):
        assert clean.returnFromBack(BOUND) == 6


# ---- the backend's receives ----------------------------------------------


@timeouts_or_none
@pytest.mark.parametrize("how", ["recv", "poll"])
def test_the_backend_takes_what_is_ready(clean, t, how):
    # The three arrive during the nap: "echo" is ready when "take" runs.
    clean.sendMessageToBack(MessageObject("nap", seconds=LATER))
    clean.sendMessageToBack(MessageObject("take", timeout=t, how=how))
    clean.sendMessageToBack(MessageObject("echo", x=7))
    took = clean.getPipe().recv(BOUND)
    assert took() == "took"
    if kind(t) == "nan":
        assert took["error"].startswith("ValueError:"), took
        assert "NaN" in took["error"]
    else:
        assert took["error"] == "", took
        assert took["got"] == ("echo" if how == "recv" else True), took
    assert took["took"] < 1.0
    if how == "poll" or kind(t) == "nan":  # "echo" stayed for the loop
        assert clean.getPipe().recv(BOUND)["x"] == 7


@timeouts_or_none
@pytest.mark.parametrize("how", ["recv", "poll"])
def test_the_backend_waits_only_when_asked(clean, t, how):
    clean.sendMessageToBack(MessageObject("take", timeout=t, how=how))
    time.sleep(LATER)
    clean.sendMessageToBack(MessageObject("echo", x=8))
    took = clean.getPipe().recv(BOUND)
    assert took() == "took"
    k = kind(t)
    if k == "nan":
        assert took["error"].startswith("ValueError:"), took
    elif k == "nonpositive":
        if how == "recv":
            assert took["error"].startswith("TimeoutError:"), took
        else:
            assert took["error"] == "" and took["got"] is False, took
        assert took["took"] < AT_ONCE, took
    else:
        assert took["error"] == "", took
        assert took["got"] == ("echo" if how == "recv" else True), took
        assert LATER * 0.5 <= took["took"] < BOUND, took
    if how == "poll" or k != "huge" and k != "none":
        assert clean.getPipe().recv(BOUND)["x"] == 8


# ---- join / waitStop -----------------------------------------------------


def zombie(pid):
    """Whether `pid` has exited and waits to be reaped."""
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


@timeouts_or_none
@pytest.mark.parametrize("method", ["join", "waitStop"])
@pytest.mark.parametrize("with_thread", [False, True], ids=["alone", "with-a-thread"])
def test_join_reaps_a_backend_that_has_ended(t, method, with_thread):
    p = Worker("joined")
    p.start()
    p.requestStop()
    deadline = time.monotonic() + BOUND
    while not zombie(p.pid):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    done = threading.Event()
    thread = threading.Thread(target=done.wait)
    if with_thread:
        thread.start()
    try:
        result, took = timed(getattr(p, method), t)
    finally:
        done.set()
        if with_thread:
            thread.join()
    if kind(t) == "nan":
        assert type(result) is ValueError, result
        p.join(BOUND)
    else:
        assert result is None and took < 1.0, (result, took)
    assert p.exitcode == 0
    p.stop()


@timeouts_or_none
@pytest.mark.parametrize("method", ["join", "waitStop"])
def test_join_waits_only_when_asked(t, method):
    p = Worker("joining")
    p.start()
    try:
        p.sendMessageToBack(MessageObject("nap", seconds=LATER))
        p.requestStop()  # ends after the nap
        result, took = timed(getattr(p, method), t)
        k = kind(t)
        if k == "nan":
            assert type(result) is ValueError, result
        if k in ("nan", "nonpositive"):
            assert took < AT_ONCE, took
            assert p.exitcode is None and p.is_alive()
        else:
            assert result is None
            assert LATER * 0.75 <= took < BOUND, took
            assert p.exitcode == 0 and not p.is_alive()
    finally:
        p.stop()
    assert p.exitcode == 0


# ---- stop_timeout / kill_timeout -----------------------------------------


class Stubborn(MessageProcess):
    def c__hang(self, ignore_term=False):
        if ignore_term:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.send_out__(MessageObject("hanging"))
        while True:
            time.sleep(0.02)


@timeouts
def test_stop_timeout(t):
    cls = type("StopTimeout", (Worker,), {"stop_timeout": t, "kill_timeout": 0.5})
    if kind(t) == "nan":
        with pytest.raises(ValueError, match="NaN"):
            cls("stop-nan")
        return
    p = cls("stop")
    p.start()
    p.sendMessageToBack(MessageObject("echo"))
    assert p.getPipe().recv(BOUND)() == "echo"  # running its loop
    result, took = timed(p.stop)
    assert result is None and not p.is_alive()
    if kind(t) == "nonpositive":
        # SIGTERM at once, after the stop request (which may win).
        assert took < 1.0, took
        assert p.exitcode in (0, -signal.SIGTERM)
    else:
        # No limit: the stop request is waited for.
        assert took < BOUND, took
        assert p.exitcode == 0


@timeouts
def test_kill_timeout(t):
    cls = type("KillTimeout", (Stubborn,), {"stop_timeout": 0.1, "kill_timeout": t})
    if kind(t) == "nan":
        with pytest.raises(ValueError, match="NaN"):
            cls("kill-nan")
        return
    p = cls("kill")
    p.start()
    huge = kind(t) == "huge"
    # With no limit after SIGTERM, the stop returns when SIGTERM ends the
    # backend; with none at all, SIGKILL follows at once.
    p.sendMessageToBack(MessageObject("hang", ignore_term=not huge))
    assert p.getPipe().recv(BOUND)() == "hanging"
    result, took = timed(p.stop)
    assert result is None and not p.is_alive()
    assert took < 1.0, took
    assert p.exitcode == (-signal.SIGTERM if huge else -signal.SIGKILL)


# ---- events --------------------------------------------------------------


def make_event(which):
    """(event, set it, keep-alive) for each kind of event the package has."""
    if which == "default":
        ev = Event()
        return ev, ev.set, None
    if which == "pollable":
        ev = Event(pollable=True)
        return ev, ev.set, None
    group = EventGroup(2, pollable=which == "group-pollable")
    i, ev = group.reserve()
    return ev, lambda: group.set(i), group


EVENTS = ["default", "pollable", "group", "group-pollable"]


@timeouts_or_none
@pytest.mark.parametrize("which", EVENTS)
def test_event_wait_returns_at_once_when_set(t, which):
    ev, set_it, _keep = make_event(which)
    set_it()
    result, took = timed(ev.wait, t)
    check_ready(t, result, took, True)
    assert ev.is_set()


@timeouts_or_none
@pytest.mark.parametrize("which", EVENTS)
def test_event_wait_waits_only_when_asked(t, which):
    ev, set_it, _keep = make_event(which)
    setter = later(LATER, set_it)
    try:
        result, took = timed(ev.wait, t)
    finally:
        setter.join()
    check_later(t, result, took, True, False)


def released(group):
    """Whether the one event of `group` is free again."""
    try:
        _i, event = group.reserve()
    except NotEnoughEvents:
        return False
    group.release(event)
    return True


@timeouts_or_none
def test_sync_index_when_the_event_is_set_in_time(t):
    group = EventGroup(1)
    if kind(t) == "nan":
        with pytest.raises(ValueError, match="NaN"):
            SyncIndex(group, timeout=t)
        assert released(group)  # nothing was reserved
        return

    def block():
        with SyncIndex(group, timeout=t) as i:
            group.set(i)  # the answer is in before the wait

    result, took = timed(block)
    assert result is None and took < 1.0, (result, took)
    assert released(group)


@timeouts_or_none
def test_sync_index_waits_only_when_asked(t):
    group = EventGroup(1)
    if kind(t) == "nan":
        with pytest.raises(ValueError, match="NaN"):
            SyncIndex(group, timeout=t)
        return
    setters = []

    def block():
        with SyncIndex(group, timeout=t) as i:
            setters.append(later(LATER, group.set, i))

    result, took = timed(block)
    for setter in setters:
        setter.join()
    check_later(t, result, took, None, TimeoutError)
    assert released(group)  # released either way


# ---- safe_select ---------------------------------------------------------


@timeouts_or_none
def test_safe_select_returns_what_is_ready(t):
    r, w = os.pipe()
    try:
        os.write(w, b"x")
        result, took = timed(safe_select, [r], [w], [], t)
        check_ready(t, result, took, ([r], [w], []))
    finally:
        os.close(r)
        os.close(w)


@timeouts_or_none
def test_safe_select_waits_only_when_asked(t):
    r, w = os.pipe()
    try:
        writer = later(LATER, os.write, w, b"x")
        try:
            result, took = timed(safe_select, [r], [], [], t)
        finally:
            writer.join()
        check_later(t, result, took, ([r], [], []), ([], [], []))
    finally:
        os.close(r)
        os.close(w)


# ---- MainContext.thread_join_timeout -------------------------------------


class Context(MainContext):
    def __init__(self, linger, thread_join_timeout):
        self.linger = linger
        self.thread_join_timeout = thread_join_timeout
        self.closed = False
        super().__init__()

    def startProcesses(self):
        pass

    def startThreads(self):
        pass

    def close(self):
        self.closed = True

    def __call__(self):
        if self.aux_pipe_read.poll(BOUND):
            self.aux_pipe_read.recv()
        time.sleep(self.linger)


@timeouts_or_none
@pytest.mark.parametrize("linger", [0.0, LATER], ids=["returns-at-once", "returns-later"])
def test_stop_thread_waits_for_call_only_when_asked(t, linger):
    ctx = Context(linger, t)
    ctx.runAsThread()
    thread = ctx.thread
    try:
        result, took = timed(ctx.stopThread)
        k = kind(t)
        if k == "nan":
            # Refused before anything was done.
            assert type(result) is ValueError, result
            assert not ctx.closed and thread.is_alive()
            ctx.aux_pipe_write.send(None)
        else:
            assert result is None and ctx.closed
            if k == "nonpositive":
                assert took < AT_ONCE, took
            elif linger:
                assert not thread.is_alive()
                assert LATER * 0.75 <= took < BOUND, took
            else:
                assert not thread.is_alive() and took < 1.0, took
    finally:
        thread.join(BOUND)
    assert not thread.is_alive()


# ---- the backend's own waits: timeout, task_grace ------------------------


class OwnLoop(Worker):
    """readPipes__ overridden: the loop waits `timeout` s per call."""

    def readPipes__(self, timeout):
        if safe_select([self.back_pipe], [], [], timeout)[0]:
            self.handleBackPipe__(self.back_pipe)


class NotListening(Worker):
    """run's loop with readPipes__ inherited but called every `timeout` s
    (the loop is Python's when listening, else when a method is
    overridden; here, handleBackPipe__)."""

    def handleBackPipe__(self, p):
        super().handleBackPipe__(p)


@timeouts_or_none
@pytest.mark.parametrize("cls", [OwnLoop, NotListening])
def test_the_loop_timeout(t, cls):
    sub = type(cls.__name__, (cls,), {"timeout": t})
    p = sub("loop")
    if kind(t) == "nan":
        with pytest.raises(ValueError, match="timeout cannot be NaN"):
            p.start()
        assert p.pid is None
        return
    p.start()
    try:
        for x in range(3):
            p.sendMessageToBack(MessageObject("echo", x=x))
            assert p.getPipe().recv(BOUND)["x"] == x
    finally:
        p.stop()
    assert p.exitcode == 0


class Tasks(AsyncBackMessageProcess):
    stop_timeout = 3.0

    async def c__task(self, seconds=LATER):
        async def work():
            await asyncio.sleep(seconds)
            self.back_pipe.send(MessageObject("task-done"))

        asyncio.get_running_loop().create_task(work())
        await self.send_out__(MessageObject("task-started"))


@timeouts
def test_task_grace(t):
    p = type("Grace", (Tasks,), {"task_grace": t})("grace")
    if kind(t) == "nan":
        with pytest.raises(ValueError, match="task_grace cannot be NaN"):
            p.start()
        return
    p.start()
    p.sendMessageToBack(MessageObject("task"))
    assert p.getPipe().recv(BOUND)() == "task-started"
    started = time.monotonic()
    p.requestStop()
    got = []
    while True:  # what the backend sent before it ended
        try:
            got.append(p.getPipe().recv(BOUND))
        except EOFError:
            break
    took = time.monotonic() - started
    p.stop()
    assert p.exitcode == 0
    names = [m() for m in got if isinstance(m, MessageObject)]
    if kind(t) == "nonpositive":
        assert "task-done" not in names, names  # cancelled at once
        assert took < LATER, took
    else:
        assert "task-done" in names, names  # finished within its grace
        assert took < BOUND, took


# ---- spin_before_sleep: a wait that spins is still a wait ------------------


@timeouts
def test_spin_before_sleep(t):
    cls = type("Spinner", (Worker,), {"spin_before_sleep": t})
    if kind(t) == "nan":
        with pytest.raises(ValueError, match="NaN"):
            cls("spin-nan")
        return
    p = cls("spin")
    p.start()
    try:
        pipe = p.getPipe()
        p.sendMessageToBack(MessageObject("echo", after=LATER, x=1))
        result, took = timed(pipe.recv, BOUND)
        assert result["x"] == 1 and took < BOUND
        result, took = timed(pipe.recv, LATER)  # bounded, whatever the spin
        assert type(result) is TimeoutError and took < LATER + 0.1, (result, took)
        # Ctrl-C ends an unbounded receive however long the spin. (Should
        # it not, the helper ends the receive by killing the backend, and
        # the test fails instead of hanging.)
        parent, backend = os.getpid(), p.pid
        helper = os.fork()
        if helper == 0:
            time.sleep(LATER)
            os.kill(parent, signal.SIGINT)
            time.sleep(3)
            os.kill(backend, signal.SIGKILL)
            os._exit(0)
        started = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                pipe.recv()
        finally:
            os.kill(helper, signal.SIGKILL)
            os.waitpid(helper, 0)
        assert time.monotonic() - started < 1.0
    finally:
        p.stop()
    assert p.exitcode == 0
