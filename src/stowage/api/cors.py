"""Browser access: CORS preflights refused as problem+json, and ``OPTIONS`` that lists every method.

Litestar's CORS middleware answers a refused preflight with ``text/plain`` ("Disallowed CORS
Origin"); every error this API gives is problem+json, so the refusal is rebuilt here with what was
refused. The middleware is Litestar's own, subclassed and put in its place (``install_problem_cors``):
no extra layer on the way of a request.

Litestar builds a path's automatic ``OPTIONS`` handler when the path's first method is registered;
methods registered later on the same path (``GET /me`` after ``DELETE /me``) were missing from its
``Allow`` header. ``list_every_method`` rebuilds each one from the finished route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from litestar import Litestar, Response
from litestar.config.cors import CORSConfig
from litestar.constants import DEFAULT_ALLOWED_CORS_HEADERS
from litestar.middleware._internal.cors import CORSMiddleware
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_204_NO_CONTENT

from stowage.api.problems import problem_response
from stowage.errors import FieldError, InvalidInput, PermissionDenied

if TYPE_CHECKING:
    from litestar.datastructures import Headers
    from litestar.types import Scope


class ProblemCORSMiddleware(CORSMiddleware):
    """Litestar's CORS middleware, whose refused preflights say why in problem+json."""

    def _create_preflight_response(self, origin: str, request_headers: Headers) -> Response[Any]:
        response = super()._create_preflight_response(origin=origin, request_headers=request_headers)
        if (response.status_code or 0) < 400:
            return response
        if not self.config.is_origin_allowed(origin):
            refusal: PermissionDenied | InvalidInput = PermissionDenied(
                f"The origin {origin} may not call this API from a browser; an operator can add it to "
                "the cors_allow_origins setting."
            )
        else:
            allowed = {h.lower() for h in self.config.allow_headers} | {h.lower() for h in DEFAULT_ALLOWED_CORS_HEADERS}
            requested = request_headers.get("access-control-request-headers", "").split(",")
            refused = sorted({h.strip().lower() for h in requested if h.strip()} - allowed)
            refusal = InvalidInput(
                f"The browser asked to send headers this server does not accept cross-origin: {', '.join(refused)}. "
                "An operator can add them to the cors_allow_headers setting.",
                errors=[
                    FieldError(field="header.access-control-request-headers", message=f"not allowed: {h}")
                    for h in refused
                ],
            )
        return problem_response(refusal)


def cors_config(
    origins: tuple[str, ...], headers: tuple[str, ...], *, credentials: bool, expose: list[str]
) -> CORSConfig | None:
    if not origins:
        return None
    return CORSConfig(
        allow_origins=list(origins),
        allow_methods=["*"],
        allow_headers=list(headers),
        expose_headers=expose,
        allow_credentials=credentials,
        max_age=600,
    )


def install_problem_cors(app: Litestar) -> None:
    """Put ``ProblemCORSMiddleware`` where Litestar put its own CORS middleware (the same place in the stack)."""
    handler = app.asgi_handler
    if isinstance(handler, CORSMiddleware) and not isinstance(handler, ProblemCORSMiddleware):
        app.asgi_handler = ProblemCORSMiddleware(app=handler.app, config=handler.config)


def list_every_method(app: Litestar) -> None:
    """Make each path's automatic ``OPTIONS`` answer list every method the path serves."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or "OPTIONS" not in route.route_handler_map:
            continue
        handler, _ = route.route_handler_map["OPTIONS"]
        if getattr(handler.fn, "__name__", "") != "options_handler":
            continue  # an OPTIONS handler of our own
        allow = ", ".join(sorted(route.methods))

        def options_handler(scope: Scope, allow: str = allow) -> Response[None]:
            return Response(content=None, status_code=HTTP_204_NO_CONTENT, headers={"Allow": allow})

        handler._fn = cast(Any, options_handler)  # replaces the function Litestar built; same signature


__all__ = ["ProblemCORSMiddleware", "cors_config", "install_problem_cors", "list_every_method"]
