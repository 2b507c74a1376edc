"""An EventGroup index is the event's number, as in valkka-multiprocess: a
plain int in range(n), handed out in valkka's order (a fresh group gives
0 .. n-1, a released index goes to the back of the queue), usable as a list
or shared-array index and in JSON, pickle and a MessageObject. An index
outside range(n), a release of what is not reserved, and an object that is
not one of the group's events are ValueErrors."""

import json
import mmap
import multiprocessing
import pickle
import random
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from forkbridge import Event, EventGroup, MessageObject, MessageProcess, NotEnoughEvents, SyncIndex

# The group's two implementations: the native shared events (the default,
# pollable, or valkka's multiprocessing.Event spelled out) and a class of the
# user's, kept in a Python list.
KINDS = {
    "default": {},
    "pollable": {"pollable": True},
    "multiprocessing.Event": {"event_class": multiprocessing.Event},
    "threading.Event": {"event_class": threading.Event},
}


def group(kind, n):
    return EventGroup(n, **KINDS[kind])


class ValkkaFreeList:
    """valkka-multiprocess's free list, as its sync.py has it."""

    def __init__(self, n):
        self.index = list(range(n))

    def reserve(self):
        return self.index.pop(0)

    def release(self, i):
        self.index.append(i)


@pytest.mark.parametrize("kind", KINDS)
def test_a_fresh_group_hands_out_0_to_n_minus_1_in_order(kind):
    eg = group(kind, 7)
    got = [eg.reserve()[0] for _ in range(7)]
    assert got == list(range(7))
    assert all(type(i) is int for i in got)
    with pytest.raises(NotEnoughEvents):
        eg.reserve()


@pytest.mark.parametrize("kind", KINDS)
def test_a_released_index_goes_to_the_back_of_the_queue(kind):
    eg = group(kind, 3)
    i0, e0 = eg.reserve()
    i1, _ = eg.reserve()
    eg.release(e0)
    assert (i0, i1) == (0, 1)
    assert eg.reserve()[0] == 2  # 0 waits behind 2
    assert eg.reserve()[0] == 0
    eg.release_ind(1)
    assert eg.reserve()[0] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_reserve_and_release_follow_valkkas_order_over_a_random_run(kind):
    n = 5
    eg = group(kind, n)
    model = ValkkaFreeList(n)
    held = {}
    rng = random.Random(19)
    for step in range(2000):
        if held and (not model.index or rng.random() < 0.5):
            i = rng.choice(sorted(held))
            if step % 2:
                eg.release(held.pop(i))
            else:
                held.pop(i)
                eg.release_ind(i)
            model.release(i)
        else:
            i, event = eg.reserve()
            assert i == model.reserve(), "step %d" % step
            assert eg.asIndex(event) == i and eg.fromIndex(i) == event
            held[i] = event


@pytest.mark.parametrize("kind", KINDS)
def test_sync_index_yields_the_same_numbers(kind):
    eg = group(kind, 3)
    got = []
    for _ in range(7):
        with SyncIndex(eg, timeout=5) as i:
            got.append(i)
            eg.set(i)
    assert got == [0, 1, 2, 0, 1, 2, 0]
    assert all(type(i) is int for i in got)
    assert SyncIndex(eg).eg is eg  # valkka's attribute name


@pytest.mark.parametrize("kind", KINDS)
def test_the_index_is_a_plain_int_in_lists_arrays_json_pickle_and_messages(kind):
    eg = group(kind, 3)
    for _ in range(3):
        i, event = eg.reserve()
    assert type(i) is int and i == 2
    assert ["a", "b", "c"][i] == "c"
    assert np.arange(10, 13)[i] == 12
    assert i + 1 == 3 and i * 2 == 4 and hash(i) == hash(2)
    assert json.dumps({"event_index": i}) == '{"event_index": 2}'
    assert pickle.dumps(i) == pickle.dumps(2)
    msg = MessageObject("ping", event_index=i)
    assert type(msg["event_index"]) is int and msg["event_index"] == 2
    back = pickle.loads(pickle.dumps(msg))["event_index"]
    assert type(back) is int and back == 2
    assert type(eg.asIndex(event)) is int and eg.asIndex(event) == 2
    # An index read back out of a numpy array is a numpy integer.
    assert eg.fromIndex(np.int64(2)) == event
    eg.set(np.array([2], dtype=np.int32)[0])
    assert event.wait(0)
    eg.release_ind(np.uint8(2))
    assert eg.reserve()[0] == 2


@pytest.mark.parametrize("kind", KINDS)
def test_an_index_outside_range_n_is_a_value_error(kind):
    eg = group(kind, 3)
    eg.reserve()
    for bad in (3, 4, -1, -3, 2**64, 2**70, -(2**70)):
        for method in (eg.set, eg.fromIndex, eg.release_ind):
            with pytest.raises(ValueError, match="out of range"):
                method(bad)
    for bad in (None, 1.0, "1"):
        for method in (eg.set, eg.fromIndex, eg.release_ind):
            with pytest.raises(TypeError):
                method(bad)
    # Nothing above touched the free list: valkka's order goes on.
    assert [eg.reserve()[0] for _ in range(2)] == [1, 2]


