"""Benchmarks of the Python binding against valkka-multiprocess 1.6.1 and bare
pipes, measured in the same run.

    bindings/python/bench/run [SCENARIO...] [--quick]

Prints a table per scenario and one line each:
``RESULT scenario=<name> value=<v> unit=<u> baseline=<b> ratio=<v/b> target=<t>``.
Each figure is the median of alternating blocks (forkbridge, baseline,
forkbridge, ...), so a drift of this noisy machine hits both alike. The
frontend runs on CPU 0 and every backend pins itself to CPU 1 (when the
machine has two), the placement the Rust harness uses.

The process first frees one 8 MiB block: glibc then serves blocks below that
size from its heap instead of a fresh mmap each (its dynamic mmap
threshold), as it does in any program that has run for a while. Without it,
valkka's frame path (a new 1 MiB pickle per frame) ran 2.5x slower or not
depending on what earlier scenarios had happened to free (0.9 vs 2.3 GB/s),
which made py_numpy_frames' ratio 4 or 11 by accident.

Two scenarios print a second, informational line (``target=info``) with
this machine's limit measured in the same run: ``py_start_stop_floor`` (a
bare ``os.fork()`` whose child pins itself and ``_exit``s) and
``py_numpy_frames_ceiling`` (one warm ``np.copyto`` of the frame);
``py_roundtrip_spin`` is the round trip's work without the wake-ups.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Callable

import numpy as np

import forkbridge as fb
from valkka.multiprocess import base as vk_base
from valkka.multiprocess import sync as vk_sync

QUICK = "--quick" in sys.argv
CPUS = sorted(os.sched_getaffinity(0))
FRONT_CPU = CPUS[0]
BACK_CPU = CPUS[1] if len(CPUS) > 1 and not os.environ.get("FB_BENCH_SAME_CPU") else CPUS[0]


def pin(cpu: int) -> None:
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass


# ---- the same backends for both libraries --------------------------------


def backend_class(lib_base, message_object, async_back: bool = False, with_events: bool = False):
    """A subclass of lib_base.MessageProcess (or AsyncBackMessageProcess)
    with the bench's handlers."""
    parent = lib_base.AsyncBackMessageProcess if async_back else lib_base.MessageProcess

    if async_back:

        class Backend(parent):  # type: ignore[valid-type, misc]
            def preRun__(self):
                pin(BACK_CPU)

            async def c__echo(self, i=0):
                await self.send_out__(message_object("echo", i=i))

        return Backend

    class Backend(parent):  # type: ignore[valid-type, misc, no-redef]
        def __init__(self, name, event_group=None):
            super().__init__(name)
            self.event_group = event_group
            self.count = 0

        def preRun__(self):
            pin(BACK_CPU)

        def c__echo(self, i=0):
            self.send_out__(message_object("echo", i=i))

        def c__small(self, i=0):
            self.count += 1

        def c__frame(self, frame=None):
            self.count += frame.nbytes

        def c__done(self):
            self.send_out__(message_object("count", n=self.count))
            self.count = 0

        def c__ping(self, event_index=None):
            self.event_group.set(event_index)

    return Backend


FbBackend = backend_class(fb, fb.MessageObject)
VkBackend = backend_class(vk_base, vk_base.MessageObject)
FbAsync = backend_class(fb, fb.MessageObject, async_back=True)


class FbSpin(FbBackend):  # type: ignore[misc, valid-type]
    spin_before_sleep = 100e-6
VkAsync = backend_class(vk_base, vk_base.MessageObject, async_back=True)


class FbForkServer(FbBackend):  # type: ignore[misc, valid-type]
    start_method = "forkserver"


class FbSpawn(FbBackend):  # type: ignore[misc, valid-type]
    start_method = "spawn"


def mp_child() -> None:
    """multiprocessing's side of the start-method scenarios: what the
    bench's ``preRun__`` does (pin itself), then the end."""
    pin(BACK_CPU)


class Lib:
    def __init__(self, name, backend, async_backend, mo, event_group, sync_index):
        self.name = name
        self.backend = backend
        self.async_backend = async_backend
        self.mo = mo
        self.event_group = event_group
        self.sync_index = sync_index


