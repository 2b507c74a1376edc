"""Supervision and pools on real processes: chaos with SIGKILL, restart
limits, key affinity, shrinking under load, back-pressure, bounded stops,
status snapshots, calls' faults and bad input. Every wait is bounded (each
wait's own timeout, a pool's ``call_timeout`` for ``call``, and conftest's
alarm); conftest checks that no child is left behind."""

import collections
import dataclasses
import math
import os
import random
import signal
import time

import pytest
from procs import alive, children
from supervise_workers import AsyncWorker, LoadBomb, Quiet, ServedWorker, Worker, lines

import forkbridge
from forkbridge import (
    BackendGone,
    CallFuture,
    FdReady,
    MessageObject,
    Pool,
    PoolFull,
    ProcessExited,
    ProcessGaveUp,
    ProcessMessage,
    ProcessRestarted,
    ProcessState,
    ProcessTookOver,
    RemoteError,
    RestartLimitError,
    RestartPolicy,
    Status,
    Supervisor,
    WorkerGone,
)

WAIT = 10.0  # seconds: the bound of every wait that should end at once


def unlimited():
    """Restarts at once, without limit: for chaos."""
    return RestartPolicy.always(max_restarts=None, backoff=0.0, max_backoff=0.0)


def running_pids(pool):
    return [s.pid for s in pool.status() if s.state == ProcessState.RUNNING and s.pid]


def drive_until(pool, condition, bound=WAIT):
    until = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < until, "not within %s s" % bound
        pool.poll(0.01)


def not_fork_server(pids):
    out = set()
    for pid in pids:
        try:
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() == "forkbridge-srv":
                    continue
        except OSError:
            continue
        out.add(pid)
    return out


Chaos = collections.namedtuple("Chaos", "answered disconnected kills back_to_four")


def chaos(cls, idempotent, calls):
    """``calls`` calls through a pool of 4, a random worker SIGKILLed every
    50 ms by the thread that drives the pool (a second thread would make
    the parent threaded, and fork restarts refuse that)."""
    pool = Pool(
        cls, workers=4, restart=unlimited(), idempotent={"double"} if idempotent else (),
        call_timeout=WAIT,
    )  # fmt: skip
    rng = random.Random(os.getpid())
    outstanding = collections.deque()
    next_kill = time.monotonic() + 0.05
    counts = {"answered": 0, "disconnected": 0, "kills": 0}

    def settle(x, future):
        try:
            value = future.result(timeout=WAIT)
        except WorkerGone as e:
            assert e.exitcode == -signal.SIGKILL, "the exit code travels with the error"
            assert e.command == "double" and e.worker.startswith("pool-")
            counts["disconnected"] += 1
        else:
            assert value == 2 * x, "a reply for another call"
            counts["answered"] += 1

    try:
        for x in range(calls):
            if time.monotonic() >= next_kill:
                pids = running_pids(pool)
                try:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    counts["kills"] += 1
                except (IndexError, ProcessLookupError):
                    pass  # a served worker killed before is reaped by its server
                next_kill += 0.05
            outstanding.append((x, pool.submit_with("double", {"x": x}, timeout=WAIT)))
            if len(outstanding) >= 64:
                settle(*outstanding.popleft())
        while outstanding:
            settle(*outstanding.popleft())
        # One last kill, then the time until four serve again.
        drive_until(pool, lambda: pool.serving() == 4)
        victim = rng.choice(running_pids(pool))
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        pool.poll(0.001)
        while (victim in running_pids(pool) or pool.serving() < 4) and (
            time.monotonic() < killed + WAIT
        ):
            pool.poll(0.001)
        back = time.monotonic() - killed
        assert pool.serving() == 4
        expected = 4 if cls.start_method is None else 0
        assert len(not_fork_server(children())) == expected, "no zombie, no extra child"
        assert pool.call("double", x=21) == 42
    finally:
        pool.stop(WAIT)
    return Chaos(counts["answered"], counts["disconnected"], counts["kills"], back)


