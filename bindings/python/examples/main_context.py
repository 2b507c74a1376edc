# Tutorial part II: a MainContext with a swarm of workers. The manager
# starts its workers before any thread, hands out jobs to free workers,
# collects results by select-ing on all their pipes, and on Ctrl-C (the
# workers ignore SIGINT) or when the jobs are done stops them all.
import logging
import random
import time

from forkbridge import MainContext, MessageObject, MessageProcess, safe_select


class Worker(MessageProcess):

    def c__job(self, job=None, numbers=None):
        time.sleep(0.01 * random.random())  # "work"
        self.send_out__(MessageObject("result", job=job, total=sum(numbers)))


class Manager(MainContext):

    def __init__(self, n_workers=4, n_jobs=40):
        self.n_jobs = n_jobs
        self.workers = [Worker("worker-%d" % i) for i in range(n_workers)]
        super().__init__()  # last line: starts processes, then threads

    def startProcesses(self):
        for w in self.workers:
            w.ignoreSIGINT()
            w.start()
        self.pipes = {w.getPipe(): w for w in self.workers}

    def startThreads(self):
        pass

    def close(self):
        for w in self.workers:
            w.requestStop()
        for w in self.workers:
            w.waitStop()

    def __call__(self):
        jobs = list(range(self.n_jobs))
        free = list(self.workers)
        results = {}
        try:
            while len(results) < self.n_jobs:
                while free and jobs:
                    job = jobs.pop()
                    free.pop().sendMessageToBack(
                        MessageObject("job", job=job, numbers=list(range(job + 1))))
                ready, _, _ = safe_select(list(self.pipes) + [self.aux_pipe_read], [], [], 5.0)
                if not ready:
                    raise RuntimeError("no worker answered within 5 s")
                for pipe in ready:
                    if pipe is self.aux_pipe_read:
                        return
                    msg = pipe.recv()
                    if msg() == "result":
                        results[msg["job"]] = msg["total"]
                        free.append(self.pipes[pipe])
        except KeyboardInterrupt:
            print("you pressed CTRL-C: will exit asap")
        finally:
            self.close()
        assert all(results[j] == j * (j + 1) // 2 for j in results)
        print("%d jobs done by %d workers" % (len(results), len(self.workers)))


if __name__ == "__main__":
    Manager.formatLogger(logging.INFO)
    Manager()()
