"""Declarative base shared by every table, and column types that behave the same on both engines."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

# Constraint names are spelled out so SQLite and PostgreSQL (and therefore migrations written on
# one and applied on the other) agree on them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the engine stores.

    SQLite has no timezone-aware type and hands back naive values; PostgreSQL's ``timestamptz``
    returns aware ones. Normalising here means no caller ever compares naive with aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def search_key(text: str) -> str:
    """The form names are stored and searched in: NFKC, then Unicode case folding.

    Folding in Python (not with SQL ``lower()``) gives both engines the same answer for every script
    ("Straße" matches "STRASSE", full-width letters match ASCII), and lets SQLite use its built-in
    ``LIKE`` on a stored column instead of calling back into Python for every row.
    """
    return unicodedata.normalize("NFKC", text).casefold()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