def test_chaos_every_call_is_answered_or_disconnected():
    calls = 10_000
    r = chaos(Worker, False, calls)
    print("\n  %d answered, %d disconnected, %d kills, back to 4 in %.1f ms"
          % (r.answered, r.disconnected, r.kills, r.back_to_four * 1e3))  # fmt: skip
    assert r.answered + r.disconnected == calls, "no call lost"
    assert r.kills >= 3, "the chaos killed (%d kills)" % r.kills
    assert r.back_to_four <= 0.1, "back to 4 workers in %.3f s" % r.back_to_four


def test_chaos_with_idempotent_calls_answers_every_call():
    calls = 10_000
    r = chaos(Worker, True, calls)
    print("\n  %d answered, %d disconnected, %d kills, back to 4 in %.1f ms"
          % (r.answered, r.disconnected, r.kills, r.back_to_four * 1e3))  # fmt: skip
    assert r.answered == calls, "%d disconnected" % r.disconnected
    assert r.kills >= 3, "the chaos killed (%d kills)" % r.kills
    assert r.back_to_four <= 0.1, "back to 4 workers in %.3f s" % r.back_to_four


def test_chaos_under_the_fork_server():
    r = chaos(ServedWorker, True, 3_000)
    assert r.answered == 3_000


# ---- restart limits -------------------------------------------------------


def test_a_failing_backend_is_given_up_after_its_limit(tmp_path):
    log = str(tmp_path / "starts")
    policy = RestartPolicy.on_failure(max_restarts=3, window=60, backoff=0.001, max_backoff=0.01)
    seen = []
    sup = Supervisor(on_event=seen.append)
    with sup:
        sup.add("failing", lambda name: Worker(name, starts_log=log, fail_pre_run=True), policy)
        until = time.monotonic() + WAIT
        while True:
            assert time.monotonic() < until, "never given up"
            event = sup.wait_event(WAIT)
            if isinstance(event, ProcessGaveUp):
                break
        error = event.error
        assert isinstance(error, RestartLimitError)
        assert (error.name, error.restarts) == ("failing", 3)
        assert error.exitcodes == (1, 1, 1, 1), "every exit, in the error"
        assert "given up after 3 restarts" in str(error) and "exit code 1" in str(error)
        assert len(lines(log)) == 4, "one start and 3 restarts, no more forks"
        assert sum(isinstance(e, ProcessRestarted) for e in seen) == 3
        exits = [e for e in seen if isinstance(e, ProcessExited)]
        assert [e.exitcode for e in exits] == [1, 1, 1, 1]
        assert [e.restart_in is not None for e in exits] == [True, True, True, False]
        assert sup.wait_event(0.2) is None, "nothing after the give-up"
        assert len(lines(log)) == 4
        (status,) = sup.status()
        assert status.state == ProcessState.GIVEN_UP == "given_up"
        assert (status.restarts, status.last_exit) == (3, 1)
        assert sup.process("failing") is None


def test_the_window_forgets_old_restarts():
    # Mirrors the core's unit test: one restart per window.
    from forkbridge._policy import Restarts

    r = Restarts("p", RestartPolicy.always(max_restarts=1, window=1.0))
    assert r.exited(None, 100.0) == 100.0
    assert isinstance(r.exited(None, 100.0), RestartLimitError)
    assert r.exited(None, 102.0) == 102.0
    assert Restarts("p", RestartPolicy.on_failure()).exited(0, 1.0) is None
    assert Restarts("p", RestartPolicy.never()).exited(1, 1.0) is None


