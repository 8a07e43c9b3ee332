"""The daemon's own site over in-memory connections, pumped by the real reactor.

Most web and API tests check what the daemon answers, not how TLS carries it. They talk
to the same AdminService and its AdminSite, whose AdminRequest parses every byte (the
request line, gotLength, the streamed body, early refusals), through iosim's in-memory
transports instead of a TLS socket: no handshake per connection, no thread per raw
exchange.

iosim leaves pumping to the test, and so does treq.testing's RequestTraversalAgent
(which also serves a plain Site on a memory reactor). The daemon answers some requests
later: once the writer thread has an upload on disk, once a child process is done, once
a delay on its clock is over. So here every write and hang-up schedules a pump on the
real reactor, and a test just awaits its answer.
"""

from __future__ import annotations

import itertools

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.test import iosim
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

# Where the client appears to connect: the daemon's default HTTPS port on loopback.
SERVER_ADDRESS = IPv4Address("TCP", "127.0.0.1", 8443)
_CLIENT_PORTS = itertools.count(40000)
_log = Logger()


class _PumpedTransport(iosim.FakeTransport):
    """iosim's transport, asking for a pump whenever it has something to deliver."""

    def __init__(self, protocol, is_server, host, peer, kick):
        super().__init__(protocol, is_server, hostAddress=host, peerAddress=peer)
        self._kick = kick

    def write(self, data):
        super().write(data)
        self._kick()

    def loseConnection(self):
        super().loseConnection()
        self._kick()

    def abortConnection(self):
        super().abortConnection()
        self._kick()

    def bufferReceived(self, buf):
        try:
            super().bufferReceived(buf)
        except Exception as error:
            # What the reactor does when dataReceived raises: log it and drop the
            # connection, so the other end sees a hang-up rather than waiting for ever.
            _log.failure("{protocol} failed on the bytes it received", protocol=self.protocol)
            self.disconnectReason = error
            self.abortConnection()


class MemoryConnection:
    """A client protocol connected to the site as a TCP client on 127.0.0.1 would be."""

    def __init__(self, site, client):
        self._call = None
        here = IPv4Address("TCP", "127.0.0.1", next(_CLIENT_PORTS))
        self.server = site.buildProtocol(here)
        server_io = _PumpedTransport(self.server, True, SERVER_ADDRESS, here, self.kick)
        client_io = _PumpedTransport(client, False, here, SERVER_ADDRESS, self.kick)
        self.pump = iosim.connect(self.server, server_io, client, client_io, greet=False)

    @property
    def moving(self) -> bool:
        """Bytes or a hang-up are waiting for the next pump."""
        return self._call is not None

    @property
    def open(self) -> bool:
        return not (self.pump.clientIO.disconnected and self.pump.serverIO.disconnected)

    def kick(self) -> None:
        if self._call is None:
            self._call = reactor.callLater(0, self._move)

    def _move(self) -> None:
        self._call = None
        self.pump.flush()

    def hang_up(self) -> None:
        self.pump.clientIO.loseConnection()


class _Recorder(Protocol):
    """The client end of a raw exchange: sends the bytes as given, keeps what comes back."""

    def __init__(self, data: bytes):
        self.data = data
        self.received: list[bytes] = []
        self.closed: Deferred = Deferred()

    def connectionMade(self):
        self.transport.write(self.data)

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason):
        if not self.closed.called:
            self.closed.callback(b"".join(self.received))


@implementer(IAgentEndpointFactory, IStreamClientEndpoint)
class MemoryNetwork:
    """Every connection a test makes to one site: an Agent's endpoint (whatever the URI)
    and raw byte exchanges both connect through it."""

    def __init__(self, site):
        self.site = site
        self.connections: list[MemoryConnection] = []

    def attach(self, client) -> MemoryConnection:
        connection = MemoryConnection(self.site, client)
        self.connections.append(connection)
        return connection

    def endpointForURI(self, uri):
        return self

    def connect(self, protocolFactory):
        protocol = protocolFactory.buildProtocol(SERVER_ADDRESS)
        self.attach(protocol)
        return succeed(protocol)

    async def exchange(self, data: bytes, timeout: float) -> bytes:
        """Write ``data`` to a new connection; everything the server sends until it hangs up."""
        recorder = _Recorder(data)
        connection = self.attach(recorder)
        closed = recorder.closed

        def too_late():
            if not closed.called:
                closed.errback(AssertionError(
                    f"the server neither finished its answer nor closed within {timeout}s;"
                    f" received {b''.join(recorder.received)[:300]!r}"
                ))

        timer = reactor.callLater(timeout, too_late)
        try:
            return await closed
        finally:
            if timer.active():
                timer.cancel()
            if connection.open:
                connection.hang_up()

    async def settle(self) -> None:
        """Turn the reactor until no connection has bytes waiting to be moved."""
        await deferLater(reactor, 0, lambda: None)
        for _ in range(1000):
            if not any(c.moving for c in self.connections):
                return
            await deferLater(reactor, 0, lambda: None)

    async def close(self) -> None:
        """Hang up whatever is still connected and let both ends see it."""
        for connection in self.connections:
            if connection.open:
                connection.hang_up()
        await self.settle()
