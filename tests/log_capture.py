"""Capture every log record of the test session and fail if an issued secret appears in one.

Registered from conftest.py (one import line). It wraps the functions that issue secrets (key
generation, link signing) to remember every value handed out, installs a root handler that
keeps each formatted record, and at the end of the session asserts none of the secrets is in
any of them. ``tests/test_access_logging.py`` runs the same check mid-session.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from billing_api.access import keys, links


class _Store(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        self.lines.append(text)


STORE = _Store()
ISSUED: set[str] = set()


def leaked_secrets() -> list[str]:
    """Issued secrets (shortened for the report) found in any captured log line."""
    text = "\n".join(STORE.lines)
    return [s[:14] + "…" for s in ISSUED if s in text]


def _recording(func: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        value = func(*args, **kwargs)
        ISSUED.add(value)
        return value

    return wrapper


@pytest.fixture(scope="session", autouse=True)
def capture_all_logs() -> Iterator[_Store]:
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(STORE)
    root.setLevel(logging.INFO)
    patch = pytest.MonkeyPatch()
    patch.setattr(keys, "generate_secret", _recording(keys.generate_secret))
    patch.setattr(links, "sign_link", _recording(links.sign_link))
    try:
        yield STORE
    finally:
        patch.undo()
        root.removeHandler(STORE)
        root.setLevel(old_level)
    leaked = leaked_secrets()
    assert not leaked, f"issued secrets appeared in log output: {leaked}"
