# valkka-multiprocess's MessageProcess example, verbatim but for the import line
# (valkka.multiprocess -> forkbridge).
from forkbridge import MessageProcess, MessageObject

class MyProcess(MessageProcess):

    def c__myStuff(self, parameter=None):
        print("Regards from other side of the fork!  Got parameter", parameter)

    def myStuff(self, parameter=None):
        self.sendMessageToBack(MessageObject(
            "myStuff", parameter=parameter))

p = MyProcess(name="my-process")
pipe = p.getPipe() # returns a multiprocessing.Pipe instance
# ..that can be used as-is with select.select
p.start()
p.myStuff(parameter="gotcha!")
...
p.stop()
