"""Accounts: sign-up, login, sessions, tokens, profile, admin and the audit log."""
