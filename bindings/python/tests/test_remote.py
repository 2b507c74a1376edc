"""Remote backends over real Zenoh sessions on loopback, Python and Rust
ends mixed: a serving program and a frontend program per case, each a
process of its own (this file run as a script plays the Python ends;
``echo_host`` the Rust ones), so no Zenoh thread ever lives in the pytest
process, which forks for the other tests.

Every wait is bounded: the frontends' receives by their timeouts, the
programs by ``timeout`` / ``wait``, the whole test by conftest's alarm.
"""

import dataclasses
import gc
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip(
    "zenoh",
    reason="eclipse-zenoh is not installed (pip install forkbridge[remote]): remote tests skipped",
)

from forkbridge import BackendGone, EventGroup, MessageObject, MessageProcess  # noqa: E402

# `forkbridge.remote` is imported where it is used (`remote()`), not here:
# importing a submodule sets it on the package, and test_api checks that
# the package shows its public names only.


def remote():
    import forkbridge.remote

    return forkbridge.remote

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.environ.get(
    "FORKBRIDGE_ZENOH_EXAMPLES", os.path.join(HERE, "..", "..", "..", "target", "debug", "examples")
)
LEASE = 1.0
WAIT = 20.0
TRUSTED_ZID = "a1b2c3d4"


class Echo(MessageProcess):
    """The Python backend: the same commands as echo_host's."""

    def c__echo(self, **kwargs):
        self.send_out__(MessageObject("echoed", **kwargs))

    def c__boom(self):
        raise ValueError("boom")

    def c__exit(self, code=0):
        os._exit(code)

    def c__pid(self):
        self.send_out__(MessageObject("pid", pid=os.getpid()))

    def c__give(self, value=None):
        self.return_out__(value)

    def c__nap(self, seconds=0.0):
        time.sleep(seconds)


class Acker(Echo):
    """Echo, with a relayed event group: ``ack(index)`` sets an event of
    the frontend's group, ``delay`` seconds later."""

    def __init__(self, name):
        super().__init__(name)
        self.events = EventGroup(4, relayed=True)

    def c__ack(self, index, delay=0.0):
        time.sleep(delay)
        self.events.set(index)


# ---- the programs ------------------------------------------------------------


def tls_of(side):
    """The certificates of ``side`` when the test runs over TLS
    (``FB_TEST_TLS`` names the directory ``make_certificates`` filled)."""
    where = os.environ.get("FB_TEST_TLS")
    if not where:
        return None
    return remote().Tls(
        ca=os.path.join(where, "ca.pem"),
        certificate=os.path.join(where, side + ".pem"),
        private_key=os.path.join(where, side + ".key"),
    )


def serve_main(endpoint, namespace, names, trust, outlive):
    served = remote().serve(
        remote().Config(
            listen=endpoint,
            namespace=namespace,
            lease=LEASE,
            outlive_frontend=outlive == "yes",
            tls=tls_of("server"),
        ),
        [(Acker if name.startswith("ack") else Echo)(name) for name in names],
        trust_pickles_from=[trust] if trust else (),
    )
    print("SERVING", flush=True)
    ended = served.wait(60)
    print("ENDED " + json.dumps(ended), flush=True)


def agent_main(endpoint, namespace):
    agent = remote().Agent(
        "py-agent",
        remote().Config(listen=endpoint, namespace=namespace, lease=LEASE),
        {"Echo": Echo, "Acker": Acker},
    )
    print("AGENT", flush=True)
    sys.stdin.read()  # until the test closes it
    print("ENDED " + json.dumps(agent.stop()), flush=True)


def say(**fields):
    print("OUT " + json.dumps(fields), flush=True)


def error_of(e):
    return {"type": type(e).__name__, "text": str(e), "exitcode": None}


def front_main(scenario, endpoint, namespace, args):
    zid = TRUSTED_ZID if scenario == "trusted" else None
    config = remote().Config(
        connect=endpoint,
        namespace=namespace,
        lease=LEASE,
        zid=zid,
        tls=tls_of(os.environ.get("FB_TEST_TLS_SIDE", "client")),
    )
    try:
        link = remote().Link.open(config)
    except Exception as e:
        say(open_failed=type(e).__name__)
        return
    try:
        FRONTS[scenario](link, *args)
    finally:
        link.close()


