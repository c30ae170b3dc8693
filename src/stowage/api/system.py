"""HTTP endpoints of the server itself: ``/healthz``, ``/readyz``, ``/metrics``, ``/api/v1/info``."""

from __future__ import annotations

import hmac

import msgspec
from litestar import Controller, Response, get

from stowage.api.deps import Req
from stowage.api.openapi import METRICS_SCHEME, operation
from stowage.errors import ServiceUnavailable, Unauthenticated
from stowage.system.schemas import InstanceInfo, Liveness, Readiness


class HealthController(Controller):
    tags = ["system"]

    @get(
        "/healthz",
        summary="Liveness: the process is up and serving",
        cache=False,
        **operation("healthz", database=False),
    )
    async def healthz(self) -> Liveness:
        return Liveness(status="ok")

    @get(
        "/readyz",
        summary="Readiness: database reachable, schema current, data folder writable",
        description=(
            "200 when every check passes; otherwise 503 problem+json whose `checks` member says which failed and why."
        ),
        **operation("readyz", database=False, errors=(503,)),
    )
    async def readyz(self, request: Req) -> Readiness:
        report = await request.runtime.system.readiness()
        if report.status != "ready":
            failing = ", ".join(f"{name} ({c.error})" for name, c in report.checks.items() if not c.ok)
            raise ServiceUnavailable(f"Not ready: {failing}.", extra={"checks": msgspec.to_builtins(report.checks)})
        return report


class MetricsController(Controller):
    tags = ["system"]

    @get(
        "/metrics",
        summary="Prometheus metrics",
        description="Text exposition format. When `metrics_token` is set, send `Authorization: Bearer <token>`.",
        media_type="text/plain; version=0.0.4; charset=utf-8",
        include_in_schema=True,
        **operation("getMetrics", database=False, security=((METRICS_SCHEME,),)),
    )
    async def metrics(self, request: Req) -> Response[bytes]:
        token = request.runtime.settings.metrics_token
        if token is not None:
            supplied = request.headers.get("authorization", "")
            if not hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
                raise Unauthenticated("Metrics are protected: send Authorization: Bearer <metrics token>.")
        assert request.runtime.metrics is not None
        return Response(request.runtime.metrics.render(), media_type=request.runtime.metrics.content_type)


class InfoController(Controller):
    path = "/api/v1"
    tags = ["system"]

    @get("/info", summary="Server version, API version and this installation's id", **operation("getInfo"))
    async def info(self, request: Req) -> InstanceInfo:
        return await request.runtime.system.instance_info()
