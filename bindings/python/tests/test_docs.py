"""The examples in the package docstring and in the README run as shown, and
the repository's docs link only to what the repository holds."""

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
    # What each block prints, in order: valkka's example, then the pool's.
    expected = ["Regards from other side of the fork!", "328350"]
    assert len(blocks) == len(expected), "a README Python example without its expected output"
    for block, out in zip(blocks, expected):
        assert out in run(block)


ROOT = os.path.abspath(os.path.join(os.path.dirname(README)))


def doc_files():
    """The repository's prose: the README, the top-level pages, docs/ and
    the crates' READMEs."""
    names = ["README.md", "ARCHITECTURE.md", "SECURITY.md"]
    names += sorted(os.path.join("docs", n) for n in os.listdir(os.path.join(ROOT, "docs")))
    names += sorted(
        os.path.join("crates", c, "README.md")
        for c in os.listdir(os.path.join(ROOT, "crates"))
        if os.path.exists(os.path.join(ROOT, "crates", c, "README.md"))
    )
    return [n for n in names if n.endswith(".md")]


def prose(text):
    """`text` without fenced code blocks (their `#` lines are not headings,
    their brackets not links)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def anchors(text):
    """The heading anchors GitHub makes for a Markdown page."""
    out, seen = set(), {}
    for title in re.findall(r"^#+ (.*)$", prose(text), re.M):
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_every_relative_link_in_the_docs_reaches_a_file_of_the_repository():
    broken = []
    for name in doc_files():
        path = os.path.join(ROOT, name)
        with open(path) as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)\s]+)\)", prose(text)):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            file, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            if not dest.startswith(ROOT + os.sep) or not os.path.exists(dest):
                broken.append(f"{name}: {target} (no such file in the repository)")
            elif anchor and dest.endswith(".md"):
                with open(dest) as f:
                    if anchor not in anchors(f.read()):
                        broken.append(f"{name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_docs_name_valkka_multiprocess_and_no_file_outside_the_repository():
    found = []
    for name in doc_files():
        with open(os.path.join(ROOT, name)) as f:
            for n, line in enumerate(f, 1):
                if re.search(r"\bseed's|\bthe seed\b|\(Q\d+|\bQ\d+\)|research/|\.\./shared|DESIGN\.md", line):
                    found.append(f"{name}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
