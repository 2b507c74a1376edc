"""Rust and Python ends on one intercom, both ways."""

import os
import subprocess
import sys

import pytest

from forkbridge import MessageObject, ProgramProcess

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.environ.get(
    "FORKBRIDGE_EXAMPLES", os.path.join(HERE, "..", "..", "..", "target", "release", "examples")
)


def binary(name):
    path = os.path.join(EXAMPLES, name)
    if not os.path.exists(path):
        pytest.fail("%s is not built: run bindings/python/run-tests (it builds it)" % path)
    return path


def test_python_frontend_rust_backend_example():
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "..", "examples", "rust_backend.py"), binary("square_backend")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Rust answered <MessageObject: squared: {'x': 12.0, 'y': 144.0}>" in proc.stdout


def test_rust_frontend_python_backend_example():
    env = dict(os.environ, FORKBRIDGE_PYTHON=sys.executable)
    proc = subprocess.run(
        [binary("python_backend")], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Python answered <Message: squared: {'x': 12, 'y': 144}>" in proc.stdout


def test_rust_backend_values_and_faults():
    p = ProgramProcess("square", [binary("square_backend")])
    p.start()
    try:
        pipe = p.getPipe()
        p.sendMessageToBack(MessageObject("describe", i=-3, big=2**64 - 1, none=None, flag=True))
        got = pipe.recv(timeout=10)
        assert got["i"] == "int -3" and got["big"] == "int 18446744073709551615"
        assert got["none"] == "null None" and got["flag"] == "bool True"
        p.sendMessageToBack(MessageObject("square", x="not a number"))
        err = pipe.recv(timeout=10)
        assert err() == "error" and err["command"] == "square"
    finally:
        p.stop()
    assert p.exitcode == 0


def test_program_that_cannot_start_exits_127():
    p = ProgramProcess("missing", ["/nonexistent/program"])
    p.start()
    p.join(timeout=10)
    assert p.exitcode == 127
    p.stop()


def test_a_killed_rust_backend_is_seen():
    import signal

    p = ProgramProcess("square", [binary("square_backend")])
    p.start()
    p.sendMessageToBack(MessageObject("square", x=2.0))
    assert p.getPipe().recv(timeout=10)["y"] == 4.0
    os.kill(p.pid, signal.SIGKILL)
    with pytest.raises(EOFError):
        p.getPipe().recv(timeout=10)
    p.stop()
    assert p.exitcode == -signal.SIGKILL


SERVED = """
import sys
from forkbridge import MessageObject, MessageProcess, serve

class Sizer(MessageProcess):
    max_message_size = int(sys.argv[1])

    def c__size(self, data=b""):
        self.send_out__(MessageObject("size", n=len(data)))

serve(Sizer("sizer"))
"""


class BigProgram(ProgramProcess):
    max_message_size = 256 << 20
    stop_timeout = 2.0


@pytest.mark.parametrize("limit", [256 << 20, 1 << 20])
def test_a_served_python_backend_takes_its_class_max_message_size(tmp_path, limit):
    script = tmp_path / "served.py"
    script.write_text(SERVED)
    p = BigProgram("served", [sys.executable, str(script), str(limit)])
    p.start()
    try:
        pipe = p.getPipe()
        data = b"x" * (70 << 20)  # over the core's 64 MiB default
        p.sendMessageToBack(MessageObject("size", data=data))
        if limit > len(data):
            assert pipe.recv(timeout=30)["n"] == len(data)
        else:
            # Over the served class's limit: reported, and the loop goes on.
            err = pipe.recv(timeout=30)
            assert err() == "error" and err["kind"] == "decode", err
            assert "exceeds the maximum of %d bytes" % limit in err["error"]
        p.sendMessageToBack(MessageObject("size", data=b"small"))
        assert pipe.recv(timeout=10)["n"] == 5
    finally:
        p.stop()
    assert p.exitcode == 0


SERVED_WORKER = """
import signal
import sys
import time

from forkbridge import MessageObject, MessageProcess, serve

class Served(MessageProcess):
    def c__echo(self, **kwargs):
        self.send_out__(MessageObject("echoed", **kwargs))

    def c__quit(self, code=0):
        sys.exit(code)

    def c__hang(self, term="default"):
        if term == "ignore":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.send_out__(MessageObject("hanging"))
        while True:
            time.sleep(0.05)

serve(Served("served"))
"""


class Program(ProgramProcess):
    stop_timeout = 0.5
    kill_timeout = 0.5


@pytest.fixture
def served(tmp_path):
    script = tmp_path / "served_worker.py"
    script.write_text(SERVED_WORKER)
    p = Program("served", [sys.executable, str(script)])
    p.start()
    yield p
    p.stop()


def test_serve_exits_with_the_backends_code(served):
    # ProgramProcess in front of a Python serve(): the usual round trip,
    # then serve() "exits with its code".
    served.sendMessageToBack(MessageObject("echo", x=[1, "two"]))
    got = served.getPipe().recv(timeout=10)
    assert got() == "echoed" and got["x"] == [1, "two"]
    served.sendMessageToBack(MessageObject("quit", code=4))
    served.join(10)
    assert served.exitcode == 4


@pytest.mark.parametrize("term, exitcode", [("default", -15), ("ignore", -9)])
def test_stop_is_bounded_for_a_program_that_does_not_stop(served, term, exitcode):
    import time

    served.sendMessageToBack(MessageObject("hang", term=term))
    assert served.getPipe().recv(timeout=10)() == "hanging"
    started = time.monotonic()
    served.stop()
    took = time.monotonic() - started
    assert served.exitcode == exitcode
    # stop_timeout, then kill_timeout if SIGTERM is ignored; never more
    # than both (and a margin for a loaded machine).
    bound = Program.stop_timeout + (Program.kill_timeout if term == "ignore" else 0)
    assert bound <= took < bound + 3, took


def test_a_rust_backend_reads_the_native_types():
    # README: "None, bool, int (64-bit), float, str, bytes, list, tuple or
    # dict ... so a Rust frontend or backend reads them".
    p = ProgramProcess("square", [binary("square_backend")])
    p.start()
    try:
        values = dict(
            s="txt", b=b"\x00\x01", l=[1, "a"], t=(1, 2.5), d={"k": 1},
            low=-(2**63), high=2**64 - 1, f=1.5, none=None, flag=False,
        )  # fmt: skip
        p.sendMessageToBack(MessageObject("describe", **values))
        assert p.getPipe().recv(timeout=10).kwargs == {
            "s": "string 'txt'",
            "b": "bytes b'\\x00\\x01'",
            "l": "list [1, 'a']",
            "t": "tuple (1, 2.5)",
            "d": "map {'k': 1}",
            "low": "int -9223372036854775808",
            "high": "int 18446744073709551615",
            "f": "float 1.5",
            "none": "null None",
            "flag": "bool False",
        }
    finally:
        p.stop()
    assert p.exitcode == 0


def test_a_rust_backend_sees_values_it_cannot_read_as_opaque_pickles():
    p = ProgramProcess("square", [binary("square_backend")])
    p.start()
    try:
        p.sendMessageToBack(MessageObject("describe", s={1, 2}, f=frozenset(), n=3))
        got = p.getPipe().recv(timeout=10)
        assert got["s"] == "pickled builtins.set", got
        assert got["f"] == "pickled builtins.frozenset", got
        assert got["n"] == "int 3"
        # Large messages take the socket: no shared mapping crosses exec.
        p.sendMessageToBack(MessageObject("describe", data="x" * (1 << 20)))
        got = p.getPipe().recv(timeout=10)
        assert got["data"] == "string %r" % ("x" * (1 << 20))  # whole
        assert p._native.large_messages_sent == 0
    finally:
        p.stop()
    assert p.exitcode == 0
