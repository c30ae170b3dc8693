"""A bare HTTP/1.1 connection, for what an HTTP client library hides from a test.

httpx always sends whole bodies and quietly opens a new connection when one goes away. Tests of
connection handling need the opposite: send part of a body and stop, send a second request on the
same connection, and see whether the server closed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

# Bounds on waiting, so a server that never answers fails the test instead of hanging it.
ANSWER_WITHIN = 30.0


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request_head(method: str, target: str, headers: Mapping[str, str] | None = None) -> bytes:
    """The request line and headers (``Host`` included), ready for the body."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@contextlib.asynccontextmanager
async def raw_connection(port: int) -> AsyncIterator[RawConnection]:
    """One TCP connection to ``127.0.0.1:port``, closed on exit."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield RawConnection(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class RawConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, data: bytes) -> None:
        """Queue bytes without waiting for the server to take them: it may answer before it reads them."""
        self.writer.write(data)

    async def read_response(self) -> RawResponse:
        async with asyncio.timeout(ANSWER_WITHIN):
            head = await self.reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            headers: dict[str, str] = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            body = await self.reader.readexactly(length)
        return RawResponse(status=int(status_line.split(" ")[1]), headers=headers, body=body)

    async def closed_by_server(self) -> bool:
        """True once the server has closed the connection (end of stream or reset), False if it sends more."""
        try:
            async with asyncio.timeout(ANSWER_WITHIN):
                return await self.reader.read(1) == b""
        except ConnectionResetError:
            return True
