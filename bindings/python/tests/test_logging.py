"""What the backends log: errors are logged on self.logger and reported
unless report_errors is False ("Set report_errors = False on the class to
only log them"); exclog logs a task's exception (CRITICAL, with its
traceback) and lets CancelledError through; formatLogger / format_logger
add valkka's handler once and set the level."""

import asyncio
import logging
import subprocess
import sys
import textwrap

import pytest

from forkbridge import AsyncBackMessageProcess, MessageObject, MessageProcess, exclog, exclogmsg


class Forward(logging.Handler):
    """Sends each record to the frontend (so a test sees the backend's log)."""

    def __init__(self, pipe):
        super().__init__(logging.DEBUG)
        self.pipe = pipe

    def emit(self, record):
        self.pipe.send(
            MessageObject("log", level=record.levelname, text=record.getMessage())
        )


def _explode():
    raise RuntimeError("this object does not load")


class Unloadable:
    def __reduce__(self):
        return (_explode, ())


class Logged:
    stop_timeout = 2.0
    kill_timeout = 1.0

    def preRun__(self):
        self.logger.addHandler(Forward(self.back_pipe))
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False

    def c__boom(self):
        raise ValueError("boom")

    def c__echo(self, **kwargs):
        self.back_pipe.send(MessageObject("echoed", **kwargs))


class Sync(Logged, MessageProcess):
    pass


class Async(Logged, AsyncBackMessageProcess):
    pass


def next_message(pipe):
    got = pipe.recv(timeout=5)
    assert isinstance(got, MessageObject), got
    return got


@pytest.mark.parametrize("report", [True, False], ids=["reported", "only-logged"])
@pytest.mark.parametrize("base", [Sync, Async])
def test_backend_errors_are_logged_and_reported_unless_report_errors_is_false(base, report):
    cls = type(base.__name__, (base,), {"report_errors": report})
    p = cls("logged")
    p.start()
    try:
        faults = [
            (MessageObject("boom"), "ERROR", "boom", "handler_error"),
            (MessageObject("nonesuch"), "WARNING", "no such method c__nonesuch", "unknown_command"),
            (MessageObject("echo", x=Unloadable()), "ERROR", "does not load", "handler_error"),
        ]
        pipe = p.getPipe()
        for msg, level, text, kind in faults:
            p.sendMessageToBack(msg)
            p.sendMessageToBack(MessageObject("echo", after=msg()))
            log = next_message(pipe)
            assert log() == "log" and log["level"] == level and text in log["text"], log
            if report:
                err = next_message(pipe)
                assert err() == "error" and err["kind"] == kind and text in err["error"], err
            # Nothing else in between: the loop went on to the next command.
            got = next_message(pipe)
            assert got() == "echoed" and got["after"] == msg(), got
    finally:
        p.stop()
    assert p.exitcode == 0


class Tasks(Async):
    @exclog
    async def failing(self):
        raise RuntimeError("lost in a task")

    @exclog
    async def sleeping(self):
        await asyncio.sleep(30)

    @exclogmsg
    async def sleeping_slot(self, slot=None):
        await asyncio.sleep(30)

    async def c__fail_in_a_task(self):
        asyncio.get_running_loop().create_task(self.failing())

    async def c__fail_awaited(self):
        result = await self.failing()
        self.back_pipe.send(MessageObject("returned", result=result))

    async def c__cancel(self, slot=None):
        task = asyncio.get_running_loop().create_task(
            self.sleeping() if slot is None else self.sleeping_slot(slot=slot)
        )
        await asyncio.sleep(0.05)  # running, asleep in the wrapped coroutine
        task.cancel()
        try:
            await task
            outcome = "returned"
        except asyncio.CancelledError:
            outcome = "cancelled"
        self.back_pipe.send(MessageObject("outcome", outcome=outcome, cancelled=task.cancelled()))


@pytest.fixture
def tasks():
    p = Tasks("tasks")
    p.start()
    yield p
    p.stop()
    assert p.exitcode == 0


def test_exclog_logs_a_tasks_exception_critical_with_its_traceback(tasks):
    pipe = tasks.getPipe()
    for command in ("fail_in_a_task", "fail_awaited"):
        tasks.sendMessageToBack(MessageObject(command))
        first, second = next_message(pipe), next_message(pipe)
        assert (first["level"], second["level"]) == ("CRITICAL", "CRITICAL")
        assert "lost in a task" in first["text"]
        assert "Traceback" in second["text"]
        assert "RuntimeError: lost in a task" in second["text"]
    # The awaited call returned None instead of raising.
    got = next_message(pipe)
    assert got() == "returned" and got["result"] is None
    tasks.sendMessageToBack(MessageObject("echo", alive=True))
    assert next_message(pipe)["alive"] is True


@pytest.mark.parametrize("slot", [None, 3], ids=["exclog", "exclogmsg"])
def test_exclog_lets_cancelled_error_through(tasks, slot):
    tasks.sendMessageToBack(MessageObject("cancel", slot=slot))
    got = next_message(tasks.getPipe())
    # Not logged (no "log" before it), not swallowed: the task is cancelled.
    assert got() == "outcome", got
    assert got["outcome"] == "cancelled" and got["cancelled"] is True


FORMAT = """
    import logging, sys
    from forkbridge import MainContext, MessageObject, MessageProcess

    class MyProc(MessageProcess):
        def c__say(self, text=""):
            self.logger.info(text)
            self.logger.debug("not at INFO")
            self.send_out__("said")

    if sys.argv[1] == "root-has-a-handler":
        logging.basicConfig(format="ROOT %(message)s")
    MyProc.formatLogger(logging.INFO)
    MyProc.formatLogger(logging.INFO)  # a second call adds no second handler
    p = MyProc("p1")
    p.start()
    p.sendMessageToBack(MessageObject("say", text="hello from the backend"))
    assert p.getPipe().recv(timeout=10) == "said"
    p.stop()
    logger = logging.getLogger("MyProc")
    logger.setLevel(logging.WARNING)
    MyProc.formatLogger(None)  # None leaves the level alone
    MainContext.formatLogger(logging.DEBUG)
    logging.getLogger("MainContext").debug("from the main context")
    print(len(logger.handlers), logging.getLevelName(logger.level))
"""


def test_format_logger_adds_valkkas_handler_once_and_sets_the_level(tmp_path):
    script = tmp_path / "format.py"
    script.write_text(textwrap.dedent(FORMAT))
    proc = subprocess.run(
        [sys.executable, str(script), "alone"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "WARNING"]
    lines = proc.stderr.splitlines()
    assert lines.count("MyProc.p1 - INFO - hello from the backend") == 1, lines
    assert lines.count("MainContext - DEBUG - from the main context") == 1, lines
    assert not any("not at INFO" in line for line in lines)


def test_format_logger_adds_no_handler_when_an_ancestor_has_one(tmp_path):
    script = tmp_path / "format.py"
    script.write_text(textwrap.dedent(FORMAT))
    proc = subprocess.run(
        [sys.executable, str(script), "root-has-a-handler"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "WARNING"]
    lines = proc.stderr.splitlines()
    assert lines.count("ROOT hello from the backend") == 1, lines
    assert not any(" - INFO - " in line for line in lines)
