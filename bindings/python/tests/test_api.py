"""The package's surface as the README lists it: every public name and
method, only the API's names exported, the documented defaults,
getPipe() a Duplex for both classes, which messages take the shared-memory
lane, what Duplex.send(None) does, pollable and plain events' getFd(), and
MainContext's demo loop."""

import time

import ctrl_c
import pytest

import forkbridge
from forkbridge import (
    AsyncBackMessageProcess,
    Duplex,
    EventGroup,
    MainContext,
    MessageObject,
    MessageProcess,
    ProgramProcess,
)

# README: "Every public name is there — ..." (valkka's), and forkbridge's
# own (errors, the pipe classes, program backends).
VALKKAS = {
    "MessageObject",
    "MessageProcess",
    "AsyncBackMessageProcess",
    "MainContext",
    "EventGroup",
    "SyncIndex",
    "NotEnoughEvents",
    "safe_select",
    "exclog",
    "exclogmsg",
}
OWN = {
    "BackendGone",
    "BackPipe",
    "Duplex",
    "Event",
    "ForkbridgeError",
    "ForkWithThreadsError",
    "ProgramProcess",
    "UnreadableMessage",
    # start methods (multiprocessing's names) and what crosses under them
    "SharedBuffer",
    "get_start_method",
    "set_start_method",
    "shared_array",
    "serve",
    # supervision: pools of workers taking calls, a supervisor, status
    "CallFuture",
    "FdReady",
    "Pool",
    "PoolFull",
    "ProcessExited",
    "ProcessGaveUp",
    "ProcessMessage",
    "ProcessRestarted",
    "ProcessState",
    "ProcessTookOver",
    "RemoteError",
    "RestartLimitError",
    "RestartPolicy",
    "Status",
    "Supervisor",
    "SupervisorEvent",
    "WorkerGone",
}


def test_every_public_name_is_there_and_only_those():
    assert set(forkbridge.__all__) == VALKKAS | OWN
    public = {name for name in dir(forkbridge) if not name.startswith("_")}
    assert public == VALKKAS | OWN
    namespace = {}
    exec("from forkbridge import *", namespace)
    assert set(namespace) - {"__builtins__"} == VALKKAS | OWN


MESSAGE_PROCESS_METHODS = [
    # valkka's MessageProcess
    "preRun__", "postRun__", "readPipes__", "handleBackPipe__", "routeMainPipe__",
    "send_out__", "return_out__", "returnFromBack", "sendMessageToBack", "getPipe",
    "start", "go", "requestStop", "waitStop", "stop", "ignoreSIGINT", "formatLogger",
    "setDebug", "c__ping", "sendPing", "run",
    # multiprocessing.Process
    "join", "is_alive", "terminate", "kill", "pid", "exitcode",
]  # fmt: skip


def test_every_documented_method_is_there():
    for name in MESSAGE_PROCESS_METHODS:
        assert hasattr(MessageProcess, name), name
        assert hasattr(AsyncBackMessageProcess, name), name
    for name in ("asyncPre__", "asyncPost__", "async_run__", "getReadFd", "getWriteFd"):
        assert hasattr(AsyncBackMessageProcess, name), name
    for name in ("fileno", "recv", "poll", "send", "getReadFd", "getWriteFd"):
        assert hasattr(Duplex, name), name
    for name in ("startProcesses", "startThreads", "close", "runAsThread", "stopThread",
                 "formatLogger", "setDebug"):  # fmt: skip
        assert hasattr(MainContext, name), name
    p = MessageProcess("named")
    assert p.name == "named" and p.logger.name == "MessageProcess.named"


@pytest.mark.parametrize("cls", [MessageProcess, AsyncBackMessageProcess, ProgramProcess])
def test_get_pipe_is_a_duplex_before_and_after_start(cls):
    p = cls("piped") if cls is not ProgramProcess else cls("piped", ["true"])
    pipe = p.getPipe()
    assert isinstance(pipe, Duplex) and p.getPipe() is pipe
    p.start()
    try:
        assert isinstance(p.getPipe(), Duplex) and p.getPipe() is pipe
    finally:
        p.stop()


def test_the_documented_defaults():
    # README: stop_timeout (5 s), kill_timeout (1 s), task_grace (1 s),
    # thread_join_timeout (10 s), 256 KiB for the lane.
    assert MessageProcess.stop_timeout == 5.0
    assert MessageProcess.kill_timeout == 1.0
    assert AsyncBackMessageProcess.task_grace == 1.0
    assert MainContext.thread_join_timeout == 10.0
    assert MessageProcess.large_message_threshold == 256 * 1024
    assert ProgramProcess.large_message_threshold is None
    assert MessageProcess.max_message_size == 256 * 1024 * 1024
    # valkka's readPipes__ timeout; errors reported; no lending, no
    # spinning, no fork with threads unless asked.
    assert MessageProcess.timeout == 1.0
    assert MessageProcess.report_errors is True
    assert MessageProcess.lend_received_buffers is False
    assert MessageProcess.spin_before_sleep == 0.0
    assert MessageProcess.allow_threads is False


