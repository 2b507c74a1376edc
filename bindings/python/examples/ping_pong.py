# Tutorial part I: a frontend and a backend playing ping-pong. The backend
# answers every ping with a pong through send_out__; the frontend waits for
# the answers with select on getPipe(), as the tutorial does, and stops the
# backend at the end. The backend ignores SIGINT, so Ctrl-C reaches only the
# frontend, which then stops it cleanly.
import select
import time

from forkbridge import MessageObject, MessageProcess


class PingProcess(MessageProcess):

    def c__ping(self, lis=None):
        self.send_out__(MessageObject("pong", lis=lis))

    def ping(self, lis):
        self.sendMessageToBack(MessageObject("ping", lis=lis))


if __name__ == "__main__":
    p = PingProcess("pinger")
    p.ignoreSIGINT()
    pipe = p.getPipe()
    p.start()
    started = time.perf_counter()
    try:
        for i in range(1000):
            p.ping([i, "ping", i * 0.5])
            ready, _, _ = select.select([pipe], [], [], 5.0)
            assert ready, "no pong within 5 s"
            pong = pipe.recv()
            assert pong() == "pong" and pong["lis"][0] == i
    except KeyboardInterrupt:
        print("you pressed CTRL-C: will exit asap")
    finally:
        p.stop()
    elapsed = time.perf_counter() - started
    print("1000 ping-pongs in %.3f s (%.1f us each), backend exit code %s" % (
        elapsed, elapsed / 1000 * 1e6, p.exitcode))
