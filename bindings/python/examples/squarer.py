# A Python backend for a frontend in another language (the Rust example
# crates/forkbridge/examples/python_backend.rs starts it). The class is an
# ordinary valkka-style MessageProcess; forkbridge.serve runs its backend loop
# on the intercom inherited through exec, instead of forking it.
from forkbridge import MessageObject, MessageProcess, serve


class Squarer(MessageProcess):

    def c__square(self, x=0):
        self.send_out__(MessageObject("squared", x=x, y=x * x))

    def c__describe(self, **params):
        self.send_out__(MessageObject(
            "described", **{name: type(value).__name__ for name, value in params.items()}))


if __name__ == "__main__":
    serve(Squarer("squarer"))
