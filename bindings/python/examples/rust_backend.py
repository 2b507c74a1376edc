# A Python frontend driving a backend written in Rust
# (crates/forkbridge/examples/square_backend.rs): ProgramProcess forks and
# execs the program with the intercom; messages cross in the shared wire
# format, values natively where both languages have them.
import os
import sys

from forkbridge import MessageObject, ProgramProcess

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
DEFAULT = os.path.join(ROOT, "target", "release", "examples", "square_backend")

binary = sys.argv[1] if len(sys.argv) > 1 else DEFAULT
p = ProgramProcess("square", [binary])
pipe = p.getPipe()
p.start()

p.sendMessageToBack(MessageObject("square", x=12.0))
reply = pipe.recv(timeout=10)
print("Rust answered", reply)
assert reply() == "squared" and reply["y"] == 144.0

p.sendMessageToBack(MessageObject(
    "describe", n=7, f=2.5, s="text", b=b"\x00", l=[1, 2], t=(1, "a"), d={1: "one"}, st={1, 2}))
described = pipe.recv(timeout=10)
print("Rust saw", described)
assert described["t"].startswith("tuple") and described["st"] == "pickled builtins.set"

p.sendMessageToBack(MessageObject("nonesuch"))
assert pipe.recv(timeout=10)() == "error"

p.stop()
print("Rust backend ended with exit code", p.exitcode)
assert p.exitcode == 0
