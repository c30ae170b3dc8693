"""Mail: real SMTP delivery to a local aiosmtpd server, failure mapping, the disabled mailer, templates."""

from __future__ import annotations

import email
import email.policy
import socket
import time
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
import structlog
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from stowage.config import Settings
from stowage.errors import ServiceUnavailable
from stowage.mail import (
    DisabledMailer,
    EmailMessageSpec,
    SMTPMailer,
    create_mailer,
    link_for,
    password_reset_email,
    verification_email,
)
from stowage.mail.mailer import NOT_CONFIGURED_DETAIL, build_email
from stowage.mail.templates import format_duration

SENDER = "Stowage <no-reply@stowage.test>"


class CapturingHandler:
    """aiosmtpd handler that keeps every accepted envelope."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[tuple[CapturingHandler, int]]:
    handler = CapturingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


def _settings(port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "none",
        "smtp_from": SENDER,
        "smtp_timeout": 3.0,
        "public_url": "https://files.example.com",
    }
    values.update(overrides)
    return Settings(**values)


def _parse(envelope: Envelope) -> EmailMessage:
    assert isinstance(envelope.content, bytes)
    parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


async def test_verification_email_is_delivered_with_headers_and_link(
    smtp_server: tuple[CapturingHandler, int],
) -> None:
    handler, port = smtp_server
    settings = _settings(port)
    link = link_for(settings, "/verify-email", "tok_abc-123")
    mailer = create_mailer(settings)
    assert isinstance(mailer, SMTPMailer)
    assert mailer.enabled

    await mailer.send(verification_email("ada@example.org", "Ada Lovelace", link, 60))

    assert len(handler.envelopes) == 1
    envelope = handler.envelopes[0]
    assert envelope.mail_from == "no-reply@stowage.test"
    assert envelope.rcpt_tos == ["ada@example.org"]
    parsed = _parse(envelope)
    assert parsed["From"] == SENDER
    assert parsed["To"] == "ada@example.org"
    assert parsed["Subject"] == "Confirm your email address for Stowage"
    assert parsed["Date"] is not None
    assert parsed["Date"].datetime.tzinfo is not None
    assert parsed["Message-ID"].endswith("@stowage.test>")
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    body = parsed.get_content()
    assert link == "https://files.example.com/verify-email?token=tok_abc-123"
    assert link in body
    assert "Hello Ada Lovelace," in body
    assert "1 hour" in body
    assert "did not create" in body


async def test_unicode_subject_name_and_body_survive_delivery(smtp_server: tuple[CapturingHandler, int]) -> None:
    handler, port = smtp_server
    mailer = SMTPMailer(_settings(port))
    text = "Grüße, Zoë — ✓ 日本語\n" + "a long line " * 20 + "\n"

    await mailer.send(EmailMessageSpec(to="zoe@example.org", subject="Héllo ✓", text=text))

    parsed = _parse(handler.envelopes[0])
    assert parsed["Subject"] == "Héllo ✓"
    assert parsed.get_content().replace("\r\n", "\n") == text  # SMTP carries CRLF line ends
    raw = handler.envelopes[0].content
    assert isinstance(raw, bytes)
    assert raw.isascii(), "7-bit clean for servers without 8BITMIME"
    assert max(len(line) for line in raw.splitlines()) <= 78


async def test_password_reset_email_is_delivered(smtp_server: tuple[CapturingHandler, int]) -> None:
    handler, port = smtp_server
    settings = _settings(port)
    link = link_for(settings, "reset-password", "t0k3n")
    await SMTPMailer(settings).send(password_reset_email("bob@example.org", "Bob", link, 30))

    parsed = _parse(handler.envelopes[0])
    assert parsed["Subject"] == "Reset your Stowage password"
    body = parsed.get_content()
    assert "https://files.example.com/reset-password?token=t0k3n" in body
    assert "bob@example.org" in body
    assert "30 minutes" in body
    assert "did not ask for this" in body


async def test_closed_port_raises_service_unavailable_quickly() -> None:
    mailer = SMTPMailer(_settings(_free_port()))
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="unreachable") as caught:
        await mailer.send(EmailMessageSpec(to="a@example.org", subject="s", text="t"))
    assert time.monotonic() - started < 2.0
    assert caught.value.code == "service-unavailable"


async def test_starttls_is_required_not_opportunistic(smtp_server: tuple[CapturingHandler, int]) -> None:
    # The test server offers no STARTTLS: sending in clear text instead would leak the token to anyone on the path.
    handler, port = smtp_server
    mailer = SMTPMailer(_settings(port, smtp_security="starttls"))
    with pytest.raises(ServiceUnavailable):
        await mailer.send(EmailMessageSpec(to="a@example.org", subject="s", text="secret link"))
    assert handler.envelopes == []


async def test_implicit_tls_against_a_plain_server_fails_cleanly(smtp_server: tuple[CapturingHandler, int]) -> None:
    handler, port = smtp_server
    mailer = SMTPMailer(_settings(port, smtp_security="tls", smtp_timeout=2.0))
    with pytest.raises(ServiceUnavailable):
        await mailer.send(EmailMessageSpec(to="a@example.org", subject="s", text="t"))
    assert handler.envelopes == []


async def test_failed_login_is_unavailable_and_never_logs_password_or_body(
    smtp_server: tuple[CapturingHandler, int],
) -> None:
    # aiosmtpd offers AUTH only over TLS by default, so a login over a plain connection is refused.
    handler, port = smtp_server
    mailer = SMTPMailer(_settings(port, smtp_username="robot", smtp_password="hunter2-very-secret"))
    assert "hunter2" not in repr(mailer)
    with structlog.testing.capture_logs() as logs, pytest.raises(ServiceUnavailable, match="refused"):
        await mailer.send(EmailMessageSpec(to="a@example.org", subject="s", text="the-reset-token-xyz"))
    assert handler.envelopes == []
    assert logs, "the failure is logged"
    assert "hunter2" not in repr(logs)
    assert "the-reset-token-xyz" not in repr(logs)


async def test_successful_send_logs_no_body(smtp_server: tuple[CapturingHandler, int]) -> None:
    _, port = smtp_server
    with structlog.testing.capture_logs() as logs:
        await SMTPMailer(_settings(port)).send(EmailMessageSpec(to="a@example.org", subject="s", text="tok-123456"))
    assert [entry["event"] for entry in logs] == ["mail sent"]
    assert "tok-123456" not in repr(logs)


async def test_disabled_mailer_raises_service_unavailable() -> None:
    mailer = create_mailer(Settings())
    assert isinstance(mailer, DisabledMailer)
    assert not mailer.enabled
    with pytest.raises(ServiceUnavailable) as caught:
        await mailer.send(EmailMessageSpec(to="a@example.org", subject="s", text="t"))
    assert caught.value.detail == NOT_CONFIGURED_DETAIL
    assert "STOWAGE_SMTP_HOST" in caught.value.detail


def test_smtp_mailer_requires_a_host() -> None:
    with pytest.raises(ValueError, match="smtp_host"):
        SMTPMailer(Settings())


@pytest.mark.parametrize("field", ["to", "subject"])
def test_header_injection_is_rejected(field: str) -> None:
    values = {"to": "a@example.org", "subject": "Hello", "text": "t"}
    values[field] += "\r\nBcc: victim@example.org"
    with pytest.raises(ValueError, match=r"linefeed|carriage return"):
        build_email(EmailMessageSpec(**values), sender=SENDER)


# --- templates -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "path", "expected"),
    [
        ({"public_url": "https://example.com/"}, "/verify", "https://example.com/verify?token=T"),
        ({"public_url": "https://example.com/stowage"}, "reset", "https://example.com/stowage/reset?token=T"),
        ({"host": "0.0.0.0", "port": 9000}, "/verify", "http://0.0.0.0:9000/verify?token=T"),  # noqa: S104 - a URL, nothing binds
        ({"host": "::1", "port": 8000}, "/verify", "http://[::1]:8000/verify?token=T"),
        ({}, "/app?view=reset", "http://127.0.0.1:8000/app?view=reset&token=T"),
    ],
)
def test_link_for(overrides: dict[str, Any], path: str, expected: str) -> None:
    assert link_for(Settings(**overrides), path, "T") == expected


def test_link_for_encodes_the_token() -> None:
    assert link_for(Settings(), "/v", "a b&c=d/+") == "http://127.0.0.1:8000/v?token=a+b%26c%3Dd%2F%2B"


@pytest.mark.parametrize(
    ("minutes", "text"), [(1, "1 minute"), (5, "5 minutes"), (60, "1 hour"), (90, "90 minutes"), (2880, "2 days")]
)
def test_format_duration(minutes: int, text: str) -> None:
    assert format_duration(minutes) == text


def test_display_name_cannot_inject_lines_into_the_body() -> None:
    hostile = "Eve\n\nYour account is locked, call +1 555 0100\r\n" + "x" * 200
    spec = verification_email("v@example.org", hostile, "https://e.test/v?token=T", 60)
    greeting = spec.text.splitlines()[0]
    assert greeting.startswith("Hello Eve Your account is locked")
    assert greeting.endswith("…,")
    assert len(greeting) <= len("Hello ,") + 64
    assert spec.text.splitlines()[1] == ""


def test_empty_display_name_greets_plainly() -> None:
    spec = password_reset_email("v@example.org", "  ", "https://e.test/r?token=T", 60)
    assert spec.text.startswith("Hello,\n")
