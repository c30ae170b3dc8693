"""Readiness checks and instance information; no web framework here."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from stowage import __version__
from stowage.db import migrate
from stowage.db.engine import Database
from stowage.errors import ServiceUnavailable
from stowage.system import repository
from stowage.system.schemas import CheckResult, InstanceInfo, Readiness

API_VERSION = "v1"
CHECK_TIMEOUT_SECONDS = 3.0


Check = Callable[[], Awaitable[None]]


class SystemService:
    def __init__(self, database: Database, data_dir: Path, *, extra_checks: Mapping[str, Check] | None = None) -> None:
        """``extra_checks``: more named readiness checks, e.g. ``blob_store`` when blobs live in an S3 bucket
        (each raises ServiceUnavailable or OSError with the reason when it fails)."""
        self.database = database
        self.data_dir = data_dir
        self.extra_checks = dict(extra_checks or {})

    async def readiness(self) -> Readiness:
        """Run every check concurrently, each bounded by a timeout, and report all of them."""
        checks_to_run: dict[str, Check] = {
            "database": self._check_database,
            "schema": self._check_schema,
            "data_dir": self._check_data_dir,
            **self.extra_checks,
        }
        results = await asyncio.gather(*(self._timed(check) for check in checks_to_run.values()))
        names = tuple(checks_to_run)
        checks = dict(zip(names, results, strict=True))
        status = "ready" if all(c.ok for c in checks.values()) else "unavailable"
        return Readiness(status=status, checks=checks)

    async def _timed(self, check: Callable[[], Awaitable[None]]) -> CheckResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                await check()
        except TimeoutError:
            return CheckResult(False, _ms(started), f"no answer within {CHECK_TIMEOUT_SECONDS:g}s")
        except ServiceUnavailable as exc:
            return CheckResult(False, _ms(started), exc.detail)
        except OSError as exc:
            return CheckResult(False, _ms(started), f"{type(exc).__name__}: {exc.strerror or exc}")
        return CheckResult(True, _ms(started))

    async def _check_database(self) -> None:
        await self.database.ping(CHECK_TIMEOUT_SECONDS)

    async def _check_schema(self) -> None:
        try:
            current = await migrate.current_revision(self.database)
        except Exception as exc:
            raise ServiceUnavailable("cannot read the schema revision (database unreachable)") from exc
        head = migrate.head_revision()
        if current != head:
            raise ServiceUnavailable(f"schema is at revision {current}, this build needs {head}; run `stowage migrate`")

    async def _check_data_dir(self) -> None:
        await asyncio.to_thread(_probe_writable, self.data_dir)

    async def instance_info(self) -> InstanceInfo:
        async with self.database.session() as session:
            row = await repository.get_instance(session)
        if row is None:
            raise ServiceUnavailable("The instance has not been initialised yet; retry shortly.")
        return InstanceInfo(
            name="Stowage",
            version=__version__,
            api_version=API_VERSION,
            instance_id=row.instance_id,
            created_at=row.created_at,
            database="sqlite" if self.database.is_sqlite else "postgresql",
        )

    async def initialise(self) -> None:
        """Create the instance row on first start. Two workers may race; the loser finds the row."""
        try:
            async with self.database.transaction() as session:
                await repository.create_instance_if_missing(session)
        except IntegrityError:
            async with self.database.session() as session:
                if await repository.get_instance(session) is None:
                    raise


def _probe_writable(data_dir: Path) -> None:
    """Create, fsync and remove a file in the data folder's tmp area: proof that writes can land."""
    tmp = data_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    probe = tmp / f".ready-{os.getpid()}-{time.monotonic_ns()}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"ok")
        os.fsync(fd)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
