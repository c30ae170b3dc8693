"""/metrics: Prometheus text with per-route counters, latency histograms, in-flight and build info."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import make_settings
from stowage import __version__
from stowage.app import create_app
from support import asgi_client, assert_problem

TOKEN = "metrics-token-for-tests-0123"


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample in a Prometheus text exposition, parsed by the client library's own parser."""
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels`` (0 when there are none)."""
    return sum(v for n, got, v in samples(text) if n == name and labels.items() <= got.items())


@pytest.fixture
async def client(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings({"STOWAGE_DATA_DIR": str(data_dir)})
    async with asgi_client(create_app(settings)) as http:
        yield http


async def scrape(client: httpx.AsyncClient, **headers: str) -> str:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    return response.text


async def test_metrics_are_prometheus_text(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")

    response = await client.get("/metrics")

    assert response.status_code == 200
    content_type = response.headers["content-type"]
    assert content_type.startswith("text/plain; version=")
    # One charset parameter only: a repeated parameter makes the header unparsable for Prometheus.
    assert content_type.count("charset=") == 1
    names = {name for name, _, _ in samples(response.text)}
    assert {
        "stowage_http_requests_total",
        "stowage_http_request_duration_seconds_bucket",
        "stowage_http_request_duration_seconds_count",
        "stowage_http_request_duration_seconds_sum",
        "stowage_http_requests_in_flight",
        "stowage_http_request_bytes_total",
        "stowage_http_response_bytes_total",
        "stowage_build_info",
    } <= names


async def test_build_info_names_the_version(client: httpx.AsyncClient) -> None:
    text = await scrape(client)

    assert value(text, "stowage_build_info", version=__version__) == 1


async def test_request_counts_use_route_templates_and_status(client: httpx.AsyncClient) -> None:
    healthz = [await client.get("/healthz") for _ in range(3)]
    await client.get("/no/such/path")
    await client.get("/another/missing/path")
    await client.post("/healthz")

    text = await scrape(client)

    assert value(text, "stowage_http_requests_total", method="GET", route="/healthz", status="200") == 3
    assert value(text, "stowage_http_requests_total", route="<unmatched>", status="404") == 2
    assert value(text, "stowage_http_requests_total", method="POST", route="<unmatched>", status="405") == 1
    # Unknown paths never become label values of their own (a scanner would explode the series count).
    routes = {labels.get("route") for name, labels, _ in samples(text) if name == "stowage_http_requests_total"}
    assert routes == {"/healthz", "<unmatched>"}
    assert value(text, "stowage_http_response_bytes_total", route="/healthz") == sum(len(r.content) for r in healthz)


async def test_counts_increase_with_traffic(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    before = await scrape(client)
    for _ in range(4):
        await client.get("/healthz")
    await client.get("/api/v1/info")
    after = await scrape(client)

    def requests(text: str, route: str) -> float:
        return value(text, "stowage_http_requests_total", route=route, status="200")

    assert requests(after, "/healthz") - requests(before, "/healthz") == 4
    assert requests(after, "/api/v1/info") - requests(before, "/api/v1/info") == 1
    assert requests(after, "/metrics") - requests(before, "/metrics") == 1  # the first scrape, counted when done


async def test_latency_histogram_counts_every_request(client: httpx.AsyncClient) -> None:
    for _ in range(5):
        await client.get("/healthz")

    text = await scrape(client)

    buckets = {
        labels["le"]: v
        for name, labels, v in samples(text)
        if name == "stowage_http_request_duration_seconds_bucket" and labels.get("route") == "/healthz"
    }
    assert buckets["+Inf"] == 5
    assert value(text, "stowage_http_request_duration_seconds_count", route="/healthz") == 5
    ordered = sorted(buckets.items(), key=lambda item: float(item[0]))
    assert [v for _, v in ordered] == sorted(v for _, v in ordered)  # cumulative
    assert value(text, "stowage_http_request_duration_seconds_sum", route="/healthz") > 0


async def test_in_flight_counts_the_scrape_itself(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")

    text = await scrape(client)

    assert value(text, "stowage_http_requests_in_flight") == 1


@pytest.fixture
async def protected(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings({"STOWAGE_DATA_DIR": str(data_dir)}, metrics_token=TOKEN)
    async with asgi_client(create_app(settings)) as http:
        yield http


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer wrong-token-0000000000", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN],
    ids=["absent", "empty", "wrong", "basic", "longer", "no-scheme"],
)
async def test_token_protected_metrics_refuse_other_credentials(
    protected: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await protected.get("/metrics", headers=headers)

    body = assert_problem(response, 401, "unauthenticated")
    assert "Bearer" in body["detail"]
    assert TOKEN not in response.text
    assert "stowage_http_requests_total" not in response.text


async def test_token_protected_metrics_accept_the_bearer_token(protected: httpx.AsyncClient) -> None:
    response = await protected.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    assert "stowage_http_requests_total" in response.text


async def test_metrics_can_be_switched_off(data_dir: Path) -> None:
    settings = make_settings({"STOWAGE_DATA_DIR": str(data_dir)}, metrics_enabled="false")
    async with asgi_client(create_app(settings)) as http:
        response = await http.get("/metrics")
        health = await http.get("/healthz")

    assert_problem(response, 404, "not-found")
    assert health.status_code == 200  # the rest of the server is unaffected


def test_a_worker_starts_while_a_sibling_metric_file_is_still_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With several workers the metric files are shared; a worker starting while a sibling has just
    created its (still empty) file must not read it then — it did, and crashed with a struct error."""
    from prometheus_client import values as prometheus_values

    from stowage.observability.metrics import MULTIPROC_ENV, Metrics

    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_12345.db").write_bytes(b"")  # a sibling's file, created but not yet written
    monkeypatch.setenv(MULTIPROC_ENV, str(folder))
    original = prometheus_values.ValueClass
    try:
        metrics = Metrics()
        metrics.requests.labels(method="GET", route="/x", status="200").inc()
        (folder / "counter_12345.db").unlink()  # the sibling's file gets written (or goes) before a scrape
        assert b"stowage_http_requests_total" in metrics.render()
    finally:
        prometheus_values.ValueClass = original


