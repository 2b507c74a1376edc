"""What the tests and the soak suite read of this process from /proc: its
children, its open fds, its mappings, and whether a pid is alive. One copy,
shared by tests/ and soak/ (the Rust side's twin is forkbridge-testkit)."""

from __future__ import annotations

import os


def children() -> set[int]:
    """The pids of this process's children, from every thread's list."""
    pids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open("/proc/self/task/%s/children" % task) as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            pass
    return pids


def open_fds() -> int:
    """How many fds this process has open."""
    return len(os.listdir("/proc/self/fd"))


def mappings() -> int:
    """How many memory mappings this process has."""
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False
