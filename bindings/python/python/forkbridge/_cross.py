"""Start methods, and how a backend crosses to a worker that is not a
fork of its frontend.

Under ``fork`` (the default) the backend is the forked copy of the
``MessageProcess``: anything goes, nothing is pickled. Under
``forkserver`` and ``spawn`` the process is pickled at ``start()`` and
unpickled in the worker (``_worker.py``), after the worker has imported
the main module as ``multiprocessing`` does (``__mp_main__``). The shared
objects of the package (``Event``, ``EventGroup``, ``SharedBuffer`` and the
numpy arrays on one) pickle there as the positions of their fds in an
``FdList`` sent beside the pickle; outside a start they refuse to pickle.

Rejected: ``multiprocessing.reduction``'s ``DupFd`` (it needs a resource
sharer thread or a spawning ``Popen``); one pickle per attribute (the
objects an instance shares between attributes would be copied apart).
"""

from __future__ import annotations

import copyreg
import io
import mmap
import multiprocessing.process as _mp_process
import multiprocessing.spawn
import multiprocessing.util
import os
import pickle
import subprocess
import sys
import threading
import weakref
from typing import Any

from . import _native

# Private names of multiprocessing's, typed loosely (not in its stubs).
_mp_spawn: Any = multiprocessing.spawn
_mp_util: Any = multiprocessing.util
_mp_process_any: Any = _mp_process

START_METHODS = ("fork", "forkserver", "spawn")

_start_method: str | None = None
_tls = threading.local()


def set_start_method(method: str | None, force: bool = False) -> None:
    """Sets how ``MessageProcess.start()`` makes backends from now on:
    ``"fork"`` (the default: a copy of this process), ``"forkserver"`` (a
    fork of a small server process, started at the first such start) or
    ``"spawn"`` (a fresh interpreter). As ``multiprocessing``'s: a second
    call raises ``RuntimeError`` unless ``force``; ``None`` with ``force``
    goes back to the default. A class's ``start_method`` attribute, when
    set, wins over this."""
    global _start_method
    if method is not None:
        _check(method)
    if _start_method is not None and not force:
        raise RuntimeError("the start method has already been set")
    _start_method = method


def get_start_method(allow_none: bool = False) -> str | None:
    """The start method set with ``set_start_method``; ``"fork"`` when none
    was (``None`` then if ``allow_none``)."""
    if _start_method is None and not allow_none:
        return "fork"
    return _start_method


def _check(method: Any) -> str:
    if method not in START_METHODS:
        raise ValueError(
            "cannot find start method %r (one of %s)" % (method, ", ".join(START_METHODS))
        )
    return str(method)


# ---- fds beside a pickle -------------------------------------------------


def _collecting(what: str) -> _native.FdList:
    fds: _native.FdList | None = getattr(_tls, "fds", None)
    if fds is None:
        raise TypeError(
            "cannot pickle %s: it crosses only to a backend, as what the process holds at "
            "start() (under any start method; a forked backend has it as it is)" % what
        )
    return fds


def _reduce_shared(obj: Any) -> tuple[Any, ...]:
    name = type(obj).__name__
    data, positions = _native.encode_shared(obj, _collecting("a forkbridge." + name))
    return (_rebuild_shared, (name, data, positions))


def _rebuild_shared(kind: str, data: bytes, positions: list[int]) -> Any:
    return _native.decode_shared(kind, data, positions, _collecting("forkbridge." + kind))


copyreg.pickle(_native.Event, _reduce_shared)
copyreg.pickle(_native.EventGroup, _reduce_shared)


class SharedBuffer(mmap.mmap):
    """``size`` bytes of shared memory (a memfd), zeroed: an ``mmap`` that
    the backend shares with the frontend under every start method. Hold it
    (or a numpy array on it, see ``shared_array``) as an attribute of the
    process before ``start()``; both sides then read and write the same
    bytes. Synchronise with an ``EventGroup`` / ``SyncIndex``."""

    _fd: int

    def __new__(cls, size: int, _fd: int | None = None) -> SharedBuffer:
        fd = os.memfd_create("forkbridge-buffer", os.MFD_CLOEXEC) if _fd is None else _fd
        try:
            if _fd is None:
                os.ftruncate(fd, size)
            self = super().__new__(cls, fd, size)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        weakref.finalize(self, os.close, fd)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        fds = _collecting("a forkbridge.SharedBuffer")
        return (_rebuild_buffer, (len(self), fds.add(self._fd)))


def _rebuild_buffer(size: int, position: int) -> SharedBuffer:
    return SharedBuffer(size, _collecting("forkbridge.SharedBuffer").take(position))


def shared_array(shape: Any, dtype: Any = "uint8") -> Any:
    """A zeroed numpy array of ``shape`` and ``dtype`` in a
    ``SharedBuffer``: held by the process before ``start()``, it is the
    same memory in the backend under every start method (the anonymous
    ``mmap`` of valkka's tutorial shares only under ``fork``)."""
    import numpy as np

    dt = np.dtype(dtype)
    count = 1
    for n in (shape if isinstance(shape, tuple) else (shape,)):
        count *= int(n)
    buf = SharedBuffer(max(1, count * dt.itemsize))
    return np.ndarray(shape, dtype=dt, buffer=buf)


