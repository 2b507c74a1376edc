# valkka-multiprocess's AsyncBackMessageProcess example, verbatim but for the import
# line (valkka.multiprocess -> forkbridge).
from forkbridge import AsyncBackMessageProcess, MessageObject, exclog

class MyProcess(AsyncBackMessageProcess):

    async def c__myStuff(self, parameter=None):
        # NOTE: this is a coroutine
        # so, here call other coroutine with await
        # send asyncio tasks, etc. etc.
        print("Regards from other side of the fork!  Got parameter", parameter)

    def myStuff(self, parameter=None):
        self.sendMessageToBack(MessageObject(
            "myStuff", parameter=parameter))

p = MyProcess(name="my-process")
pipe = p.getPipe() # returns a custom Duplex instance
fd=pipe.getReadFd() # this can be used with select.select
p.start()
p.myStuff(parameter="gotcha!")
...
p.stop()
