"""Shared helpers for the account HTTP tests: sign-up/login shortcuts, problem+json assertions,
direct database access (for arranging states the API cannot reach, like an expired token) and a
real local SMTP server that captures what the application sends.

Direct database access uses a ``Database`` built from the same settings as the application under
test, so it works the same on SQLite (another engine on the same file) and PostgreSQL (same schema).
"""

from __future__ import annotations

import asyncio
import re
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stowage.accounts.passwords import PasswordHasher
from stowage.accounts.schemas import AdminCreateUserRequest
from stowage.accounts.services import AccountDeps, AdminService, credentials_epoch
from stowage.app import create_app, litestar_of
from stowage.config import Settings, load_or_create_secret
from stowage.db import direct as direct_sql
from stowage.db import sqlite_driver
from stowage.db.engine import Database
from stowage.db.tables import ApiKey, EmailToken, Invite, RefreshToken, Session, User
from stowage.mail.mailer import create_mailer
from stowage.ratelimit import MemoryRateLimiter

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "purple elephant umbrella tango"
PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:stowage:problem:"
BAD_CREDENTIALS = "Email or password is wrong."
CURRENT_ARGON2_PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"
# Limits high enough that no functional test trips the rate limiter by accident.
RELAXED_LIMITS: dict[str, Any] = {"rate_limit_auth_per_ip": 100_000, "rate_limit_auth_per_account": 100_000}

SIGNUP = "/api/v1/auth/signup"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
LOGOUT_ALL = "/api/v1/auth/logout-all"
ME = "/api/v1/me"


# --- HTTP shortcuts -------------------------------------------------------------------------------


def auth(token: str) -> dict[str, str]:
    """The Authorization header for a bearer credential (access token or personal token)."""
    return {"Authorization": f"Bearer {token}"}


