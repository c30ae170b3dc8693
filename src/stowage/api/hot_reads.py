"""The hot-read lane: GET and HEAD of file content, by path and by id, answered in front of Litestar.

A photo grid asks for sixty files at once, and so will every thumbnail, share link and sync client
to come: these two routes are the server's hottest. Answering one through Litestar — routing,
the request object, parameter parsing, the exception layer, the response object — cost more CPU
than everything Stowage itself does for it (authentication, one indexed read, the download plan;
see docs/benchmarks.md). This layer does exactly what the routes in ``api.files`` do, with the same
parts — ``api.authn`` to establish the caller, the read service to open the file,
``api.downloads.answer_download`` to plan and send it, ``api.problems`` for every error — for the
requests it recognises, and hands every other request to Litestar untouched:

- thumbnails (``api.hot_thumbnails`` says which requests): cached ones cost what a small download does;
- only ``GET``/``HEAD`` of ``/api/v1/content/<path>``, ``/api/v1/nodes/<id>/content`` and a share
  link's ``/api/v1/s/<token>/content`` (no credential: the token and, for a password link, the
  ``X-Share-Grant`` header; answered by the visitor service and ``api.share_links.send_link_content``);
- no query string but ``download=true|false|1|0`` (anything else, even a typo, goes to Litestar,
  whose validation answers it) — and, on ``/api/v1/nodes/<id>/content``, a presigned URL's
  ``X-Stowage-Expires``, ``X-Stowage-Credential`` and ``X-Stowage-Signature`` (``api.authn`` checks
  them as for Litestar's route);
- a path Litestar would not rewrite (no doubled or trailing slash) and no root path;
- no ``Origin`` header when CORS is configured (Litestar's CORS layer answers those), and a Host
  header Litestar accepts (it refuses some characters).

The Litestar routes stay: they publish the operations in the OpenAPI document and serve whatever
this lane declines. ``tests/test_hot_reads.py`` checks that both lanes answer alike.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from litestar import Litestar

from stowage import errors
from stowage.accounts import presign
from stowage.api import hot_thumbnails
from stowage.api.authn import authenticate
from stowage.api.downloads import answer_download
from stowage.api.problems import log_domain_error, problem_message, unexpected_error
from stowage.api.share_links import send_link_content
from stowage.policy import require_principal
from stowage.runtime import Runtime

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CONTENT_PREFIX = "/api/v1/content/"
NODES_PREFIX = "/api/v1/nodes/"
CONTENT_SUFFIX = "/content"
LINK_PREFIX = "/api/v1/s/"
# The route templates Litestar reports for these routes, so metrics and access logs name them alike.
CONTENT_BY_PATH_TEMPLATE = "/api/v1/content/{path}"
CONTENT_BY_ID_TEMPLATE = "/api/v1/nodes/{node_id}/content"
LINK_CONTENT_TEMPLATE = "/api/v1/s/{token}/content"

_METHODS = frozenset({"GET", "HEAD"})
# A presigned URL's query (``accounts.presign``) on a file's content by id, with or without ``download``.
_PRESIGN_NAMES = frozenset({presign.EXPIRES.encode(), presign.CREDENTIAL.encode(), presign.SIGNATURE.encode()})
PRESIGN_MARKER = presign.MARKER
# The query strings this lane answers, and the ``download`` flag each means.
_ATTACHMENT_BY_QUERY: dict[bytes, bool] = {
    b"": False,
    b"download=true": True,
    b"download=1": True,
    b"download=false": False,
    b"download=0": False,
}
# The request headers a download reads (ASGI servers name headers in lower case).
_READ_HEADERS = frozenset(
    {
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"if-range",
        b"range",
        b"origin",
        b"x-share-grant",
        b"accept",
    }
)
# The characters Litestar accepts in a Host header (it answers 400 to others); a request with any
# other is left to it.
# The longest X-Share-Grant the routes accept (``api.share_links``, ``api.images``: max_length).
_GRANT_MAX_LENGTH = 300
_PLAIN_HOST = re.compile(rb"\A[0-9A-Za-z!$&'()*+,;=\-._~:\[\]@%]*\Z")


class HotReads:
    """An ASGI layer between the observability middleware and Litestar; see the module docstring."""

    def __init__(self, app: Litestar, *, cors: bool) -> None:
        self.app = app
        self.cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _METHODS and not scope.get("root_path"):
            query: bytes = scope["query_string"]
            attachment = _ATTACHMENT_BY_QUERY.get(query)
            if attachment is None and PRESIGN_MARKER in query:
                attachment = _presigned_attachment(query, scope["path"])
            if attachment is not None:
                path: str = scope["path"]
                if path.startswith(CONTENT_PREFIX):
                    file_path = path[len(CONTENT_PREFIX) - 1 :]
                    if _plain_path(file_path):
                        await self._serve(scope, receive, send, CONTENT_BY_PATH_TEMPLATE, file_path, attachment)
                        return
                elif path.startswith(NODES_PREFIX) and path.endswith(CONTENT_SUFFIX):
                    node_id = path[len(NODES_PREFIX) : -len(CONTENT_SUFFIX)]
                    if node_id and "/" not in node_id:
                        await self._serve(scope, receive, send, CONTENT_BY_ID_TEMPLATE, node_id, attachment)
                        return
                elif path.startswith(LINK_PREFIX) and path.endswith(CONTENT_SUFFIX):
                    token = path[len(LINK_PREFIX) : -len(CONTENT_SUFFIX)]
                    if token and "/" not in token:
                        await self._serve(scope, receive, send, LINK_CONTENT_TEMPLATE, token, attachment)
                        return
            if (thumbnail := hot_thumbnails.recognise(scope["path"], query)) is not None:
                await self._serve(scope, receive, send, thumbnail.template, thumbnail, False)
                return
        await self.app(scope, receive, send)  # type: ignore[arg-type]

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        template: str,
        target: str | hot_thumbnails.ThumbnailTarget,
        attachment: bool,
    ) -> None:
        headers: dict[str, str] = {}
        plain_host = True
        for name, value in scope["headers"]:
            if name in _READ_HEADERS:
                key = name.decode("latin-1")
                if key not in headers:  # the first of repeated headers, as Litestar
                    headers[key] = value.decode("latin-1")
            elif name == b"host":
                plain_host = _PLAIN_HOST.match(value) is not None
        grant_too_long = len(headers.get("x-share-grant", "")) > _GRANT_MAX_LENGTH  # Litestar's 400 answers it
        if not plain_host or (self.cors and "origin" in headers) or grant_too_long:
            await self.app(scope, receive, send)  # type: ignore[arg-type]
            return
        scope["path_template"] = template
        method: str = scope["method"]
        runtime: Runtime = self.app.state.runtime
        try:
            if isinstance(target, hot_thumbnails.ThumbnailTarget):  # cached thumbnails, like small files
                response = await hot_thumbnails.answer_thumbnail(
                    runtime, scope, target, method=method, header=headers.get
                )
            elif template is LINK_CONTENT_TEMPLATE:  # a visitor: the link is the credential
                visitors = runtime.sharing.visitors
                visit = await visitors.visit(target, headers.get("x-share-grant"))
                opened = visitors.open_content(visit)
                response = await send_link_content(
                    visitors, visit, opened, method=method, header=headers.get, attachment=attachment
                )
            else:
                principal = require_principal(await authenticate(scope, runtime))
                reading = runtime.files.reading
                if template is CONTENT_BY_PATH_TEMPLATE:
                    opened = await reading.open_path(principal, target)
                else:
                    opened = await reading.open_file(principal, target)
                response = await answer_download(opened, method=method, header=headers.get, attachment=attachment)
        except errors.StowageError as exc:
            log_domain_error(exc)
            await _send_problem(send, exc, scope, head=method == "HEAD")
            return
        except Exception as exc:  # a bug: logged with its trace, a problem+json 500 like Litestar's
            await _send_problem(send, unexpected_error(scope["path"], exc), scope, head=method == "HEAD")
            return
        await response(scope, receive, send)


def _presigned_attachment(query: bytes, path: str) -> bool | None:
    """The ``download`` flag of a presigned URL's query on a file's content by id — the only presigned
    read — or None to leave the request to Litestar: any other parameter, a repeated one, or another
    path. (Whether the URL is valid is ``authenticate``'s to say, alike in both lanes.)"""
    if not (path.startswith(NODES_PREFIX) and path.endswith(CONTENT_SUFFIX)):
        return None
    attachment = False
    seen: set[bytes] = set()
    for pair in query.split(b"&"):
        name = pair.partition(b"=")[0]
        if name in seen:
            return None
        seen.add(name)
        if name == b"download":
            flag = _ATTACHMENT_BY_QUERY.get(pair)
            if flag is None:
                return None
            attachment = flag
        elif name not in _PRESIGN_NAMES:
            return None
    return attachment


def _plain_path(path: str) -> bool:
    """Whether Litestar would hand this path to the route unchanged (it collapses doubled slashes and
    drops a trailing one before routing); this lane leaves those few to it."""
    return len(path) > 1 and not path.endswith("/") and "//" not in path


async def _send_problem(send: Send, error: errors.StowageError, scope: Scope, *, head: bool) -> None:
    status, headers, body = problem_message(error, instance=scope["path"])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body, "more_body": False})