def test_the_policy_mirrors_the_core():
    p = RestartPolicy()
    assert (p.when, p.max_restarts, p.window, p.backoff, p.max_backoff) == (
        "on_failure", 5, 60.0, 0.1, 10.0
    )
    p = RestartPolicy("on_failure", max_restarts=3, window=10, backoff=0.05, max_backoff=2)
    assert [p.delay(k) for k in (1, 2, 4, 30)] == [0.0, 0.05, 0.2, 2.0]
    assert RestartPolicy(backoff=math.inf, max_backoff=math.inf).delay(10_000) == math.inf
    assert RestartPolicy(backoff=5, max_backoff=1).max_backoff == 5, "max raised to the first"
    assert RestartPolicy.on_failure().wants(-9) and RestartPolicy.on_failure().wants(None)
    assert not RestartPolicy.on_failure().wants(0)
    assert RestartPolicy.always().wants(0) and not RestartPolicy.never().wants(1)


def test_a_pool_whose_workers_keep_failing_refuses_calls_with_the_limit(tmp_path):
    log = str(tmp_path / "starts")
    policy = RestartPolicy.always(max_restarts=2, backoff=0.001, max_backoff=0.001)
    pool = Pool(
        lambda n: Worker(n, starts_log=log, fail_pre_run=True),
        workers=1, restart=policy, call_timeout=WAIT,
    )  # fmt: skip
    try:
        until = time.monotonic() + WAIT
        while True:
            assert time.monotonic() < until, "never refused"
            try:
                pool.call("double", x=1)
            except WorkerGone:
                continue
            except RestartLimitError as e:
                assert e.restarts == 2 and len(e.exitcodes) == 3
                break
        assert len(lines(log)) == 3
        assert pool.size() == 0 and pool.serving() == 0
        with pytest.raises(RestartLimitError):
            pool.submit("double", x=1)
    finally:
        pool.stop(WAIT)


# ---- keys, shrinking, back-pressure ----------------------------------------


def test_a_key_sticks_to_its_worker_while_it_lives_and_moves_when_it_dies():
    with Pool(Worker, workers=4, restart=unlimited()) as pool:
        owner = pool.submit_with("pid", key="user-7").result(WAIT)
        for _ in range(20):
            assert pool.submit_with("pid", key="user-7").result(WAIT) == owner
        spread = {pool.submit_with("pid", key=k).result(WAIT) for k in range(8)}
        assert len(spread) > 1, "new keys go to other workers"
        os.kill(owner, signal.SIGKILL)
        drive_until(pool, lambda: owner not in running_pids(pool) and pool.serving() == 4)
        moved = pool.submit_with("pid", key="user-7").result(WAIT)
        assert moved != owner and moved in running_pids(pool)
        for _ in range(20):
            assert pool.submit_with("pid", key="user-7").result(WAIT) == moved


def test_shrinking_while_calls_are_in_flight_loses_none():
    exits = []
    pool = Pool(Worker, workers=4, on_event=exits.append, call_timeout=WAIT)
    try:
        futures = [pool.submit("sleep", seconds=0.02) for _ in range(40)]
        pool.resize(2)
        assert pool.size() == 2
        assert [f.result(WAIT) for f in futures] == [0.02] * 40, "every call answered"
        drive_until(pool, lambda: len(pool.status()) == 2)
        assert len(not_fork_server(children())) == 2
        gone = [e for e in exits if isinstance(e, ProcessExited)]
        assert sorted(e.name for e in gone) == ["pool-2", "pool-3"], "the newest leave"
        assert all(e.exitcode == 0 and e.restart_in is None for e in gone), gone
        assert pool.call("double", x=4) == 8
        pool.resize(3)
        assert (pool.size(), pool.serving()) == (3, 3)
        assert [s.name for s in pool.status()] == ["pool-0", "pool-1", "pool-4"]
    finally:
        pool.stop(WAIT)