def front_basic(link, name, end="python"):
    p = link.attach(name)
    assert p.is_alive() and p.pid is None
    pipe = p.getPipe()
    p.sendMessageToBack(MessageObject("echo", n=1, text="hi", t=(1, 2), d={"k": [None, 1.5]}))
    got = pipe.recv(timeout=WAIT)
    say(command=got(), kwargs={k: repr(v) for k, v in got.kwargs.items()})
    p.sendMessageToBack(MessageObject("boom"))
    err = pipe.recv(timeout=WAIT)
    say(command=err(), kind=err["kind"], error=err["error"])
    try:
        pipe.recv(timeout=0.2)
    except TimeoutError:
        say(timeout=True)
    # select on the pipe's fd, poll, returnFromBack, a large message, status
    big = bytes(range(256)) * 8192  # 2 MiB: the stream, not shared memory
    p.sendMessageToBack(MessageObject("echo", big=big))
    ready = select.select([pipe], [], [], WAIT)[0]
    say(readable=bool(ready), polled=pipe.poll(WAIT), big=pipe.recv(timeout=WAIT)["big"] == big)
    if end == "python":  # return_out__ is the Python backend's
        p.sendMessageToBack(MessageObject("echo", n=2))
        p.sendMessageToBack(MessageObject("give", value=[1, "two"]))
        say(returned=p.returnFromBack(timeout=WAIT), then=pipe.recv(timeout=WAIT)["n"])
    else:
        say(returned=None)
    status = p.status()
    say(state=status.state, pid=status.pid, sent=status.messages_sent)
    try:
        link.attach(name)
    except remote().BackendBusy as e:
        say(busy=str(e))
    p.stop()
    say(stopped=p.exitcode, alive=p.is_alive())


def front_events(link, name):
    events = EventGroup(2)
    p = link.attach(name, events=events)
    acked = 0
    for _ in range(10):
        i, event = events.reserve()
        p.sendMessageToBack(MessageObject("ack", index=i))
        acked += event.wait(WAIT)
        events.release(event)
    say(acked=acked)
    # A set that comes late still sets its slot (Python's indices carry no
    # generation): the next request holding that slot sees it at once.
    i, event = events.reserve()
    p.sendMessageToBack(MessageObject("ack", index=i, delay=0.3))
    say(in_time=event.wait(0.02))
    events.release(event)
    say(late=event.wait(WAIT))
    p.stop()
    say(stopped=p.exitcode)


def front_bulk(link, name):
    # 40 MiB each way, sent before any is read: more than a window in
    # flight, so the credit must flow both ways between the two ends.
    p = link.attach(name)
    pipe = p.getPipe()
    chunk = bytes(range(256)) * 4096  # 1 MiB
    for i in range(40):
        p.sendMessageToBack(MessageObject("echo", i=i, data=chunk))
    ok = all(pipe.recv(timeout=WAIT)["data"] == chunk for _ in range(40))
    say(bulk=ok)
    p.stop()


def front_stalled(link, name, other):
    # One backend stops reading; what is sent to it waits, and another
    # backend on the same link goes on answering.
    stuck = link.attach(name)
    second = link.attach(other)
    stuck.sendMessageToBack(MessageObject("nap", seconds=60))
    import threading

    def fill():
        try:
            while True:
                stuck.sendMessageToBack(MessageObject("echo", data=bytes(64 << 10)))
        except Exception:
            pass

    filler = threading.Thread(target=fill, daemon=True)
    filler.start()
    time.sleep(7)  # longer than Zenoh lets a blocked put wait by default
    say(waiting=filler.is_alive())
    answered = 0
    for n in range(10):
        second.sendMessageToBack(MessageObject("echo", n=n))
        answered += second.getPipe().recv(timeout=WAIT)["n"] == n
    say(answered=answered)
    second.stop()
    os._exit(0)  # the stuck handle's stop would wait for its bounds


def front_py_agent(link, agent):
    p = link.start_on(agent, "Echo", "w1", {})
    pipe = p.getPipe()
    p.sendMessageToBack(MessageObject("echo", n=1))
    say(echo=pipe.recv(timeout=WAIT)["n"])
    p.sendMessageToBack(MessageObject("pid"))
    os.kill(pipe.recv(timeout=WAIT)["pid"], signal.SIGKILL)
    try:
        pipe.recv(timeout=WAIT)
    except BackendGone:
        p.join()
        say(killed=p.exitcode)
    for kind, name, kwargs in (("Nope", "w2", {}), ("Echo", "w3", {"bogus": 1})):
        try:
            link.start_on(agent, kind, name, kwargs)
        except remote().StartRefused as e:
            say(refused=kind, why=str(e))
    q = link.start_on(agent, "Echo", "w4")
    try:
        link.start_on(agent, "Echo", "w4")
    except remote().StartRefused:
        say(twice="refused")
    q.stop()
    say(stopped=q.exitcode)