@pytest.mark.parametrize("kind", KINDS)
def test_releasing_what_is_not_reserved_is_a_value_error(kind):
    eg = group(kind, 3)
    i, event = eg.reserve()
    with pytest.raises(ValueError, match="not reserved"):
        eg.release_ind(1)  # in range, never reserved
    eg.release(event)
    with pytest.raises(ValueError, match="not reserved"):
        eg.release(event)
    with pytest.raises(ValueError, match="not reserved"):
        eg.release_ind(i)
    # The failed releases did not put anything in the queue twice.
    assert [eg.reserve()[0] for _ in range(3)] == [1, 2, 0]
    with pytest.raises(NotEnoughEvents):
        eg.reserve()


@pytest.mark.parametrize("kind", KINDS)
def test_releasing_a_foreign_object_is_a_value_error_naming_it(kind):
    eg = group(kind, 2)
    other = group(kind, 2)
    _, theirs = other.reserve()
    # valkka's default event class, from the fork context so that no
    # resource tracker process is started for it.
    foreign = [multiprocessing.get_context("fork").Event(), Event(), threading.Event(), theirs, None, 0, "event"]
    for obj in foreign:
        with pytest.raises(ValueError) as caught:
            eg.release(obj)
        assert repr(obj) in str(caught.value), caught.value
        assert "release" in str(caught.value)
        with pytest.raises(ValueError) as caught:
            eg.asIndex(obj)
        assert repr(obj) in str(caught.value), caught.value
    assert [eg.reserve()[0] for _ in range(2)] == [0, 1]


class Squarer(MessageProcess):
    """The tutorials' pattern: an EventGroup beside a shared array with one
    slot per event; the backend answers request `i` in slot `i` and sets
    event `i`."""

    def __init__(self, name, n, delay=0.0):
        super().__init__(name)
        self.eg = EventGroup(n)
        # Made before start(): the fork shares the mapping.
        self.shmem = mmap.mmap(-1, n * 8)
        self.array = np.ndarray((n,), dtype=np.int64, buffer=self.shmem)
        self.array[:] = -1
        self.delay = delay

    def c__square(self, event_index=None, x=0, delay=0.0):
        time.sleep(delay)
        # -2 marks an index that did not arrive as a plain int.
        self.array[event_index] = x * x if type(event_index) is int else -2
        self.eg.set(event_index)

    def close(self):
        del self.array
        self.shmem.close()


def cpu_hogs(count):
    return [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)
    ]


def test_frontend_reserves_backend_answers_in_shared_array_slot_i_under_load():
    n = 12
    p = Squarer("squarer", n)
    p.start()
    hogs = cpu_hogs(2)
    failures = []
    used = set()
    lock = threading.Lock()

    def frontend(thread_no, requests):
        # Each thread keeps up to 4 requests in flight: 3 threads never
        # need more than the group's 12 events.
        rng = random.Random(thread_no)
        done = 0
        try:
            while done < requests:
                batch = []
                for _ in range(min(rng.randint(1, 4), requests - done)):
                    i, event = p.eg.reserve()
                    x = thread_no * 100_000 + done + len(batch)
                    p.sendMessageToBack(MessageObject("square", event_index=i, x=x))
                    batch.append((i, event, x))
                for i, event, x in batch:
                    if not event.wait(10):
                        failures.append("request %d (index %d) not answered" % (x, i))
                        return
                    if p.array[i] != x * x:
                        failures.append("slot %d holds %d, not %d" % (i, p.array[i], x * x))
                    p.eg.release(event)
                    with lock:
                        used.add(i)
                done += len(batch)
        except Exception as e:  # reported by the main thread
            failures.append(repr(e))

    try:
        threads = [threading.Thread(target=frontend, args=(t, 150)) for t in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a frontend thread hung"
        assert not failures, failures[:5]
        assert used == set(range(n))
        # The same, single-threaded, with SyncIndex, reading the slot after
        # the block as the tutorial does.
        seq = []
        for k in range(100):
            with SyncIndex(p.eg, timeout=10) as i:
                p.sendMessageToBack(MessageObject("square", event_index=i, x=k))
            assert p.array[i] == k * k
            seq.append(i)
        # One at a time, the queue rotates: every index once per n requests.
        assert sorted(seq[:n]) == list(range(n))
        assert seq == [seq[k % n] for k in range(100)]
        assert [p.eg.reserve()[0] for _ in range(n)] == [seq[(100 + j) % n] for j in range(n)]
    finally:
        for h in hogs:
            h.kill()
            h.wait(5)
        p.stop()
        p.close()
    assert p.exitcode == 0


def test_a_late_answer_on_a_free_index_is_cleared_by_its_next_reserve():
    # The part of the protection against late answers that plain-int
    # indices keep: the released index waits at the back of the queue, and
    # reserve() clears a set that landed on it meanwhile.
    p = Squarer("late", 2)
    p.start()
    try:
        with pytest.raises(TimeoutError):
            with SyncIndex(p.eg, timeout=0.1) as i:
                assert i == 0
                p.sendMessageToBack(MessageObject("square", event_index=i, x=3, delay=0.5))
        with SyncIndex(p.eg, timeout=10) as j:
            assert j == 1  # rotation: not the index the late answer is for
            p.sendMessageToBack(MessageObject("square", event_index=j, x=4))
        assert p.array[1] == 16
        assert p.eg.fromIndex(0).wait(10)  # the late answer came, to a free index
        assert p.array[0] == 9
        k, event = p.eg.reserve()
        assert k == 0 and not event.is_set()
        p.eg.release(event)
    finally:
        p.stop()
        p.close()
    assert p.exitcode == 0
