# Tutorial part I, shm2: a shared numpy array created *after* the fork, on
# demand. The frontend creates a named SharedMemory block and tells the
# running backend its name, dtype and shape; the backend attaches by name,
# writes into it, and signals completion through an EventGroup index
# (SyncIndex); "close" detaches it in the backend. The frontend owns the
# block and unlinks it at the end, so nothing is left in /dev/shm.
from multiprocessing import shared_memory

import numpy as np

from forkbridge import EventGroup, MessageObject, MessageProcess, SyncIndex


class ArrayWorker(MessageProcess):

    def __init__(self, name):
        super().__init__(name)
        self.event_group = EventGroup(10)  # before the fork
        self.arrays = {}

    # backend

    def c__create(self, name=None, dtype=None, shape=None, sync_index=None):
        # Attach without registering with multiprocessing's resource
        # tracker: the frontend owns (and unlinks) the block.
        shm = shared_memory.SharedMemory(name=name, track=False) if _HAS_TRACK else _attach(name)
        self.arrays[name] = (shm, np.ndarray(shape, dtype=dtype, buffer=shm.buf))
        self.event_group.set(sync_index)

    def c__fill(self, name=None, value=0, sync_index=None):
        self.arrays[name][1][:] = value
        self.event_group.set(sync_index)

    def c__close(self, name=None, sync_index=None):
        shm, array = self.arrays.pop(name)
        del array
        shm.close()
        self.event_group.set(sync_index)

    # frontend

    def call(self, command, **kwargs):
        with SyncIndex(self.event_group, timeout=5) as i:
            self.sendMessageToBack(MessageObject(command, sync_index=i, **kwargs))


_HAS_TRACK = "track" in shared_memory.SharedMemory.__init__.__code__.co_varnames


def _attach(name):
    # Python < 3.13: attach, then tell the resource tracker not to clean up
    # a block this process does not own.
    from multiprocessing import resource_tracker

    shm = shared_memory.SharedMemory(name=name)
    resource_tracker.unregister(shm._name, "shared_memory")
    return shm


if __name__ == "__main__":
    p = ArrayWorker("arrays")
    p.start()
    shape, dtype = (480, 640, 3), np.uint8
    shm = shared_memory.SharedMemory(create=True, size=int(np.prod(shape)))
    try:
        frame = np.ndarray(shape, dtype=dtype, buffer=shm.buf)
        p.call("create", name=shm.name, dtype="uint8", shape=shape)
        for value in (3, 99, 250):
            p.call("fill", name=shm.name, value=value)
            assert (frame == value).all()
        p.call("close", name=shm.name)
        print("backend filled a %s array created after the fork, 3 times" % (shape,))
        del frame
    finally:
        p.stop()
        shm.close()
        shm.unlink()
