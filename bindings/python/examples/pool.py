# A pool of workers taking calls, and a supervisor. A call runs a backend's
# c__ method and returns what it returns (or raises RemoteError); submit()
# gives a concurrent.futures.Future. A worker killed mid-work is replaced at
# once, and its calls of an idempotent command go to another worker: every
# call below is answered. The supervisor restarts a crashing process by its
# RestartPolicy and gives it up past the limit.
import os
import signal
import sys
import time

from forkbridge import (
    MessageObject,
    MessageProcess,
    Pool,
    ProcessGaveUp,
    ProcessMessage,
    RemoteError,
    RestartPolicy,
    Supervisor,
)


class Squarer(MessageProcess):

    def c__square(self, x):
        time.sleep(0.001)  # some work
        return x * x

    def c__pid(self):
        return os.getpid()

    def c__check(self, x):
        if x < 0:
            raise ValueError("negative: %d" % x)
        return x


class Flaky(MessageProcess):

    def preRun__(self):
        self.send_out__(MessageObject("hello", pid=os.getpid()))
        sys.exit(3)  # cannot start


if __name__ == "__main__":
    with Pool(Squarer, workers=4, idempotent={"square"}) as pool:
        print("12 squared:", pool.call("square", x=12))
        victim = pool.call("pid")
        futures = [pool.submit("square", x=x) for x in range(200)]
        # Kill a worker while the calls run: its calls go to the others.
        os.kill(victim, signal.SIGKILL)
        total = sum(f.result(timeout=10) for f in pool.as_completed(futures, timeout=10))
        print("200 squares summed: %d by %d workers" % (total, pool.serving()))
        try:
            pool.call("check", x=-1)
        except RemoteError as e:
            print("the backend raised %s: %s" % (e.type_name, e.text))
        for s in pool.status():
            print("  %s: %s, pid %d, %d restarts" % (s.name, s.state, s.pid, s.restarts))

    policy = RestartPolicy.on_failure(max_restarts=2, backoff=0.01)
    with Supervisor(stop_timeout=5) as sup:
        sup.add("flaky", Flaky, policy)
        starts = 0
        while True:
            event = sup.wait_event(timeout=10)
            if isinstance(event, ProcessMessage):
                starts += 1
            elif isinstance(event, ProcessGaveUp):
                print("flaky started %d times, then: %s" % (starts, event.error))
                break
            elif event is None:
                sys.exit("flaky was not given up within 10 s")
