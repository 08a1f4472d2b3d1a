"""The HTTP side: authentication, bounded retries on 429/503, an ETag cache, cursor sync.

One ``BillingClient`` per key (a key belongs to one partner and environment). Documents are
streamed: ``records``/``invoices`` parse the answer while it arrives. Retries happen only
before a body is read (429 and 503 answer before any document byte), so a retried request
never hands out a record twice.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import httpx

from billing_api_client import parsing
from billing_api_client.models import Invoice, InvoiceEnd, Record, SubscriptionDetails

Endpoint = Literal["invoices", "customerinvoices", "consolidatedinvoices"]
FileFormat = Literal["xml", "json", "ubl", "pdf"]
RETRY_STATUSES = frozenset({429, 503})
CURSOR_HEADER = "X-Next-Cursor"


class ApiError(Exception):
    """A non-success answer; ``problem`` holds its RFC 9457 fields when it had them."""

    def __init__(self, status: int, problem: Mapping[str, Any], url: str) -> None:
        self.status = status
        self.problem = dict(problem)
        self.code = str(problem.get("code", ""))
        detail = problem.get("detail") or problem.get("title") or ""
        super().__init__(f"{status} {self.code} from {url}: {detail}".replace("  ", " "))


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class EtagCache:
    """Answers kept by URL with their ``ETag``: a repeat sends ``If-None-Match`` and a 304
    serves the kept copy. In memory, or in ``directory`` (kept across runs)."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._memory: dict[str, tuple[str, bytes, dict[str, str]]] = {}
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, url: str) -> Path:
        assert self.directory is not None
        return self.directory / hashlib.sha256(url.encode()).hexdigest()

    def get(self, url: str) -> tuple[str, bytes, dict[str, str]] | None:
        """(etag, body, headers) kept for ``url``."""
        if self.directory is None:
            return self._memory.get(url)
        meta = self._path(url).with_suffix(".json")
        try:
            kept = json.loads(meta.read_text())
            body = self._path(url).with_suffix(".body").read_bytes()
        except (OSError, ValueError):
            return None
        return kept["etag"], body, kept["headers"]

    def put(self, url: str, etag: str, body: bytes, headers: Mapping[str, str]) -> None:
        kept = {k: v for k, v in headers.items() if k.lower() != "set-cookie"}
        if self.directory is None:
            self._memory[url] = (etag, body, kept)
            return
        path = self._path(url)
        atomic_write(path.with_suffix(".body"), body)
        atomic_write(path.with_suffix(".json"),
                     json.dumps({"etag": etag, "headers": kept, "url": url}).encode())


def atomic_write(path: Path, data: bytes) -> None:
    """``data`` into ``path`` whole or not at all: a temporary file beside it, then rename."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Answer:
    """A whole answer: ``from_cache`` when the server said 304 and the kept copy was used."""

    status: int
    headers: httpx.Headers
    content: bytes
    from_cache: bool


@dataclass(frozen=True)
class SyncPage:
    """What one ``since=`` call brought: the new invoices' ids, and where to go on from."""

    invoice_ids: list[str]
    next_cursor: str


