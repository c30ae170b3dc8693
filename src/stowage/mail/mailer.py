"""Sending email: one ``Mailer`` interface, an SMTP implementation and a stand-in for "not configured".

Mail carries one-time links (email verification, password reset), so neither the SMTP password nor
a message body is ever logged; a delivery failure is logged with the error class and the server's
reply only. Every failure reaches callers as ``ServiceUnavailable`` so each front end maps it once.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
import msgspec

from stowage.config import Settings
from stowage.errors import ServiceUnavailable
from stowage.observability.logging import get_logger

log = get_logger("stowage.mail")

NOT_CONFIGURED_DETAIL = "Email is not configured on this server (set STOWAGE_SMTP_HOST)"
UNREACHABLE_DETAIL = "The mail server is unreachable; please try again later"
REFUSED_DETAIL = "The mail server refused the message; please try again later"


class EmailMessageSpec(msgspec.Struct, frozen=True):
    """What to send: one recipient, a subject and a plain-text body."""

    to: str
    subject: str
    text: str


class Mailer(Protocol):
    @property
    def enabled(self) -> bool:
        """Whether this server can send email at all (flows that need it are offered only then)."""
        ...

    async def send(self, message: EmailMessageSpec) -> None:
        """Hand the message to the mail server; raise ``ServiceUnavailable`` when that fails."""
        ...


def _domain_of(address: str) -> str:
    """The domain of ``Name <user@example.com>`` (``example.com``), used for Message-ID."""
    _, addr_spec = email.utils.parseaddr(address)
    domain = addr_spec.rpartition("@")[2]
    return domain or "localhost"


def build_email(message: EmailMessageSpec, *, sender: str) -> EmailMessage:
    """A complete RFC 5322 message: From, To, Subject, Date, Message-ID and a UTF-8 text/plain body.

    Header values containing line breaks are rejected by the email package (``ValueError``), so a
    crafted subject or address cannot inject extra headers.
    """
    built = EmailMessage()
    built["From"] = sender
    built["To"] = message.to
    built["Subject"] = message.subject
    built["Date"] = email.utils.format_datetime(datetime.now(UTC))
    # An explicit domain: the default calls socket.getfqdn(), a blocking DNS lookup.
    built["Message-ID"] = email.utils.make_msgid(domain=_domain_of(sender))
    # quoted-printable keeps the body 7-bit clean for servers without 8BITMIME and readable in source.
    built.set_content(message.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    return built


class SMTPMailer:
    """Delivers through the configured SMTP server (implicit TLS, STARTTLS or plain), with optional login."""

    def __init__(self, settings: Settings) -> None:
        if not settings.smtp_host:
            raise ValueError("SMTPMailer needs settings.smtp_host; use create_mailer() to pick a mailer")
        self._host = settings.smtp_host
        self._port = settings.smtp_port
        self._security = settings.smtp_security
        self._username = settings.smtp_username
        self._password = settings.smtp_password
        self._sender = settings.smtp_from
        self._timeout = settings.smtp_timeout

    def __repr__(self) -> str:  # never show the password, even in a debugger or a traceback
        return f"SMTPMailer(host={self._host!r}, port={self._port}, security={self._security!r})"

    @property
    def enabled(self) -> bool:
        return True

    async def send(self, message: EmailMessageSpec) -> None:
        built = build_email(message, sender=self._sender)
        recipient_domain = message.to.rpartition("@")[2]
        try:
            await aiosmtplib.send(
                built,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password if self._username is not None else None,
                timeout=self._timeout,
                use_tls=self._security == "tls",
                # Explicit True/False: aiosmtplib's default (None) upgrades only if offered, which a
                # man in the middle can suppress by hiding STARTTLS.
                start_tls=self._security == "starttls",
            )
        except OSError as exc:
            # Refused or dropped connections, timeouts and TLS failures: aiosmtplib's SMTPConnectError,
            # SMTPServerDisconnected and SMTPTimeoutError are all OSErrors, as are ssl.SSLError and socket errors.
            self._log_failure(exc, recipient_domain)
            raise ServiceUnavailable(UNREACHABLE_DETAIL) from exc
        except (aiosmtplib.SMTPException, ValueError) as exc:
            # Authentication failures, refused sender or recipients, rejected data, missing STARTTLS; and
            # an address the mail library cannot use at all (ValueError: no recipient left to send to).
            self._log_failure(exc, recipient_domain)
            raise ServiceUnavailable(REFUSED_DETAIL) from exc
        log.info("mail sent", subject=message.subject, recipient_domain=recipient_domain, smtp_host=self._host)

    def _log_failure(self, exc: BaseException, recipient_domain: str) -> None:
        log.warning(
            "mail delivery failed",
            error=type(exc).__name__,
            smtp_code=getattr(exc, "code", None),
            reason=str(exc),  # the server's reply or the socket error: never the body or the password
            smtp_host=self._host,
            smtp_port=self._port,
            smtp_security=self._security,
            recipient_domain=recipient_domain,
        )


class DisabledMailer:
    """Used when no SMTP server is configured: email flows are unavailable, and say why."""

    def __repr__(self) -> str:
        return "DisabledMailer()"

    @property
    def enabled(self) -> bool:
        return False

    async def send(self, message: EmailMessageSpec) -> None:
        raise ServiceUnavailable(NOT_CONFIGURED_DETAIL)


def create_mailer(settings: Settings) -> Mailer:
    """The SMTP mailer when ``smtp_host`` is set, otherwise the disabled one."""
    if settings.smtp_host:
        return SMTPMailer(settings)
    return DisabledMailer()


__all__ = [
    "NOT_CONFIGURED_DETAIL",
    "DisabledMailer",
    "EmailMessageSpec",
    "Mailer",
    "SMTPMailer",
    "build_email",
    "create_mailer",
]
