"""The backends of test_supervise.py, in a module of their own so that a
forkserver worker, which imports the module of its class, imports these
few lines and not pytest (a worker then serves within milliseconds of its
start, as a real program's would)."""

import asyncio
import os
import signal
import time

from forkbridge import AsyncBackMessageProcess, MessageObject, MessageProcess


def append(path, line):
    with open(path, "a") as f:
        f.write(line + "\n")


def lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


class Worker(MessageProcess):
    """A pool worker: answers calls; may record each start in a file and
    fail in ``preRun__``; records its stop in ``postRun__``."""

    stop_timeout = 3.0
    kill_timeout = 1.0

    def __init__(self, name, starts_log=None, fail_pre_run=False, stops_log=None):
        super().__init__(name)
        self.starts_log = starts_log
        self.fail_pre_run = fail_pre_run
        self.stops_log = stops_log

    def preRun__(self):
        if self.starts_log:
            append(self.starts_log, str(os.getpid()))
        if self.fail_pre_run:
            raise RuntimeError("preRun__ fails on purpose")

    def postRun__(self):
        if self.stops_log:
            append(self.stops_log, self.name)

    def c__double(self, x):
        return 2 * x

    def c__pid(self):
        return os.getpid()

    def c__sleep(self, seconds):
        time.sleep(seconds)
        return seconds

    def c__fail(self, text):
        raise ValueError(text)

    def c__unsendable(self):
        return lambda: None

    def c__say(self, text):
        self.send_out__(MessageObject("said", text=text))

    def c__block(self):
        # Ignores SIGTERM and never returns: only SIGKILL ends it.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.send_out__(MessageObject("blocking"))
        while True:
            time.sleep(1)


class ServedWorker(Worker):
    start_method = "forkserver"


class AsyncWorker(AsyncBackMessageProcess):
    async def c__double(self, x):
        await asyncio.sleep(0)
        return 2 * x

    def c__plain(self, x):
        return x + 1


class Quiet(Worker):
    report_errors = False


def _explode():
    raise RuntimeError("this argument does not load")


class LoadBomb:
    """Pickles fine, fails to unpickle (in the backend)."""

    def __reduce__(self):
        return (_explode, ())