def test_a_spare_takes_a_dead_workers_place_at_once():
    events = []
    pool = Pool(
        Worker, workers=2, spares=1, restart=unlimited(), idempotent={"sleep"},
        on_event=events.append, call_timeout=WAIT,
    )  # fmt: skip

    def states():
        return sorted(s.state for s in pool.status())

    def standby():
        [spare] = [s for s in pool.status() if s.state == ProcessState.STANDBY]
        return spare

    try:
        assert states() == ["running", "running", "standby"]
        assert ProcessState.STANDBY == "standby"
        assert (pool.serving(), pool.size()) == (2, 2)
        spare = standby()
        assert spare.name == "pool-2"
        # The spare takes no calls while both workers live.
        pids = {pool.call("pid") for _ in range(20)}
        assert len(pids) == 2 and spare.pid not in pids
        # A worker dies with a call in hand: the spare answers it, and the
        # dead worker's restart waits until the waits are over.
        victim = pool.status()[0]
        assert victim.name == "pool-0"
        futures = [pool.submit("sleep", seconds=0.3) for _ in range(2)]
        [held] = [f for f in futures if f.worker == "pool-0"]
        os.kill(victim.pid, signal.SIGKILL)
        assert [f.result(WAIT) for f in futures] == [0.3, 0.3]
        assert held.worker == "pool-2", "resent to the spare"
        took = [e for e in events if isinstance(e, ProcessTookOver)]
        assert took == [ProcessTookOver("pool-2", replaces="pool-0")]
        assert [s.state for s in pool.status()] == ["restarting", "running", "running"]
        pids = {pool.call("pid") for _ in range(20)}
        assert spare.pid in pids, "the spare serves"
        assert victim.pid not in pids
        # The dead worker's replacement is the new spare.
        drive_until(pool, lambda: states() == ["running", "running", "standby"])
        respared = standby()
        assert respared.name == "pool-0" and respared.pid != victim.pid
        assert respared.pid not in {pool.call("pid") for _ in range(20)}
        assert any(isinstance(e, ProcessRestarted) and e.name == "pool-0" for e in events)
        # Spares stay out of resize.
        pool.resize(3)
        assert (pool.size(), pool.serving()) == (3, 3)
        assert states() == ["running", "running", "running", "standby"]
        pool.resize(1)
        drive_until(pool, lambda: len(pool.status()) == 2)
        assert [(s.name, s.state) for s in pool.status()] == [
            ("pool-0", "standby"),
            ("pool-1", "running"),
        ]
        assert (pool.size(), pool.serving()) == (1, 1)
        assert {pool.call("pid") for _ in range(5)} == {pool.status()[1].pid}
    finally:
        pool.stop(WAIT)


def test_back_pressure_forms_at_the_in_flight_bound():
    with Pool(Worker, workers=2, max_in_flight=2) as pool:
        t0 = time.monotonic()
        slow = [pool.submit("sleep", seconds=0.5) for _ in range(4)]
        assert [s.calls_in_flight for s in pool.status()] == [2, 2]
        with pytest.raises(PoolFull):
            pool.submit_with("double", {"x": 1}, block=False)
        t = time.monotonic()
        with pytest.raises(PoolFull):
            pool.submit_with("double", {"x": 1}, timeout=0.1)
        assert 0.1 <= time.monotonic() - t < 0.4
        f = pool.submit("double", x=1)  # waits for room
        assert time.monotonic() - t0 >= 0.45
        assert f.result(WAIT) == 2
        assert [s.result(WAIT) for s in slow] == [0.5] * 4


def test_dispatch_least_outstanding_avoids_the_busy_worker():
    with Pool(Worker, workers=2, dispatch="least_outstanding") as pool:
        busy = pool.submit("sleep", seconds=0.3)
        quick = []
        for _ in range(3):
            quick.append(pool.submit("pid"))
            quick[-1].result(WAIT)
        assert {f.worker for f in quick} == {"pool-0", "pool-1"} - {busy.worker}
        assert not busy.done() and busy.result(WAIT) == 0.3


# ---- the supervisor ----------------------------------------------------------


