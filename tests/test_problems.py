"""Every REST error is application/problem+json (RFC 9457) with a stable type, a detail and the request id."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, get, post
from litestar.exceptions.http_exceptions import (
    MethodNotAllowedException,
    NotFoundException,
    RequestEntityTooLarge,
    ValidationException,
)
from litestar.params import FromPath, FromQuery
from litestar.testing import AsyncTestClient, RequestFactory

from conftest import make_settings
from stowage import errors
from stowage.api import problems
from stowage.api.problems import EXCEPTION_HANDLERS, PROBLEM_MEDIA_TYPE, STATUS_BY_ERROR, handle_http_exception
from stowage.app import create_app, litestar_of
from stowage.config import Settings
from stowage.observability.middleware import ObservabilityMiddleware
from support import PROBLEM_TYPE_PREFIX, assert_problem, capture_logs

# --- the real application ---------------------------------------------------------------------------


async def test_unknown_route_is_404_problem(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/no/such/thing")

    body = assert_problem(response, 404, "not-found")
    assert body["instance"] == "/no/such/thing"
    assert "/no/such/thing" in body["detail"]


async def test_site_root_is_a_problem_not_a_schema_page(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/")

    assert_problem(response, 404, "not-found")


async def test_wrong_method_is_405_problem_with_allow(client: AsyncTestClient[Any]) -> None:
    response = await client.delete("/healthz")

    body = assert_problem(response, 405, "method-not-allowed")
    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    assert "GET" in allowed
    assert "DELETE" not in allowed
    assert set(body["allowed_methods"]) == allowed
    assert body["allowed_methods"] == sorted(body["allowed_methods"])
    assert "GET" in body["detail"]


async def test_request_id_in_problem_matches_the_one_sent(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/missing", headers={"X-Request-ID": "trace-42"})

    body = assert_problem(response, 404)
    assert body["request_id"] == "trace-42"


SIGNUP = "/api/v1/auth/signup"  # a documented route that reads a JSON body


async def test_body_over_the_configured_limit_is_413_problem(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, max_request_body_bytes="1024")
    async with AsyncTestClient(app=create_app(settings)) as client:  # type: ignore[type-var]
        response = await client.post(SIGNUP, json={"email": "big@example.com", "password": "x" * 4096})

    body = assert_problem(response, 413, "payload-too-large")
    assert body["instance"] == SIGNUP


async def test_invalid_body_is_400_problem_naming_the_field(client: AsyncTestClient[Any]) -> None:
    response = await client.post(SIGNUP, json={"email": 5, "password": "correct horse battery staple"})

    body = assert_problem(response, 400, "invalid-input")
    assert "body.email" in [error["field"] for error in body["errors"]]
    assert "body.email" in body["detail"]


async def test_malformed_json_is_400_problem(client: AsyncTestClient[Any]) -> None:
    response = await client.post(SIGNUP, content=b"{not json", headers={"content-type": "application/json"})

    assert_problem(response, 400, "invalid-input")


async def test_unexpected_exception_is_a_generic_500_and_the_trace_is_logged(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode() -> None:
        raise RuntimeError("kaboom: internal detail 7f3a")

    app = create_app(settings)
    async with AsyncTestClient(app=app) as client:  # type: ignore[type-var]
        runtime = litestar_of(app).state.runtime
        monkeypatch.setattr(runtime.system, "instance_info", explode)
        with capture_logs(settings) as logs:
            response = await client.get("/api/v1/info")

    body = assert_problem(response, 500, "internal-error")
    assert "request id" in body["detail"]
    for leaked in ("kaboom", "7f3a", "Traceback", "RuntimeError", "explode"):
        assert leaked not in response.text
    request_id = response.headers["x-request-id"]
    [logged] = logs.events("unhandled_exception")
    assert logged["request_id"] == request_id
    assert logged["level"] == "error"
    assert "Traceback" in logged["exception"]
    assert "RuntimeError: kaboom: internal detail 7f3a" in logged["exception"]
    [access] = logs.access_lines()
    assert access["status"] == 500
    assert access["request_id"] == request_id


# --- Litestar exceptions translated by the handler ---------------------------------------------------


def _request(path: str = "/api/v1/things") -> Request[Any, Any, Any]:
    return RequestFactory().get(path)


def _decode(response: Any) -> dict[str, Any]:
    import msgspec

    body: dict[str, Any] = msgspec.json.decode(response.content)
    return body


def test_request_entity_too_large_becomes_413_problem() -> None:
    response = handle_http_exception(_request("/upload"), RequestEntityTooLarge())

    assert response.status_code == 413
    assert response.media_type == "application/problem+json"
    body = _decode(response)
    assert body["type"] == PROBLEM_TYPE_PREFIX + "payload-too-large"
    assert body["status"] == 413
    assert body["instance"] == "/upload"
    assert body["detail"]


def test_validation_exception_lists_the_fields() -> None:
    exc = ValidationException(
        detail="Validation failed for POST /api/v1/things",
        extra=[
            {"key": "name", "message": "too long", "source": "body"},
            {"key": "limit", "message": "Expected `int`, got `str`", "source": "query"},
            {"message": "not JSON"},
        ],
    )

    response = handle_http_exception(_request(), exc)

    assert response.status_code == 400
    body = _decode(response)
    assert body["type"] == PROBLEM_TYPE_PREFIX + "invalid-input"
    assert body["errors"] == [
        {"field": "body.name", "message": "too long"},
        {"field": "query.limit", "message": "Expected `int`, got `str`"},
        {"field": "body", "message": "not JSON"},
    ]
    assert "body.name: too long" in body["detail"]


def test_framework_404_and_405_are_translated() -> None:
    not_found = _decode(handle_http_exception(_request("/x"), NotFoundException()))
    wrong_method = handle_http_exception(_request("/x"), MethodNotAllowedException(headers={"Allow": "GET, HEAD"}))

    assert not_found["type"] == PROBLEM_TYPE_PREFIX + "not-found"
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "GET, HEAD"
    assert _decode(wrong_method)["allowed_methods"] == ["GET", "HEAD"]


# --- a small application using the same handlers, for behaviour the system routes cannot show -------


class FileMissing(errors.NotFound):
    """A more specific error defined by some future module."""

    code = "file-missing"
    title = "No such file"


def _example(cls: type[errors.StowageError]) -> errors.StowageError:
    """An instance of each domain error, with whatever extra arguments its constructor needs."""
    detail = f"detail for {cls.__name__}"
    if cls is errors.RateLimited:
        return errors.RateLimited(detail, retry_after=17)
    if cls is errors.ServiceUnavailable:
        return errors.ServiceUnavailable(detail, retry_after=9)
    if cls is errors.RangeNotSatisfiable:
        return errors.RangeNotSatisfiable(detail, size=1234)
    if cls is errors.MethodNotAllowed:
        return errors.MethodNotAllowed(detail, allowed=["PUT", "GET"])
    if cls is errors.InvalidInput:
        return errors.InvalidInput(detail, errors=[errors.FieldError("body.email", "not an email address")])
    return cls(detail)


ERRORS_BY_NAME: dict[str, type[errors.StowageError]] = {cls.__name__: cls for cls in [*STATUS_BY_ERROR, FileMissing]}


def _mini_app(max_body: int) -> ObservabilityMiddleware:
    @post("/echo", status_code=200)
    async def echo(request: Request[Any, Any, Any]) -> dict[str, int]:
        return {"size": len(await request.body())}

    @get("/items/{item_id:int}")
    async def item(item_id: FromPath[int], limit: FromQuery[int] = 10) -> dict[str, int]:
        return {"id": item_id, "limit": limit}

    @get("/raise/{name:str}")
    async def raise_error(name: FromPath[str]) -> None:
        raise _example(ERRORS_BY_NAME[name])

    litestar = Litestar(
        [echo, item, raise_error],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_max_body_size=max_body,
        logging_config=None,
        openapi_config=None,
    )
    return ObservabilityMiddleware(litestar, metrics=None, hsts=False)  # type: ignore[arg-type]


@pytest.fixture
async def mini() -> AsyncIterator[httpx.AsyncClient]:
    app = _mini_app(max_body=1024)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mini.test") as client:
        yield client


async def test_body_over_the_limit_is_413_problem(mini: httpx.AsyncClient) -> None:
    accepted = await mini.post("/echo", content=b"x" * 1000)
    refused = await mini.post("/echo", content=b"x" * 5000)

    assert accepted.status_code == 200
    assert accepted.json() == {"size": 1000}
    body = assert_problem(refused, 413, "payload-too-large")
    assert body["instance"] == "/echo"


async def test_invalid_parameter_is_400_with_field_errors(mini: httpx.AsyncClient) -> None:
    response = await mini.get("/items/3", params={"limit": "many"})

    body = assert_problem(response, 400, "invalid-input")
    assert [e["field"] for e in body["errors"]] == ["query.limit"]
    assert body["errors"][0]["message"]
    assert "query.limit" in body["detail"]


def test_every_domain_error_has_a_status() -> None:
    defined = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.StowageError) and cls is not errors.StowageError
    }

    assert defined <= set(STATUS_BY_ERROR), defined - set(STATUS_BY_ERROR)


@pytest.mark.parametrize(
    ("error_class", "status"), list(STATUS_BY_ERROR.items()), ids=lambda v: getattr(v, "__name__", v)
)
async def test_domain_error_maps_to_its_status(
    mini: httpx.AsyncClient, error_class: type[errors.StowageError], status: int
) -> None:
    response = await mini.get(f"/raise/{error_class.__name__}")

    body = assert_problem(response, status, error_class.code)
    assert body["title"] == error_class.title
    assert body["detail"] == f"detail for {error_class.__name__}"
    assert body["instance"] == f"/raise/{error_class.__name__}"
    if error_class in (errors.RateLimited, errors.ServiceUnavailable):
        expected = 17 if error_class is errors.RateLimited else 9
        assert response.headers["retry-after"] == str(expected)
        assert body["retry_after"] == expected
    else:
        assert "retry-after" not in response.headers
        assert "retry_after" not in body
    if error_class is errors.RangeNotSatisfiable:
        assert response.headers["content-range"] == "bytes */1234"
    if error_class is errors.MethodNotAllowed:
        assert response.headers["allow"] == "GET, PUT"
        assert body["allowed_methods"] == ["GET", "PUT"]
    if error_class is errors.InvalidInput:
        assert body["errors"] == [{"field": "body.email", "message": "not an email address"}]


async def test_subclassed_error_uses_its_parents_status(mini: httpx.AsyncClient) -> None:
    response = await mini.get("/raise/FileMissing")

    body = assert_problem(response, 404, "file-missing")
    assert body["title"] == "No such file"


def test_extra_members_are_added_but_cannot_replace_standard_ones() -> None:
    error = errors.Conflict("taken", extra={"existing_id": "abc", "status": 999, "type": "evil"})

    response = problems.problem_response(error)
    body = _decode(response)

    assert response.status_code == 409
    assert body["existing_id"] == "abc"
    assert body["status"] == 409
    assert body["type"] == PROBLEM_TYPE_PREFIX + "conflict"


async def test_failure_outside_the_framework_still_answers_problem_json() -> None:
    async def broken_app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("crash before any response")

    # The last-resort body is the REST front end's problem+json, handed to the middleware as app.py does.
    app = ObservabilityMiddleware(
        broken_app, metrics=None, hsts=False, last_resort=(PROBLEM_MEDIA_TYPE, problems.internal_error_body)
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://broken.test") as client:
        response = await client.get("/anything", headers={"X-Request-ID": "outer-1"})

    body = assert_problem(response, 500, "internal-error")
    assert body["request_id"] == "outer-1"
    assert "crash" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
