"""Streaming parse of the v4 invoice documents, in flat memory, from chunks of bytes.

``iter_records`` hands out one ``LineItem`` per price line and one ``InvoiceEnd`` per invoice,
and keeps nothing of what it handed out: a document of a million lines takes the memory of a
few lines. XML (the contract's element order puts every line's context before it) is read with
lxml's pull parser, each record removed from the tree once read. JSON is read with ijson
(Decimal, never float); its keys are sorted, so a subscription's ``PriceLines`` come before its
``SubscriptionID``: a JSON stream holds one subscription's lines until that subscription ends.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any, Literal

import ijson
from lxml import etree

from billing_api_client.models import (
    ConsolidatedPriceLine,
    ConsolidatedTotals,
    Customer,
    DocumentError,
    Header,
    Invoice,
    InvoiceEnd,
    Line,
    LineItem,
    PriceLine,
    Receiver,
    Record,
    Sender,
    Subscription,
    SubscriptionDetail,
    SubscriptionDetails,
    Totals,
    build,
    nested,
)

Format = Literal["xml", "json"]
CHUNK = 64 * 1024


def file_chunks(path: str, size: int = CHUNK) -> Iterator[bytes]:
    """The bytes of the file at ``path``, ``size`` at a time."""
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


def iter_records(chunks: Iterable[bytes], fmt: Format) -> Iterator[Record]:
    """Every price line (``LineItem``) and, after each invoice's lines, its ``InvoiceEnd``."""
    if fmt == "xml":
        return _xml_records(chunks)
    if fmt == "json":
        return _json_records(chunks)
    raise ValueError(f"format {fmt!r}: xml or json")


def iter_invoices(chunks: Iterable[bytes], fmt: Format) -> Iterator[Invoice]:
    """Whole invoices, one at a time (the memory of the largest invoice)."""
    customers: list[Customer] = []
    for record in iter_records(chunks, fmt):
        if isinstance(record, InvoiceEnd):
            yield Invoice(record.header, record.sender, record.receiver, customers,
                          record.totals)
            customers = []
            continue
        if not customers or customers[-1] is not record.customer:
            customers.append(record.customer)
        subscriptions = record.customer.subscriptions
        if not subscriptions or subscriptions[-1] is not record.subscription:
            subscriptions.append(record.subscription)
        record.subscription.lines.append(record.line)


# --- XML ------------------------------------------------------------------------------------

# Only these elements reach Python (lxml filters the rest in C): a line costs two events.
_XML_TAGS = ("Invoice", "Subscriptions", "PriceLines", "PriceLine", "Subscription", "Customer")


def _texts(element: Any) -> dict[str, str]:
    return {child.tag: child.text or "" for child in element}


def _child(element: Any, name: str) -> Any:
    found = element.find(name)
    if found is None:
        raise DocumentError(f"<{element.tag}> has no <{name}>")
    return found


def _xml_totals(element: Any) -> Totals | ConsolidatedTotals:
    purchases = element.find("TotalPurchases")
    if purchases is None:
        return build(Totals, _texts(element).get)
    return ConsolidatedTotals(build(Totals, _texts(purchases).get),
                              build(Totals, _texts(_child(element, "TotalSales")).get))


def _line_class(fields: dict[str, Any]) -> type[Line]:
    return ConsolidatedPriceLine if "PurchasePrice" in fields else PriceLine


def _xml_records(chunks: Iterable[bytes]) -> Iterator[Record]:
    parser = etree.XMLPullParser(events=("start", "end"), tag=_XML_TAGS,
                                 resolve_entities=False, no_network=True, huge_tree=True)
    index = 0
    customer: Customer | None = None
    subscription: Subscription | None = None
    for chunk in _then_close(chunks, parser):
        parser.feed(chunk)
        for event, element in parser.read_events():
            tag = element.tag
            if event == "start":
                # Every sibling before a list is complete when the list starts.
                if tag == "PriceLines":
                    parent = element.getparent()
                    subscription = build(Subscription, _texts(parent).get, details=[
                        build(SubscriptionDetail, _texts(d).get)
                        for d in _child(parent, "SubscriptionDetails")])
                elif tag == "Subscriptions":
                    fields = _texts(element.getparent())
                    fields.setdefault("CostCenter", fields.get("CustomerCostCenter", ""))
                    customer = build(Customer, fields.get)
                continue
            if tag == "PriceLine":
                if customer is None or subscription is None:
                    raise DocumentError("<PriceLine> outside a subscription")
                fields = _texts(element)
                yield LineItem(index, customer, subscription,
                               build(_line_class(fields), fields.get))
            elif tag == "Invoice":
                yield InvoiceEnd(index, build(Header, _texts(_child(element, "Header")).get),
                                 build(Sender, _texts(_child(element, "Sender")).get),
                                 build(Receiver, _texts(_child(element, "Receiver")).get),
                                 _xml_totals(_child(element, "Totals")))
                index += 1
            elif tag not in ("Subscription", "Customer"):
                continue
            # Forget what was handed out: every earlier sibling is gone already, so this is
            # the parent's first child and removing it is cheap.
            element.clear(keep_tail=False)
            parent = element.getparent()
            if parent is not None:
                parent.remove(element)