class BillingClient:
    """``BillingClient("https://billing.example", key)``; the key goes in ``X-Api-Key``."""

    def __init__(self, base_url: str, api_key: str, *, version: str = "v4",
                 timeout: float = 120.0, max_retries: int = 5, max_retry_wait: float = 60.0,
                 cache: EtagCache | None = None, sleep: Callable[[float], None] = time.sleep,
                 http: httpx.Client | None = None) -> None:
        if not api_key:
            raise ValueError("an API key is required")
        self.base_url = base_url.rstrip("/")
        self.version = version
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.cache = cache
        self._sleep = sleep
        self._http = http or httpx.Client(timeout=timeout, follow_redirects=False)
        self._own_http = http is None
        self._headers = {"X-Api-Key": api_key, "User-Agent": "billing-api-client/0.1"}
        self.retries = 0  # how many times a 429/503 was waited out, for logs and tests

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> BillingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        return f"{self.base_url}/api/{self.version}/{path.lstrip('/')}"

    # --- requests ----------------------------------------------------------------------------

    @contextmanager
    def stream(self, path: str, params: Mapping[str, str] | None = None,
               headers: Mapping[str, str] | None = None) -> Iterator[httpx.Response]:
        """The answer to ``GET path`` with its body not yet read; 429/503 are waited out
        (``Retry-After``, at most ``max_retry_wait`` seconds a time, ``max_retries`` times);
        any other failure raises ``ApiError``. A 304 is handed back as it is."""
        request = self._http.build_request("GET", self.url(path), params=params,
                                           headers={**self._headers, **(headers or {})})
        attempt = 0
        while True:
            response = self._http.send(request, stream=True)
            try:
                if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                    wait = retry_after(response.headers.get("Retry-After"), time.time())
                    wait = min(self.max_retry_wait, 2.0 ** attempt if wait is None else wait)
                    response.read()
                    response.close()
                    attempt += 1
                    self.retries += 1
                    self._sleep(wait)
                    continue
                if response.status_code >= 400:
                    response.read()
                    raise ApiError(response.status_code, _problem(response), str(request.url))
                yield response
                return
            finally:
                response.close()

    def get(self, path: str, params: Mapping[str, str] | None = None,
            headers: Mapping[str, str] | None = None) -> Answer:
        """The whole answer, through the ETag cache when there is one."""
        key = str(self._http.build_request("GET", self.url(path), params=params).url)
        kept = self.cache.get(key) if self.cache is not None else None
        extra = dict(headers or {})
        if kept is not None:
            extra["If-None-Match"] = kept[0]
        with self.stream(path, params, extra) as response:
            if response.status_code == 304 and kept is not None:
                return Answer(200, httpx.Headers(kept[2]), kept[1], True)
            body = response.read()
        etag = response.headers.get("ETag")
        if self.cache is not None and etag and response.status_code == 200:
            self.cache.put(key, etag, body, dict(response.headers))
        return Answer(response.status_code, response.headers, body, False)

    # --- documents ---------------------------------------------------------------------------

    def _document_params(self, start_date: str | None, end_date: str | None,
                         since: str | None, fmt: str) -> dict[str, str]:
        params = {"format": fmt}
        for name, value in (("startDate", start_date), ("endDate", end_date), ("since", since)):
            if value is not None:
                params[name] = value
        return params

    def records(self, endpoint: Endpoint, *, start_date: str | None = None,
                end_date: str | None = None, since: str | None = None,
                fmt: parsing.Format = "xml",
                on_headers: Callable[[httpx.Headers], None] | None = None) -> Iterator[Record]:
        """Every line and invoice end of a document, parsed while it streams (flat memory).
        ``on_headers`` sees the answer's headers (``X-Next-Cursor``, ``ETag``) first."""
        params = self._document_params(start_date, end_date, since, fmt)
        with self.stream(endpoint, params) as response:
            if on_headers is not None:
                on_headers(response.headers)
            yield from parsing.iter_records(response.iter_bytes(parsing.CHUNK), fmt)

    def invoices(self, endpoint: Endpoint, *, start_date: str | None = None,
                 end_date: str | None = None, since: str | None = None,
                 fmt: parsing.Format = "xml") -> Iterator[Invoice]:
        """Whole invoices, one at a time."""
        params = self._document_params(start_date, end_date, since, fmt)
        with self.stream(endpoint, params) as response:
            yield from parsing.iter_invoices(response.iter_bytes(parsing.CHUNK), fmt)

    def subscription_details(self, subscription_id: int) -> SubscriptionDetails:
        answer = self.get("subscriptiondetails",
                          {"subscriptionId": str(subscription_id), "format": "json"})
        return parsing.parse_subscription_details(answer.content, "json")

    def invoice_file(self, endpoint: Endpoint, invoice_id: str, fmt: FileFormat) -> Answer:
        """One invoice as UBL, PDF, or the v4 XML/JSON document holding only it."""
        return self.get(f"{endpoint}/{urllib.parse.quote(invoice_id, safe='')}",
                        {"format": fmt})

    # --- incremental sync --------------------------------------------------------------------

    def changes(self, endpoint: Endpoint, cursor: str | None, *,
                start_date: str | None = None) -> SyncPage:
        """The invoices billed after ``cursor`` (None: the first call, over the server's
        default window or from ``start_date``) and the cursor to call with next time."""
        found: dict[str, str] = {}
        ids: list[str] = []

        def keep(headers: httpx.Headers) -> None:
            if CURSOR_HEADER not in headers:
                raise ApiError(200, {"detail": f"the answer has no {CURSOR_HEADER}: does "
                                     "the server support since=?"}, self.url(endpoint))
            found["cursor"] = headers[CURSOR_HEADER]

        for record in self.records(endpoint, since=cursor, start_date=start_date, fmt="json",
                                   on_headers=keep):
            if isinstance(record, InvoiceEnd):
                ids.append(record.header.invoice_id)
        return SyncPage(ids, found["cursor"])


def _problem(response: httpx.Response) -> dict[str, Any]:
    text = response.content
    try:
        if "json" in response.headers.get("content-type", ""):
            value = json.loads(text, parse_float=Decimal)
            return value if isinstance(value, dict) else {}
        from lxml import etree

        root = etree.fromstring(text, etree.XMLParser(resolve_entities=False, no_network=True))
        # RFC 9457's XML is namespaced (urn:ietf:rfc:7807): keep the local names.
        return {etree.QName(child).localname: child.text or "" for child in root}
    except Exception:  # an unreadable error body still makes an ApiError
        return {"detail": text[:200].decode("utf-8", "replace")}
