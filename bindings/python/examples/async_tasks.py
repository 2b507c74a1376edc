# valkka-multiprocess's second AsyncBackMessageProcess example (background tasks with
# @exclog), verbatim but for the imports the snippet leaves out.
import asyncio
from forkbridge import AsyncBackMessageProcess, MessageObject, exclog

class MyProcess(AsyncBackMessageProcess):

    @exclog
    async def myStuff__(self, parameter=None):
        print("Regards from other side of the fork!  Got parameter", parameter)
        # DO SOME BLOCKING IO HERE
        print("Did that blocking io wait")

    async def c__myStuff(self, parameter=None):
        asyncio.get_event_loop().create_task(self.myStuff__(parameter=parameter))

    def myStuff(self, parameter=None):
        self.sendMessageToBack(MessageObject(
            "myStuff", parameter=parameter))

p = MyProcess(name="my-process")
p.start()
p.myStuff(parameter="gotcha!")
p.stop()
