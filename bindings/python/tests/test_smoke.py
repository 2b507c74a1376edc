from forkbridge import MessageObject, MessageProcess


class Echo(MessageProcess):
    def c__echo(self, **kwargs):
        self.send_out__(MessageObject("echoed", **kwargs))


def test_echo_round_trip():
    p = Echo("echo")
    p.start()
    try:
        p.sendMessageToBack(MessageObject("echo", a=1, b=[1, 2.5, "x", b"y", None, (1, 2), {"k": [True]}]))
        got = p.getPipe().recv(timeout=5)
        assert got() == "echoed"
        assert got["a"] == 1
        assert got["b"] == [1, 2.5, "x", b"y", None, (1, 2), {"k": [True]}]
    finally:
        p.stop()
    assert p.exitcode == 0
