"""EventGroup with an event class of the user's (EventGroup: "Any other
class with set / clear / wait (such as libValkka's EventFd) is instantiated
n times and used as is"): exhaustion raises NotEnoughEvents, reserve()
gives the event cleared, release makes it reservable again, and an
eventfd-based class, like libValkka's, is set by index in a backend."""

import os
import select
import sys
import threading
import time

import pytest

from forkbridge import EventGroup, MessageObject, MessageProcess, NotEnoughEvents, SyncIndex


class Minimal:
    """Only the three methods the docstring asks for."""

    instances = 0

    def __init__(self):
        Minimal.instances += 1
        self.flag = False

    def set(self):
        self.flag = True

    def clear(self):
        self.flag = False

    def wait(self, timeout=None):
        return self.flag


class EventFd:
    """A process-shared event on an eventfd, as libValkka's EventFd."""

    def __init__(self):
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def set(self):
        os.eventfd_write(self.fd, 1)

    def clear(self):
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass

    def is_set(self):
        return bool(select.select([self.fd], [], [], 0)[0])

    def wait(self, timeout=None):
        return bool(select.select([self.fd], [], [], timeout)[0])

    def close(self):
        os.close(self.fd)


@pytest.mark.parametrize("event_class", [threading.Event, Minimal, EventFd])
def test_exhaustion_raises_not_enough_events(event_class):
    eg = EventGroup(2, event_class)
    assert len(eg) == 2 and all(type(e) is event_class for e in eg.events)
    i, first = eg.reserve()
    j, second = eg.reserve()
    assert {i, j} == {0, 1} and first is not second
    with pytest.raises(NotEnoughEvents) as caught:
        eg.reserve()
    assert isinstance(caught.value, Exception)
    # Releasing one makes exactly one reservable again.
    eg.release(first)
    k, again = eg.reserve()
    assert again is first and k == i
    with pytest.raises(NotEnoughEvents):
        eg.reserve()


def test_the_class_is_instantiated_n_times():
    before = Minimal.instances
    eg = EventGroup(5, Minimal)
    assert Minimal.instances - before == 5
    assert len({id(e) for e in eg.events}) == 5


@pytest.mark.parametrize("event_class", [threading.Event, Minimal, EventFd])
def test_reserve_gives_the_event_cleared(event_class):
    eg = EventGroup(1, event_class)
    i, event = eg.reserve()
    eg.set(i)
    assert event.wait(0)
    eg.release(event)
    j, event2 = eg.reserve()
    assert event2 is event and j == i
    assert not event2.wait(0)  # the set of the last reservation is gone
    eg.release_ind(j)
    # A set made while the event was free is cleared too.
    eg.events[0].set()
    _, event3 = eg.reserve()
    assert not event3.wait(0)


@pytest.mark.parametrize("event_class", [threading.Event, EventFd])
@pytest.mark.parametrize("timeout", [float("inf"), sys.maxsize, 1e300], ids=["inf", "maxsize", "1e300"])
def test_sync_index_takes_a_timeout_with_no_limit_for_any_class(event_class, timeout):
    # threading's waits and select refuse such timeouts (OverflowError):
    # SyncIndex must wait as long as with None instead.
    eg = EventGroup(1, event_class)
    setter = None
    try:
        started = time.monotonic()
        with SyncIndex(eg, timeout=timeout) as i:
            setter = threading.Timer(0.2, eg.set, (i,))
            setter.start()
        assert time.monotonic() - started >= 0.15  # waited for the set
        eg.release(eg.reserve()[1])  # and released the event
    finally:
        if setter is not None:
            setter.join()
        if event_class is EventFd:
            eg.events[0].close()


@pytest.mark.parametrize("event_class", [threading.Event, EventFd])
@pytest.mark.parametrize("timeout", [0, -1, -1e300])
def test_sync_index_with_no_time_left_does_not_wait_for_any_class(event_class, timeout):
    eg = EventGroup(1, event_class)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            with SyncIndex(eg, timeout=timeout):
                pass
        assert time.monotonic() - started < 1.0
        with SyncIndex(eg, timeout=timeout) as i:
            eg.set(i)  # set already: no wait needed
    finally:
        if event_class is EventFd:
            eg.events[0].close()


class Setter(MessageProcess):
    def __init__(self, name, event_group):
        super().__init__(name)
        self.event_group = event_group

    def c__set(self, event_index=None):
        self.event_group.set(event_index)


def test_an_eventfd_class_is_set_by_index_in_the_backend():
    eg = EventGroup(2, EventFd)
    p = Setter("setter", eg)
    p.start()
    try:
        for _ in range(10):
            i, event = eg.reserve()
            assert not event.is_set()
            p.sendMessageToBack(MessageObject("set", event_index=i))
            assert event.wait(5)
            eg.release(event)
        with SyncIndex(eg, timeout=5) as i:
            p.sendMessageToBack(MessageObject("set", event_index=i))
        # Both events are free again.
        eg.reserve()
        eg.reserve()
    finally:
        p.stop()
        for event in eg.events:
            event.close()
    assert p.exitcode == 0