# --- requests are tallied per worker and handed to the client library in bulk ---------------------------


def test_tallied_requests_are_exposed_as_the_library_counts_them() -> None:
    """Durations on, just above and far past the bucket bounds land in the same buckets, with the same
    count and sum, as the client library's own ``observe`` puts them."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from stowage.observability.metrics import LATENCY_BUCKETS, Metrics

    durations = [0.0, 0.001, 0.0010001, 0.005, 0.0049999, 0.7, 30.0, 60.0, 61.0, 3600.0]
    metrics = Metrics()
    for duration in durations:
        metrics.request_started()
        metrics.record_request("GET", "/x", 200, duration=duration, bytes_in=3, bytes_out=5)
    reference_registry = CollectorRegistry()
    reference = Histogram("reference", "", ("method", "route"), buckets=LATENCY_BUCKETS, registry=reference_registry)
    for duration in durations:
        reference.labels(method="GET", route="/x").observe(duration)

    ours = samples(metrics.render().decode())
    theirs = samples(generate_latest(reference_registry).decode())

    def histogram(found: list[tuple[str, dict[str, str], float]], name: str) -> list[tuple[str, str, float]]:
        return sorted(
            (n.removeprefix(name), labels.get("le", ""), v)
            for n, labels, v in found
            if n.startswith(name) and not n.endswith("_created")
        )

    assert histogram(ours, "stowage_http_request_duration_seconds") == histogram(theirs, "reference")
    text = metrics.render().decode()  # a second render adds nothing (the tally was handed over once)
    assert value(text, "stowage_http_requests_total", route="/x", status="200") == len(durations)
    assert value(text, "stowage_http_request_bytes_total", route="/x") == 3 * len(durations)
    assert value(text, "stowage_http_response_bytes_total", route="/x") == 5 * len(durations)
    assert value(text, "stowage_http_requests_in_flight") == 0


async def test_tallies_reach_the_library_every_second_without_a_scrape() -> None:
    """What keeps the other workers' view current: the lifespan's flusher, not only a scrape."""
    from stowage.observability.metrics import Metrics, flush_every

    metrics = Metrics()
    metrics.request_started()
    metrics.request_started()
    metrics.record_request("GET", "/x", 200, duration=0.01, bytes_in=0, bytes_out=0)

    def counted() -> float:
        return metrics.requests.labels(method="GET", route="/x", status="200")._value.get()  # type: ignore[no-any-return]

    assert counted() == 0  # tallied, not yet handed over
    flusher = asyncio.create_task(flush_every(metrics, seconds=0.01))
    try:
        for _ in range(500):
            if counted() == 1:
                break
            await asyncio.sleep(0.01)
    finally:
        flusher.cancel()
    assert counted() == 1
    assert metrics.in_flight._value.get() == 1  # one request still being answered
