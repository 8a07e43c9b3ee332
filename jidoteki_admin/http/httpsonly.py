"""An answer for plain HTTP sent to the HTTPS port, the way nginx gives one.

Without it, a client that forgets the ``s`` in ``https://`` gets an empty reply (the TLS
layer drops what is not a handshake) and no idea why. A TLS connection starts with a
handshake record, whose first byte is 0x16; an HTTP request starts with a method in
capital letters. Only the first byte is looked at, then the connection is either handed
to TLS untouched or answered in plain text and closed.
"""

from __future__ import annotations

from typing import Any

from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from .site import early_answer, new_request_id

TLS_HANDSHAKE = 0x16
MESSAGE = "This port speaks HTTPS: use https:// in the URL"


def plain_answer() -> bytes:
    """The same error answer as every other refusal on the wire (site.early_answer)."""
    return early_answer(400, MESSAGE, None, new_request_id())


class _FirstByte(ProtocolWrapper):
    _decided = False

    def dataReceived(self, data: bytes) -> None:
        if not self._decided and data:
            self._decided = True
            if data[0] != TLS_HANDSHAKE and chr(data[0]).isupper():
                self.transport.write(plain_answer())
                self.transport.loseConnection()
                return
        super().dataReceived(data)


class HTTPSOnly(WrappingFactory):
    """Wraps the TLS factory of the HTTPS listener."""

    protocol = _FirstByte

    def __init__(self, wrapped: Any):
        super().__init__(wrapped)

    def logPrefix(self) -> str:
        return self.wrappedFactory.logPrefix()
