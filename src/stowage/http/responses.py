"""ASGI responses that send blob content: zero-copy ``pathsend`` when possible, streaming otherwise.

The plan (status, headers, span) is final before this runs; once the headers are out, a failure can
only abort the connection (raising here makes the server drop it, so a client never mistakes a
truncated body for a complete one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from litestar.response.base import ASGIResponse
from litestar.types import Receive, Scope, Send

from stowage.blobs import BlobCorrupt
from stowage.http.serving import DownloadPlan

PATHSEND = "http.response.pathsend"
# Plain ASGI shapes for BlobResponse, which also sends the ``pathsend`` extension's message (not in
# the framework's typed events) and is called by layers in front of the framework.
RawScope = MutableMapping[str, Any]
RawMessage = MutableMapping[str, Any]
RawReceive = Callable[[], Awaitable[RawMessage]]
RawSend = Callable[[RawMessage], Awaitable[None]]


class ByteSource(Protocol):
    """Where the bytes come from (``files.services.ContentSource``): the front end never holds a store."""

    sha256: str

    def local_file(self) -> str | None: ...
    def open_read(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]: ...


class BlobResponse:
    """Sends a download plan's bytes.

    A plain ASGI callable rather than a framework response: the plan already holds the final status
    and headers, and building Litestar's response object around them cost more per request than
    planning the download (see docs/benchmarks.md). Litestar sends any async callable a handler
    returns as the response; the hot-read lane (``api.hot_reads``) calls it directly.
    """

    __slots__ = ("is_head_response", "plan", "source")

    def __init__(self, plan: DownloadPlan, source: ByteSource, *, head: bool) -> None:
        self.plan = plan
        self.source = source
        self.is_head_response = head

    def encode_headers(self) -> list[tuple[bytes, bytes]]:
        # The plan sets Content-Length itself (the body is not in memory); exactly its headers go out.
        return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.plan.headers.items()]

    async def __call__(self, scope: RawScope, receive: RawReceive, send: RawSend) -> None:
        plan = self.plan
        await send({"type": "http.response.start", "status": plan.status, "headers": self.encode_headers()})
        if self.is_head_response or not plan.has_body:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        extensions: dict[str, Any] = scope.get("extensions") or {}
        if plan.status == 200 and PATHSEND in extensions:
            local_file = self.source.local_file()
            if local_file is not None:
                await send({"type": PATHSEND, "path": local_file})
                return
        chunks: AsyncIterator[bytes] = self.source.open_read(plan.start, plan.end)
        sent = 0
        async for chunk in chunks:
            sent += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if sent != plan.length:
            # The stored file is shorter than its recorded size (possible with verify_reads=off): end the
            # connection without completing the body, so no client takes the short body for the file.
            raise BlobCorrupt(self.source.sha256, f"sent {sent} of {plan.length} bytes: the stored file is short")
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class StreamResponse(ASGIResponse):
    """Streams an async iterator of bytes (ZIP archives) with the given headers."""

    def __init__(self, chunks: AsyncIterator[bytes], *, headers: dict[str, str], head: bool) -> None:
        super().__init__(status_code=200, headers=headers, is_head_response=head)
        self.chunks = chunks
        self.raw_headers = headers

    def encode_headers(self) -> list[tuple[bytes, bytes]]:
        return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.raw_headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.start_response(send=send)
        if not self.is_head_response:
            async for chunk in self.chunks:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
