"""Stowage: a self-hosted storage backend."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stowage")
except PackageNotFoundError:  # pragma: no cover - only when running from a source tree without install
    __version__ = "0.0.0+unknown"