async def signup(client: httpx.AsyncClient, email: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
    """Sign up (asserting 201) and return the token pair with the user."""
    response = await client.post(SIGNUP, json={"email": email, "password": password, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
    """Log in (asserting 200) and return the token pair with the user."""
    headers = extra.pop("headers", None)
    response = await client.post(LOGIN, json={"email": email, "password": password, **extra}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def try_login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post(LOGIN, json={"email": email, "password": password})


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post(REFRESH, json={"refresh_token": refresh_token})


async def me_status(client: httpx.AsyncClient, token: str) -> int:
    """The status of GET /api/v1/me with ``token``: 200 while the credential works, 401 once it does not."""
    return (await client.get(ME, headers=auth(token))).status_code


async def create_pat(
    client: httpx.AsyncClient, session_token: str, scopes: list[str], name: str = "script", **extra: Any
) -> dict[str, Any]:
    """Create a personal access token with a session credential; returns ``{"token": …, "details": …}``."""
    response = await client.post(
        f"{ME}/tokens", json={"name": name, "scopes": scopes, **extra}, headers=auth(session_token)
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_problem(
    response: httpx.Response,
    status: int,
    code: str,
    *,
    detail: str | None = None,
    detail_contains: str | tuple[str, ...] = (),
    field: str | None = None,
) -> dict[str, Any]:
    """Assert an RFC 9457 problem response: status, media type, type URN, status member and detail."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON, response.headers
    body: dict[str, Any] = response.json()
    assert body["type"] == TYPE_PREFIX + code, body
    assert body["status"] == status, body
    assert isinstance(body["detail"], str), body
    assert body["detail"], body
    assert body.get("request_id") == response.headers.get("x-request-id"), body
    if detail is not None:
        assert body["detail"] == detail, body
    for fragment in (detail_contains,) if isinstance(detail_contains, str) else detail_contains:
        assert fragment.lower() in body["detail"].lower(), body
    if field is not None:
        assert body.get("errors"), body
        assert body["errors"][0]["field"] == field, body
    if status == 401:
        assert response.headers.get("www-authenticate") == 'Bearer realm="stowage"', response.headers
    if status in {429, 503}:
        assert response.headers.get("retry-after", "").isdigit(), response.headers
        assert body["retry_after"] == int(response.headers["retry-after"]), body
    return body


# --- applications and settings --------------------------------------------------------------------


@asynccontextmanager
async def open_client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """An in-process client for a fully started application built from ``settings``."""
    async with AsyncTestClient(app=create_app(settings)) as client:  # type: ignore[arg-type]
        yield client


@asynccontextmanager
async def concurrent_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests really run concurrently in the test's event loop.

    Litestar's AsyncTestClient hands each request to a blocking portal, so ``asyncio.gather`` over it
    still serves one request at a time; races need this client (httpx's ASGI transport, with the
    application's lifespan entered here).
    """
    app = create_app(settings)
    async with (
        litestar_of(app).lifespan(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local") as client,
    ):
        yield client


# How long ``wait_for`` waits for the requests of a race to line up before failing the test.
LINE_UP_SECONDS = 10.0


@asynccontextmanager
async def lock_held(
    settings: Settings, *, postgres_lock: str, args: Sequence[object] = (), waiting: Sequence[str]
) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
    """Hold a lock from outside the application, to line up its concurrent requests behind it.

    Yields ``wait_for(n)``, which returns once ``n`` requests wait behind the lock and fails the test
    when they do not within ``LINE_UP_SECONDS`` (a race that was never set up must not pass as one).
    The lock is released when the block ends.

    PostgreSQL: an outside transaction runs ``postgres_lock`` (``SELECT … FOR UPDATE``, ``LOCK TABLE …``).
    A waiter is a statement matching one of the ``waiting`` ILIKE patterns that waits for a lock held by
    that transaction, directly or behind another statement that does (``pg_blocking_pids``).

    SQLite: an outside ``BEGIN IMMEDIATE`` holds the write lock of the whole database. Within one process
    the application's writers take turns on one writer connection, so only the first of them meets the
    busy database itself; the others queue for the connection or for the group commit. A waiter is
    therefore a request (a task started inside the block) inside one of the application's write units
    of work (``Database.transaction``, ``Database.direct_transaction``): none can commit before the lock
    is released. ``wait_for`` also needs the application to have found the database busy, which shows
    that the requests really wait for this lock.
    """
    if settings.is_sqlite:
        with _sqlite_writers_watched() as writers:
            connection = sqlite3.connect(settings.data_dir.resolve() / "stowage.db", isolation_level=None)
            try:
                connection.execute("BEGIN IMMEDIATE")

                async def wait_for_writers(waiters: int) -> None:
                    await _line_up(
                        writers.waiting, waiters, "requests waiting for the SQLite write lock", writers.report
                    )

                try:
                    yield wait_for_writers
                finally:
                    connection.execute("ROLLBACK")
            finally:
                connection.close()
        return
    dsn = settings.effective_database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    holder = await asyncpg.connect(dsn, timeout=5)
    watcher = await asyncpg.connect(dsn, timeout=5)
    try:
        await holder.execute(f'SET search_path TO "{settings.database_schema}"')
        holder_pid = holder.get_server_pid()
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute(postgres_lock, *args)

        async def statements_waiting() -> int:
            rows = await watcher.fetch(
                "SELECT pid, pg_blocking_pids(pid) AS blockers, query ILIKE ANY($1) AS wanted"
                " FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                list(waiting),
            )
            behind_the_lock = {holder_pid}
            grown = True
            while grown:  # statements blocked by the holder, or by a statement so blocked, and so on
                before = len(behind_the_lock)
                behind_the_lock |= {row["pid"] for row in rows if behind_the_lock & set(row["blockers"])}
                grown = len(behind_the_lock) > before
            return sum(1 for row in rows if row["wanted"] and row["pid"] in behind_the_lock)

        async def wait_for_statements(waiters: int) -> None:
            await _line_up(statements_waiting, waiters, f"statements like {list(waiting)} waiting for the lock")

        try:
            yield wait_for_statements
        finally:
            await transaction.rollback()
    finally:
        await holder.close()
        await watcher.close()


async def _line_up(
    count: Callable[[], Awaitable[int]], wanted: int, what: str, report: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + LINE_UP_SECONDS
    while (seen := await count()) < wanted:
        if time.monotonic() >= deadline:
            pytest.fail(
                f"only {seen} of {wanted} {what} after {LINE_UP_SECONDS:g} s: the race was not set up. {report()}"
            )
        await asyncio.sleep(0.01)


@dataclass
class _SQLiteWriters:
    """The application's SQLite writers while a test holds the write lock (see ``lock_held``)."""

    others: set[asyncio.Task[Any]]  # tasks that existed before the lock was taken: not requests of the race
    inside: dict[asyncio.Task[Any], int] = field(default_factory=dict)  # task → open write units
    busy: int = 0  # statements that found the database locked

    def requests_inside(self) -> int:
        return sum(1 for task in self.inside if task not in self.others)

    async def waiting(self) -> int:
        return self.requests_inside() if self.busy else 0

    def report(self) -> str:
        return f"Requests inside a write unit of work: {self.requests_inside()}; busy database seen {self.busy} times."


@contextmanager
def _sqlite_writers_watched() -> Iterator[_SQLiteWriters]:
    """Spies on the application's write units of work and on its busy-database checks (both call
    the real implementation)."""
    writers = _SQLiteWriters(others=set(asyncio.all_tasks()))

    def watched(
        unit: Callable[..., AbstractAsyncContextManager[Any]],
    ) -> Callable[..., AbstractAsyncContextManager[Any]]:
        @asynccontextmanager
        async def watched_unit(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            task = asyncio.current_task()
            assert task is not None
            writers.inside[task] = writers.inside.get(task, 0) + 1
            try:
                async with unit(*args, **kwargs) as opened:
                    yield opened
            finally:
                writers.inside[task] -= 1
                if not writers.inside[task]:
                    del writers.inside[task]

        return watched_unit

    def counted(is_busy: Callable[[sqlite3.OperationalError], bool]) -> Callable[[sqlite3.OperationalError], bool]:
        def counted_is_busy(exc: sqlite3.OperationalError) -> bool:
            busy = is_busy(exc)
            writers.busy += busy
            return busy

        return counted_is_busy

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Database, "transaction", watched(Database.transaction))
        patch.setattr(Database, "direct_transaction", watched(Database.direct_transaction))
        real_is_busy = sqlite_driver.is_busy
        patch.setattr(sqlite_driver, "is_busy", counted(real_is_busy))  # ORM statements
        patch.setattr(direct_sql, "is_busy", counted(real_is_busy))  # BEGIN of hand-written units (its import)
        yield writers


def row_lock(
    settings: Settings, table: str, column: str, value: str
) -> AbstractAsyncContextManager[Callable[[int], Awaitable[None]]]:
    """Make the application's UPDATEs of one row wait (see ``lock_held``)."""
    return lock_held(
        settings,
        postgres_lock=f"SELECT 1 FROM {table} WHERE {column} = $1 FOR UPDATE",  # noqa: S608 - test identifiers
        args=[value],
        waiting=[f"UPDATE {table} %"],
    )


# --- direct database access -----------------------------------------------------------------------


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = Database(settings)
    try:
        yield db
    finally:
        await db.dispose()


@asynccontextmanager
async def db_transaction(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A committed write transaction on the application's database, made behind the services' back.

    Afterwards the revocation counter is bumped, as it is after any change the services commit, so the
    workers' remembered credential checks see the edit on their next request."""
    async with database(settings) as db, db.transaction() as session:
        yield session
    credentials_epoch(settings).bump()


async def user_row(settings: Settings, email: str) -> User | None:
    async with database(settings) as db, db.session() as session:
        user: User | None = await session.scalar(select(User).where(User.email == email))
        return user


async def set_password_hash(settings: Settings, email: str, password_hash: str) -> None:
    async with db_transaction(settings) as session:
        await session.execute(update(User).where(User.email == email).values(password_hash=password_hash))


async def expire_api_key(settings: Settings, key_id: str, expires_at: Any) -> None:
    async with db_transaction(settings) as session:
        await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(expires_at=expires_at))


async def expire_email_tokens(settings: Settings, user_id: str, expires_at: Any) -> None:
    async with db_transaction(settings) as session:
        await session.execute(update(EmailToken).where(EmailToken.user_id == user_id).values(expires_at=expires_at))


ACCOUNT_TABLES = {
    "users": User,
    "sessions": Session,
    "refresh_tokens": RefreshToken,
    "api_keys": ApiKey,
    "invites": Invite,
    "email_tokens": EmailToken,
}


async def table_counts(settings: Settings) -> dict[str, int]:
    """Row counts of every account table but the audit log (failures are audited on purpose)."""
    counts: dict[str, int] = {}
    async with database(settings) as db, db.session() as session:
        for name, table in ACCOUNT_TABLES.items():
            counts[name] = int(await session.scalar(select(func.count()).select_from(table)) or 0)
    return counts


async def active_sessions(settings: Settings, user_id: str) -> int:
    async with database(settings) as db, db.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(Session).where(Session.user_id == user_id, Session.revoked_at.is_(None))
        )
        return int(count or 0)


def access_secret(settings: Settings) -> str:
    """The JWT signing secret the application uses (configured, or created in the data folder)."""
    return load_or_create_secret(settings)


async def create_user_directly(
    settings: Settings, email: str, *, role: str = "user", password: str = PASSWORD, display_name: str | None = None
) -> str:
    """Create a user with ``AdminService.create_user_unchecked`` (as ``stowage user create`` does); returns the id.

    Works whatever the sign-up mode; the password goes through the real hasher and policy.
    """
    async with database(settings) as db:
        deps = AccountDeps(
            settings=settings,
            database=db,
            secret=access_secret(settings),
            hasher=PasswordHasher(),
            mailer=create_mailer(settings),
            limiter=MemoryRateLimiter(),
        )
        created = await AdminService(deps).create_user_unchecked(
            AdminCreateUserRequest(email=email, password=password, role=role, display_name=display_name)  # type: ignore[arg-type]
        )
        return created.id


async def make_admin(
    client: httpx.AsyncClient, settings: Settings, email: str, password: str = PASSWORD
) -> dict[str, Any]:
    """Create an administrator directly in the database and log in; returns the token pair."""
    await create_user_directly(settings, email, role="admin", password=password)
    return await login(client, email, password)


# --- a real SMTP server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class MailSink:
    """Messages received by the local SMTP server, parsed; thread-safe (the server runs in a thread)."""

    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd hook name
        parsed = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.messages.append(parsed)
            self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"

    @property
    def settings_overrides(self) -> dict[str, Any]:
        return {"smtp_host": "127.0.0.1", "smtp_port": self.port, "smtp_security": "none"}

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def last(self) -> EmailMessage:
        with self.lock:
            assert self.messages, "no mail was received"
            return self.messages[-1]


_LINK_TOKEN = re.compile(r"https?://\S+[?&]token=(ste_[A-Za-z0-9_\-]+)")


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    text: str = part.get_content()  # type: ignore[attr-defined]
    return text


def token_from_mail(message: EmailMessage) -> str:
    """The ``ste_…`` token carried by the link in a mailed message."""
    match = _LINK_TOKEN.search(body_text(message))
    assert match, f"no ?token=ste_… link in:\n{body_text(message)}"
    return match.group(1)


@contextmanager
def smtp_server() -> Iterator[MailSink]:
    """A real aiosmtpd SMTP server on 127.0.0.1 (plain, no auth) capturing every message."""
    from aiosmtpd.controller import Controller

    sink = MailSink(port=free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def without_keys(body: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in keys}
