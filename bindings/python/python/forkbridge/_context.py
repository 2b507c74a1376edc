"""MainContext: the main process's structure, processes before threads."""

from __future__ import annotations

import logging
import multiprocessing
import threading

from ._log import format_logger
from ._timeout import check as _check_timeout
from ._timeout import for_threading as _for_threading


class MainContext:
    """Organises a main process: ``__init__`` calls ``startProcesses()``
    then ``startThreads()`` (so every fork happens while the process is
    single-threaded), ``__call__`` is the main loop, ``close()`` stops
    everything. Subclass it and call ``super().__init__()`` as the *last*
    line of your ``__init__``::

        class Manager(MainContext):
            def __init__(self):
                self.workers = [Worker("w%d" % i) for i in range(4)]
                super().__init__()
            def startProcesses(self):
                for w in self.workers: w.ignoreSIGINT(); w.start()
            def startThreads(self): pass
            def close(self):
                for w in self.workers: w.requestStop()
                for w in self.workers: w.waitStop()
            def __call__(self): ...
    """

    #: Seconds stopThread() waits for __call__ to return (``None`` or
    #: ``inf``: as long as it takes; zero or less: not at all; NaN:
    #: ``ValueError``).
    thread_join_timeout: float | None = 10.0

    def __init__(self) -> None:
        self.logger = logging.getLogger(type(self).__name__)
        self.started = False
        self.aux_pipe_read, self.aux_pipe_write = multiprocessing.Pipe()
        self.startProcesses()
        self.startThreads()

    def startProcesses(self) -> None:
        """Mandatory: create, cache and start your MessageProcesses."""
        raise NotImplementedError("virtual method")

    def startThreads(self) -> None:
        """Mandatory: create, cache and start your threads (if any)."""
        raise NotImplementedError("virtual method")

    def close(self) -> None:
        """Mandatory: stop every process and thread."""
        raise NotImplementedError("virtual method")

    def __call__(self) -> None:
        """The main loop. This demo prints "alive" every second until Ctrl-C
        or stopThread()."""
        while True:
            try:
                if self.aux_pipe_read.poll(1.0):
                    self.aux_pipe_read.recv()
                    break
                print("alive")
            except KeyboardInterrupt:
                print("you pressed CTRL-C: will exit asap")
                break

    @classmethod
    def formatLogger(cls, level: int | None = logging.INFO) -> None:
        format_logger(cls.__name__, level)

    def setDebug(self) -> None:
        self.logger.setLevel(logging.DEBUG)

    def runAsThread(self) -> None:
        """Runs ``__call__`` in a thread, ``self.thread`` (testing, GUIs)."""
        self.logger.critical("starting as thread")
        self.thread = threading.Thread(target=self.__call__, name=type(self).__name__)
        self.thread.start()

    def stopThread(self) -> None:
        """Ends a ``runAsThread`` run: sends ``None`` on ``aux_pipe_write``
        (your ``__call__`` should select on ``aux_pipe_read``), waits at most
        ``thread_join_timeout`` s for it, then calls ``close()``."""
        # Refused before anything is done (it used to wait forever).
        _check_timeout(self.thread_join_timeout, "thread_join_timeout")
        self.logger.critical("stopping thread")
        self.aux_pipe_write.send(None)
        # valkka's attribute, set by runAsThread (not by __init__: a
        # subclass may have its own `thread`).
        thread: threading.Thread | None = getattr(self, "thread", None)
        try:
            if thread is not None:
                thread.join(_for_threading(self.thread_join_timeout))
                if thread.is_alive():
                    self.logger.error(
                        "__call__ did not return within %s s (does it read aux_pipe_read?)",
                        self.thread_join_timeout,
                    )
        finally:
            self.close()
        self.logger.critical("thread stopped")


