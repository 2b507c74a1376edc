"""valkka-multiprocess's examples and the tutorial programs, run as programs."""

import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def run_example(name, timeout=60):
    proc = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, name)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_valkka_message_process_example():
    out = run_example("message_process.py")
    assert "Regards from other side of the fork!  Got parameter gotcha!" in out


def test_valkka_async_example():
    out = run_example("async_process.py")
    assert "Regards from other side of the fork!  Got parameter gotcha!" in out


def test_valkka_async_tasks_example():
    out = run_example("async_tasks.py")
    assert "Got parameter gotcha!" in out
    assert "Did that blocking io wait" in out


def test_valkka_event_group_and_sync_index_example():
    assert "200 pings answered" in run_example("event_group.py")


def test_tutorial_main_context_swarm():
    assert "40 jobs done by 4 workers" in run_example("main_context.py")


def test_tutorial_shared_array():
    assert "backend wrote 3 frames" in run_example("shared_array.py")


def test_numpy_frames_example():
    pytest.importorskip("numpy")
    assert "200 frames of 1 MiB" in run_example("numpy_frames.py")


def test_threaded_parent_starts_backends_with_forkserver():
    pytest.importorskip("numpy")
    assert "3 detectors started with forkserver" in run_example("threaded_parent.py")


def test_tutorial_ping_pong():
    assert "1000 ping-pongs" in run_example("ping_pong.py")


def test_tutorial_shared_memory_on_demand():
    pytest.importorskip("numpy")
    before = set(os.listdir("/dev/shm"))
    assert "created after the fork, 3 times" in run_example("shared_memory_on_demand.py")
    assert set(os.listdir("/dev/shm")) <= before, "left a block in /dev/shm"


def test_pool_and_supervisor_example():
    out = run_example("pool.py")
    assert "200 squares summed: 2646700 by 4 workers" in out
    assert "the backend raised ValueError: negative: -1" in out
    assert "flaky started 3 times, then: process 'flaky' given up after 2 restarts" in out
