"""Application factory: settings in, a ready ASGI application out.

``create_app(settings)`` builds the Litestar application (routes, dependency injection, error
mapping, CORS, OpenAPI) and wraps it in the observability layer. Clients (database engines) are
built in the lifespan, never at import time, and shut down with it.

Granian imports ``create_app_from_env`` as a factory in each worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.static_files import create_static_files_router

from stowage import __version__
from stowage.accounts.passwords import PasswordHasher
from stowage.accounts.services import AccountDeps, AccountServices, PresignService
from stowage.api.accounts import AuthController, MeController
from stowage.api.admin import AdminController
from stowage.api.authn import authenticate_first
from stowage.api.cors import cors_config, install_problem_cors, list_every_method
from stowage.api.files import NodesController
from stowage.api.hot_reads import HotReads
from stowage.api.images import LinkThumbnailsController, ThumbnailsController
from stowage.api.maintenance import SystemAdminController
from stowage.api.openapi_document import openapi_config
from stowage.api.presign import PresignController
from stowage.api.problems import EXCEPTION_HANDLERS, PROBLEM_MEDIA_TYPE, internal_error_body, problem_message
from stowage.api.requests import StowageRequest
from stowage.api.search import SearchController
from stowage.api.share_links import ShareLinksController
from stowage.api.shares import SharesController
from stowage.api.system import HealthController, InfoController, MetricsController
from stowage.api.trash import TrashController
from stowage.api.versions import VersionsController
from stowage.blobs import create_blob_store
from stowage.config import Settings, ensure_data_dir, load_or_create_secret, load_settings
from stowage.db import migrate
from stowage.db.engine import Database
from stowage.errors import RequestHeadersTooLarge
from stowage.files.services import FileDeps, FileServices
from stowage.mail.mailer import create_mailer
from stowage.maintenance.housekeeping import housekeeping_loop
from stowage.media.services import ThumbnailService
from stowage.observability.logging import configure_logging, get_logger
from stowage.observability.metrics import Metrics, flush_every
from stowage.observability.middleware import ObservabilityMiddleware
from stowage.protocols.tus.routes import TusController
from stowage.ratelimit import create_rate_limiter
from stowage.runtime import Runtime
from stowage.sharing.services import SharingDeps, SharingServices
from stowage.system.secret_check import check_shared_secret
from stowage.system.service import SystemService
from stowage.uploads.services import UploadDeps, UploadServices

log = get_logger("stowage.app")

DOCS_ASSETS_PATH = "/docs/assets"
# The docs page runs Swagger UI from our own origin; its inline bootstrap script needs 'unsafe-inline'.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)
CORS_EXPOSE_HEADERS = [
    "X-Request-ID",
    "ETag",
    "Last-Modified",
    "Content-Range",
    "Content-Disposition",
    "Content-Length",
    "Accept-Ranges",
    "Retry-After",
    "Location",
    "WWW-Authenticate",
    "Allow",
    # tus (protocols/tus): what a browser's tus client (tus-js-client, Uppy) must be able to read.
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Concat",
    "Upload-Expires",
    "Stowage-Node-Id",
]


class SchemaOutOfDate(RuntimeError):
    """The database schema is not at this build's revision; the server refuses to serve."""


async def _ensure_schema(settings: Settings, database: Database) -> None:
    """The database at this build's revision: migrated when ``auto_migrate`` allows, else refused."""
    current = await migrate.current_revision(database)
    head = migrate.head_revision()
    if current == head:
        return
    if not settings.auto_migrate:
        raise SchemaOutOfDate(
            f"database schema is at revision {current}, this build needs {head}; run `stowage migrate`"
        )
    log.info("migrating_database", current=current, target=head)
    await migrate.upgrade(database)