def test_the_supervisor_restarts_reports_and_passes_messages():
    r, w = os.pipe()
    try:
        with Supervisor() as sup:
            p = sup.add("worker", Worker)
            pid = p.pid
            p.sendMessageToBack(MessageObject("say", text="hi"))
            event = sup.wait_event(WAIT)
            assert isinstance(event, ProcessMessage) and event.name == "worker"
            assert event.message() == "said" and event.message["text"] == "hi"
            os.kill(pid, signal.SIGKILL)
            exited = sup.wait_event(WAIT)
            assert exited == ProcessExited("worker", pid, -signal.SIGKILL, 0.0)
            restarted = sup.wait_event(WAIT)
            assert isinstance(restarted, ProcessRestarted) and restarted.restarts == 1
            assert restarted.pid == sup.process("worker").pid != pid
            assert not alive(pid)
            os.write(w, b"x")
            assert sup.wait_event(WAIT, fds=[r]) == FdReady("", 0)
            assert sup.wait_event(0, fds=[r]) == FdReady("", 0), "still readable"
            os.read(r, 1)
            assert sup.wait_event(0, fds=[r]) is None
            (status,) = sup.status()
            assert (status.restarts, status.last_exit, status.state) == (1, -9, "running")
    finally:
        os.close(r)
        os.close(w)


def test_the_supervisor_stops_in_reverse_order_within_its_bound(tmp_path):
    stops = str(tmp_path / "stops")
    sup = Supervisor(stop_timeout=1.0)
    for name in ("a", "b", "c"):
        sup.add(name, lambda n: Worker(n, stops_log=stops))
    sup.stop()
    assert lines(stops) == ["c", "b", "a"]
    assert [s.last_exit for s in sup.status()] == [0, 0, 0]

    class Stubborn(Worker):
        stop_timeout = 30.0
        kill_timeout = 30.0

    sup = Supervisor(stop_timeout=1.0)
    sup.add("first", Worker)
    sup.add("stubborn", Stubborn)
    sup.add("last", Worker)
    sup.process("stubborn").sendMessageToBack(MessageObject("block"))
    event = sup.wait_event(WAIT)
    assert isinstance(event, ProcessMessage) and event.message() == "blocking"
    t = time.monotonic()
    sup.stop()
    took = time.monotonic() - t
    assert took < 1.5, "stopped within the bound (%.2f s)" % took
    last = {s.name: s for s in sup.status()}
    assert last["stubborn"].last_exit == -signal.SIGKILL
    assert last["last"].last_exit == 0
    assert all(s.state == ProcessState.EXITED for s in last.values())
    assert sup.wait_event(0.05) is None, "none restarted after the stop"
    with pytest.raises(RuntimeError, match="nothing to wait for"):
        sup.wait_event()


# ---- status -------------------------------------------------------------------


