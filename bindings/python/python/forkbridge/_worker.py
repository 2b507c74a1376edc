"""The programs of workers that are not forks of their frontend: a spawned
worker (``spawn_main``) and the fork server (``server_main``), run as
``python -c`` by the start methods ``spawn`` and ``forkserver``.

Both read what the frontend sent (``_native.accept_worker`` /
``serve_forks``), import the main module as ``multiprocessing``'s spawn
does (with its ``_inheriting`` flag set, so that a program without the
``if __name__ == "__main__":`` guard gets ``multiprocessing``'s
``RuntimeError`` instead of starting workers from its workers), unpickle
the process, tell the frontend they run, and run the backend as a forked
child does (``MessageProcess._bootstrap``). A failure before that reaches
the frontend: a spawned worker's ``start()`` raises it, a served one's
(which does not wait for the worker) receives it as an "error" message of
kind "pre_run" before ``BackendGone``, and the worker exits with 2.
"""

from __future__ import annotations

import multiprocessing.process as _mp_process
import multiprocessing.spawn as _mp_spawn
import os
import pickle
import re
import sys
import traceback
from typing import Any

from . import _cross, _native

# Thread pools that numeric libraries start when they are imported: the
# fork server imports the main module with them capped at one thread, since
# a server with threads cannot fork safely (and refuses to).
_POOLS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _prepare(prep: dict[str, Any]) -> None:
    current: Any = _mp_process.current_process()
    current._inheriting = True
    try:
        _mp_spawn.prepare(prep)
    finally:
        del current._inheriting


def _load(worker: _native.Worker) -> Any:
    prep, body = pickle.loads(worker.payload())
    fds = worker.take_fds()
    try:
        _prepare(prep)
    except BaseException:
        fds.close()
        raise
    current: Any = _mp_process.current_process()
    current._inheriting = True
    try:
        return _cross.load_process(body, fds)
    finally:
        del current._inheriting


def _serve(worker: _native.Worker) -> int:
    """Runs the backend ``worker`` brings; its exit code."""
    try:
        process = _load(worker)
    except BaseException as e:
        # As multiprocessing's children do, the traceback goes to stderr;
        # the frontend gets the reason (spawn: its start() raises it;
        # forkserver: an "error" message of kind "pre_run", then the end).
        traceback.print_exc()
        worker.fail("".join(traceback.format_exception_only(e)).strip())
    intercom = worker.ready(bool(getattr(process, "lend_received_buffers", False)))
    code: int = process._bootstrap(intercom)
    return code


def spawn_main() -> None:
    """A spawned worker's program."""
    worker = _native.accept_worker()
    if worker is None:
        sys.exit("forkbridge._worker: this process was not started as a forkbridge worker")
    code = _serve(worker)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def _threads() -> int:
    with open("/proc/self/status") as f:
        found = re.search(r"^Threads:\s*(\d+)", f.read(), re.M)
    return int(found.group(1)) if found else 1


def server_main() -> None:
    """The fork server's program: imports the main module once (so that
    each worker starts with it imported), then serves forks."""
    args = sys.argv[1:]
    if args and args[-1] != "--no-preload":
        added = [name for name in _POOLS if name not in os.environ]
        for name in added:
            os.environ[name] = "1"
        try:
            _prepare(pickle.loads(bytes.fromhex(args[0])))
        except BaseException:
            # Each worker imports it again and reports what fails there.
            pass
        finally:
            for name in added:
                os.environ.pop(name, None)
        if _threads() > 1:
            # The import started a thread: start again without it (each
            # worker then imports the main module itself).
            os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:], "--no-preload"])
    if not _native.serve_forks(_serve):
        sys.exit("forkbridge._worker: this process was not started as a fork server")
