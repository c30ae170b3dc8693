"""structlog on top of the standard library's logging, so our lines and libraries' lines look alike.

- JSON lines when stderr is not a terminal (or ``log_format=json``), readable lines on a terminal.
- Every line logged while a request is handled carries its request id (from ``observability.context``,
  which the request middleware sets; nothing is bound or unbound per request).
- An optional size-rotated log file, always JSON. With several workers each process writes its own
  file (``stowage.log`` → ``stowage.<pid>.log``) because two processes rotating one file lose lines.
- Values under keys that look secret are replaced before rendering, as a last line of defence.
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
from pathlib import Path
from typing import Any

import structlog
from structlog.types import EventDict, Processor

from stowage.config import REDACTED, Settings
from stowage.observability.context import current_request_id

_SECRET_KEYS = frozenset(
    {"password", "token", "secret", "authorization", "cookie", "api_key", "signature", "refresh_token"}
)
_SECRET_SUFFIXES = ("_password", "_token", "_secret", "_key")


def _redact_secrets(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    for key in list(event_dict):
        lowered = key.lower()
        if (lowered in _SECRET_KEYS or lowered.endswith(_SECRET_SUFFIXES)) and event_dict[key] is not None:
            event_dict[key] = REDACTED
    return event_dict


def _add_request_id(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    request_id = current_request_id()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
    ]


def _formatter(renderer: Processor) -> structlog.stdlib.ProcessorFormatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )


def json_formatter() -> structlog.stdlib.ProcessorFormatter:
    return _formatter(structlog.processors.JSONRenderer())


def console_formatter() -> structlog.stdlib.ProcessorFormatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
    )


def log_file_path(settings: Settings, *, per_process: bool) -> Path | None:
    if settings.log_file is None:
        return None
    path = settings.log_file
    if per_process:
        path = path.with_name(f"{path.stem}.{os.getpid()}{path.suffix}")
    return path


def logging_dict_config(settings: Settings, *, per_process_file: bool = False) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict; also handed to Granian so its lines share our format."""
    use_json = settings.log_format == "json" or (settings.log_format == "auto" and not sys.stderr.isatty())
    level = settings.log_level.upper()
    handlers: dict[str, Any] = {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "json" if use_json else "console",
        }
    }
    file_path = log_file_path(settings, per_process=per_process_file)
    if file_path is not None:
        handlers["file"] = {
            "class": "logging.handlers.RotatingFileHandler",
            "filename": str(file_path),
            "maxBytes": settings.log_file_max_bytes,
            "backupCount": settings.log_file_backups,
            "encoding": "utf-8",
            "formatter": "json",
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "stowage.observability.logging.json_formatter"},
            "console": {"()": "stowage.observability.logging.console_formatter"},
        },
        "handlers": handlers,
        "root": {"level": level, "handlers": list(handlers)},
        "loggers": {
            # Granian's own loggers: keep start/stop lines, route them through our handlers.
            "_granian": {"level": level, "handlers": [], "propagate": True},
            "granian.access": {"level": "WARNING", "handlers": [], "propagate": True},
            # Our access log is written by the request middleware; Litestar's would duplicate it.
            "litestar": {"level": "WARNING", "handlers": [], "propagate": True},
            "sqlalchemy": {"level": "WARNING", "handlers": [], "propagate": True},
            "alembic": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }


def configure_logging(settings: Settings, *, per_process_file: bool = False) -> None:
    """Configure stdlib logging and structlog for this process. Safe to call more than once."""
    if settings.log_file is not None:
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
    logging.config.dictConfig(logging_dict_config(settings, per_process_file=per_process_file))
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
