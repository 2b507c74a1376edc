# Tutorial part I's shared-memory pattern: a numpy array in shared memory,
# created before the fork, written by the backend, read by the frontend,
# synchronised with SyncIndex. (The tutorial attaches by name in preRun__; a
# forked child simply inherits the mapping, and nothing is left in /dev/shm.)
import mmap

import numpy as np

from forkbridge import EventGroup, MessageObject, MessageProcess, SyncIndex


class ShmProcess(MessageProcess):

    def __init__(self, name, shape=(480, 640, 3)):
        super().__init__(name)
        self.event_group = EventGroup(10)
        # An anonymous MAP_SHARED mapping: shared with the child, no name.
        self.mem = mmap.mmap(-1, int(np.prod(shape)))
        self.array = np.ndarray(shape, dtype=np.uint8, buffer=self.mem)

    def c__readWrite(self, value=None, event_index=None):
        self.array[:] = value           # the backend writes in place
        self.event_group.set(event_index)

    def readWrite(self, value):
        with SyncIndex(self.event_group, timeout=5) as i:
            self.sendMessageToBack(MessageObject("readWrite", value=value, event_index=i))
        return self.array               # the frontend reads in place


if __name__ == "__main__":
    p = ShmProcess("shm")
    p.start()
    for value in (1, 7, 255):
        a = p.readWrite(value)
        assert (a == value).all()
    print("backend wrote 3 frames of %d bytes in place" % p.array.nbytes)
    p.stop()