def _in_background(stack: AsyncExitStack, work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` as a task for the application's lifetime: cancelled, and waited for, at shutdown."""
    task = asyncio.create_task(work)

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)


def _lifespan(settings: Settings, metrics: Metrics | None, *, freeze_gc: bool) -> Any:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        data_dir = ensure_data_dir(settings)
        secret = load_or_create_secret(settings)
        database = Database(settings)
        stack = AsyncExitStack()
        try:
            await _ensure_schema(settings, database)
            store = create_blob_store(settings)
            stack.push_async_callback(store.close)
            await store.start()  # an unreachable bucket or refused credentials stop the start here
            system = SystemService(
                database,
                data_dir,
                # The data folder is the local store's check already; a bucket gets its own.
                extra_checks={"blob_store": store.check} if settings.blob_store == "s3" else None,
            )
            await system.initialise()
            await check_shared_secret(database, secret)
            limiter = create_rate_limiter(settings)
            stack.push_async_callback(limiter.close)
            accounts = AccountServices.build(
                AccountDeps(
                    settings=settings,
                    database=database,
                    secret=secret,
                    hasher=PasswordHasher(),
                    mailer=create_mailer(settings),
                    limiter=limiter,
                )
            )
            files = FileServices.build(FileDeps(settings=settings, database=database, store=store))
            stack.push_async_callback(files.facts.close)  # image facts computed in the background
            sharing = SharingServices.build(
                SharingDeps(
                    settings=settings,
                    database=database,
                    files=files,
                    hasher=accounts.deps.hasher,
                    limiter=limiter,
                    secret=secret,
                )
            )
            uploads = UploadServices.build(UploadDeps(settings=settings, database=database, store=store, files=files))
            _in_background(stack, housekeeping_loop(files, settings, expire_uploads=uploads.sessions.remove_expired))
            if metrics is not None:
                _in_background(stack, flush_every(metrics))
            app.state.runtime = Runtime(
                settings=settings,
                data_dir=data_dir,
                secret_key=secret,
                database=database,
                metrics=metrics,
                system=system,
                accounts=accounts,
                files=files,
                presign=PresignService(accounts.deps, accounts.auth, files.tree),
                sharing=sharing,
                uploads=uploads,
                media=ThumbnailService(database, store, settings, data_dir),
            )
            log.info(
                "started",
                version=__version__,
                database="sqlite" if database.is_sqlite else "postgresql",
                blob_store=store.describe(),
            )
            if freeze_gc:
                # What start-up made (modules, routes, settings, clients) lives as long as the worker:
                # keep the cyclic garbage collector from walking it again in every full collection (a
                # pause that showed in tail latency). Only in a server worker: frozen objects are never
                # freed, which tests that build many applications in one process cannot afford.
                gc.collect()
                gc.freeze()
            yield
        finally:
            await stack.aclose()
            await database.dispose()
            log.info("stopped")

    return lifespan


def build_litestar(settings: Settings, metrics: Metrics | None, *, freeze_gc: bool = False) -> Litestar:
    """The Litestar application without the outer observability layer."""
    route_handlers: list[Any] = [
        HealthController,
        InfoController,
        AuthController,
        MeController,
        AdminController,
        SystemAdminController,
        NodesController,
        ThumbnailsController,
        LinkThumbnailsController,
        VersionsController,
        TrashController,
        SearchController,
        PresignController,
        SharesController,
        ShareLinksController,
        TusController,
    ]
    if settings.metrics_enabled:
        route_handlers.append(MetricsController)
    static_dir = Path(str(files("stowage") / "web" / "static" / "swagger-ui"))
    route_handlers.append(
        create_static_files_router(path=DOCS_ASSETS_PATH, directories=[static_dir], include_in_schema=False)
    )
    cors = cors_config(
        settings.cors_allow_origins,
        settings.cors_allow_headers,
        credentials=settings.cors_allow_credentials,
        expose=CORS_EXPOSE_HEADERS,
    )
    app = Litestar(
        route_handlers=route_handlers,
        # Authentication runs before any body is read: an anonymous request to a protected route is a 401.
        before_request=authenticate_first,
        request_class=StowageRequest,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=[_lifespan(settings, metrics, freeze_gc=freeze_gc)],
        openapi_config=openapi_config(__version__, docs_assets=DOCS_ASSETS_PATH),
        cors_config=cors,
        request_max_body_size=settings.max_request_body_bytes,
        logging_config=None,
        debug=False,
    )
    install_problem_cors(app)
    list_every_method(app)
    return app


def create_app(settings: Settings, *, freeze_gc: bool = False) -> ObservabilityMiddleware:
    """The full ASGI application for ``settings`` (``freeze_gc``: see the lifespan; server workers only)."""
    metrics = Metrics() if settings.metrics_enabled else None
    litestar_app = build_litestar(settings, metrics, freeze_gc=freeze_gc)
    return observed(HotReads(litestar_app, cors=bool(settings.cors_allow_origins)), settings, metrics)


def observed(inner: Any, settings: Settings, metrics: Metrics | None) -> ObservabilityMiddleware:
    """``inner`` inside the outermost layer (request ids, access log, metrics, security headers).

    ``tests/test_hot_reads.py`` also wraps the bare Litestar application with it, to compare the
    hot-read lane's answers with Litestar's."""
    return ObservabilityMiddleware(
        inner,
        metrics=metrics,
        hsts=settings.hsts,
        page_policies={"/docs": DOCS_CSP},
        body_idle_timeout=settings.body_idle_timeout,
        last_resort=(PROBLEM_MEDIA_TYPE, internal_error_body),
        header_limit=(settings.max_request_header_bytes, headers_too_large),
        trusted_proxies=settings.trusted_proxies,
    )


def headers_too_large(limit: int, sent: int, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The 431 problem for a request whose headers exceed ``max_request_header_bytes``."""
    error = RequestHeadersTooLarge(
        f"The request headers are {sent} bytes; this server accepts at most {limit}.", extra={"limit": limit}
    )
    return problem_message(error, instance=path)


def litestar_of(app: ObservabilityMiddleware) -> Litestar:
    """The Litestar application inside the layers ``create_app`` puts around it (tests and tools read
    its routes, state and lifespan)."""
    lane = app.app
    assert isinstance(lane, HotReads), lane
    return lane.app


def create_app_from_env() -> ObservabilityMiddleware:
    """Granian's factory: read settings from the environment and configure logging for this worker."""
    settings = load_settings()
    configure_logging(settings, per_process_file=settings.workers > 1)
    return create_app(settings, freeze_gc=True)
