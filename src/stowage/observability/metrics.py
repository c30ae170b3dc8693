"""Prometheus metrics.

Each application gets its own registry (tests build many apps in one process). With several Granian
workers, ``stowage serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker starts; the client
library then keeps values in shared files and ``/metrics`` aggregates every worker, so a scrape sees
the whole server, not whichever worker answered it.

Requests are tallied in plain integers per (method, route, status) and handed to the client library
in bulk (``flush``): before every scrape, and every second from the lifespan so that other workers'
files stay current. Counting each request through the library (five locked value updates, each a
write to a shared file with several workers) cost a tenth of a small request's CPU.
"""

from __future__ import annotations

import asyncio
import bisect
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


class _Tally:
    """One (method, route, status)'s requests since the last flush."""

    __slots__ = ("buckets", "bytes_in", "bytes_out", "count", "duration_sum")

    def __init__(self, buckets: int) -> None:
        self.buckets = [0] * buckets
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.duration_sum = 0.0
        self.buckets[:] = [0] * len(self.buckets)
        self.bytes_in = 0
        self.bytes_out = 0


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
        self._tallies: dict[tuple[str, str, int], _Tally] = {}
        self._in_flight = 0
        # The histogram's bucket bounds as the client library keeps them (with +Inf last).
        self._bounds = [*LATENCY_BUCKETS, float("inf")]
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

    def request_started(self) -> None:
        self._in_flight += 1

    def record_request(
        self, method: str, route: str, status: int, *, duration: float, bytes_in: int, bytes_out: int
    ) -> None:
        """Count one answered request (in this worker's tally until the next ``flush``)."""
        self._in_flight -= 1
        key = (method, route, status)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = _Tally(len(self._bounds))
        tally.count += 1
        tally.duration_sum += duration
        tally.buckets[bisect.bisect_left(self._bounds, duration)] += 1
        tally.bytes_in += bytes_in
        tally.bytes_out += bytes_out

    def flush(self) -> None:
        """Hand the tallies to the client library (which shares them with the other workers)."""
        self.in_flight.set(self._in_flight)
        for (method, route, status), tally in self._tallies.items():
            if not tally.count:
                continue
            series = self._series.get((method, route, status))
            if series is None:
                series = self._series[method, route, status] = (
                    self.requests.labels(method=method, route=route, status=str(status)),
                    self.latency.labels(method=method, route=route),
                    self.bytes_in.labels(route=route),
                    self.bytes_out.labels(route=route),
                )
            requests, latency, received, sent = series
            requests.inc(tally.count)
            # A histogram child keeps one value per bucket (each observation counts in the first bucket
            # whose bound it does not exceed; the exposition makes them cumulative) and one for the sum:
            # the state ``observe`` updates one observation at a time, updated here in bulk.
            latency._sum.inc(tally.duration_sum)
            for value, count in zip(latency._buckets, tally.buckets, strict=True):
                if count:
                    value.inc(count)
            if tally.bytes_in:
                received.inc(tally.bytes_in)
            if tally.bytes_out:
                sent.inc(tally.bytes_out)
            tally.reset()

    def render(self) -> bytes:
        self.flush()
        output: bytes = generate_latest(self.registry)
        return output


FLUSH_SECONDS = 1.0


async def flush_every(metrics: Metrics, seconds: float = FLUSH_SECONDS) -> None:
    """Keep this worker's share of the shared metric files at most ``seconds`` behind (run as a task)."""
    while True:
        await asyncio.sleep(seconds)
        metrics.flush()