def front_exit(link, name, code):
    p = link.attach(name)
    p.sendMessageToBack(MessageObject("echo", n=1))
    p.sendMessageToBack(MessageObject("exit", code=int(code)))
    first = p.getPipe().recv(timeout=WAIT)
    say(first=first())
    try:
        p.getPipe().recv(timeout=WAIT)
    except BackendGone as e:
        p.join(WAIT)
        say(gone=type(e).__name__, text=str(e), exitcode=p.exitcode, host_lost=p.host_lost)


def front_wait_end(link, name):
    """Prints the backend's pid, then waits for its end (the test kills
    the backend, or its serving program)."""
    p = link.attach(name)
    p.sendMessageToBack(MessageObject("pid"))
    say(pid=p.getPipe().recv(timeout=WAIT)["pid"])
    t = time.monotonic()
    try:
        p.getPipe().recv(timeout=WAIT)
    except BackendGone as e:
        p.join(WAIT)
        say(
            gone=type(e).__name__,
            text=str(e),
            exitcode=p.exitcode,
            host_lost=p.host_lost,
            seconds=time.monotonic() - t,
        )


def front_pickles(link, name, trust):
    p = link.attach(name, trust_pickles=trust == "yes")
    p.sendMessageToBack(MessageObject("echo", s={1, 2}, n=7))
    try:
        got = p.getPipe().recv(timeout=WAIT)
        if got() == "error":
            say(command="error", error=got["error"])
        else:
            say(command=got(), s=sorted(got["s"]))
    except remote().PicklesRefused as e:
        say(refused=type(e).__name__, command=e.command, text=str(e))
    # The stream goes on after a refused value.
    p.sendMessageToBack(MessageObject("echo", n=8))
    say(next=p.getPipe().recv(timeout=WAIT)["n"])
    p.stop()


def front_trusted(link, name):
    # This frontend's Zenoh id is TRUSTED_ZID; the serving side names it.
    say(zid=link.zid)
    front_pickles(link, name, "yes")


def front_not_found(link, name):
    link._config = dataclasses.replace(link.config, attach_timeout=0.5)
    try:
        link.attach(name)
    except remote().BackendNotFound as e:
        say(not_found=str(e))


def front_agent(link, agent):
    try:
        link.start_on(agent, "NoSuchKind", "x1")
    except remote().StartRefused as e:
        say(refused=str(e))
    p = link.start_on(agent, "Echo", "e1")
    p.sendMessageToBack(MessageObject("echo", n=3))
    say(echo=p.getPipe().recv(timeout=WAIT)["n"])
    p.stop()
    say(stopped=p.exitcode)


def front_dropped(link, name):
    """Drops its handle without a stop: the handle stops the backend."""
    p = link.attach(name)
    p.sendMessageToBack(MessageObject("echo", n=1))
    p.getPipe().recv(timeout=WAIT)
    del p
    gc.collect()
    say(dropped=True)


def front_reattach(link, name):
    """Attaches to a backend that outlived its first frontend."""
    p = link.attach(name)
    p.sendMessageToBack(MessageObject("echo", n=9))
    say(echo=p.getPipe().recv(timeout=WAIT)["n"])
    p.stop()
    say(stopped=p.exitcode)


FRONTS = {
    "dropped": front_dropped,
    "reattach": front_reattach,
    "basic": front_basic,
    "exit": front_exit,
    "events": front_events,
    "py_agent": front_py_agent,
    "bulk": front_bulk,
    "stalled": front_stalled,
    "wait_end": front_wait_end,
    "pickles": front_pickles,
    "trusted": front_trusted,
    "not_found": front_not_found,
    "agent": front_agent,
}


# ---- the test side -----------------------------------------------------------


def free_endpoint():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "tcp/127.0.0.1:%d" % s.getsockname()[1]


def namespace():
    return "pytest-%d-%d" % (os.getpid(), time.monotonic_ns() % 10**9)


