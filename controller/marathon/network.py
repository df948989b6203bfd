"""A request that got no answer (refused, timed out, cut short, TLS, DNS), put in words."""

from __future__ import annotations

import socket
import ssl

import aiohttp

from controller.marathon.text import shown

__all__ = ["network_problem"]

# OpenSSL verify codes (x509_vfy.h) that ssl.SSLCertVerificationError.verify_code carries.
_HOSTNAME_MISMATCH = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH
_CERT_EXPIRED = 10  # X509_V_ERR_CERT_HAS_EXPIRED


def network_problem(error: BaseException) -> str:
    """What went wrong on the wire, in an operator's words rather than an exception's name."""
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        code = getattr(error.certificate_error, "verify_code", None)
        if code in _HOSTNAME_MISMATCH:
            return "TLS: hostname mismatch"
        if code == _CERT_EXPIRED:
            return "TLS: certificate expired"
        return "TLS: certificate not trusted"
    if isinstance(error, (aiohttp.ClientSSLError, ssl.SSLError)):
        return "TLS: handshake failed"
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return "timed out connecting"
    if isinstance(error, TimeoutError):  # aiohttp's ServerTimeoutError is one too
        return "timed out waiting for the answer"
    cause = error.os_error if isinstance(error, aiohttp.ClientConnectorError) else error
    if isinstance(error, aiohttp.ClientConnectorDNSError) or isinstance(cause, socket.gaierror):
        return "name not resolved"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the connection was closed before the answer"
    if isinstance(error, aiohttp.ClientPayloadError):
        return "the answer was cut short"
    if isinstance(cause, ConnectionRefusedError):  # asyncio words it "Connect call failed"
        return "connection refused"
    if isinstance(error, ValueError):
        return "not a usable address"
    if isinstance(cause, OSError) and cause.strerror:
        return shown(cause.strerror.lower())
    return "network error"
