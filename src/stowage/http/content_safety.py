"""What a browser would do with user content of a given media type, and the headers that stop it.

Every front end that serves stored bytes over HTTP (REST downloads, and later share links, S3
GetObject and WebDAV GET) applies the same rules: active content (HTML, SVG, script, any ``+xml``)
is only ever sent as an attachment, and every response carries ``nosniff`` and a sandboxing
content-security policy.
"""

from __future__ import annotations

import functools

_WHITESPACE = "\t\n\x0c\r "

# Types a browser would run, or render with the power to run script or load and leak resources.
ACTIVE_TYPES: frozenset[str] = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/xsl",
        "text/css",  # selectors and url() can read and exfiltrate a page's content
        "multipart/x-mixed-replace",
        "application/wasm",
        "application/x-shockwave-flash",
        # Every JavaScript MIME type essence (WHATWG MIME Sniffing §4.6).
        "application/ecmascript",
        "application/javascript",
        "application/x-ecmascript",
        "application/x-javascript",
        "text/ecmascript",
        "text/javascript",
        "text/javascript1.0",
        "text/javascript1.1",
        "text/javascript1.2",
        "text/javascript1.3",
        "text/javascript1.4",
        "text/javascript1.5",
        "text/jscript",
        "text/livescript",
        "text/x-ecmascript",
        "text/x-javascript",
    }
)


def _essence(media_type: str) -> str:
    return media_type.split(";", 1)[0].strip(_WHITESPACE).lower()


def is_active_content(media_type: str) -> bool:
    """Whether a browser would execute this type or render it with script (any ``+xml`` too).

    Case-insensitive; parameters are ignored. PDF is not active: browsers render it in an
    isolated viewer without access to the origin.
    """
    essence = _essence(media_type)
    return essence in ACTIVE_TYPES or essence.endswith("+xml")


@functools.lru_cache(maxsize=1024)
def must_download(media_type: str) -> bool:
    """Whether a response with this type must be ``Content-Disposition: attachment``."""
    return is_active_content(media_type)


# Nothing may load, no script may run, and the document gets an opaque origin.
SANDBOX_POLICY = "default-src 'none'; sandbox"


def safe_serving_headers(media_type: str) -> dict[str, str]:
    """See ``_safe_serving_headers``; a fresh dict each call (callers add to it), from a cached one."""
    return dict(_safe_serving_headers(media_type))


@functools.lru_cache(maxsize=1024)
def _safe_serving_headers(media_type: str) -> dict[str, str]:
    """Headers every response carrying user content adds, whatever its type.

    ``nosniff`` holds the browser to our type, and the sandboxing policy stops a document from
    running script or loading anything should it be rendered anyway. PDF is the exception to the
    policy: Chrome and Safari refuse to run their built-in PDF viewer in a sandboxed document.
    """
    headers = {"x-content-type-options": "nosniff"}
    if _essence(media_type) != "application/pdf":
        headers["content-security-policy"] = SANDBOX_POLICY
    return headers