FB = Lib("forkbridge", FbBackend, FbAsync, fb.MessageObject, fb.EventGroup, fb.SyncIndex)
FB_SPIN = Lib("forkbridge", FbSpin, FbAsync, fb.MessageObject, fb.EventGroup, fb.SyncIndex)
VK = Lib(
    "valkka",
    VkBackend,
    VkAsync,
    vk_base.MessageObject,
    lambda n: vk_sync.EventGroup(n),
    vk_sync.SyncIndex,
)


def started(process):
    process.start()
    # First message: the backend is up and pinned.
    return process


# ---- scenario bodies: each returns seconds per operation, or a rate --------


def roundtrip(lib: Lib, n: int, async_back: bool = False) -> float:
    cls = lib.async_backend if async_back else lib.backend
    p = cls("rt")
    p.start()
    pipe = p.getPipe()
    mo = lib.mo
    try:
        for i in range(50):  # warm-up
            p.sendMessageToBack(mo("echo", i=i))
            pipe.recv()
        t0 = time.perf_counter()
        for i in range(n):
            p.sendMessageToBack(mo("echo", i=i))
            pipe.recv()
        return (time.perf_counter() - t0) / n
    finally:
        p.stop()


def pipe_floor(n: int) -> float:
    """A bare os.pipe ping-pong between two Python processes."""
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        pin(BACK_CPU)
        os.close(to_child_w)
        os.close(to_parent_r)
        while True:
            data = os.read(to_child_r, 64)
            if not data:
                os._exit(0)
            os.write(to_parent_w, data)
    os.close(to_child_r)
    os.close(to_parent_w)
    msg = b"x" * 16
    try:
        for _ in range(50):
            os.write(to_child_w, msg)
            os.read(to_parent_r, 64)
        t0 = time.perf_counter()
        for _ in range(n):
            os.write(to_child_w, msg)
            os.read(to_parent_r, 64)
        return (time.perf_counter() - t0) / n
    finally:
        os.close(to_child_w)
        os.close(to_parent_r)
        os.waitpid(pid, 0)


def syncindex(lib: Lib, n: int) -> float:
    eg = lib.event_group(10)
    p = lib.backend("si", eg)
    p.start()
    mo = lib.mo
    try:
        for _ in range(20):
            with lib.sync_index(eg) as i:
                p.sendMessageToBack(mo("ping", event_index=i))
        t0 = time.perf_counter()
        for _ in range(n):
            with lib.sync_index(eg) as i:
                p.sendMessageToBack(mo("ping", event_index=i))
        return (time.perf_counter() - t0) / n
    finally:
        p.stop()


def oneway(lib: Lib, n: int) -> float:
    """Messages per second, frontend → backend, until the backend has
    handled them all."""
    p = lib.backend("ow")
    p.start()
    pipe = p.getPipe()
    mo = lib.mo
    try:
        p.sendMessageToBack(mo("done"))
        pipe.recv()
        t0 = time.perf_counter()
        for i in range(n):
            p.sendMessageToBack(mo("small", i=i))
        p.sendMessageToBack(mo("done"))
        got = pipe.recv()
        elapsed = time.perf_counter() - t0
        assert got["n"] == n, (got["n"], n)
        return n / elapsed
    finally:
        p.stop()


def numpy_frames(lib: Lib, n: int) -> float:
    """GB/s of 1 MiB float32 frames, frontend → backend."""
    p = lib.backend("np")
    p.start()
    pipe = p.getPipe()
    mo = lib.mo
    frame = np.random.default_rng(1).random(1 << 18, dtype=np.float32)
    try:
        # Warm-up: a few frames, so both of forkbridge's lane slots (and
        # valkka's pipe buffers) have their pages before the clock starts.
        for _ in range(4):
            p.sendMessageToBack(mo("frame", frame=frame))
        p.sendMessageToBack(mo("done"))
        pipe.recv()
        t0 = time.perf_counter()
        for _ in range(n):
            p.sendMessageToBack(mo("frame", frame=frame))
        p.sendMessageToBack(mo("done"))
        got = pipe.recv()
        elapsed = time.perf_counter() - t0
        assert got["n"] == n * frame.nbytes
        return n * frame.nbytes / elapsed / 1e9
    finally:
        p.stop()


