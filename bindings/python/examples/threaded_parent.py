# A parent that already runs threads (a numpy program with a worker thread,
# holding a lock most of the time) starts backends with the forkserver
# start method: fork would refuse (ForkWithThreadsError), since a forked
# child would inherit the lock held forever. Each backend is a fork of a
# small single-threaded server and gets the process pickled, with its
# shared numpy array and its EventGroup.
import threading
import time

import numpy as np

from forkbridge import EventGroup, MessageObject, MessageProcess, SyncIndex, shared_array

lock = threading.Lock()


class Detector(MessageProcess):
    start_method = "forkserver"

    def __init__(self, name, shape=(120, 160)):
        super().__init__(name)
        self.event_group = EventGroup(4)
        self.frame = shared_array(shape, np.float32)   # shared under every start method

    def c__detect(self, level=0.0, event_index=None):
        with lock:                                      # the backend's own lock: free
            self.frame[:] = level * np.ones(self.frame.shape, np.float32)
        self.send_out__(MessageObject("detected", mean=float(self.frame.mean()),
                                      threads=threading.active_count()))
        self.event_group.set(event_index)

    def detect(self, level):
        with SyncIndex(self.event_group, timeout=10) as i:
            self.sendMessageToBack(MessageObject("detect", level=level, event_index=i))
        return self.getPipe().recv(timeout=10)


def busy(stop):
    while not stop.is_set():
        with lock:                                      # held most of the time
            time.sleep(0.01)


if __name__ == "__main__":
    stop = threading.Event()
    worker = threading.Thread(target=busy, args=(stop,))
    worker.start()
    try:
        detectors = [Detector("detector-%d" % i) for i in range(3)]
        for d in detectors:
            d.start()
        for n, d in enumerate(detectors):
            msg = d.detect(float(n))
            assert msg["mean"] == float(n) and msg["threads"] == 1
            assert (d.frame == float(n)).all()          # the backend's write, seen here
        for d in detectors:
            d.stop()
        print("3 detectors started with forkserver from a threaded parent")
    finally:
        stop.set()
        worker.join()
