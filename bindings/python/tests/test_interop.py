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
