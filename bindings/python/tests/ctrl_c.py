"""Ctrl-C for tests: SIGINT to this process after a delay, sent by another
Python thread or by a forked helper (then this process keeps a single
Python thread, and the frontend waits in the socket read itself)."""

import contextlib
import os
import signal
import threading
import time


@contextlib.contextmanager
def from_a_thread(delay):
    """SIGINT to this process from another thread after `delay` seconds."""

    def interrupt():
        time.sleep(delay)
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=interrupt)
    t.start()
    try:
        yield
    finally:
        t.join()


@contextlib.contextmanager
def from_a_process(delay):
    """SIGINT to this process from a forked helper after `delay` seconds;
    this process keeps a single Python thread."""
    parent = os.getpid()
    helper = os.fork()
    if helper == 0:
        try:
            time.sleep(delay)
            os.kill(parent, signal.SIGINT)
        finally:
            os._exit(0)
    try:
        yield
    finally:
        os.waitpid(helper, 0)


WAYS = {"thread": from_a_thread, "process": from_a_process}
