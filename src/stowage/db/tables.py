"""Table definitions. Every table is created by an Alembic migration; ``alembic check`` keeps them in step."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from stowage.db.base import Base, UTCDateTime


class Instance(Base):
    """The single row describing this installation: a stable id clients can key caches on."""

    __tablename__ = "instance"
    __table_args__ = (CheckConstraint("id = 1", name="singleton"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(36), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
