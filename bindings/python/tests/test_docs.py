"""The examples in the package docstring and in the README run as shown."""

import os
import re
import subprocess
import sys
import textwrap

import forkbridge

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "README.md")


def run(code):
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_package_docstring_example():
    lines = []
    for line in forkbridge.__doc__.split("::\n", 1)[1].splitlines():
        if line and not line.startswith("    "):
            break  # the literal block ends at the first unindented line
        lines.append(line)
    assert run(textwrap.dedent("\n".join(lines))).strip() == "42"


def test_readme_python_examples():
    with open(README) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert blocks, "the README has no Python example"
    for block in blocks:
        out = run(block)
        assert "Regards from other side of the fork!" in out