def fork_floor(n: int) -> float:
    """The least a start + stop can take here: a bare ``os.fork()`` whose
    child does what the bench's ``preRun__`` does (pin itself) and
    ``_exit``s, reaped with ``waitpid``."""
    total = 0.0
    for _ in range(n):
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            pin(BACK_CPU)
            os._exit(0)
        os.waitpid(pid, 0)
        total += time.perf_counter() - t0
    return total / n


def memcpy_ceiling(n: int) -> float:
    """GB/s of copying the bench's 1 MiB frame into one warm buffer: the
    most any transport that copies a frame once can move."""
    frame = np.random.default_rng(1).random(1 << 18, dtype=np.float32)
    dst = np.empty_like(frame)
    np.copyto(dst, frame)
    t0 = time.perf_counter()
    for _ in range(n):
        np.copyto(dst, frame)
    return n * frame.nbytes / (time.perf_counter() - t0) / 1e9


def start_stop(lib: Lib, n: int) -> float:
    return start_stop_made(lambda: lib.backend("ss"), n)


def start_stop_pickled(cls, n: int) -> float:
    """A forkbridge start + stop under ``cls.start_method``."""
    return start_stop_made(lambda: cls("ss"), n)


def start_stop_made(make, n: int) -> float:
    """Mean seconds of ``start()`` + ``stop()`` of ``n`` processes from ``make``."""
    total = 0.0
    for _ in range(n):
        p = make()
        t0 = time.perf_counter()
        p.start()
        p.stop()
        total += time.perf_counter() - t0
        del p
    return total / n


def mp_start_join(ctx, n: int) -> float:
    """multiprocessing's start + join of a Process under ``ctx``."""
    total = 0.0
    for _ in range(n):
        p = ctx.Process(target=mp_child)
        t0 = time.perf_counter()
        p.start()
        p.join()
        total += time.perf_counter() - t0
        p.close()
    return total / n


# ---- harness ---------------------------------------------------------------


def alternate(ours: Callable[[], float], theirs: Callable[[], float], blocks: int):
    (a, b), (m, base) = alternate_all([ours, theirs], blocks)
    return m, base, a, b


def alternate_all(bodies: list[Callable[[], float]], blocks: int):
    """Runs the bodies in turn, ``blocks`` rounds; every block's figure and
    the median of each body."""
    runs: list[list[float]] = [[] for _ in bodies]
    for _ in range(blocks):
        for body, run in zip(bodies, runs):
            run.append(body())
    return runs, [statistics.median(run) for run in runs]


def report(name, unit, value, baseline, target, a, b, scale=1.0, labels=("forkbridge", "baseline")):
    print("\n%s (%s, median of %d blocks)" % (name, unit, len(a)))
    print("  %-12s %s" % (labels[0], " ".join("%.2f" % (x * scale) for x in a)))
    print("  %-12s %s" % (labels[1], " ".join("%.2f" % (x * scale) for x in b)))
    v, base = value * scale, baseline * scale
    print(
        "RESULT scenario=%s value=%.2f unit=%s baseline=%.2f ratio=%.3f target=%s"
        % (name, v, unit, base, v / base, target),
        flush=True,
    )


def warm_allocator() -> None:
    """Frees one mmap-sized block so glibc raises its mmap threshold now
    (see the module docs), whatever the scenarios run before."""
    block = bytearray(8 << 20)
    del block


