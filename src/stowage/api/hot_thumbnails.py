"""The hot-read lane's share of thumbnails: a photo grid asks for sixty at once, and a cached one must
cost what a small download costs (``api.hot_reads`` explains the lane).

This module recognises the thumbnail requests the lane may answer — ``GET``/``HEAD`` of
``/api/v1/nodes/<id>/thumbnail`` (bearer or presigned), ``/api/v1/s/<token>/thumbnail`` and
``/api/v1/s/<token>/nodes/<id>/thumbnail`` — when every query parameter is one Litestar would accept as
is (``w``, ``h`` and ``q`` plain decimal numbers in range, ``fit`` and ``format`` from their lists, each
at most once; presign parameters on the first route only). Anything else, even a valid request
written differently, goes to Litestar, whose validation answers it. The answer is built by the same
parts as the routes in ``api.images``.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import msgspec

from stowage.accounts import presign
from stowage.api.authn import authenticate
from stowage.api.images import answer_thumbnail_of
from stowage.http.responses import BlobResponse
from stowage.media.services import TransformRequest
from stowage.policy import require_principal
from stowage.runtime import Runtime

THUMBNAIL_TEMPLATE = "/api/v1/nodes/{node_id}/thumbnail"
LINK_THUMBNAIL_TEMPLATE = "/api/v1/s/{token}/thumbnail"
LINK_NODE_THUMBNAIL_TEMPLATE = "/api/v1/s/{token}/nodes/{item_id}/thumbnail"
_NODES_PREFIX = "/api/v1/nodes/"
_LINK_PREFIX = "/api/v1/s/"
_SUFFIX = "/thumbnail"

_NUMBERS = {b"w": 16384, b"h": 16384, b"q": 100}
_CHOICES = {
    b"fit": frozenset({b"cover", b"contain", b"inside"}),
    b"format": frozenset({b"jpeg", b"png", b"webp", b"avif", b"auto"}),
}
_FIELDS = {b"w": "width", b"h": "height", b"q": "quality", b"fit": "fit", b"format": "format"}
_PARSED: dict[tuple[bytes, bool], TransformRequest | None] = {}
_PARSED_MAX = 1024
_UNKNOWN = object()
_PRESIGN_NAMES = frozenset({presign.EXPIRES.encode(), presign.CREDENTIAL.encode(), presign.SIGNATURE.encode()})


class ThumbnailTarget(msgspec.Struct, frozen=True):
    """A recognised thumbnail request: its route template, the node id or link token, the item inside a
    shared folder, and the transform parameters."""

    template: str
    target: str
    item: str | None
    request: TransformRequest


def recognise(path: str, query: bytes) -> ThumbnailTarget | None:
    """The thumbnail request this lane answers, or None to leave it to Litestar."""
    if not path.endswith(_SUFFIX):
        return None
    if path.startswith(_NODES_PREFIX):
        node_id = path[len(_NODES_PREFIX) : -len(_SUFFIX)]
        if not node_id or "/" in node_id:
            return None
        values = _values(query, presigned=True)
        return None if values is None else ThumbnailTarget(THUMBNAIL_TEMPLATE, node_id, None, values)
    if path.startswith(_LINK_PREFIX):
        parts = path[len(_LINK_PREFIX) : -len(_SUFFIX)].split("/")
        values = _values(query, presigned=False)
        if values is None or not all(parts):
            return None
        if len(parts) == 1:
            return ThumbnailTarget(LINK_THUMBNAIL_TEMPLATE, parts[0], None, values)
        if len(parts) == 3 and parts[1] == "nodes":
            return ThumbnailTarget(LINK_NODE_THUMBNAIL_TEMPLATE, parts[0], parts[2], values)
    return None


def _values(query: bytes, *, presigned: bool) -> TransformRequest | None:
    """The query's transform (memoised: a grid asks with the same few queries thousands of times; presigned
    queries, unique per URL, are parsed every time)."""
    known = _PARSED.get((query, presigned), _UNKNOWN)
    if known is not _UNKNOWN:
        return known  # type: ignore[return-value]  # a TransformRequest or None, as parsed before
    parsed = _parse(query, presigned=presigned)
    if presign.MARKER not in query:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[(query, presigned)] = parsed
    return parsed


def _parse(query: bytes, *, presigned: bool) -> TransformRequest | None:
    values: dict[str, str | int] = {}
    if not query:
        return TransformRequest()
    seen: set[bytes] = set()
    for pair in query.split(b"&"):
        name, equals, value = pair.partition(b"=")
        if name in seen or not equals:
            return None
        seen.add(name)
        if name in _NUMBERS:
            if not value.isdigit() or value.startswith(b"0") or len(value) > 5 or int(value) > _NUMBERS[name]:
                return None
            values[_FIELDS[name]] = int(value)
        elif name in _CHOICES:
            if value not in _CHOICES[name]:
                return None
            values[_FIELDS[name]] = value.decode("ascii")
        elif not (presigned and name in _PRESIGN_NAMES):
            return None
    return msgspec.convert(values, TransformRequest)


async def answer_thumbnail(
    runtime: Runtime,
    scope: MutableMapping[str, Any],
    thumbnail: ThumbnailTarget,
    *,
    method: str,
    header: Callable[[str], str | None],
) -> BlobResponse:
    """Open the source as the matching Litestar route does, then answer with its derivative."""
    request = thumbnail.request
    if request.negotiated:  # Accept chooses the format only for ``auto``
        request = msgspec.structs.replace(request, accept=header("accept"))
    if thumbnail.template is THUMBNAIL_TEMPLATE:
        principal = require_principal(await authenticate(scope, runtime))
        opened = await runtime.files.reading.open_file(principal, thumbnail.target)
    else:
        visitors = runtime.sharing.visitors
        visit = await visitors.visit(thumbnail.target, header("x-share-grant"))
        if thumbnail.item is None:
            opened = visitors.open_content(visit)
        else:
            opened = await visitors.open_node_content(visit, thumbnail.item)
    return await answer_thumbnail_of(runtime.media, opened, request, method=method, header=header)