def binary(name):
    path = os.path.join(EXAMPLES, name)
    if not os.path.exists(path):
        pytest.fail("%s is not built: run bindings/python/run-tests (it builds it)" % path)
    return path


def spawn(argv, env=None):
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=None if env is None else {**os.environ, **env},
    )


def readline(proc, bound=WAIT):
    """The program's next stdout line within ``bound`` seconds."""
    ready, _, _ = select.select([proc.stdout], [], [], bound)
    if not ready:
        raise AssertionError("no line from %s within %s s" % (proc.args, bound))
    return proc.stdout.readline().strip()


def python_host(ns, *names, trust=None, outlive=False, env=None):
    endpoint = free_endpoint()
    if env and "FB_TEST_TLS" in env:
        endpoint = "tls/" + endpoint[len("tcp/") :]
    argv = [sys.executable, __file__, "serve", endpoint, ns, ",".join(names), trust or ""]
    argv.append("yes" if outlive else "no")
    host = spawn(argv, env)
    assert readline(host) == "SERVING", host.stderr.read() if host.poll() is not None else ""
    return host, endpoint


def rust_host(ns, *names):
    endpoint = free_endpoint()
    host = spawn([binary("echo_host"), "serve", endpoint, ns, *names])
    assert readline(host) == "SERVING " + endpoint
    return host, endpoint


def frontend(scenario, endpoint, ns, *args, env=None):
    return spawn([sys.executable, __file__, "front", scenario, endpoint, ns, *args], env)


def outputs(proc, bound=60):
    """Every ``OUT`` record of a frontend that ends within ``bound`` s."""
    out, err = proc.communicate(timeout=bound)
    assert proc.returncode == 0, out + err
    return [json.loads(line[4:]) for line in out.splitlines() if line.startswith("OUT ")]


def next_out(proc):
    line = readline(proc)
    assert line.startswith("OUT "), line + (proc.stderr.read() if proc.poll() is not None else "")
    return json.loads(line[4:])


def finish(host, bound=30):
    """The serving program's end: its ``ENDED`` record (Python) or status."""
    try:
        out, err = host.communicate(timeout=bound)
    except subprocess.TimeoutExpired:
        host.kill()
        host.communicate()
        raise
    return out, err


def ended_of(out):
    for line in out.splitlines():
        if line.startswith("ENDED "):
            return [tuple(x) for x in json.loads(line[6:])]
    return None


def test_python_frontend_python_backend_messages_errors_stop():
    ns = namespace()
    host, endpoint = python_host(ns, "a")
    got = outputs(frontend("basic", endpoint, ns, "a"))
    echo, err, timeout, looked, returned, status, busy, stopped = got
    assert looked == {"readable": True, "polled": True, "big": True}
    assert returned == {"returned": [1, "two"], "then": 2}
    assert status == {"state": "running", "pid": None, "sent": 5}
    assert echo == {
        "command": "echoed",
        "kwargs": {"n": "1", "text": "'hi'", "t": "(1, 2)", "d": "{'k': [None, 1.5]}"},
    }
    assert err["command"] == "error" and err["kind"] == "handler_error"
    assert err["error"] == "ValueError: boom"
    assert timeout == {"timeout": True}
    assert "already has a frontend attached" in busy["busy"]
    assert stopped == {"stopped": 0, "alive": False}
    out, err = finish(host)
    assert ended_of(out) == [("a", 0)], out + err


def test_python_backend_exit_status_after_its_messages():
    ns = namespace()
    host, endpoint = python_host(ns, "a")
    first, gone = outputs(frontend("exit", endpoint, ns, "a", "3"))
    assert first == {"first": "echoed"}
    assert gone["gone"] == "BackendGone" and gone["exitcode"] == 3
    assert gone["host_lost"] is None and "exit status: 3" in gone["text"]
    out, err = finish(host)
    assert ended_of(out) == [("a", 3)], out + err


def test_backend_killed_gives_backend_gone_with_signal_9():
    ns = namespace()
    host, endpoint = python_host(ns, "a")
    front = frontend("wait_end", endpoint, ns, "a")
    pid = next_out(front)["pid"]
    os.kill(pid, signal.SIGKILL)
    (gone,) = outputs(front)
    assert gone["gone"] == "BackendGone" and gone["exitcode"] == -9, gone
    assert "signal: 9" in gone["text"] and gone["host_lost"] is None
    out, err = finish(host)
    assert ended_of(out) == [("a", -9)], out + err


