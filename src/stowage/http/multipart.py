"""Streaming ``multipart/form-data``: each part's bytes flow straight into the blob writer.

Framework multipart support spools every file to a temporary copy first; here the body is parsed
incrementally (python-multipart) and each file part is exposed as an async iterator of its bytes,
so a 4 GiB file in a form costs the same bounded memory as a raw PUT.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import Message

from python_multipart.multipart import MultipartParser, parse_options_header

from stowage.errors import FieldError, InvalidInput

MAX_FIELD_BYTES = 64 * 1024


@dataclass(slots=True)
class _Event:
    kind: str  # "begin", "header", "data", "end"
    data: bytes = b""
    name: bytes = b""


@dataclass(slots=True)
class Part:
    """One part: its form field name, its filename (None for plain fields) and its content type."""

    name: str
    filename: str | None
    content_type: str | None
    body: AsyncIterator[bytes] = field(repr=False)


def boundary_of(content_type: str | None) -> bytes:
    kind, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidInput(
            "Send multipart/form-data with a boundary (or use a raw PUT for a single file).",
            errors=[FieldError(field="header.content-type", message="expected multipart/form-data; boundary=…")],
        )
    return boundary


class MultipartStream:
    """Iterate the parts of a body; each part must be consumed (or skipped) before the next."""

    def __init__(self, content_type: str | None, body: AsyncIterator[bytes]) -> None:
        self._events: list[_Event] = []
        self._header_field = b""
        self._header_value = b""
        self._ended = False
        self._body = body
        self._parser = MultipartParser(
            boundary_of(content_type),
            callbacks={
                "on_part_begin": lambda: self._events.append(_Event("begin")),
                "on_part_data": lambda data, start, end: self._events.append(_Event("data", data[start:end])),
                "on_part_end": lambda: self._events.append(_Event("end")),
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_end": self._on_end,
            },
            max_header_count=16,
        )

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._events.append(_Event("header", self._header_value, self._header_field.lower()))
        self._header_field = b""
        self._header_value = b""

    def _on_end(self) -> None:
        self._ended = True

    async def _next_event(self) -> _Event | None:
        while not self._events:
            if self._ended:
                return None
            try:
                chunk = await anext(self._body)
            except StopAsyncIteration:
                raise InvalidInput("The multipart body ended before its closing boundary.") from None
            try:
                self._parser.write(chunk)
            except Exception as exc:  # python-multipart raises its own parse errors
                raise InvalidInput(f"The multipart body is malformed: {exc}") from exc
        return self._events.pop(0)

    async def parts(self) -> AsyncIterator[Part]:
        while True:
            event = await self._next_event()
            if event is None:
                return
            if event.kind != "begin":
                continue
            headers: dict[bytes, bytes] = {}
            pending: list[bytes] = []
            while True:
                event = await self._next_event()
                if event is None:
                    raise InvalidInput("The multipart body ended inside a part's headers.")
                if event.kind == "header":
                    headers[event.name] = event.data
                    continue
                if event.kind == "data":
                    pending.append(event.data)
                break_on = event.kind in {"data", "end"}
                if break_on:
                    if event.kind == "end":
                        pending.append(b"")
                        self._events.insert(0, _Event("end"))
                    break
            name, filename = _disposition(headers.get(b"content-disposition", b""))
            finished: list[bool] = [False]
            body = self._part_body(pending, finished)
            yield Part(
                name=name,
                filename=filename,
                content_type=headers.get(b"content-type", b"").decode("latin-1") or None,
                body=body,
            )
            if not finished[0]:
                async for _ in body:  # the consumer skipped this part: drain it
                    pass

    async def _part_body(self, first: list[bytes], finished: list[bool]) -> AsyncIterator[bytes]:
        for chunk in first:
            if chunk:
                yield chunk
        while True:
            event = await self._next_event()
            if event is None or event.kind == "end":
                finished[0] = True
                return
            if event.kind == "data" and event.data:
                yield event.data


def _disposition(raw: bytes) -> tuple[str, str | None]:
    message = Message()
    message["content-disposition"] = raw.decode("utf-8", errors="replace")
    params = dict(message.get_params(header="content-disposition") or [])
    name = params.get("name")
    filename = message.get_filename()
    if not isinstance(name, str):
        raise InvalidInput("A multipart part has no form field name (Content-Disposition: form-data; name=…).")
    return name, filename


async def read_field(part: Part) -> str:
    """The text value of a small form field."""
    data = bytearray()
    async for chunk in part.body:
        data += chunk
        if len(data) > MAX_FIELD_BYTES:
            raise InvalidInput(f"The form field {part.name!r} is longer than {MAX_FIELD_BYTES} bytes.")
    return data.decode("utf-8", errors="strict")
