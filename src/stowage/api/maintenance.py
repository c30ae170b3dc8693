"""REST endpoints for administrators about the installation itself: maintenance runs and storage use."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from stowage.api.authn import provide_principal
from stowage.maintenance import runs
from stowage.maintenance.storage import StorageOut, storage_usage
from stowage.policy import Principal
from stowage.runtime import Runtime

Caller = NamedDependency[Principal | None]


def _runtime(request: Request[Any, Any, State]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


class SystemAdminController(Controller):
    path = "/api/v1/admin"
    tags = ["admin"]
    dependencies = {"principal": Provide(provide_principal), "runtime": Provide(_runtime, sync_to_thread=False)}
    security = [{"bearer": []}]

    @get(
        "/maintenance",
        summary="The last fsck and gc results, and the recent runs",
        description="Runs are recorded by `stowage fsck`, `stowage gc` and the server's hourly housekeeping "
        "(a gc with trash purge and version thinning).",
    )
    async def maintenance(self, runtime: NamedDependency[Runtime], principal: Caller) -> runs.LastRuns:
        return await runs.last_runs(runtime.database, principal)

    @get(
        "/storage",
        summary="Space used: what users are charged, what the disk holds after deduplication",
    )
    async def storage(self, runtime: NamedDependency[Runtime], principal: Caller) -> StorageOut:
        return await storage_usage(runtime.database, runtime.data_dir, principal)


__all__ = ["SystemAdminController"]
