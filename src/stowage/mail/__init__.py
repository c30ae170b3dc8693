"""Outgoing email: the ``Mailer`` interface, its SMTP and disabled implementations, and the templates."""

from stowage.mail.mailer import DisabledMailer, EmailMessageSpec, Mailer, SMTPMailer, create_mailer
from stowage.mail.templates import link_for, password_reset_email, verification_email

__all__ = [
    "DisabledMailer",
    "EmailMessageSpec",
    "Mailer",
    "SMTPMailer",
    "create_mailer",
    "link_for",
    "password_reset_email",
    "verification_email",
]