def test_status_fields():
    p = Worker("solo")
    s = p.status()
    assert isinstance(s, Status)
    assert (s.name, s.pid, s.state, s.start_method) == ("solo", None, ProcessState.IDLE, "fork")
    assert (s.messages_sent, s.messages_received, s.rss_bytes, s.cpu_time) == (0, 0, None, None)
    p.start()
    p.sendPing([1])
    assert p.getPipe().recv(timeout=WAIT)() == "pong"
    s = p.status()
    assert s.state == "running" and s.pid == p.pid and s.last_exit is None
    assert (s.messages_sent, s.messages_received) == (1, 1)
    assert s.bytes_sent > 0 and s.bytes_received > 0
    assert s.rss_bytes > 0 and s.cpu_time >= 0
    p.stop()
    s = p.status()
    assert (s.state, s.last_exit, s.rss_bytes) == (ProcessState.EXITED, 0, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.pid = 1

    with Pool(Worker, workers=1, restart=unlimited(), call_timeout=WAIT) as pool:
        for x in range(3):
            assert pool.call("double", x=x) == 2 * x
        f = pool.submit("sleep", seconds=0.2)
        (s,) = pool.status()
        assert (s.name, s.state, s.restarts, s.calls_in_flight) == ("pool-0", "running", 0, 1)
        assert s.messages_sent == 4 and s.messages_received >= 3
        assert f.result(WAIT) == 0.2
        os.kill(s.pid, signal.SIGKILL)
        drive_until(pool, lambda: pool.status()[0].restarts == 1 and pool.serving() == 1)
        (s,) = pool.status()
        assert (s.restarts, s.last_exit, s.calls_in_flight) == (1, -9, 0)


# ---- calls --------------------------------------------------------------------


def test_a_calls_faults_come_back_typed():
    with Pool(Worker, workers=2, call_timeout=WAIT) as pool:
        with pytest.raises(RemoteError) as e:
            pool.call("fail", text="no good")
        assert (e.value.type_name, e.value.text) == ("ValueError", "no good")
        assert e.value.command == "fail"
        assert "c__fail" in e.value.remote_traceback and e.value.worker.startswith("pool-")
        with pytest.raises(RemoteError, match="no such method c__nothing"):
            pool.call("nothing")
        with pytest.raises(RemoteError) as e:
            pool.call("double", y=1)
        assert e.value.type_name == "TypeError"
        with pytest.raises(RemoteError, match="cannot send the result back"):
            pool.call("unsendable")
        with pytest.raises(RemoteError, match="this argument does not load") as e:
            pool.call("double", x=LoadBomb())
        assert e.value.type_name == "handler_error" and e.value.command == "double"
        # Nothing is out of step after these: every call gets its own answer.
        assert [pool.call("double", x=x) for x in range(4)] == [0, 2, 4, 6]
        assert isinstance(pool.submit("fail", text="x").exception(WAIT), RemoteError)


def test_a_call_whose_argument_does_not_load_is_answered_without_error_reports():
    with Pool(Quiet, workers=1) as pool:
        future = pool.submit("double", x=LoadBomb())
        after = pool.submit("double", x=2)
        with pytest.raises(RemoteError):
            future.result(WAIT)
        assert after.result(WAIT) == 4


def test_calls_to_an_asyncio_backend():
    with Pool(AsyncWorker, workers=2, call_timeout=WAIT) as pool:
        assert pool.call("double", x=5) == 10
        assert pool.call("plain", x=5) == 6
        assert [f.result(WAIT) for f in [pool.submit("double", x=x) for x in range(20)]] == [
            2 * x for x in range(20)
        ]


def test_futures_waits_casts_and_messages():
    with Pool(Worker, workers=2) as pool:
        futures = [pool.submit("sleep", seconds=0.05 * (i % 3)) for i in range(9)]
        assert all(isinstance(f, CallFuture) and not f.cancel() for f in futures)
        done, not_done = pool.wait(futures, timeout=WAIT)
        assert (len(done), not_done) == (9, set())
        futures = [pool.submit("sleep", seconds=s) for s in (0.3, 0.0)]
        done, not_done = pool.wait(futures, timeout=WAIT, return_when="FIRST_COMPLETED")
        assert done == {futures[1]} and not_done == {futures[0]}
        order = [f.result() for f in pool.as_completed(futures, timeout=WAIT)]
        assert sorted(order) == [0.0, 0.3]
        slow = pool.submit("sleep", seconds=0.5)
        with pytest.raises(TimeoutError):
            list(pool.as_completed([slow], timeout=0.05))
        with pytest.raises(TimeoutError):
            slow.result(timeout=0.05)
        assert slow.result(WAIT) == 0.5, "a timed-out wait leaves the call in flight"
        got = []
        f = pool.submit("double", x=3)
        f.add_done_callback(lambda f: got.append(f.result()))
        assert f.result(WAIT) == 6 and got == [6]
        pool.cast("say", text="cast")
        assert pool.recv(WAIT)[1]["text"] == "cast"
        with pytest.raises(TimeoutError):
            pool.recv(0.05)


def test_stop_ends_calls_in_flight_and_the_pool():
    pool = Pool(Worker, workers=2)
    futures = [pool.submit("sleep", seconds=5) for _ in range(2)]
    t = time.monotonic()
    pool.stop(0.5)
    assert time.monotonic() - t < 1.5
    for f in futures:
        with pytest.raises(WorkerGone) as e:
            f.result(0)
        assert isinstance(e.value, BackendGone) and isinstance(e.value, EOFError)
    with pytest.raises(RuntimeError, match="stopped"):
        pool.submit("double", x=1)
    pool.stop()  # a second stop does nothing


def test_pool_calls_under_the_fork_server():
    with Pool(ServedWorker, workers=2, call_timeout=WAIT) as pool:
        assert pool.call("double", x=21) == 42
        pid = pool.call("pid")
        os.kill(pid, signal.SIGKILL)
        drive_until(pool, lambda: pid not in running_pids(pool) and pool.serving() == 2)
        assert pool.call("double", x=1) == 2


# ---- bad input ------------------------------------------------------------------


def test_bad_input_is_refused_clearly():
    for kwargs, error in [
        ({"when": "sometimes"}, ValueError),
        ({"max_restarts": -1}, ValueError),
        ({"max_restarts": 1.5}, TypeError),
        ({"window": float("nan")}, ValueError),
        ({"backoff": -1}, ValueError),
        ({"max_backoff": "1"}, TypeError),
    ]:
        with pytest.raises(error):
            RestartPolicy(**kwargs)
    for args, kwargs, error in [
        ((Worker,), {"workers": 0}, ValueError),
        ((Worker,), {"workers": "2"}, TypeError),
        ((Worker,), {"max_in_flight": 0}, ValueError),
        ((Worker,), {"spares": -1}, ValueError),
        ((Worker,), {"spares": True}, TypeError),
        ((Worker,), {"dispatch": "random"}, ValueError),
        ((Worker,), {"restart": "always"}, TypeError),
        ((Worker,), {"idempotent": "double"}, TypeError),
        ((Worker,), {"call_timeout": float("nan")}, ValueError),
        (("not callable",), {}, TypeError),
        ((lambda name: object(),), {}, TypeError),
    ]:
        with pytest.raises(error):
            Pool(*args, **kwargs)
    started = Worker("started")
    started.start()
    try:
        with pytest.raises(ValueError, match="already started"):
            Pool(lambda name: started)
    finally:
        started.stop()
    with Pool(Worker, workers=1, call_timeout=WAIT) as pool:
        with pytest.raises(TypeError):
            pool.submit(42)
        with pytest.raises(ValueError, match="reserved"):
            pool.submit("double", __id__=1)
        with pytest.raises(TypeError):
            pool.submit_with("double", {"x": 1}, key=[1])
        with pytest.raises(TypeError):
            pool.submit_with("double", [1])
        with pytest.raises(TypeError):
            pool.submit("double", x=os)  # a module does not pickle: nothing is sent
        with pytest.raises(ValueError):
            pool.submit("double", x=1).result(float("nan"))
        with pytest.raises(ValueError):
            pool.resize(0)
        with pytest.raises(ValueError):
            pool.wait([CallFuture(pool, "x", "y")], return_when="SOMETIMES")
        other = Pool(Worker, workers=1)
        try:
            with pytest.raises(ValueError, match="not a future of pool"):
                pool.wait([other.submit("double", x=1)], timeout=WAIT)
        finally:
            other.stop()
        assert pool.call("double", x=1) == 2, "the pool goes on"
    sup = Supervisor()
    with sup:
        sup.add("w", Worker)
        with pytest.raises(ValueError, match="named 'w' already"):
            sup.add("w", Worker)
        with pytest.raises(TypeError):
            sup.add("x", Worker, policy="always")
        with pytest.raises(TypeError):
            sup.wait_event(0, fds=["not an fd"])
    with pytest.raises(ValueError):
        Supervisor(stop_timeout=float("nan"))


def test_the_new_names_are_exported():
    for name in ("Pool", "Supervisor", "RestartPolicy", "Status", "ProcessState",
                 "SupervisorEvent", "WorkerGone", "RemoteError", "RestartLimitError",
                 "ProcessTookOver"):  # fmt: skip
        assert name in forkbridge.__all__ and hasattr(forkbridge, name)
    assert issubclass(WorkerGone, BackendGone)
