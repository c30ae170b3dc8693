"""Response bodies of the system endpoints."""

from __future__ import annotations

from datetime import datetime

import msgspec


class Liveness(msgspec.Struct):
    status: str


class CheckResult(msgspec.Struct):
    ok: bool
    duration_ms: float
    error: str | None = None


class Readiness(msgspec.Struct):
    status: str
    checks: dict[str, CheckResult]


class InstanceInfo(msgspec.Struct):
    """What a client needs to know about the server it talks to."""

    name: str
    version: str
    api_version: str
    instance_id: str
    created_at: datetime
    database: str
