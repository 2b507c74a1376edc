"""EventGroup, SyncIndex and safe_select."""

import errno
import multiprocessing
import os
import select
import signal
import threading
import time

import pytest

from forkbridge import (
    Event,
    EventGroup,
    MessageObject,
    MessageProcess,
    NotEnoughEvents,
    SyncIndex,
    safe_select,
)


class Setter(MessageProcess):
    def __init__(self, name, event_group):
        super().__init__(name)
        self.event_group = event_group

    def c__set(self, event_index=None, delay=0.0):
        time.sleep(delay)
        self.event_group.set(event_index)


@pytest.mark.parametrize("event_class", [None, multiprocessing.Event, Event])
def test_backend_sets_a_reserved_event(event_class):
    eg = EventGroup(4, event_class)
    p = Setter("setter", eg)
    p.start()
    try:
        for _ in range(20):
            i, event = eg.reserve()
            assert not event.is_set()
            p.sendMessageToBack(MessageObject("set", event_index=i))
            assert event.wait(5)
            eg.release(event)
        with SyncIndex(eg, timeout=5) as i:
            p.sendMessageToBack(MessageObject("set", event_index=i))
    finally:
        p.stop()


def test_exhaustion_is_an_exception():
    eg = EventGroup(2)
    eg.reserve()
    eg.reserve()
    with pytest.raises(NotEnoughEvents):
        eg.reserve()
    assert issubclass(NotEnoughEvents, Exception)


def test_double_release_and_unknown_index_are_errors():
    eg = EventGroup(3)
    i, event = eg.reserve()
    eg.release(event)
    with pytest.raises(ValueError):
        eg.release(event)
    with pytest.raises(ValueError):
        eg.release_ind(99)
    with pytest.raises(ValueError):
        eg.release_ind(i)


def test_a_set_made_while_the_index_is_free_is_forgotten_by_reserve():
    eg = EventGroup(1)
    i, event = eg.reserve()
    eg.release(event)
    eg.set(i)  # a late answer, the index free
    j, event2 = eg.reserve()
    assert j == i and not event2.is_set()
    eg.set(j)
    assert event2.is_set()
    eg.release(event2)


def test_set_reaches_whichever_reservation_holds_the_index():
    # The documented limit of a plain-int index: the backend has only the
    # number, so an answer for an earlier reservation sets the event of the
    # reservation that holds the index now.
    eg = EventGroup(1)
    i, event = eg.reserve()
    eg.release(event)
    j, event2 = eg.reserve()
    assert j == i
    assert eg.set(i) is None  # valkka's set returns nothing either
    assert event2.is_set()
    eg.release(event2)


def test_index_helpers_and_str():
    eg = EventGroup(3)
    i, event = eg.reserve()
    assert eg.asIndex(event) == i
    assert eg.fromIndex(i) == event
    assert len(eg) == 3
    assert str(eg) == "<EventGroup: R0 f1 f2 >"
    eg.release_ind(i)


def test_custom_event_class_works_like_valkka():
    eg = EventGroup(2, threading.Event)
    i, event = eg.reserve()
    assert isinstance(event, threading.Event) and i == 0
    eg.set(i)
    assert event.is_set()
    eg.release(event)
    with pytest.raises(ValueError):
        eg.release(event)


def test_sync_index_does_not_wait_when_the_block_raises():
    eg = EventGroup(2)
    started = time.monotonic()
    with pytest.raises(KeyError):
        with SyncIndex(eg):
            raise KeyError("before sending")
    assert time.monotonic() - started < 1
    assert eg.reserve()  # the event came back


def test_sync_index_timeout():
    eg = EventGroup(2)
    with pytest.raises(TimeoutError):
        with SyncIndex(eg, timeout=0.1):
            pass  # nobody sets it
    eg.reserve()
    eg.reserve()  # both free again


def test_sync_index_left_early_without_an_exception_waits_like_a_normal_end():
    # `return` inside the block looks like a normal end: the documented
    # remedy is the timeout, and the event comes back either way.
    eg = EventGroup(1)

    def leave_early():
        with SyncIndex(eg, timeout=0.2):
            return "early"

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        leave_early()
    assert time.monotonic() - started >= 0.2
    eg.reserve()  # released


def test_pollable_events_work_with_select():
    eg = EventGroup(2, pollable=True)
    i, event = eg.reserve()
    fd = event.getFd()
    assert select.select([fd], [], [], 0)[0] == []
    eg.set(i)
    assert select.select([fd], [], [], 1)[0] == [fd]


def test_safe_select_takes_high_fds_and_returns_the_objects():
    r, w = os.pipe()
    high = os.dup2(r, 1500)
    try:
        os.write(w, b"x")
        ready = safe_select([high], [w], [], 1)
        assert ready == ([high], [w], [])
        assert safe_select([], [], [], 0) == ([], [], [])
    finally:
        for fd in (r, w, high):
            os.close(fd)


def test_safe_select_raises_for_a_closed_fd_as_select_does():
    r, w = os.pipe()
    os.close(r)
    try:
        for lists in (([r], [], []), ([], [r], []), ([], [], [r])):
            started = time.monotonic()
            with pytest.raises(OSError) as caught:
                safe_select(*lists, 5)
            assert caught.value.errno == errno.EBADF
            assert time.monotonic() - started < 2
        with pytest.raises(ValueError):
            safe_select([-1], [], [], 0)
    finally:
        os.close(w)


def test_safe_select_survives_a_signal_whose_handler_returns():
    hits = []
    old = signal.signal(signal.SIGUSR1, lambda *_: hits.append(1))
    r, w = os.pipe()
    try:
        t = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1))
        t.start()
        started = time.monotonic()
        assert safe_select([r], [], [], 0.3) == ([], [], [])
        assert time.monotonic() - started >= 0.29 and hits
        t.join()
    finally:
        signal.signal(signal.SIGUSR1, old)
        os.close(r)
        os.close(w)
