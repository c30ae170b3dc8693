"""Hooks the contract test loads into schemathesis (``SCHEMATHESIS_HOOKS``): tus chunks
(``application/offset+octet-stream``) are raw bytes, serialised like ``application/octet-stream``."""

from __future__ import annotations

import schemathesis

schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
