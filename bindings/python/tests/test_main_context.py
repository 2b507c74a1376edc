"""MainContext: processes before threads, bounded stopThread."""

import sys
import time

import pytest

from forkbridge import MainContext, MessageObject, MessageProcess, safe_select


class Worker(MessageProcess):
    def c__square(self, x=0):
        self.send_out__(MessageObject("squared", x=x, y=x * x))


class Manager(MainContext):
    def __init__(self):
        self.workers = [Worker("w%d" % i) for i in range(3)]
        self.order = []
        self.results = []
        super().__init__()

    def startProcesses(self):
        self.order.append("processes")
        for w in self.workers:
            w.ignoreSIGINT()
            w.start()

    def startThreads(self):
        self.order.append("threads")

    def close(self):
        for w in self.workers:
            w.requestStop()
        for w in self.workers:
            w.waitStop()

    def __call__(self):
        for i, w in enumerate(self.workers):
            w.sendMessageToBack(MessageObject("square", x=i + 2))
        pipes = [w.getPipe() for w in self.workers]
        while True:
            ready, _, _ = safe_select(pipes + [self.aux_pipe_read], [], [], 5)
            if self.aux_pipe_read in ready or not ready:
                return
            for pipe in ready:
                self.results.append(pipe.recv()["y"])


def test_processes_start_before_threads_and_stop_thread_closes():
    m = Manager()
    assert m.order == ["processes", "threads"]
    assert all(w.is_alive() for w in m.workers)
    m.runAsThread()
    deadline = time.monotonic() + 5
    while len(m.results) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    m.stopThread()
    assert sorted(m.results) == [4, 9, 16]
    assert all(w.exitcode == 0 for w in m.workers)


def test_the_base_class_is_abstract():
    with pytest.raises(NotImplementedError):
        MainContext()


def test_stop_thread_is_bounded_with_a_call_that_never_returns():
    class Stuck(Manager):
        thread_join_timeout = 0.3

        def __call__(self):
            time.sleep(1.0)  # ignores aux_pipe_read

    m = Stuck()
    m.runAsThread()
    started = time.monotonic()
    m.stopThread()
    assert time.monotonic() - started < 0.9
    assert all(w.exitcode == 0 for w in m.workers)
    m.thread.join()


@pytest.mark.parametrize("timeout", [float("inf"), 1e18, sys.maxsize])
def test_stop_thread_takes_a_timeout_with_no_limit_and_closes(timeout):
    class Patient(Manager):
        thread_join_timeout = timeout

    m = Patient()
    m.runAsThread()
    m.stopThread()  # __call__ reads aux_pipe_read: it returns at once
    assert not m.thread.is_alive()
    assert all(w.exitcode == 0 for w in m.workers), "close() did not run"
