"""The few names both halves of the configuration share: the prefix, the error, URL redaction."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

ENV_PREFIX = "STOWAGE_"
REDACTED = "**redacted**"


class ConfigError(Exception):
    """A setting has a value that is not allowed; the message names it and says what is."""


def redact_url(url: str) -> str:
    """Hide the password part of a URL (``postgresql://u:secret@h/db`` → ``postgresql://u:**redacted**@h/db``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", f":{REDACTED}@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
