"""Prometheus metrics.

Each application gets its own registry (tests build many apps in one process). With several Granian
workers, ``stowage serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker starts; the client
library then keeps values in shared files and ``/metrics`` aggregates every worker, so a scrape sees
the whole server, not whichever worker answered it.
"""

from __future__ import annotations

import os
import platform
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client import values as prometheus_values

from stowage import __version__

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """The server's metrics, registered on a registry of their own."""

    # Litestar appends "; charset=utf-8" to every text/* media type; a second charset parameter makes the
    # header unparsable (Go's mime.ParseMediaType rejects it, and Prometheus 3 then fails the scrape).
    content_type = "; ".join(p.strip() for p in CONTENT_TYPE_LATEST.split(";") if not p.strip().startswith("charset="))

    def __init__(self) -> None:
        self._multiprocess = multiprocess_mode()
        if self._multiprocess:
            # prometheus_client picks its value storage when first imported. ``stowage serve`` imports it
            # before setting PROMETHEUS_MULTIPROC_DIR and Granian forks the workers from that process, so
            # without this they would keep values in private memory and /metrics would aggregate nothing.
            prometheus_values.ValueClass = prometheus_values.get_value_class()  # type: ignore[no-untyped-call]
        # Without auto-describe in multiprocess mode: describing the collector at registration would read
        # every worker's metric file, and a sibling still starting can have an empty one (the worker
        # then crashed with a struct error). The metrics are described when scraped.
        self.registry = CollectorRegistry(auto_describe=not self._multiprocess)
        self._series: dict[tuple[str, str, int], tuple[Any, Any, Any, Any]] = {}
        registry = None if self._multiprocess else self.registry
        labels = ("method", "route", "status")
        self.requests = Counter("stowage_http_requests_total", "HTTP requests answered", labels, registry=registry)
        self.latency = Histogram(
            "stowage_http_request_duration_seconds",
            "Time from request start to the last response byte",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "stowage_http_requests_in_flight",
            "Requests being handled right now",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.bytes_in = Counter(
            "stowage_http_request_bytes_total", "Request body bytes received", ("route",), registry=registry
        )
        self.bytes_out = Counter(
            "stowage_http_response_bytes_total", "Response body bytes sent", ("route",), registry=registry
        )
        self.build_info = Gauge(
            "stowage_build_info",
            "Always 1; the labels say which build is running",
            ("version", "python"),
            registry=registry,
            multiprocess_mode="max",
        )
        self.build_info.labels(version=__version__, python=platform.python_version()).set(1)
        if self._multiprocess:
            prometheus_multiprocess.MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]

    def record_request(
        self, method: str, route: str, status: int, *, duration: float, bytes_in: int, bytes_out: int
    ) -> None:
        """Count one answered request. The labelled series are looked up once per (method, route, status)
        and kept: prometheus_client validates labels on every ``labels()`` call."""
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            series = (
                self.requests.labels(method=method, route=route, status=str(status)),
                self.latency.labels(method=method, route=route),
                self.bytes_in.labels(route=route),
                self.bytes_out.labels(route=route),
            )
            self._series[key] = series
        requests, latency, received, sent = series
        self.in_flight.dec()
        requests.inc()
        latency.observe(duration)
        if bytes_in:
            received.inc(bytes_in)
        if bytes_out:
            sent.inc(bytes_out)

    def render(self) -> bytes:
        output: bytes = generate_latest(self.registry)
        return output
