"""The OpenAPI document as a whole: what no single operation declares, and how it is served.

``api.openapi`` describes each operation; this module finishes the document Litestar builds from
them (the ``Problem`` component, request bodies exactly as msgspec decodes them, byte limits of names,
the email and password rules), renders it once, and configures ``/openapi.json`` and ``/docs``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar, Request, Router
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components
from litestar.routes import HTTPRoute

from stowage.api.openapi import NAME_DESCRIPTION, NAME_PATTERN, SECURITY_SCHEMES, TAGS
from stowage.api.problems import Problem
from stowage.files.names import MAX_NAME_BYTES

# Request bodies whose ``name`` is a file or folder name (other ``name`` fields are labels).
NODE_NAME_FIELDS = {
    ("CreateFolderRequest", "name"),
    ("UpdateNodeRequest", "name"),
    ("CopyRequest", "name"),
    ("PresignUploadRequest", "name"),
}
# The server's own email rule (accounts: trimmed, then name@domain without spaces or control
# characters), as a pattern that accepts what it accepts: ECMAScript's \s lacks the C0 separators and
# NEL that Python strips.
EMAIL_PATTERN = r"^[\s\x1c-\x1f\x85]*[^@\s\x00-\x1f\x7f-\x9f]{1,64}@[^@\s\x00-\x1f\x7f-\x9f]{1,255}[\s\x1c-\x1f\x85]*$"
# New passwords: the policy's length bounds (the rest of the policy is described).
NEW_PASSWORD_FIELDS = {
    ("SignupRequest", "password"),
    ("AdminCreateUserRequest", "password"),
    ("ChangePasswordRequest", "new_password"),
    ("ResetPasswordRequest", "new_password"),
    ("AdminResetPasswordRequest", "new_password"),
}


def request_body_types(app: Litestar) -> list[type[msgspec.Struct]]:
    """The msgspec Structs the application's JSON routes decode their bodies into."""
    found: dict[str, type[msgspec.Struct]] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                field = handler.parsed_fn_signature.parameters.get("data")
                annotation = getattr(field, "annotation", None)
                if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
                    found[annotation.__name__] = annotation
    return list(found.values())


def finish_document(document: dict[str, Any], request_types: list[type[msgspec.Struct]]) -> dict[str, Any]:
    """Document-wide details, applied in place (idempotent).

    - The ``Problem`` component (and ``FieldError``, ``CheckResult``) from ``api.problems.Problem``.
    - Request bodies as msgspec, which decodes them, sees them: unknown members are refused
      (``additionalProperties: false``) and list items keep their limits.
    - Limits the server checks beyond the types: names in bytes, the email rule, password length.
    """
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    ref = "#/components/schemas/{name}"
    _, problem_components = msgspec.json.schema_components([Problem], ref_template=ref)
    schemas.update(problem_components)
    _, request_components = msgspec.json.schema_components(request_types, ref_template=ref)
    schemas.update(request_components)
    for component in request_components:
        properties = schemas[component].get("properties", {})
        for key, value in properties.items():
            _default_in_words(value)
            if (component, key) in NODE_NAME_FIELDS:
                _constrain(value, maxLength=MAX_NAME_BYTES, pattern=NAME_PATTERN, description=NAME_DESCRIPTION)
            elif key == "email":
                _constrain(value, pattern=EMAIL_PATTERN, description="An email address (compared ignoring case).")
            elif (component, key) in NEW_PASSWORD_FIELDS:
                _constrain(
                    value,
                    minLength=8,
                    maxLength=256,
                    description="8-256 characters, not a common or breached password, not the email or a name from it.",
                )
    _one_branch(schemas.get("NodeOut", {}).get("properties", {}).get("url"))
    for path_item in document.get("paths", {}).values():
        for op in path_item.values():
            for parameter in op.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") == "name":
                    _constrain(
                        parameter["schema"],
                        maxLength=MAX_NAME_BYTES,
                        pattern=NAME_PATTERN,
                        description=NAME_DESCRIPTION,
                    )
    return document


def _default_in_words(schema: dict[str, Any]) -> None:
    """Say an optional request member's default in its description rather than as ``default``: client
    generators (openapi-typescript) make members with a default required in the request type, which
    would force clients to send what they mean to leave out."""
    if "default" in schema:
        default = schema.pop("default")
        said = "null" if default is None else msgspec.json.encode(default).decode()
        schema["description"] = f"{schema.get('description', '').rstrip('.')}. Default: {said}.".lstrip(". ")


def _one_branch(schema: dict[str, Any] | None) -> None:
    """``oneOf: [X]`` (what Litestar makes of an optional member that is absent rather than null, such as
    ``NodeOut.url``) is just ``X``."""
    if schema is not None and len(schema.get("oneOf", ())) == 1:
        schema.update(schema.pop("oneOf")[0])


def _constrain(schema: dict[str, Any], **constraints: Any) -> None:
    """Add constraints to the string branch of ``schema`` (a string, or an anyOf/oneOf with null)."""
    for branch in schema.get("anyOf", schema.get("oneOf", [schema])):
        if branch.get("type") == "string":
            branch.update(constraints)


class _Finished:
    """Mixin for render plugins: serve the finished document, rendered once."""

    _rendered: bytes | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._rendered is None:
            finished = finish_document(openapi_schema, request_body_types(request.app))
            self._rendered = super().render(request, finished)  # type: ignore[misc]
        return self._rendered


class JsonDocument(_Finished, JsonRenderPlugin):
    """Serves ``/openapi.json``, and removes Litestar's HTML "schema page not found" catch-all.

    With the docs mounted at the root, that catch-all would answer every unknown path with an HTML
    page (and ``/`` with the schema); unknown paths must get problem+json like every other error.
    """

    def receive_router(self, router: Router) -> None:
        router.routes = [
            route
            for route in router.routes
            if route.path != "/"
            and not any(
                getattr(handler.fn, "__name__", "") == "handle_schema_path_not_found"
                for handler in getattr(route, "route_handlers", ())
            )
        ]


class SwaggerDocument(_Finished, SwaggerRenderPlugin):
    """Swagger UI at ``/docs``, showing the finished document."""


def openapi_config(version: str, *, docs_assets: str) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Stowage API",
        version=version,
        description=(
            "Self-hosted storage backend. Every error is `application/problem+json` (RFC 9457) with a "
            "stable `type` (`urn:stowage:problem:<code>`), a `detail` saying what to fix and the `request_id`: "
            "see the `Problem` schema. Authenticate with `Authorization: Bearer <access token or personal token>`."
        ),
        path="/",
        tags=TAGS,
        render_plugins=[
            JsonDocument(path="/openapi.json"),
            SwaggerDocument(
                path="/docs",
                js_url=f"{docs_assets}/swagger-ui-bundle.js",
                css_url=f"{docs_assets}/swagger-ui.css",
                standalone_preset_js_url=f"{docs_assets}/swagger-ui-standalone-preset.js",
                favicon=f'<link rel="icon" type="image/png" href="{docs_assets}/favicon-32x32.png">',
            ),
        ],
        components=Components(security_schemes=dict(SECURITY_SCHEMES)),
    )


__all__ = ["finish_document", "openapi_config", "request_body_types"]