def test_serving_program_killed_gives_host_lost():
    ns = namespace()
    host, endpoint = python_host(ns, "a")
    front = frontend("wait_end", endpoint, ns, "a")
    next_out(front)
    host.kill()
    finish(host)
    (gone,) = outputs(front)
    assert gone["gone"] == "HostLost" and gone["exitcode"] is None, gone
    assert "host lost" in gone["text"] and "within its lease" in gone["host_lost"]
    # Seen within a lease or so (the serving program's sockets closed).
    assert gone["seconds"] < LEASE + 2


def test_attach_to_nothing_is_not_found():
    ns = namespace()
    host, endpoint = python_host(ns, "a")
    (got,) = outputs(frontend("not_found", endpoint, ns, "nobody"))
    assert "no backend 'nobody'" in got["not_found"]
    host.send_signal(signal.SIGTERM)
    finish(host)


def test_python_frontend_rust_served_backend():
    ns = namespace()
    host, endpoint = rust_host(ns, "r1", "r2")
    got = outputs(frontend("basic", endpoint, ns, "r1", "rust"))
    echo, err, _timeout, looked, _returned, status, busy, stopped = got
    assert status == {"state": "running", "pid": None, "sent": 3}
    assert echo["command"] == "echoed" and echo["kwargs"]["t"] == "(1, 2)"
    assert looked == {"readable": True, "polled": True, "big": True}
    # A Rust backend reports an unknown command as the Python one does.
    assert err["command"] == "error" and err["kind"] == "unknown_command"
    assert "already has a frontend attached" in busy["busy"]
    assert stopped == {"stopped": 0, "alive": False}
    first, gone = outputs(frontend("exit", endpoint, ns, "r2", "5"))
    assert gone["gone"] == "BackendGone" and gone["exitcode"] == 5
    assert host.wait(WAIT) == 0


