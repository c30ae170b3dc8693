"""REST endpoints for administrators about the installation itself: maintenance runs and storage use."""

from __future__ import annotations

from litestar import Controller, get

from stowage.api.deps import BEARER, Req
from stowage.api.openapi import operation
from stowage.maintenance import runs
from stowage.maintenance.storage import StorageOut, storage_usage


class SystemAdminController(Controller):
    path = "/api/v1/admin"
    tags = ["admin"]
    security = BEARER

    @get(
        "/maintenance",
        **operation("getMaintenance"),
        summary="The last fsck and gc results, and the recent runs",
        description="Runs are recorded by `stowage fsck`, `stowage gc` and the server's hourly housekeeping "
        "(a gc with trash purge and version thinning).",
    )
    async def maintenance(self, request: Req) -> runs.LastRuns:
        return await runs.last_runs(request.runtime.database, request.principal)

    @get(
        "/storage",
        **operation("getStorage"),
        summary="Space used: what users are charged, what the disk holds after deduplication",
    )
    async def storage(self, request: Req) -> StorageOut:
        return await storage_usage(request.runtime.database, request.runtime.data_dir, request.principal)


__all__ = ["SystemAdminController"]
