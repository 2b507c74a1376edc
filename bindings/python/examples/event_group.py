# valkka-multiprocess's EventGroup and SyncIndex examples, with their "..." filled in
# (the constructor's super().__init__ and a main program). The import line is
# forkbridge's; `from multiprocessing import Event` stays as in valkka-multiprocess.
from multiprocessing import Event

from forkbridge import EventGroup, MessageObject, MessageProcess, SyncIndex


class YourProcess(MessageProcess):

    def __init__(self, name):
        super().__init__(name)
        self.event_group = EventGroup(10, Event) # create 10 multiprocessing.Event instances

    # multiprocessing backend methods

    def c__ping(self, event_index=None):
        # do something, then trigger the event to indicate that something's done
        self.event_group.set(event_index)

    # multiprocessing frontend methods

    def ping(self):
        i, event = self.event_group.reserve()
        self.sendMessageToBack(MessageObject(
            "ping",
            event_index = i
        ))
        event.wait() # wait until c__ping sets the event
        self.event_group.release(event)

    def ping_sync(self):
        with SyncIndex(self.event_group) as i:
            self.sendMessageToBack(MessageObject(
                "ping",
                event_index = i
            ))
            # SyncIndex context manager:
            # - reserves event from self.event_group
            # - waits until event has been set'ted
            # - releases event back to self.event_group


p = YourProcess("events")
p.start()
for _ in range(100):
    p.ping()
    p.ping_sync()
print("200 pings answered through events")
p.stop()