def test_rust_frontend_python_served_backend():
    ns = namespace()
    host, endpoint = python_host(ns, "ack")
    proc = subprocess.run(
        [binary("echo_host"), "frontend", endpoint, ns, "ack"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The Rust frontend's event indices carry generations; the Python
    # backend's relayed group sets them as they came.
    assert proc.stdout.splitlines() == [
        "echoed n=0",
        "echoed n=1",
        "echoed n=2",
        "acked 5",
        "stopped 0",
    ]
    out, err = finish(host)
    assert ended_of(out) == [("ack", 0)], out + err


@pytest.mark.parametrize("end", ["python", "rust"])
def test_event_sets_of_a_served_backend_reach_the_frontends_group(end):
    ns = namespace()
    host, endpoint = python_host(ns, "ack") if end == "python" else rust_host(ns, "ack")
    got = outputs(frontend("events", endpoint, ns, "ack"))
    assert got == [{"acked": 10}, {"in_time": False}, {"late": True}, {"stopped": 0}]
    if end == "python":
        out, err = finish(host)
        assert ended_of(out) == [("ack", 0)], out + err
    else:
        assert host.wait(WAIT) == 0


@pytest.mark.parametrize("end", ["python", "rust"])
def test_more_than_a_window_crosses_both_ways(end):
    ns = namespace()
    host, endpoint = python_host(ns, "bulk") if end == "python" else rust_host(ns, "bulk")
    assert outputs(frontend("bulk", endpoint, ns, "bulk")) == [{"bulk": True}]
    if end == "python":
        finish(host)
    else:
        assert host.wait(WAIT) == 0


def test_a_stalled_backend_holds_up_only_its_own_frontend():
    ns = namespace()
    host, endpoint = python_host(ns, "stuck", "other")
    got = outputs(frontend("stalled", endpoint, ns, "stuck", "other"))
    assert got == [{"waiting": True}, {"answered": 10}]
    host.kill()
    host.communicate()


def openssl(where, *args):
    subprocess.run(["openssl", *args], cwd=where, check=True, capture_output=True, timeout=60)


def make_certificates(where):
    """A CA with ``server`` and ``client`` certificates for 127.0.0.1, and a
    ``rogue`` one signed by another CA."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: it makes the TLS test's certificates")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    with open(os.path.join(where, "ext.cnf"), "w") as f:
        f.write(
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
            "basicConstraints=CA:FALSE\n"
        )
    for ca, sides in (("ca", ("server", "client")), ("other", ("rogue",))):
        openssl(where, "req", "-x509", *ec, "-keyout", ca + ".key", "-out", ca + ".pem",
                "-days", "2", "-subj", "/CN=forkbridge test " + ca)
        for side in sides:
            openssl(where, "req", *ec, "-keyout", side + ".key", "-out", side + ".csr",
                    "-subj", "/CN=127.0.0.1")
            openssl(where, "x509", "-req", "-in", side + ".csr", "-CA", ca + ".pem",
                    "-CAkey", ca + ".key", "-CAcreateserial", "-out", side + ".pem",
                    "-days", "2", "-extfile", "ext.cnf")


def test_tls_links_need_a_certificate_the_ca_signed(tmp_path):
    make_certificates(str(tmp_path))
    env = {"FB_TEST_TLS": str(tmp_path)}
    ns = namespace()
    host, endpoint = python_host(ns, "a", env=env)
    assert endpoint.startswith("tls/")
    # A certificate of another CA cannot open a link: the backend is not
    # found through it.
    rogue = {**env, "FB_TEST_TLS_SIDE": "rogue"}
    (refused,) = outputs(frontend("not_found", endpoint, ns, "a", env=rogue))
    assert "no backend 'a'" in refused.get("not_found", ""), refused
    got = outputs(frontend("basic", endpoint, ns, "a", env=env))
    assert got[0]["command"] == "echoed" and got[-1] == {"stopped": 0, "alive": False}
    out, err = finish(host)
    assert ended_of(out) == [("a", 0)], out + err


def test_a_python_agent_starts_registered_classes_and_reports_their_exit():
    ns = namespace()
    endpoint = free_endpoint()
    agent = spawn([sys.executable, __file__, "agent", endpoint, ns])
    assert readline(agent) == "AGENT", agent.stderr.read() if agent.poll() is not None else ""
    got = outputs(frontend("py_agent", endpoint, ns, "py-agent"))
    assert got[:2] == [{"echo": 1}, {"killed": -9}]
    nope, bogus, twice, stopped = got[2:]
    assert nope["refused"] == "Nope" and "no backend class registered as 'Nope'" in nope["why"]
    assert bogus["refused"] == "Echo" and "bogus" in bogus["why"]
    assert twice == {"twice": "refused"} and stopped == {"stopped": 0}
    out, err = agent.communicate(input="", timeout=30)  # closes its stdin
    assert ("w4", 0) in ended_of(out), out + err


def test_a_rust_frontend_starts_a_class_on_a_python_agent():
    ns = namespace()
    endpoint = free_endpoint()
    agent = spawn([sys.executable, __file__, "agent", endpoint, ns])
    assert readline(agent) == "AGENT", agent.stderr.read() if agent.poll() is not None else ""
    proc = subprocess.run(
        [binary("echo_host"), "start", endpoint, ns, "py-agent", "Echo", "r1", "{}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["echoed n=1", "stopped 0"]
    out, err = agent.communicate(input="", timeout=30)
    assert ("r1", 0) in ended_of(out), out + err


def test_a_relayed_group_is_for_the_serving_side():
    relayed = EventGroup(2, relayed=True)
    assert relayed.relayed and not EventGroup(2).relayed
    with pytest.raises(ValueError):
        relayed.reserve()
    with pytest.raises(ValueError):
        EventGroup(2, pollable=True, relayed=True)
    with pytest.raises(ValueError):
        EventGroup(2, event_class=lambda: None, relayed=True)
    with pytest.raises(ValueError):
        relayed.set(2)  # out of range
    with pytest.raises(TypeError):
        relayed.set("0")


def test_pickles_from_a_remote_peer_are_refused_by_default():
    ns = namespace()
    # The Rust backend echoes the pickle back as it came: the Python
    # frontend must not load it unless it trusts that backend.
    host, endpoint = rust_host(ns, "r1", "r2")
    refused, after = outputs(frontend("pickles", endpoint, ns, "r1", "no"))
    assert refused["refused"] == "PicklesRefused" and refused["command"] == "echoed"
    assert "trust_pickles=True" in refused["text"] and "builtins.set" in refused["text"]
    assert after == {"next": 8}
    trusted, after = outputs(frontend("pickles", endpoint, ns, "r2", "yes"))
    assert trusted == {"command": "echoed", "s": [1, 2]} and after == {"next": 8}
    assert host.wait(WAIT) == 0


def test_a_served_python_backend_refuses_pickles_unless_it_trusts_the_frontend():
    ns = namespace()
    host, endpoint = python_host(ns, "a")
    # Untrusted: the backend does not load the set, reports it, goes on.
    (report, after) = outputs(frontend("pickles", endpoint, ns, "a", "yes"))
    assert report["command"] == "error", report
    out, err = finish(host)
    host, endpoint = python_host(ns, "a", trust=TRUSTED_ZID)
    zid, trusted, after = outputs(frontend("trusted", endpoint, ns, "a"))
    assert zid == {"zid": TRUSTED_ZID}
    assert trusted == {"command": "echoed", "s": [1, 2]} and after == {"next": 8}
    out, err = finish(host)
    assert ended_of(out) == [("a", 0)], out + err


def test_start_on_a_rust_agent():
    ns = namespace()
    endpoint = free_endpoint()
    agent = spawn([binary("echo_host"), "agent", endpoint, ns, "agent-1"])
    try:
        assert readline(agent) == "AGENT " + endpoint
        refused, echo, stopped = outputs(frontend("agent", endpoint, ns, "agent-1"))
        assert "no backend type registered" in refused["refused"]
        assert echo == {"echo": 3} and stopped == {"stopped": 0}
    finally:
        finish(agent)  # closes its stdin: the agent stops
    assert agent.returncode == 0


def test_a_silent_host_is_lost_within_a_lease():
    ns = namespace()
    host, endpoint = python_host(ns, "a")
    front = frontend("wait_end", endpoint, ns, "a")
    next_out(front)
    # Stopped, the serving program sends nothing, keep-alives included.
    host.send_signal(signal.SIGSTOP)
    try:
        gone = next_out(front)
    finally:
        # Killed before the frontend closes its link: a session's close
        # waits (Zenoh's bound, seconds) on a peer that reads nothing.
        host.kill()
        finish(host)
    assert outputs(front) == []
    assert gone["gone"] == "HostLost" and gone["exitcode"] is None, gone
    assert LEASE * 0.5 < gone["seconds"] < LEASE * 4, gone


def test_a_frontend_killed_takes_its_backend_with_it():
    ns = namespace()
    host, endpoint = python_host(ns, "a")
    front = frontend("wait_end", endpoint, ns, "a")
    next_out(front)
    front.kill()
    front.communicate()
    # Stopped as a local backend whose frontend died: the stop request.
    out, err = finish(host)
    assert ended_of(out) == [("a", 0)], out + err


def test_a_dropped_handle_stops_its_backend():
    ns = namespace()
    host, endpoint = python_host(ns, "a")
    assert outputs(frontend("dropped", endpoint, ns, "a")) == [{"dropped": True}]
    out, err = finish(host)
    assert ended_of(out) == [("a", 0)], out + err


def test_outlive_frontend_keeps_the_backend_for_the_next_one():
    ns = namespace()
    host, endpoint = python_host(ns, "a", outlive=True)
    front = frontend("wait_end", endpoint, ns, "a")
    pid = next_out(front)["pid"]
    front.kill()
    front.communicate()
    time.sleep(LEASE * 2)
    os.kill(pid, 0)  # still there
    assert outputs(frontend("reattach", endpoint, ns, "a")) == [{"echo": 9}, {"stopped": 0}]
    out, err = finish(host)
    assert ended_of(out) == [("a", 0)], out + err


def test_import_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "zenoh", None)
    with pytest.raises(ImportError, match=r"pip install forkbridge\[remote\]"):
        remote().Link.open(remote().Config(connect="tcp/127.0.0.1:9"))


def test_config_refuses_what_cannot_be_a_key():
    for bad in ["", "a/b", "a*", "$x", "a b", "q?", "h#"]:
        with pytest.raises(ValueError):
            remote().Config(namespace=bad)
    with pytest.raises(ValueError):
        remote().Config(lease=0.01)
    assert remote().Config(listen="tcp/0.0.0.0:1").listen == ("tcp/0.0.0.0:1",)


if __name__ == "__main__":
    role, rest = sys.argv[1], sys.argv[2:]
    if role == "serve":
        endpoint, ns, names, trust, outlive = rest
        serve_main(endpoint, ns, names.split(","), trust, outlive)
    elif role == "agent":
        endpoint, ns = rest
        agent_main(endpoint, ns)
    else:
        scenario, endpoint, ns, *args = rest
        front_main(scenario, endpoint, ns, args)
