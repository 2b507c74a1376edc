# numpy frames from a backend to the frontend. Arrays are pickled per value
# (protocol 5, the data out of band), and a message this large travels
# through forkbridge's shared-memory lane instead of the socket: no 1 MiB
# copies through the kernel, and small messages are not held up behind it.
# This frontend is done with each frame before the next arrives, so it lets
# received arrays be views of the slot they came in (lend_received_buffers):
# each frame is copied once, by the backend, into shared memory.
import time

import numpy as np

from forkbridge import MessageObject, MessageProcess


class Renderer(MessageProcess):
    lend_received_buffers = True

    def c__render(self, count=0, shape=(512, 512), dtype="float32"):
        for i in range(count):
            frame = np.full(shape, i, dtype=dtype)
            self.send_out__(MessageObject("frame", index=i, frame=frame))


if __name__ == "__main__":
    count = 200
    p = Renderer("renderer")
    p.start()
    pipe = p.getPipe()
    started = time.perf_counter()
    p.sendMessageToBack(MessageObject("render", count=count))
    for i in range(count):
        msg = pipe.recv(timeout=10)
        frame = msg["frame"]
        assert msg["index"] == i and frame.shape == (512, 512) and frame[0, 0] == i
    elapsed = time.perf_counter() - started
    p.stop()
    mib = count * 512 * 512 * 4 / 2**20
    print("%d frames of 1 MiB in %.2f s: %.0f frames/s, %.0f MiB/s" % (
        count, elapsed, count / elapsed, mib / elapsed))
