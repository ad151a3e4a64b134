"""An origin server on 127.0.0.1, over TLS with a certificate from a CA made at test time
(``trustme``), or plain: every request is answered with JSON describing it, so a test sees
what arrived (path, headers, the client certificate presented) and through what.

``Certificates`` makes the CA, a server certificate for ``127.0.0.1`` and ``localhost``, and a
client certificate, and writes the PEM files a client or a gateway config names.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme

from tests.support.loop_server import LoopServer, header, read_head


@dataclass
class Certificates:
    folder: Path
    ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        self.server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.client = self.ca.issue_cert("client.example.org")
        self.ca_file = self.folder / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        # The client certificate as one file (certificate and key) and as a pair.
        self.client_pem = self.folder / "client.pem"
        self.client.private_key_and_cert_chain_pem.write_to_path(str(self.client_pem))
        self.client_cert = self.folder / "client-cert.pem"
        self.client.cert_chain_pems[0].write_to_path(str(self.client_cert))
        self.client_key = self.folder / "client-key.pem"
        self.client.private_key_pem.write_to_path(str(self.client_key))

    def server_context(self, *, client_cert: bool = False) -> ssl.SSLContext:
        """The origin's context; with ``client_cert`` it requires one signed by the CA."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server.configure_cert(context)
        if client_cert:
            self.ca.configure_trust(context)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


@dataclass
class OriginRecord:
    method: str
    path: str
    headers: dict[str, str]
    client_cert: str | None  # the name in the client certificate presented, if any


class Origin(LoopServer):
    """Answers ``{"method", "path", "headers", "client_cert"}`` with status 200; keeps
    connections alive."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(ssl_context=ssl_context)
        self.records: list[OriginRecord] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        subject = _subject(peer) if peer else None
        while (head := await read_head(reader)) is not None:
            line, headers = head
            method, path, _ = line.split(" ", 2)
            length = int(header(headers, "content-length") or 0)
            if length:
                await reader.readexactly(length)
            record = OriginRecord(method, path, {k.lower(): v for k, v in headers}, subject)
            self.records.append(record)
            body = json.dumps(record.__dict__).encode()
            close = (header(headers, "connection") or "").lower() == "close"
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n%s\r\n%s"
                % (len(body), b"connection: close\r\n" if close else b"", body)
            )
            await writer.drain()
            if close:
                return


def _subject(cert: dict[str, Any]) -> str | None:
    """The subjectAltName (or commonName) of a peer certificate from ``getpeercert()``."""
    for kind, value in cert.get("subjectAltName", ()):
        if kind in ("DNS", "email"):
            return str(value)
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