def _rebuild_array(buf: SharedBuffer, offset: int, shape: Any, strides: Any, dtype: Any) -> Any:
    import numpy as np

    return np.ndarray(shape, dtype=dtype, buffer=buf, offset=offset, strides=strides)


def _array_on_buffer(obj: Any) -> tuple[Any, ...] | None:
    np = sys.modules.get("numpy")
    if np is None or type(obj) is not np.ndarray:
        return None
    base = obj.base
    while isinstance(base, np.ndarray):
        base = base.base
    if not isinstance(base, SharedBuffer):
        return None
    start = np.frombuffer(base, dtype=np.uint8).__array_interface__["data"][0]
    offset = obj.__array_interface__["data"][0] - start
    return (_rebuild_array, (base, offset, obj.shape, obj.strides, obj.dtype))


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        reduced = _array_on_buffer(obj)
        return NotImplemented if reduced is None else reduced


def _dump(obj: Any, fds: _native.FdList) -> bytes:
    previous = getattr(_tls, "fds", None)
    _tls.fds = fds
    try:
        out = io.BytesIO()
        _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        return out.getvalue()
    finally:
        _tls.fds = previous


def _culprit(obj: Any, error: Exception) -> Exception:
    """``error`` with the attribute of ``obj`` that does not pickle named."""
    try:
        state = obj.__getstate__()
    except Exception:
        state = None
    if isinstance(state, dict):
        for name, value in state.items():
            probe = _native.FdList()
            try:
                _dump(value, probe)
            except Exception as e:
                return TypeError(
                    "%s.attr %r: %s (under start method forkserver or spawn the process is "
                    "pickled; drop it in __getstate__ or make it in preRun__)"
                    % (type(obj).__name__, name, e)
                )
            finally:
                probe.close()
    return TypeError("%s: %s" % (type(obj).__name__, error))


def dump_process(process: Any) -> tuple[bytes, _native.FdList, dict[str, Any]]:
    """The payload of a backend for ``start_foreign``: the preparation data
    (how to import the main module), then the pickled process; the fds of
    the shared objects it holds; and the preparation data alone."""
    fds = _native.FdList()
    try:
        prep = preparation_data(process.name)
        try:
            body = _dump(process, fds)
        except Exception as e:
            raise _culprit(process, e) from e
        return pickle.dumps((prep, body), protocol=pickle.HIGHEST_PROTOCOL), fds, prep
    except BaseException:
        fds.close()
        raise


def load_process(body: bytes, fds: _native.FdList) -> Any:
    """The reverse of ``dump_process``'s pickle, in the worker."""
    previous = getattr(_tls, "fds", None)
    _tls.fds = fds
    try:
        return pickle.loads(body)
    finally:
        _tls.fds = previous
        fds.close()


# ---- the worker's program -----------------------------------------------


def check_not_importing_main() -> None:
    """``multiprocessing``'s ``RuntimeError`` for a program without the
    main guard, when called while a worker imports that program."""
    _mp_spawn._check_not_importing_main()


def preparation_data(name: str) -> dict[str, Any]:
    """``multiprocessing.spawn.get_preparation_data`` without fixing
    ``multiprocessing``'s own start method: what a worker needs to import
    the main module as this process did (``prepare`` reads it). Raises
    the ``RuntimeError`` of a program without the main guard when called
    while a worker imports that program."""
    _mp_spawn._check_not_importing_main()
    current = _mp_process.current_process()
    d: dict[str, Any] = dict(
        log_to_stderr=_mp_util._log_to_stderr,
        authkey=bytes(current.authkey),
        name=name,
    )
    if _mp_util._logger is not None:
        d["log_level"] = _mp_util._logger.getEffectiveLevel()
    original = _mp_process_any.ORIGINAL_DIR
    sys_path = sys.path.copy()
    if "" in sys_path and original is not None:
        sys_path[sys_path.index("")] = original
    d.update(sys_path=sys_path, sys_argv=sys.argv, orig_dir=original, dir=os.getcwd())
    main = sys.modules["__main__"]
    main_name = getattr(getattr(main, "__spec__", None), "name", None)
    if main_name is not None:
        d["init_main_from_name"] = main_name
    else:
        main_path = getattr(main, "__file__", None)
        if main_path is not None:
            if not os.path.isabs(main_path) and original is not None:
                main_path = os.path.join(original, main_path)
            d["init_main_from_path"] = os.path.normpath(main_path)
    return d


def _program(call: str, *args: str) -> list[str]:
    # The package's own directory goes last on the worker's path, for a
    # program that found it through a path of its own; `prepare` then
    # gives the worker this process's path.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = "import sys; sys.path.append(%r); from forkbridge._worker import %s; %s()" % (
        root,
        call,
        call,
    )
    flags: list[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    return [sys.executable, *flags, "-c", code, *args]


def spawn_command() -> list[str]:
    """What a spawned worker runs."""
    return _program("spawn_main")


def server_command(prep: dict[str, Any]) -> list[str]:
    """What a fork server runs: it imports the main module as ``prep``
    says before it serves."""
    return _program("server_main", pickle.dumps(prep, protocol=0).hex())
