"""Logging, request ids, the access log and Prometheus metrics."""
