"""The emails Stowage sends, as plain text, and the links inside them.

Each template says what the email is for, what to do, when the link expires, and what to do if the
reader did not ask for it. The display name is chosen by whoever signs up, possibly for someone else's
address, so it is cleaned (no line breaks or control characters, bounded length) before it is shown.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from urllib.parse import urlencode

from stowage.config import Settings
from stowage.mail.mailer import EmailMessageSpec

PRODUCT_NAME = "Stowage"
MAX_GREETING_NAME = 64


def link_for(settings: Settings, path: str, token: str) -> str:
    """An absolute link to ``path`` carrying ``token`` as ``?token=``.

    The base is ``settings.public_url`` (which may include a path prefix) or, without it, the address
    the server listens on. ``path`` may already have a query string.
    """
    if settings.public_url:
        base = settings.public_url.rstrip("/")
    else:
        base = f"http://{_url_host(settings.host)}:{settings.port}"
    separator = "&" if "?" in path else "?"
    return f"{base}/{path.lstrip('/')}{separator}{urlencode({'token': token})}"


def _url_host(host: str) -> str:
    """``::1`` → ``[::1]``; names and IPv4 addresses unchanged."""
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    return f"[{host}]" if is_v6 else host


def format_duration(minutes: int) -> str:
    """``60`` → ``1 hour``, ``90`` → ``90 minutes``, ``2880`` → ``2 days``."""
    for unit, size in (("day", 1440), ("hour", 60)):
        if minutes >= size and minutes % size == 0:
            count = minutes // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _greeting(display_name: str) -> str:
    cleaned = "".join(" " if unicodedata.category(ch)[0] in {"C", "Z"} else ch for ch in display_name)
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > MAX_GREETING_NAME:
        cleaned = cleaned[: MAX_GREETING_NAME - 1].rstrip() + "…"
    return f"Hello {cleaned}," if cleaned else "Hello,"


def verification_email(to: str, display_name: str, link: str, expires_minutes: int) -> EmailMessageSpec:
    """Asks the reader to confirm that ``to`` is their address."""
    text = f"""{_greeting(display_name)}

Please confirm that this is your email address for your {PRODUCT_NAME} account by opening this link:

{link}

The link expires in {format_duration(expires_minutes)}. If it has expired, sign in and ask for a new one.

If you did not create a {PRODUCT_NAME} account with this address, you can ignore this email: the address
will not be confirmed and nothing else will happen.

— {PRODUCT_NAME}
"""
    return EmailMessageSpec(to=to, subject=f"Confirm your email address for {PRODUCT_NAME}", text=text)


def password_reset_email(to: str, display_name: str, link: str, expires_minutes: int) -> EmailMessageSpec:
    """Carries the link that lets the reader choose a new password."""
    text = f"""{_greeting(display_name)}

Someone asked to reset the password of the {PRODUCT_NAME} account registered to {to}.
To choose a new password, open this link:

{link}

The link expires in {format_duration(expires_minutes)}. If it has expired, ask for a new one.

If you did not ask for this, you can ignore this email: your password stays the same, and nobody can
change it without this link. Do not forward this email. If you keep receiving these emails without
asking for them, tell the administrator of this {PRODUCT_NAME} server.

— {PRODUCT_NAME}
"""
    return EmailMessageSpec(to=to, subject=f"Reset your {PRODUCT_NAME} password", text=text)
