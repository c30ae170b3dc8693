"""The reference for Stowage's routing and middleware overhead: a bare Litestar app with one route.

GET /healthz returns a msgspec struct, as Stowage's own /healthz does, but with no middleware,
no logging, no OpenAPI and no dependencies. bench/run.sh (extra BARE) serves it with Granian on the
same core as Stowage:

    .venv/bin/granian --interface asgi --workers 1 --no-ws --log-level warning \
        --host 127.0.0.1 --port 8001 --working-dir bench bare_litestar:app
"""

from __future__ import annotations

import msgspec
from litestar import Litestar, get  # noqa: TID251 - a stand-alone reference app, not part of Stowage


class Liveness(msgspec.Struct):
    status: str


@get("/healthz", cache=False)
async def healthz() -> Liveness:
    return Liveness(status="ok")


app = Litestar([healthz], logging_config=None, openapi_config=None)
