"""Remote backends over Eclipse Zenoh: the same ``MessageProcess``, with
its backend on another host.

A program on the backend's host serves backends by name (``serve``); a
frontend opens a ``Link`` and attaches to one (``Link.attach``), and gets a
handle with the frontend API of a local ``MessageProcess``:
``sendMessageToBack``, ``getPipe().recv(timeout=...)``, ``returnFromBack``,
``requestStop``, a bounded ``stop()``, ``join``, ``is_alive``, ``exitcode``,
``terminate`` and ``kill`` (forwarded to the serving host)::

    # on the GPU host
    served = serve(Config(listen="tcp/0.0.0.0:7447", namespace="vision"),
                   [Detector("detector-1")])
    served.wait()

    # on the frontend's host
    link = Link.open(Config(connect="tcp/gpu-1:7447", namespace="vision"))
    det = link.attach("detector-1", Detector)    # Detector's frontend methods work
    det.sendMessageToBack(MessageObject("detect", frame=17))
    reply = det.getPipe().recv(timeout=1)
    det.stop()

It speaks the same protocol as the Rust crate ``forkbridge-zenoh``, so
either end may be Rust or Python: the same Zenoh key space
(``fb/<namespace>/<name>/{in,out,in/ack,out/ack,exit,sig,ev}``, liveliness
tokens ``…/alive`` and ``…/owner/<zid>``), the same payloads (whole frames
per sample, made and checked by the Rust core in ``_native``; the exit
status and signals as ``i32`` little-endian, credit as ``u64``), publishers
that block under congestion instead of dropping, the same credit window (a
sender has at most 8 MiB out that its receiver has not written into its
stream, so a backend that stops reading holds up nobody else), and the same
fault model: a backend that dies gives
``BackendGone`` after its last message, with its exit status; its host or
serving program lost gives ``HostLost`` (a ``BackendGone``) within a lease;
a frontend that goes away takes its backends with it unless the serving
side set ``outlive_frontend``.

Events: a backend's ``EventGroup`` is memory of its host, but its sets
cross. Give the served process a ``EventGroup(n, relayed=True)`` attribute
(its backend sets by index as ever), and the frontend's group to
``Link.attach(name, events=group)``: each set arrives as a sample on ``ev``
and sets that group's event, so ``SyncIndex`` works across hosts.

Pickles: values Python pickles (a ``set``, a class instance, a numpy array)
are code for the interpreter that loads them, so a handle never unpickles
what came from the network unless the program opts in, naming whom it
trusts: ``Link.attach(name, trust_pickles=True)`` (the backend served as
``name``), ``serve(..., trust_pickles_from=[zid, ...])`` (frontends by
Zenoh id). Otherwise a refused value raises ``PicklesRefused`` (an
``UnreadableMessage``) in its turn; the stream goes on. Values of the
builtin types (``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``,
``list``, ``tuple``, ``dict``) are not pickles and always cross.

This module needs the ``eclipse-zenoh`` package: ``pip install
forkbridge[remote]``. It is imported when a link opens, not before.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import os
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from . import _native
from ._native import BackendGone, ForkbridgeError, UnreadableMessage
from ._pipe import Duplex
from ._process import MessageProcess
from ._sync import EventGroup

if TYPE_CHECKING:
    import zenoh

__all__ = [
    "DEFAULT_LEASE",
    "Agent",
    "BackendBusy",
    "BackendNotFound",
    "Config",
    "HostLost",
    "Link",
    "LinkError",
    "PicklesRefused",
    "RemoteProcess",
    "Served",
    "StartRefused",
    "Tls",
    "serve",
]

logger = logging.getLogger("forkbridge.remote")

#: How long a peer may stay silent before it is taken for lost (seconds).
DEFAULT_LEASE = 3.0
# A vanished ``alive`` token waits this long for the ``exit`` sample that
# may be behind it (liveliness and data travel apart) before the host is
# declared lost.
_EXIT_GRACE = 0.05
# How long to ask whether another frontend is attached.
_OWNER_QUERY = 0.5
# How long a served backend whose stream ended is waited for.
_REAP_WAIT = 10.0
#: How often a served backend's event sets' thread looks whether it ended.
_SETS_POLL = 0.1
#: The bytes a sender may have out that its receiver has not written into
#: its stream (as the Rust crate's ``carry::WINDOW``); the receiver
#: acknowledges each quarter on the direction's ``ack`` key.
_WINDOW = 8 << 20
_ACK_EVERY = _WINDOW // 4
_ACK_POLL = 0.1
# How long an agent's answer to a start request is waited for.
_START_WAIT = 20.0
# Characters Zenoh gives a meaning in a key.
_BAD_KEY_CHARS = frozenset("/*$?#")

P = TypeVar("P", bound=MessageProcess)


# ---- errors ----------------------------------------------------------------


class LinkError(ForkbridgeError):
    """Zenoh could not open the session or declare what a link needs."""


class BackendNotFound(LinkError):
    """No backend of this name answered within the attach timeout."""


class BackendBusy(LinkError):
    """The backend already has a frontend attached."""


class StartRefused(LinkError):
    """An agent refused to start a backend; the message says why."""


class HostLost(BackendGone):
    """The backend's host, or the link to it, was lost (nothing was heard
    from it within its lease), or its serving program died: the backend's
    exit status is unknown. A ``BackendGone``, so an ``EOFError``."""


class PicklesRefused(UnreadableMessage):
    """A message from the network held a pickled value, and this end does
    not trust its sender: the value was not unpickled (``command`` names
    the message; the next receive returns the message after it). Opt in
    with ``Link.attach(name, trust_pickles=True)`` or
    ``serve(..., trust_pickles_from=[...])``."""


def _refuse_pickle(type_name: str) -> Any:
    # What a refused pickle loads as (see the native ``deliver``): raised
    # inside ``pickle.loads``, so the reader gets it as the cause of an
    # UnreadableMessage in the message's turn.
    raise PicklesRefused(
        "a pickled %s came from the network and was not unpickled: pickles are "
        "code, loaded only from peers the program trusts (Link.attach(name, "
        "trust_pickles=True), serve(..., trust_pickles_from=[...]))" % type_name
    )


def _zenoh() -> ModuleType:
    try:
        import zenoh as z
    except ImportError as e:
        raise ImportError(
            "forkbridge.remote needs the eclipse-zenoh package: "
            "pip install forkbridge[remote]"
        ) from e
    return z


# ---- config ----------------------------------------------------------------


def _check_chunk(what: str, chunk: str) -> None:
    if not chunk or any(c in _BAD_KEY_CHARS or c.isspace() for c in chunk):
        raise ValueError(
            "%s %r: use a non-empty word without '/', '*', '$', '?', '#' or spaces"
            % (what, chunk)
        )


def _endpoints(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@dataclasses.dataclass(frozen=True)
class Tls:
    """Certificates for TLS links with client certificates (as the Rust
    crate's ``Tls``): this side's ``certificate`` and ``private_key``, and
    the ``ca`` that signed every side's certificate; PEM files. Each side
    proves itself and checks the other's, so a peer without a certificate
    the CA signed cannot open a link. ``verify_name``: a connecting side
    checks that the listener's certificate names the host it connects to
    (turn it off only for certificates made without the host's name). Use
    ``tls/<host>:<port>`` endpoints."""

    ca: str
    certificate: str
    private_key: str
    verify_name: bool = True


@dataclasses.dataclass(frozen=True)
class Config:
    """How a link reaches its peers.

    Peer to peer, with no broker and no multicast discovery: one side
    listens on an endpoint (``"tcp/0.0.0.0:7447"``), the other connects to
    it; each takes one endpoint or a list. A namespace keeps deployments
    that share a network apart.

    ``lease`` (seconds, 0.1 to 3600): a peer silent for a whole lease is
    taken for lost, and every backend on it is ``HostLost``; a link sends
    keep-alives four times per lease. A process that dies on a host that
    lives is seen at once whatever the lease (its sockets close).
    ``attach_timeout``: how long ``Link.attach`` waits for the backend to
    be found. ``outlive_frontend`` (serving side): a backend keeps running
    when its frontend goes away, for the next one to attach; off, it is
    stopped as a local backend is when its frontend dies. ``zid``: this
    session's Zenoh id (hex digits; random unless set), which a serving
    side names in ``trust_pickles_from``. ``tls``: certificates for
    ``tls/...`` endpoints (see ``Tls``).
    """

    listen: str | Sequence[str] = ()
    connect: str | Sequence[str] = ()
    namespace: str = "default"
    lease: float = DEFAULT_LEASE
    attach_timeout: float = 10.0
    outlive_frontend: bool = False
    zid: str | None = None
    tls: Tls | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "listen", _endpoints(self.listen))
        object.__setattr__(self, "connect", _endpoints(self.connect))
        _check_chunk("namespace", self.namespace)
        if not 0.1 <= self.lease <= 3600:
            raise ValueError("lease %r s: use 0.1 s to an hour" % self.lease)
        if not self.attach_timeout >= 0:
            raise ValueError("attach_timeout %r: use a number of seconds" % self.attach_timeout)

    def _to_zenoh(self, z: ModuleType) -> zenoh.Config:
        c = z.Config()

        def put(key: str, value: Any) -> None:
            try:
                c.insert_json5(key, json.dumps(value))
            except Exception as e:
                raise ValueError("%s = %r: %s" % (key, value, e)) from None

        put("mode", "peer")
        put("scouting/multicast/enabled", False)
        put("listen/endpoints", list(self.listen))
        put("connect/endpoints", list(self.connect))
        put("transport/link/tx/lease", int(self.lease * 1000))
        put("transport/link/tx/keep_alive", 4)
        # As the Rust crate: the lease, not a slow reader, decides a link
        # is dead (Zenoh closes one whose blocking put waited 5 s).
        put(
            "transport/link/tx/queue/congestion_control/block/wait_before_close",
            int(max(5.0, 2 * self.lease) * 1_000_000),
        )
        if self.zid is not None:
            put("id", self.zid)
        if self.tls is not None:
            tls = "transport/link/tls/"
            put(tls + "root_ca_certificate", os.fspath(self.tls.ca))
            for side in ("listen", "connect"):
                put(tls + side + "_certificate", os.fspath(self.tls.certificate))
                put(tls + side + "_private_key", os.fspath(self.tls.private_key))
            put(tls + "enable_mtls", True)
            put(tls + "verify_name_on_connect", self.tls.verify_name)
        return cast("zenoh.Config", c)


class _Keys:
    """The key space of one backend (as the Rust crate's ``keys.rs``)."""

    def __init__(self, namespace: str, name: str) -> None:
        _check_chunk("namespace", namespace)
        _check_chunk("name", name)
        self.base = "fb/%s/%s" % (namespace, name)
        self.input = self.base + "/in"
        self.output = self.base + "/out"
        self.input_ack = self.base + "/in/ack"
        self.output_ack = self.base + "/out/ack"
        self.exit = self.base + "/exit"
        self.signal = self.base + "/sig"
        self.events = self.base + "/ev"
        self.alive = self.base + "/alive"
        self.owners = self.base + "/owner/*"

    def owner(self, zid: str) -> str:
        return "%s/owner/%s" % (self.base, zid)


def _int_payload(value: int) -> bytes:
    return struct.pack("<i", value)


def _int_of(sample: zenoh.Sample) -> int | None:
    raw = sample.payload.to_bytes()
    return cast(int, struct.unpack("<i", raw)[0]) if len(raw) == 4 else None


def _publisher(session: zenoh.Session, z: ModuleType, key: str) -> zenoh.Publisher:
    # Zenoh's default for a put is to drop under congestion: frames must
    # not be lost, so a slow reader slows its writer instead.
    return session.declare_publisher(key, congestion_control=z.CongestionControl.BLOCK)


def _control_publisher(session: zenoh.Session, z: ModuleType, key: str) -> zenoh.Publisher:
    # Signals and credit: a priority of their own, so that a queue full of
    # frames does not hold them up.
    return session.declare_publisher(
        key,
        congestion_control=z.CongestionControl.BLOCK,
        priority=z.Priority.INTERACTIVE_HIGH,
        express=True,
    )


class _Credits:
    """What a sender may still send: the window less what is out
    unacknowledged (see the Rust crate's ``carry`` module)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._out = 0
        self._ended = False

    def take(self, n: int) -> bool:
        """Waits until the window is open, then counts ``n`` bytes out;
        False once ended."""
        with self._changed:
            self._changed.wait_for(lambda: self._out < _WINDOW or self._ended)
            if self._ended:
                return False
            self._out += n
            return True

    def give(self, n: int) -> None:
        with self._changed:
            self._out = max(0, self._out - n)
            self._changed.notify_all()

    def reset(self) -> None:
        with self._changed:
            self._out = 0
            self._changed.notify_all()

    def end(self) -> None:
        with self._changed:
            self._ended = True
            self._changed.notify_all()


def _credit_subscriber(
    session: zenoh.Session, z: ModuleType, key: str, credits: _Credits
) -> Any:
    """Gives ``credits`` what the receiver acknowledges on ``key``."""

    def on_ack(sample: zenoh.Sample) -> None:
        raw = sample.payload.to_bytes()
        if len(raw) == 8:
            credits.give(cast(int, struct.unpack("<Q", raw)[0]))

    return session.declare_subscriber(key, _direct(z, on_ack))


def _acknowledge(
    wait_delivered: Callable[[int, float], int | None],
    ack: zenoh.Publisher,
    ended: Callable[[], bool],
) -> None:
    """Acknowledges what a stream's writer writes, a quarter window at a
    time, until the stream fails or ``ended`` says so."""
    acked = 0
    while True:
        try:
            total = wait_delivered(acked + _ACK_EVERY, _ACK_POLL)
        except Exception:
            return
        if total is None:
            if ended() or _exiting.is_set():
                return
            continue
        try:
            ack.put(struct.pack("<Q", total - acked))
        except Exception:
            return
        acked = total


def _undeclare(*entities: Any) -> None:
    for entity in entities:
        try:
            entity.undeclare()
        except Exception:
            pass


def _pump(
    reader: _native.FrameReader,
    output: zenoh.Publisher,
    name: str,
    ready: Callable[[int], bool],
) -> None:
    """Publishes a stream's frames, a run of whole ones per sample, until
    the stream ends or the network refuses; a frame that must not cross is
    logged and skipped. ``ready`` is asked before each sample with its
    size (False: drop it)."""
    while True:
        try:
            run = reader.next_run()
        except (ForkbridgeError, ValueError) as e:
            logger.warning("'%s': a frame was not sent: %s", name, e)
            continue
        if run is None:
            return
        if ready(len(run)):
            try:
                output.put(run)
            except Exception as e:
                logger.warning("'%s': the link refused a frame: %s", name, e)
                return


def _direct(z: ModuleType, callback: Callable[[zenoh.Sample], None]) -> Any:
    """``callback`` run in Zenoh's own thread, as the Rust crate's are.

    zenoh-python runs a plain callable in a thread of its own per
    subscriber, which loses the order between keys that the protocol
    relies on: the backend's last frames (``out``) before its ``exit``,
    and that ``exit`` before its ``alive`` token vanishes; a frontend's
    ``owner`` token before its first frame. Run where the samples arrive,
    in their order, the callbacks also slow the sender while a stream is
    full (a write waits without the GIL), as the Rust ones do.
    """
    try:
        return z.handlers.Callback(callback, indirect=False)
    except TypeError:  # a zenoh-python without the (unstable) option
        return callback


def _deliver(
    deliver: Callable[[bytes, bool], None], sample: zenoh.Sample, name: str, trusted: bool
) -> None:
    try:
        deliver(sample.payload.to_bytes(), trusted)
    except Exception as e:
        logger.warning("'%s': dropped a sample from the network: %s", name, e)


def _thread(target: Callable[[], None], name: str) -> threading.Thread:
    t = threading.Thread(target=target, name=name, daemon=True)
    t.start()
    return t


#: Set at exit: the threads that poll (credit, event sets) end.
_exiting = threading.Event()
_pollers: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def _poller(target: Callable[[], None], name: str) -> threading.Thread:
    """A thread of ours that returns to Python every ``_ACK_POLL``: it must
    end before the interpreter finalizes (a daemon thread that takes the
    GIL back then is ended by ``pthread_exit``, whose unwinding through
    native frames aborts the process), so it is joined at exit."""
    t = _thread(target, name)
    _pollers.add(t)
    return t


@atexit.register
def _stop_pollers() -> None:
    _exiting.set()
    deadline = time.monotonic() + 2 * _ACK_POLL + 0.5
    for t in list(_pollers):
        t.join(max(0.0, deadline - time.monotonic()))


# ---- the frontend's side ---------------------------------------------------


class _Fate:
    """Reports the backend's end to the handle, once."""

    def __init__(self, end: _native.RemoteEnd, reason: str) -> None:
        self._end = end
        self._lock = threading.Lock()
        self._ended = False
        self._reason = reason
        #: The ``in`` pump's credit: ended with the backend.
        self.credits = _Credits()
        #: The handle is gone (its stream ended).
        self.closed = False
        #: The frontend's token, withdrawn with the backend's end so that
        #: a replacement of the same name does not find it still owned.
        self.owner: Any = None
        #: Why the host was declared lost (None: it was not).
        self.lost: str | None = None

    def exited(self, raw: int) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self._withdraw()
        try:
            self._end.report_exit(raw)
        except Exception:
            pass  # the handle is gone

    def _withdraw(self) -> None:
        self.credits.end()
        owner, self.owner = self.owner, None
        if owner is not None:
            _undeclare(owner)

    def is_over(self) -> bool:
        """Whether nothing more crosses: the backend ended or the handle
        is gone."""
        return self._ended or self.closed

    def vanished(self) -> None:
        # A thread of ours rather than a Timer, made daemon up front: a
        # Timer made in Zenoh's thread would register that thread with
        # `threading` (a dummy thread, for ever), and the package's fork
        # check would then see it.
        _thread(self._lose, "fb-fate")

    def _lose(self) -> None:
        time.sleep(_EXIT_GRACE)
        self.close(self._reason)

    def close(self, reason: str) -> None:
        """Reports the host lost for ``reason``, unless an end was
        reported already."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
            self.lost = reason
        self._withdraw()
        try:
            self._end.report_lost(reason)
        except Exception:
            pass


class _RemoteDuplex(Duplex):
    """The pipe of a remote handle: ``HostLost`` for a lost host, and
    ``PicklesRefused`` for a value refused on the way in."""

    __slots__ = ("_fate",)

    def __init__(self, native: _native.Process, fate: _Fate) -> None:
        super().__init__(native)
        self._fate = fate

    def _translate(self, e: BaseException) -> BaseException:
        if isinstance(e, BackendGone) and self._fate.lost is not None:
            return HostLost(str(e))
        if isinstance(e, UnreadableMessage) and isinstance(e.__cause__, PicklesRefused):
            refused = PicklesRefused(str(e))
            refused.command = e.command
            return refused
        return e

    def _translated(self, receive: Callable[[float | None], Any], timeout: float | None) -> Any:
        try:
            return receive(timeout)
        except (BackendGone, UnreadableMessage) as e:
            translated = self._translate(e)
            if translated is e:
                raise
            raise translated from e.__cause__

    def recv(self, timeout: float | None = None) -> Any:
        return self._translated(super().recv, timeout)

    def _recv_return(self, timeout: float | None = None) -> Any:
        return self._translated(super()._recv_return, timeout)


class RemoteProcess(MessageProcess):
    """A handle to a backend served elsewhere (``Link.attach``): a
    ``MessageProcess`` frontend, running from the start. ``start()``
    refuses (the serving side started it); ``pid`` is ``None`` (it is a
    process of another host); ``terminate()``, ``kill()`` and ``stop()``'s
    signals are delivered there. ``host_lost`` says why the host was
    declared lost, once it was."""

    _remote_fate: _Fate
    _remote_link: Link

    def start(self, allow_threads: bool | None = None) -> None:
        raise RuntimeError(
            "%s: a remote backend is started by its serving side; this handle runs already"
            % self.pre
        )

    @property
    def host_lost(self) -> str | None:
        return self._remote_fate.lost

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("a handle to a remote backend does not pickle")


_remote_classes: dict[type[MessageProcess], type[RemoteProcess]] = {}


def _remote_class(cls: type[P]) -> type[P]:
    """``cls`` with ``RemoteProcess``'s start and attributes first."""
    if issubclass(cls, RemoteProcess):
        return cls
    made = _remote_classes.get(cls)
    if made is None:
        made = cast(
            "type[RemoteProcess]",
            type(cls.__name__, (RemoteProcess, cls), {"__module__": cls.__module__}),
        )
        _remote_classes[cls] = made
    return cast("type[P]", made)


class Link:
    """An open Zenoh session: a frontend's way to its remote backends
    (``attach``), or a serving program's way to its frontends (``serve``).

    Opening one starts Zenoh's threads, and a process with threads must
    not fork: start local processes first (or with the ``forkserver``
    start method). Close it with ``close()`` or a ``with`` block; handles
    attached through it stop working then.
    """

    def __init__(self, session: zenoh.Session, config: Config, z: ModuleType) -> None:
        self._session = session
        self._config = config
        self._z = z
        self._handles: weakref.WeakSet[RemoteProcess] = weakref.WeakSet()

    @classmethod
    def open(cls, config: Config) -> Link:
        """Opens the session: listens and connects as ``config`` says.
        Raises ``ValueError`` for a setting Zenoh refuses, ``LinkError`` if
        the session cannot be opened (a port in use)."""
        z = _zenoh()
        zc = config._to_zenoh(z)
        try:
            session = z.open(zc)
        except Exception as e:
            raise LinkError("cannot open the Zenoh session: %s" % e) from None
        return cls(session, config, z)

    @property
    def config(self) -> Config:
        return self._config

    @property
    def lease(self) -> float:
        return self._config.lease

    @property
    def zid(self) -> str:
        """This session's Zenoh id (what a serving side's
        ``trust_pickles_from`` names)."""
        return str(self._session.zid())

    def close(self) -> None:
        """Stops the handles attached through this link that still run
        (each within its bounds), then closes the session."""
        for handle in list(self._handles):
            try:
                handle.stop()
            except Exception:
                pass
        try:
            self._session.close()  # type: ignore[no-untyped-call]
        except Exception:
            pass
        for handle in list(self._handles):
            # One whose stop failed ends now: nothing carries its frames.
            handle._remote_fate.close("the link was closed")

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<forkbridge.remote.Link zid=%s namespace=%r>" % (self.zid, self._config.namespace)

    def attach(
        self,
        name: str,
        process_class: type[P] = MessageProcess,  # type: ignore[assignment]
        *,
        trust_pickles: bool = False,
        events: EventGroup | None = None,
    ) -> P:
        """A handle to the backend served as ``name`` in this link's
        namespace, running: an instance of ``process_class`` (a
        ``MessageProcess`` subclass: its frontend methods work, and its
        ``stop_timeout``, ``kill_timeout``, ``max_message_size`` and
        ``lend_received_buffers`` apply; its ``__init__`` is not called).

        ``trust_pickles``: unpickle the pickled values this backend sends
        (off: each raises ``PicklesRefused`` in its turn). Turn it on only
        for a backend whose serving host you trust, on a link others cannot
        join.

        ``events``: the group the frontend reserves from (an ``EventGroup``
        of this host, default event class); the backend's sets in its
        relayed group arrive here and set its events by index.

        Raises ``BackendNotFound`` if no such backend answers within the
        attach timeout, ``BackendBusy`` if another frontend is attached to
        it, ``ValueError`` for a name that cannot be a key, ``LinkError``
        if Zenoh refuses a declaration.
        """
        z = self._z
        session = self._session
        keys = _Keys(self._config.namespace, name)
        cls = _remote_class(process_class)
        if events is not None and (events._native is None or events.relayed):
            raise ValueError(
                "attach(events=...) takes an EventGroup of this host with forkbridge's "
                "events (not relayed, no event_class)"
            )
        native, end = _native.attach(
            name,
            stop_timeout=cls.stop_timeout,
            kill_timeout=cls.kill_timeout,
            max_frame_size=cls.max_message_size,
            lend=cls.lend_received_buffers,
            events=None if events is None else events._native,
        )
        fate = _Fate(
            end,
            "no word from the host serving '%s' within its lease (%s s), or its serving "
            "program died" % (name, self._config.lease),
        )
        declared: list[Any] = []
        try:
            declared.append(
                session.declare_subscriber(
                    keys.output,
                    _direct(z, lambda s: _deliver(end.deliver, s, name, trust_pickles)),
                )
            )

            def on_sets(sample: zenoh.Sample) -> None:
                try:
                    end.deliver_sets(sample.payload.to_bytes())
                except Exception as e:
                    logger.warning("'%s': event sets not set: %s", name, e)

            declared.append(session.declare_subscriber(keys.events, _direct(z, on_sets)))
            declared.append(_credit_subscriber(session, z, keys.input_ack, fate.credits))

            def on_exit(sample: zenoh.Sample) -> None:
                raw = _int_of(sample)
                if raw is not None:
                    fate.exited(raw)

            declared.append(session.declare_subscriber(keys.exit, _direct(z, on_exit)))
            found = threading.Event()

            def on_alive(sample: zenoh.Sample) -> None:
                if sample.kind == z.SampleKind.PUT:
                    found.set()
                else:
                    fate.vanished()

            declared.append(
                session.liveliness().declare_subscriber(
                    keys.alive, _direct(z, on_alive), history=True
                )
            )
            if not found.wait(self._config.attach_timeout):
                raise BackendNotFound(
                    "no backend '%s' in namespace '%s' answered within %s s"
                    % (name, self._config.namespace, self._config.attach_timeout)
                )
            replies = session.liveliness().get(keys.owners, timeout=_OWNER_QUERY)
            for reply in replies:
                if reply.ok is not None:
                    raise BackendBusy("backend '%s' already has a frontend attached" % name)
            input_ = _publisher(session, z, keys.input)
            signals = _control_publisher(session, z, keys.signal)
            output_ack = _control_publisher(session, z, keys.output_ack)
            declared += [input_, signals, output_ack]
            # Declared last: the serving side publishes only once it sees
            # it, and by then it has seen the subscribers above.
            fate.owner = session.liveliness().declare_token(keys.owner(str(session.zid())))
        except BaseException as e:
            _undeclare(*declared)
            # Ends the handle here: dropped while it runs, it would wait
            # for a stop that no transport carries.
            end.report_lost("not attached: %s" % e)
            if isinstance(e, (LinkError, ValueError)) or not isinstance(e, Exception):
                raise
            raise LinkError("cannot attach to '%s': %s" % (name, e)) from None
        reader = end.reader()

        def relay_out() -> None:
            try:
                _pump(reader, input_, name, fate.credits.take)
            finally:
                fate.closed = True
                fate._withdraw()
                # The handle is gone (its stream ended): so is its token,
                # and the serving side stops the backend.
                _undeclare(*reversed(declared))

        def relay_signals() -> None:
            while True:
                try:
                    sig = end.next_signal(3600.0)
                except Exception:
                    return  # the handle is gone
                if sig is not None:
                    try:
                        signals.put(_int_payload(sig))
                    except Exception:
                        return

        _thread(relay_out, "fb-out:" + name)
        _thread(relay_signals, "fb-sig:" + name)
        _poller(
            lambda: _acknowledge(end.wait_delivered, output_ack, fate.is_over),
            "fb-ack:" + name,
        )
        handle = _adopt(cls, name, native, fate, self)
        self._handles.add(cast(RemoteProcess, handle))
        return handle

    def start_on(
        self,
        agent: str,
        kind: str,
        name: str,
        backend: bytes | Mapping[str, Any] = b"",
        process_class: type[P] = MessageProcess,  # type: ignore[assignment]
        *,
        trust_pickles: bool = False,
        events: EventGroup | None = None,
    ) -> P:
        """Asks the agent called ``agent`` in this link's namespace to
        start a backend of the type it registered as ``kind``, as ``name``;
        then attaches to it as ``attach`` does. ``backend``: for a Rust
        agent, the backend value's postcard bytes (``b""`` for a unit
        struct); for a Python ``Agent``, the keyword arguments of the
        class, as a mapping (sent as JSON). Raises ``BackendNotFound`` if
        no such agent answers, ``StartRefused`` with its reason if it
        refuses."""
        _check_chunk("agent", agent)
        _check_chunk("name", name)
        if not isinstance(backend, bytes):
            backend = json.dumps(dict(backend)).encode()
        request = _postcard_bytes(kind.encode()) + _postcard_bytes(name.encode())
        request += _postcard_bytes(backend)
        key = "fbagent/%s/%s/start" % (self._config.namespace, agent)
        replies = self._session.get(key, payload=request, timeout=_START_WAIT)
        answered = False
        for reply in replies:
            answered = True
            if reply.err is not None:
                why = reply.err.payload.to_bytes().decode("utf-8", "replace")
                raise StartRefused("agent '%s' refused to start '%s': %s" % (agent, name, why))
            break
        if not answered:
            raise BackendNotFound(
                "no agent '%s' in namespace '%s' answered within %s s"
                % (agent, self._config.namespace, _START_WAIT)
            )
        return self.attach(name, process_class, trust_pickles=trust_pickles, events=events)


def _postcard_read(data: bytes, at: int) -> tuple[bytes, int]:
    """A postcard string or byte vector at ``at``, and where it ends."""
    n, shift = 0, 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("a malformed start request")
        byte = data[at]
        at += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    if at + n > len(data):
        raise ValueError("a malformed start request")
    return data[at : at + n], at + n


def _kwargs_of(backend: bytes) -> dict[str, Any]:
    """A Python agent's backend arguments: a JSON object, as sent, or
    inside a postcard string (a Rust frontend's ``&json_text``)."""
    if not backend:
        return {}
    candidates = [backend]
    try:
        inner, end = _postcard_read(backend, 0)
        if end == len(backend):
            candidates.append(inner)
    except ValueError:
        pass
    for raw in candidates:
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("the backend's arguments are not a JSON object")


def _postcard_bytes(data: bytes) -> bytes:
    """A postcard string or byte vector: a varint length, then the bytes."""
    n = len(data)
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out) + data


def _adopt(cls: type[P], name: str, native: _native.Process, fate: _Fate, link: Link) -> P:
    """An instance of ``cls`` around an attached native handle: what
    ``MessageProcess.__init__`` sets, without making a process."""
    p = cls.__new__(cls)
    p.name = name
    p.pre = cls.__name__ + "." + name
    p.logger = logging.getLogger(p.pre)
    p.loop = True
    p.listening = False
    p.sigint = True
    p.daemon = False
    p._native = native
    p._pipe = _RemoteDuplex(native, fate)
    if type(p).sendMessageToBack is MessageProcess.sendMessageToBack:
        p.sendMessageToBack = native.send_message_to_back  # type: ignore[method-assign]
    p.back_pipe = None
    p._started = True
    p._exitcode = None
    remote = cast(RemoteProcess, p)
    remote._remote_fate = fate
    remote._remote_link = link
    # Stopped when dropped, or at exit, by the handle's own bounded stop
    # (its waits release the GIL, which the transport's threads need).
    weakref.finalize(p, native.stop)
    return p


# ---- the serving side ------------------------------------------------------


class _ServedBackend:
    """One backend served on a link: its relay, the callbacks and the
    thread that publishes its frames, then its exit."""

    def __init__(
        self, link: Link, relay: _native.Relay, trust: frozenset[str]
    ) -> None:
        z = link._z
        session = link._session
        self.name = relay.name
        self._relay = relay
        self._trust = trust
        self._outlive = link._config.outlive_frontend
        self._changed = threading.Condition()
        self._owners: list[str] = []
        self._stopping = False
        #: What the attached frontend lets the ``out`` pump send.
        self._credits = _Credits()
        self.status: int | None = None
        keys = _Keys(link._config.namespace, self.name)
        reader = relay.reader()
        declared: list[Any] = []
        try:
            declared.append(
                session.declare_subscriber(
                    keys.input,
                    _direct(z, lambda s: _deliver(relay.deliver, s, self.name, self._trusted())),
                )
            )

            def on_signal(sample: zenoh.Sample) -> None:
                sig = _int_of(sample)
                if sig is not None:
                    try:
                        relay.signal(sig)
                    except Exception as e:
                        logger.warning("'%s': signal %d: %s", self.name, sig, e)

            declared.append(session.declare_subscriber(keys.signal, _direct(z, on_signal)))
            declared.append(_credit_subscriber(session, z, keys.output_ack, self._credits))

            def on_owner(sample: zenoh.Sample) -> None:
                zid = str(sample.key_expr).rsplit("/", 1)[-1]
                if sample.kind == z.SampleKind.PUT:
                    self._owner_came(zid)
                else:
                    self._owner_left(zid)

            declared.append(
                session.liveliness().declare_subscriber(
                    keys.owners, _direct(z, on_owner), history=True
                )
            )
            output = _publisher(session, z, keys.output)
            exit_ = _publisher(session, z, keys.exit)
            input_ack = _control_publisher(session, z, keys.input_ack)
            declared += [output, exit_, input_ack]
            sets = _publisher(session, z, keys.events) if relay.has_events else None
            if sets is not None:
                declared.append(sets)
            # Declared last: a frontend that sees it has seen the subscribers.
            declared.append(session.liveliness().declare_token(keys.alive))
        except BaseException:
            _undeclare(*declared)
            raise

        ended = threading.Event()

        def publish_sets() -> None:
            # Until the stream has ended and the queue is empty; sets wait
            # for a frontend as frames do.
            assert sets is not None
            while True:
                done = ended.is_set() or _exiting.is_set()
                try:
                    payload = relay.next_sets(0.001 if done else _SETS_POLL)
                except Exception as e:
                    logger.warning("'%s': event sets stopped: %s", self.name, e)
                    return
                if payload is None:
                    if done:
                        return
                    continue
                if self._wait_attached():
                    try:
                        sets.put(payload)
                    except Exception as e:
                        logger.warning("'%s': the link refused event sets: %s", self.name, e)
                        return

        setter = _poller(publish_sets, "fb-ev:" + self.name) if sets is not None else None
        _poller(
            lambda: _acknowledge(relay.wait_delivered, input_ack, ended.is_set),
            "fb-ack:" + self.name,
        )

        def ready(n: int) -> bool:
            return self._wait_attached() and self._credits.take(n)

        def run() -> None:
            # Frames wait for a frontend; dropped only when stopping.
            _pump(reader, output, self.name, ready)
            ended.set()
            if setter is not None:
                setter.join()
            status = relay.wait(_REAP_WAIT)
            if status is not None:
                try:
                    exit_.put(_int_payload(status))
                except Exception as e:
                    logger.warning("'%s': its exit was not published: %s", self.name, e)
            self.status = status
            _undeclare(*reversed(declared))

        self._thread = _thread(run, "fb-serve:" + self.name)

    def _trusted(self) -> bool:
        """Whether the frames arriving now come from a trusted frontend:
        one is attached whose Zenoh id the program named. (A frame may
        arrive before its sender's token: it waits a little for one.)"""
        if not self._trust:
            return False
        with self._changed:
            self._changed.wait_for(lambda: bool(self._owners), _OWNER_QUERY)
            return any(zid in self._trust for zid in self._owners)

    def _owner_came(self, zid: str) -> None:
        # A new frontend: its stream holds nothing of ours yet.
        self._credits.reset()
        with self._changed:
            self._owners.append(zid.lower())
            self._changed.notify_all()

    def _owner_left(self, zid: str) -> None:
        with self._changed:
            if zid.lower() in self._owners:
                self._owners.remove(zid.lower())
            if self._owners or self._outlive:
                return
        logger.info("'%s': its frontend is gone: stopping it", self.name)
        # Not in Zenoh's callback: a stop takes up to its bounds.
        _thread(self.stop, "fb-stop:" + self.name)

    def _wait_attached(self) -> bool:
        with self._changed:
            self._changed.wait_for(lambda: bool(self._owners) or self._stopping)
            return bool(self._owners)

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._credits.end()
        self._relay.stop()

    def join(self, timeout: float | None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


def _exit_code(raw: int | None) -> int | None:
    return None if raw is None else os.waitstatus_to_exitcode(raw)


class Served:
    """Backends served by this program (see ``serve``)."""

    def __init__(self, link: Link, backends: list[_ServedBackend]) -> None:
        self._link = link
        self._backends = backends

    @property
    def link(self) -> Link:
        """The link the backends are served on."""
        return self._link

    @property
    def names(self) -> list[str]:
        return [b.name for b in self._backends]

    def wait(self, timeout: float | None = None) -> list[tuple[str, int | None]] | None:
        """Waits up to ``timeout`` s (``None``: as long as it takes) until
        every backend has ended, then closes the link and returns each
        one's name and exit code (``multiprocessing``'s: negative for a
        signal; ``None``: not collected); ``None`` if some still run."""
        deadline = None if timeout is None else _now() + timeout
        for b in self._backends:
            left = None if deadline is None else max(0.0, deadline - _now())
            if not b.join(left):
                return None
        self._link.close()
        return [(b.name, _exit_code(b.status)) for b in self._backends]

    def stop(self) -> list[tuple[str, int | None]]:
        """Stops every backend (stop request, then SIGTERM, then SIGKILL,
        within each process's bounds) and waits for them."""
        for b in self._backends:
            b.stop()
        ended = self.wait(_REAP_WAIT + 1)
        if ended is None:
            raise RuntimeError("served backends still running after their stop")
        return ended


def _now() -> float:
    return time.monotonic()


def _relayed_group(p: MessageProcess) -> EventGroup | None:
    """The relayed ``EventGroup`` among ``p``'s attributes, if any."""
    groups = [v for v in vars(p).values() if isinstance(v, EventGroup) and v.relayed]
    if len(groups) > 1:
        raise ValueError(
            "process '%s' holds %d relayed EventGroups: serve one per process"
            % (p.name, len(groups))
        )
    return groups[0] if groups else None


def _for_serving(p: MessageProcess) -> None:
    """Remakes ``p``'s native handle for serving: without the
    shared-memory lane (``large_message_threshold``), which does not cross
    hosts (its large messages take the stream like the others), and bound
    to its relayed ``EventGroup``, whose sets are carried to the
    frontend."""
    group = _relayed_group(p)
    if (p.large_message_threshold is None and group is None) or p._started:
        return
    p._native = _native.Process(
        p.name,
        stop_timeout=p.stop_timeout,
        kill_timeout=p.kill_timeout,
        max_frame_size=p.max_message_size,
        large_threshold=None,
        spin=p.spin_before_sleep,
        lend=p.lend_received_buffers,
        events=None if group is None else group._native,
    )
    if p.__dict__.get("sendMessageToBack") is not None:
        p.sendMessageToBack = p._native.send_message_to_back  # type: ignore[method-assign]


def serve(
    config: Config,
    processes: Iterable[MessageProcess],
    *,
    trust_pickles_from: Iterable[str] = (),
) -> Served:
    """Starts ``processes`` (made, not started: each is started here,
    before Zenoh starts its threads), opens a link with ``config``, and
    serves each backend under its process name until it ends.

    ``trust_pickles_from``: the Zenoh ids (``Link.zid``, set with
    ``Config(zid=...)``) of frontends whose pickled values the backends
    may unpickle; from any other sender each such value is refused (the
    backend reports it as an "error" message, as a value that does not
    load, and goes on). Zenoh ids are not authenticated on plain TCP:
    name them only on a link others cannot join.

    A relayed ``EventGroup`` (``EventGroup(n, relayed=True)``) held as an
    attribute of a process is served with it: its backend's sets go to the
    group its frontend attached with. One per process (``ValueError``
    otherwise).

    Raises what ``start()`` raises (those already started are stopped),
    and as ``Link.open`` does.
    """
    trust = frozenset(zid.lower() for zid in trust_pickles_from)
    processes = list(processes)
    for p in processes:
        # Before any start: a name that cannot be a key, two relayed groups.
        _Keys(config.namespace, p.name)
        _relayed_group(p)
    relays: list[_native.Relay] = []
    try:
        for p in processes:
            _for_serving(p)
            p.start()
            relays.append(_native.into_relay(p._native))
    except BaseException:
        for relay in relays:
            relay.stop()
        raise
    try:
        link = Link.open(config)
    except BaseException:
        for relay in relays:
            relay.stop()
        raise
    backends: list[_ServedBackend] = []
    try:
        for relay in relays:
            backends.append(_ServedBackend(link, relay, trust))
    except BaseException:
        for relay in relays:
            relay.stop()
        link.close()
        raise
    return Served(link, backends)



# ---- the agent ---------------------------------------------------------------


class Agent:
    """A program on a backend's host that starts registered Python backend
    classes when a frontend asks (``Link.start_on``, from Python or Rust),
    and serves each as ``serve`` does::

        agent = Agent("gpu-1", Config(listen="tcp/0.0.0.0:7447"), {"Detector": Detector})
        agent.wait()                     # or agent.stop()

    A request names a registered class, the process name and the class's
    keyword arguments (a JSON object); the agent makes
    ``cls(name, **kwargs)``, starts it by the fork server (its Zenoh
    threads rule out a fork of itself; ``start_method="spawn"`` for a fresh
    interpreter), and serves it under its name. Code does not travel: the
    classes are the agent program's, importable from its main module (the
    fork server imports it, as ``multiprocessing`` does). A refused request
    (an unknown class, a name that runs already, arguments the class does
    not take) answers with the reason: the frontend's ``StartRefused``.
    ``trust_pickles_from`` is ``serve``'s.
    """

    def __init__(
        self,
        name: str,
        config: Config,
        kinds: Mapping[str, type[MessageProcess]],
        *,
        start_method: str = "forkserver",
        trust_pickles_from: Iterable[str] = (),
    ) -> None:
        _check_chunk("agent", name)
        if start_method not in ("forkserver", "spawn"):
            raise ValueError(
                "an agent starts its backends by 'forkserver' or 'spawn', not %r" % start_method
            )
        self.name = name
        self._kinds = dict(kinds)
        self._start_method = start_method
        self._trust = frozenset(zid.lower() for zid in trust_pickles_from)
        self._lock = threading.Lock()
        self._served: list[_ServedBackend] = []
        self._closed = False
        self._link = Link.open(config)
        key = "fbagent/%s/%s/start" % (config.namespace, name)
        try:
            self._queryable = self._link._session.declare_queryable(key, self._answer)
        except BaseException:
            self._link.close()
            raise

    @property
    def link(self) -> Link:
        """The link it answers on."""
        return self._link

    def running(self) -> list[str]:
        """The names of the backends it serves now."""
        with self._lock:
            self._served = [b for b in self._served if not b.join(0)]
            return [b.name for b in self._served]

    def _answer(self, query: zenoh.Query) -> None:
        try:
            payload = query.payload
            self._start(b"" if payload is None else payload.to_bytes())
        except Exception as e:
            logger.warning("start request refused: %s", e)
            query.reply_err(str(e))
            return
        query.reply(query.key_expr, b"")

    def _start(self, payload: bytes) -> None:
        kind, at = _postcard_read(payload, 0)
        name, at = _postcard_read(payload, at)
        backend, _ = _postcard_read(payload, at)
        cls = self._kinds.get(kind.decode("utf-8", "replace"))
        if cls is None:
            raise ValueError("no backend class registered as %r" % kind.decode("utf-8", "replace"))
        process_name = name.decode("utf-8")
        _Keys(self._link._config.namespace, process_name)
        kwargs = _kwargs_of(backend)
        with self._lock:
            if self._closed:
                raise RuntimeError("the agent is stopping")
            self._served = [b for b in self._served if not b.join(0)]
            if any(b.name == process_name for b in self._served):
                raise ValueError("a backend named %r runs already" % process_name)
            try:
                p = cls(process_name, **kwargs)
            except TypeError as e:
                raise ValueError("%s(%r, **%r): %s" % (cls.__name__, process_name, kwargs, e))
            p.start_method = self._start_method  # type: ignore[misc]
            _for_serving(p)
            p.start()
            relay = _native.into_relay(p._native)
            try:
                self._served.append(_ServedBackend(self._link, relay, self._trust))
            except BaseException:
                relay.stop()
                raise
        logger.info("started %r as %r", kind, process_name)

    def stop(self) -> list[tuple[str, int | None]]:
        """Refuses further requests, stops every backend it started (each
        within its bounds), closes the link, and returns how each ended
        (exit codes as ``Served``)."""
        with self._lock:
            self._closed = True
            served, self._served = self._served, []
        _undeclare(self._queryable)
        for b in served:
            b.stop()
        ended = [(b.name, _exit_code(b.status)) for b in served if b.join(_REAP_WAIT + 1)]
        self._link.close()
        return ended

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return "<forkbridge.remote.Agent %r>" % self.name
