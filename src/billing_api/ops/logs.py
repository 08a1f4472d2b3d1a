"""Log lines for machines: one JSON object per line, with the request's context.

Every line has ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger`` and ``message``;
inside a request also ``request_id``, ``method`` and ``path`` (never the query string: a
download link's token lives there); the access line adds ``status`` and ``duration_ms``; an
error adds ``exception`` (the traceback). Every text field passes ``access.redaction.redact``
here, the last step before output, so a key or token in any logger's record (children of
``billing_api`` included, which the loggers' own filters do not see) is masked. The JSON
encoding escapes control characters, so a CR/LF sent in a path cannot forge a log line.

``logging_config`` is the ``dictConfig`` that ``billing-api serve`` gives uvicorn (which applies
it in every worker): everything to stderr through one handler, uvicorn's own access log off
(``RequestContextMiddleware`` writes a better one).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from billing_api.access.redaction import redact
from billing_api.ops.context import current_request

ACCESS_FIELDS = ("status", "duration_ms")


def _context(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    info = current_request()
    if info is not None:
        fields.update(request_id=info.request_id, method=info.method, path=redact(info.path))
    for name in ACCESS_FIELDS:
        if hasattr(record, name):
            fields[name] = getattr(record, name)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record (ASCII only, so every byte of a line is printable)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            **_context(record),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        return json.dumps(entry, ensure_ascii=True, default=str)


class TextFormatter(logging.Formatter):
    """For a person at a terminal: ``time level logger [request id] message``."""

    def format(self, record: logging.LogRecord) -> str:
        info = current_request()
        stamp = dt.datetime.fromtimestamp(record.created, dt.UTC).strftime("%H:%M:%S.%f")[:-3]
        request = f" [{info.request_id}]" if info else ""
        took = f" {record.duration_ms} ms" if hasattr(record, "duration_ms") else ""
        line = redact(f"{stamp} {record.levelname:<7} {record.name}{request} "
                      f"{record.getMessage()}{took}")
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


def logging_config(level: str = "info", fmt: str = "json") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server: ``fmt`` is ``json`` or ``text``."""
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": formatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "default",
                                "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": upper},
        "loggers": {
            "uvicorn": {"handlers": [], "level": upper, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": upper, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