def _then_close(chunks: Iterable[bytes], parser: Any) -> Iterator[bytes]:
    yield from chunks
    try:
        parser.close()  # raises on a truncated document
    except etree.XMLSyntaxError as exc:
        raise DocumentError(f"the XML document is incomplete: {exc}") from None


# --- JSON -----------------------------------------------------------------------------------

_INVOICE = "Invoices.item"
_CUSTOMER = f"{_INVOICE}.Customers.item"
_SUBSCRIPTION = f"{_CUSTOMER}.Subscriptions.item"
_LINE = f"{_SUBSCRIPTION}.PriceLines.item"
# Lists whose items are handled as they end rather than kept in their parent.
_STREAMED = {f"{_INVOICE}.Customers", f"{_CUSTOMER}.Subscriptions", f"{_SUBSCRIPTION}.PriceLines",
             "Invoices"}


class _Reader:
    """A file-like ``read`` over chunks, for ijson."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._rest = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._rest) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._rest += chunk
        if size < 0:
            data, self._rest = self._rest, b""
        else:
            data, self._rest = self._rest[:size], self._rest[size:]
        return data


def _json_totals(raw: dict[str, Any]) -> Totals | ConsolidatedTotals:
    if "TotalPurchases" in raw:
        return ConsolidatedTotals(build(Totals, raw["TotalPurchases"].get),
                                  build(Totals, raw["TotalSales"].get))
    return build(Totals, raw.get)


def _json_records(chunks: Iterable[bytes]) -> Iterator[Record]:
    # A small object builder over ijson's events that drops the streamed lists' items once
    # they are handed on. ``stack`` holds (container, key being filled) pairs.
    stack: list[tuple[Any, str | None]] = []
    index = 0
    customer: Customer | None = None
    pending: list[Line] = []  # the current subscription's lines, until its fields are known
    try:
        events = ijson.parse(_Reader(chunks), use_float=False)
        for prefix, event, value in events:
            if event == "map_key":
                stack[-1] = (stack[-1][0], value)
                continue
            if event in ("start_map", "start_array"):
                container: Any = {} if event == "start_map" else []
                if prefix in _STREAMED:
                    container = _Dropped()
                _put(stack, container)
                stack.append((container, None))
                if prefix == _SUBSCRIPTION and event == "start_map":
                    pending = []
                continue
            if event in ("end_map", "end_array"):
                done = stack.pop()[0]
                if event == "end_array":
                    continue
                if prefix == _LINE:
                    pending.append(build(_line_class(done), done.get))
                elif prefix == _CUSTOMER:
                    customer = None
                elif prefix == _SUBSCRIPTION:
                    if customer is None:
                        # Customer fields sort before "Subscriptions": known by now.
                        fields = stack[-2][0]
                        fields.setdefault("CostCenter", fields.get("CustomerCostCenter", ""))
                        customer = build(Customer, fields.get)
                    subscription = build(Subscription, done.get, details=[
                        build(SubscriptionDetail, d.get) for d in done["SubscriptionDetails"]])
                    for line in pending:
                        yield LineItem(index, customer, subscription, line)
                    pending = []
                elif prefix == _INVOICE:
                    yield InvoiceEnd(index, build(Header, done["Header"].get),
                                     build(Sender, done["Sender"].get),
                                     build(Receiver, done["Receiver"].get),
                                     _json_totals(done["Totals"]))
                    index += 1
                continue
            _put(stack, value)
    except (KeyError, AttributeError, TypeError) as exc:
        raise DocumentError(f"the JSON document lacks {exc}") from None
    except ijson.JSONError as exc:
        raise DocumentError(f"the JSON document is not valid: {exc}") from None
    if stack:
        raise DocumentError("the JSON document is incomplete")


class _Dropped(list[Any]):
    """A list that keeps nothing: its items are handled when they end."""

    def append(self, item: Any) -> None:
        pass


def _put(stack: list[tuple[Any, str | None]], value: Any) -> None:
    if not stack:
        return
    container, key = stack[-1]
    if key is None:
        container.append(value)
    else:
        container[key] = value


# --- subscriptiondetails (one subscription: small, read whole) -------------------------------


def parse_subscription_details(data: bytes, fmt: Format) -> SubscriptionDetails:
    """The ``subscriptiondetails`` document."""
    if fmt == "json":
        raw = json.loads(data, parse_float=Decimal)
        return nested(SubscriptionDetails, raw, _json_child, _json_items)
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return nested(SubscriptionDetails, etree.fromstring(data, parser), _xml_child, _xml_items)


def _json_child(raw: Any, name: str) -> Any:
    return raw.get(name) if isinstance(raw, dict) else None


def _json_items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _xml_child(element: Any, name: str) -> Any:
    found = element.find(name)
    if found is None:
        return None
    return found if len(found) else (found.text or "")


def _xml_items(value: Any) -> list[Any]:
    return [] if isinstance(value, str) or value is None else list(value)


Parser = Callable[[Iterable[bytes], Format], Iterator[Record]]