def main() -> None:
    wanted = [a for a in sys.argv[1:] if not a.startswith("--")]
    pin(FRONT_CPU)
    warm_allocator()
    blocks = 3 if QUICK else 9
    k = 0.1 if QUICK else 1.0
    n_rt = int(2000 * k) or 1

    def want(name):
        return not wanted or name in wanted

    if want("py_roundtrip"):
        m, base, a, b = alternate(lambda: roundtrip(FB, n_rt), lambda: roundtrip(VK, n_rt), blocks)
        report("py_roundtrip", "us", m, base, "<=0.85", a, b, 1e6, ("forkbridge", "valkka"))
    if want("py_roundtrip_floor"):
        m, base, a, b = alternate(lambda: roundtrip(FB, n_rt), lambda: pipe_floor(n_rt), blocks)
        report("py_roundtrip_floor", "us", m, base, "<=1.10", a, b, 1e6, ("forkbridge", "os.pipe"))
    if want("py_roundtrip_spin"):
        # Spin mode (spin_before_sleep = 100 µs on both sides), informational:
        # against the blocking os.pipe floor.
        m, base, a, b = alternate(lambda: roundtrip(FB_SPIN, n_rt), lambda: pipe_floor(n_rt), blocks)
        report("py_roundtrip_spin", "us", m, base, "<=1.0", a, b, 1e6, ("fb spin", "os.pipe"))
    if want("py_async_roundtrip"):
        m, base, a, b = alternate(
            lambda: roundtrip(FB, n_rt, True), lambda: roundtrip(VK, n_rt, True), blocks
        )
        report("py_async_roundtrip", "us", m, base, "<=0.75", a, b, 1e6, ("forkbridge", "valkka"))
    if want("py_syncindex"):
        m, base, a, b = alternate(lambda: syncindex(FB, n_rt), lambda: syncindex(VK, n_rt), blocks)
        report("py_syncindex", "us", m, base, "<=0.60", a, b, 1e6, ("forkbridge", "valkka"))
    if want("py_oneway"):
        n = int(50000 * k)
        m, base, a, b = alternate(lambda: oneway(FB, n), lambda: oneway(VK, n), blocks)
        report("py_oneway", "msgs/s", m, base, ">=5", a, b, 1.0, ("forkbridge", "valkka"))
    if want("py_start_stop"):
        n = int(50 * k) or 3
        (a, b, f), (m, base, floor) = alternate_all(
            [lambda: start_stop(FB, n), lambda: start_stop(VK, n), lambda: fork_floor(n)], blocks
        )
        report("py_start_stop", "ms", m, base, "<=0.70", a, b, 1e3, ("forkbridge", "valkka"))
        # Informational: forkbridge against the bare fork; floor/valkka is
        # the best ratio any library could reach in this run.
        report("py_start_stop_floor", "ms", m, floor, "info", a, f, 1e3, ("forkbridge", "bare fork"))
        print("  bare fork / valkka = %.3f" % (floor / base))
    for method, cls, target in (
        ("forkserver", FbForkServer, "<=0.50"),
        ("spawn", FbSpawn, "<=0.70"),
    ):
        name = "py_start_stop_" + method
        if not want(name):
            continue
        import multiprocessing

        ctx = multiprocessing.get_context(method)
        n = int(20 * k) or 2
        # The first start of each starts its fork server: not measured.
        start_stop_pickled(cls, 1)
        mp_start_join(ctx, 1)
        (a, b), (m, base) = alternate_all(
            [lambda: start_stop_pickled(cls, n), lambda: mp_start_join(ctx, n)], blocks
        )
        report(name, "ms", m, base, target, a, b, 1e3, ("forkbridge", "multiprocessing"))
    if want("py_numpy_frames"):
        n = int(200 * k) or 5
        (a, b, c), (m, base, ceiling) = alternate_all(
            [lambda: numpy_frames(FB, n), lambda: numpy_frames(VK, n), lambda: memcpy_ceiling(n)],
            blocks,
        )
        report("py_numpy_frames", "GB/s", m, base, ">=10", a, b, 1.0, ("forkbridge", "valkka"))
        # Informational: one warm copy of the frame against valkka, the
        # highest ratio a transport that copies each frame once can reach.
        report("py_numpy_frames_ceiling", "GB/s", ceiling, base, "info", c, b, 1.0, ("memcpy", "valkka"))


if __name__ == "__main__":
    main()
