"""How start() forks, each in a fresh interpreter: CPython's own fork
protocol (README: "PyOS_BeforeFork / AfterFork_*, flushed stdio, the os.fork
audit event"), no fork at interpreter shutdown (start(): "RuntimeError ...
at interpreter shutdown"), always fork whatever multiprocessing's start
method (README), and the backend's stdin at /dev/null."""

import os
import subprocess
import sys
import textwrap

import pytest


def run(tmp_path, code, *args):
    """Runs `code` as a script in a fresh interpreter whose stdout and
    stderr are pipes, so both are block-buffered as in a program whose
    output is redirected (PYTHONUNBUFFERED would hide a missing flush)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


FORK_PROTOCOL = """
    import os, sys
    from forkbridge import MessageProcess

    log = sys.argv[1]

    def note(what, number=None):
        with open(log, "a") as f:
            f.write("%s %d\\n" % (what, os.getpid() if number is None else number))

    forks = []
    sys.addaudithook(lambda event, args: forks.append(event) if event == "os.fork" else None)
    os.register_at_fork(
        before=lambda: note("before"),
        after_in_parent=lambda: note("parent"),
        after_in_child=lambda: note("child"),
    )
    # Left in the buffers: a fork that does not flush them first prints
    # them twice (the backend flushes its copies when it ends).
    sys.stdout.write("out")
    sys.stderr.write("err")
    p = MessageProcess("forked")
    p.start()
    backend = p.pid
    p.stop()
    note("frontend")
    note("backend", backend)
    note("audit-events", len(forks))
    note("exitcode", p.exitcode)
"""


def test_start_follows_cpythons_fork_protocol(tmp_path):
    log = tmp_path / "log"
    proc = run(tmp_path, FORK_PROTOCOL, log)
    assert proc.returncode == 0, proc.stderr
    # stdio flushed before the fork: each buffered byte is written once.
    assert proc.stdout == "out"
    assert proc.stderr == "err"
    lines = [line.split() for line in log.read_text().splitlines()]
    notes = dict(lines)
    # os.register_at_fork hooks, once each: before and after_in_parent in
    # this process, after_in_child in the backend.
    assert len(notes) == len(lines) == 7, lines
    assert notes["before"] == notes["parent"] == notes["frontend"]
    assert notes["child"] == notes["backend"] != notes["frontend"]
    # The os.fork audit event, raised once, as os.fork() does.
    assert notes["audit-events"] == "1"
    assert notes["exitcode"] == "0"


AT_SHUTDOWN = """
    import sys
    from forkbridge import MessageProcess

    class Late:
        # Runs while the interpreter finalizes (this module's globals are
        # cleared then): the default arguments keep what it needs.
        def __init__(self, p):
            self.p = p

        def __del__(self, sys=sys, RuntimeError=RuntimeError):
            try:
                self.p.start()
            except RuntimeError as e:
                sys.stderr.write("refused: %s; finalizing %s; pid %s\\n"
                                 % (e, sys.is_finalizing(), self.p.pid))
            else:
                sys.stderr.write("forked %s\\n" % self.p.pid)

    late = Late(MessageProcess("late"))
"""


def test_start_at_interpreter_shutdown_raises_runtime_error(tmp_path):
    proc = run(tmp_path, AT_SHUTDOWN)
    assert proc.returncode == 0, proc.stderr
    assert (
        "refused: cannot fork at interpreter shutdown; finalizing True; pid None" in proc.stderr
    ), proc.stderr
    assert "forked" not in proc.stderr


SPAWN = """
    import multiprocessing
    import sys

    multiprocessing.set_start_method(sys.argv[1])

    from forkbridge import MessageObject, MessageProcess

    class Doubler(MessageProcess):
        def __init__(self, name):
            super().__init__(name)
            # A lambda does not pickle: a spawned backend could not get it.
            self.double = lambda x: 2 * x

        def c__double(self, x=0):
            self.send_out__(self.double(x))

    p = Doubler("doubler")
    p.start()
    p.sendMessageToBack(MessageObject("double", x=21))
    print(p.getPipe().recv(timeout=10))
    p.stop()
    print(p.exitcode, multiprocessing.get_start_method())
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_the_backend_is_forked_whatever_multiprocessings_start_method(tmp_path, method):
    proc = run(tmp_path, SPAWN, method)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["42", "0", method]


STDIN = """
    import sys
    from forkbridge import MessageObject, MessageProcess

    class Reader(MessageProcess):
        def c__read(self):
            self.send_out__((sys.stdin.read(), sys.stdin.isatty()))

    p = Reader("reader")
    p.start()
    p.sendMessageToBack(MessageObject("read"))
    print(repr(p.getPipe().recv(timeout=10)))
    p.stop()
"""


def test_the_backends_stdin_reads_end_of_file(tmp_path):
    # The frontend's stdin has data waiting: the backend must not take it
    # (as multiprocessing's children do not).
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(STDIN))
    proc = subprocess.run(
        [sys.executable, str(script)],
        input="the frontend's input\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "('', False)"
