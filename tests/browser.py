"""Playwright helpers for the portal's browser tests: Debian's chromium, loopback only.

No browser is ever downloaded (``playwright install`` is never run): the tests drive
``/usr/bin/chromium`` from the Debian package. Without it they skip, or fail when
``BILLING_API_REQUIRE_ALL_BACKENDS=1`` (CI).

``Visit`` is one browser context (its own cookies) with one page. It records the URL of every
request the browser makes, so a test can assert that nothing left the machine, and saves a
full-page screenshot of each page under ``test-artifacts/screenshots/``.

``FormClient`` is the cheap stand-in for a browser without JavaScript (httpx with a cookie
jar that reads the CSRF token off the last page), for the many small page tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import Browser, BrowserContext, Page, Request, sync_playwright

from tests.conftest import skip_or_fail

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
LOOPBACK = "127.0.0.1"
TIMEOUT_MS = 10_000
EXPECTED_CONSOLE = "Failed to load resource: the server responded with a status of 4"


def require_chromium() -> None:
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is missing (Debian package chromium)")


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Debian chromium, closed afterwards."""
    require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Visit:
    """One person's browser session against the portal at ``base_url``."""

    def __init__(self, browser: Browser, base_url: str, *, name: str,
                 viewport: tuple[int, int] = (1280, 900), javascript: bool = True) -> None:
        self.base_url = base_url
        self.name = name
        self.requested: list[str] = []
        self.context: BrowserContext = browser.new_context(
            base_url=base_url, accept_downloads=True, java_script_enabled=javascript,
            viewport={"width": viewport[0], "height": viewport[1]})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.context.on("request", self._record)
        self.page: Page = self.context.new_page()
        # Console errors include Content-Security-Policy violations and script failures
        # (4xx answers the tests ask for are logged too: those are not kept).
        self.console_errors: list[str] = []
        self.page.on("console", lambda m: self.console_errors.append(m.text)
                     if m.type == "error" and not m.text.startswith(EXPECTED_CONSOLE)
                     else None)
        self.page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        self._shots = 0

    def _record(self, request: Request) -> None:
        self.requested.append(request.url)

    def close(self) -> None:
        self.context.close()

    def shot(self, label: str) -> Path:
        """Save a full-page screenshot as ``<visit>-<nn>-<label>.png``."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self._shots += 1
        path = SCREENSHOTS / f"{self.name}-{self._shots:02d}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def foreign_requests(self) -> list[str]:
        """Every recorded request whose host is not the loopback address."""
        return [url for url in self.requested
                if urlsplit(url).scheme not in ("data", "blob", "about")
                and urlsplit(url).hostname != LOOPBACK]

    def log_in(self, email: str, password: str, *, lands_on: str = "/portal/profile") -> None:
        self.page.goto("/")
        self.page.get_by_label("E-mail").fill(email)
        self.page.get_by_label("Password", exact=True).fill(password)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(re.compile(re.escape(lands_on) + "$"))

    def change_password(self, current: str, new: str) -> None:
        """Fill the change-password form (where the first login lands) and submit it."""
        self.page.get_by_label("Current password").fill(current)
        self.page.get_by_label("New password", exact=True).fill(new)
        self.page.get_by_label("New password again").fill(new)
        self.page.get_by_role("button", name="Change password").click()
        self.page.wait_for_url(re.compile(r"/portal/profile$"))

    def first_log_in(self, email: str, one_time_password: str, new_password: str) -> None:
        """Log in with a one-time password: the portal insists on a new one first."""
        self.log_in(email, one_time_password, lands_on="/portal/profile/password")
        self.change_password(one_time_password, new_password)

    def csrf_token(self) -> str:
        token = self.page.locator("input[name=csrf_token]").first.get_attribute("value")
        assert token, "the page has no CSRF token"
        return token

    def absolute(self, path: str) -> str:
        return self.base_url + path


CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
NONCE_INPUT = re.compile(r'name="form_nonce" value="([^"]+)"')


class FormClient:
    """A browser without JavaScript: keeps its cookies, posts forms with the CSRF token of
    the last page it read, and does not follow redirects (tests look at them)."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=10)
        self.page = ""

    def __enter__(self) -> FormClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def get(self, path: str, **params: Any) -> httpx.Response:
        response = self.http.get(path, params=params or None)
        self.page = response.text
        return response

    def csrf(self) -> str:
        found = CSRF_INPUT.search(self.page)
        assert found, "the last page has no CSRF token"
        return found.group(1)

    def nonce(self) -> str:
        found = NONCE_INPUT.search(self.page)
        assert found, "the last page has no form nonce"
        return found.group(1)

    def post(self, path: str, data: dict[str, str] | None = None, *,
             csrf: bool = True) -> httpx.Response:
        form = dict(data or {})
        if csrf and "csrf_token" not in form:
            form["csrf_token"] = self.csrf()
        response = self.http.post(path, data=form)
        if not response.is_redirect:
            self.page = response.text
        return response

    def log_in(self, email: str, password: str) -> httpx.Response:
        self.get("/")
        return self.post("/portal/login", {"email": email, "password": password})

    def change_password(self, current: str, new: str) -> httpx.Response:
        self.get("/portal/profile/password")
        return self.post("/portal/profile/password", {
            "current_password": current, "new_password": new, "new_password_again": new})

    def first_log_in(self, email: str, one_time_password: str,
                     new_password: str) -> httpx.Response:
        """Log in with a one-time password and replace it, as the portal insists."""
        answer = self.log_in(email, one_time_password)
        assert answer.headers.get("location") == "/portal/profile/password", answer.text
        return self.change_password(one_time_password, new_password)
