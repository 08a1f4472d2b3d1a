"""Masking of key secrets and link tokens in text that goes to logs or the audit table.

Installed as a filter on uvicorn's access logger (which prints the full request line, query
string included, where a download link carries its ``token``) and on the ``billing_api``
logger; ``audit.record`` applies it to free text as well.
"""

from __future__ import annotations

import logging
import re

# A whole key (see keys.py for the format) or anything after ``token=`` in a query string.
_KEY = re.compile(r"nwb_(?:live|test)_[0-9A-Za-z]{12,}")
_TOKEN = re.compile(r"(?i)(\btoken=)[^&\s\"']+")
_HEADER = re.compile(r"(?i)(x-api-key[\"']?\s*[:=,]\s*[\"']?)[^\s\"',]+")


def redact(text: str) -> str:
    """``text`` with keys and link tokens replaced by ``[redacted]``."""
    if not text:
        return text
    text = _KEY.sub("nwb_[redacted]", text)
    text = _TOKEN.sub(r"\1[redacted]", text)
    return _HEADER.sub(r"\1[redacted]", text)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with secrets masked; never drops the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


# httpx logs every URL it fetches at INFO: covered for any in-process client (the tests,
# a portal that calls the API for its explorer) that follows a download link.
LOGGER_NAMES = ("uvicorn.access", "uvicorn.error", "billing_api", "httpx")


def install_log_redaction() -> None:
    """Attach one ``RedactingFilter`` to each logger that may see a request line (idempotent)."""
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