class Echo(MessageProcess):
    def c__echo(self, **kwargs):
        self.send_out__(MessageObject("echoed", **kwargs))


@pytest.fixture
def echo():
    p = Echo("echo")
    p.start()
    yield p
    p.stop()
    assert p.exitcode == 0


def test_messages_of_at_least_the_threshold_take_the_lane_up_to_a_slot(echo):
    threshold = Echo.large_message_threshold
    # What counts is the bytes of the message's strings, bytes and pickles
    # (and keys): a parameter a little under the threshold stays in the
    # socket, one of the threshold takes shared memory.
    for size, lane in [(threshold - 64, 0), (threshold, 1), (4 << 20, 1), (40 << 20, 0)]:
        before = echo._native.large_messages_sent
        echo.sendMessageToBack(MessageObject("echo", d=b"x" * size))
        assert len(echo.getPipe().recv(timeout=30)["d"]) == size
        assert echo._native.large_messages_sent - before == lane, size


def test_with_no_threshold_nothing_takes_the_lane():
    p = type("Never", (Echo,), {"large_message_threshold": None})("never")
    p.start()
    try:
        p.sendMessageToBack(MessageObject("echo", d=b"x" * (4 << 20)))
        assert len(p.getPipe().recv(timeout=30)["d"]) == 4 << 20
        assert p._native.large_messages_sent == 0
    finally:
        p.stop()


class Objects(Echo):
    def routeMainPipe__(self, obj):
        self.send_out__(("routed", obj))
        super().routeMainPipe__(obj)


def test_duplex_send_none_is_an_object_a_python_backend_takes_as_the_stop_request():
    p = Objects("objects")
    p.start()
    try:
        p.getPipe().send(None)
        # Not the stop request frame: the backend's routeMainPipe__ gets
        # the None (valkka's loop stops on it).
        assert p.getPipe().recv(timeout=5) == ("routed", None)
        assert p.getPipe().recv(timeout=5) is None  # the goodbye
        p.join(5)
        assert p.exitcode == 0
    finally:
        p.stop()


def test_get_fd_is_an_eventfd_only_for_pollable_events():
    plain = EventGroup(1).fromIndex(0)
    assert plain.getFd() is None
    pollable = EventGroup(1, pollable=True).fromIndex(0)
    assert isinstance(pollable.getFd(), int) and pollable.getFd() >= 0


class Demo(MainContext):
    """MainContext with its demo __call__."""

    def __init__(self):
        self.closed = False
        super().__init__()

    def startProcesses(self):
        pass

    def startThreads(self):
        pass

    def close(self):
        self.closed = True


def test_main_context_demo_prints_alive_every_second_until_stop_thread(capsys):
    m = Demo()
    m.runAsThread()
    time.sleep(2.5)
    started = time.monotonic()
    m.stopThread()
    # stopThread's None ends the demo loop at once, not at its next second.
    assert time.monotonic() - started < 0.5
    assert not m.thread.is_alive() and m.closed
    assert 2 <= capsys.readouterr().out.split().count("alive") <= 3


def test_main_context_demo_ends_on_ctrl_c(capsys):
    m = Demo()
    with ctrl_c.from_a_thread(1.5):
        m()  # returns: the demo catches KeyboardInterrupt
    out = capsys.readouterr().out
    assert out.split().count("alive") == 1
    assert "you pressed CTRL-C: will exit asap" in out


def test_fault_kinds_come_from_the_core_with_their_wire_names() -> None:
    # The package reads the names from the native module; a program matches
    # err["kind"] against these strings, so they must not drift.
    from forkbridge import _native

    kinds = {k: getattr(_native, k) for k in dir(_native) if k.startswith("FAULT_")}
    assert kinds == {
        "FAULT_HANDLER_ERROR": "handler_error",
        "FAULT_PANIC": "panic",
        "FAULT_UNKNOWN_COMMAND": "unknown_command",
        "FAULT_DECODE": "decode",
        "FAULT_ENCODE": "encode",
        "FAULT_PRE_RUN": "pre_run",
        "FAULT_TASK_ERROR": "task_error",
        "FAULT_TASK_PANIC": "task_panic",
    }
