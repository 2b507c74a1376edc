"""The Python soak suite's quick form: every scenario, bounded, zero failures."""

import os
import subprocess
import sys

SOAK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "soak", "soak.py")


def test_soak_quick():
    proc = subprocess.run(
        [sys.executable, SOAK, "--quick"], capture_output=True, text=True, timeout=180
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("RESULT") == 5
