"""XML and JSON writers for invoice documents: each method returns the text of one step.

The stream (``export/stream.py``) calls ``begin``, then per invoice ``invoice_start``,
``customer_start``, ``subscription_start``, ``line`` …, the matching ends, and ``end``. A
customer's and a subscription's start and end texts depend on their row alone, apart from the
``separator`` that a start not ``first`` begins with: the stream renders them once per id. Every
field list is compiled once (``export/compiled.py``) into one function per element, so a line
costs one call; header, party and totals values are first put in tuples of their field order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from billing_api.billing.countries import language_name
from billing_api.export import source as s
from billing_api.export.compiled import json_renderer, xml_renderer
from billing_api.export.documents import (
    DETAIL_FIELDS,
    HEADER_FIELDS,
    RECEIVER,
    RECEIVER_FIELDS,
    SENDER,
    SENDER_FIELDS,
    TOTAL_FIELDS,
    DocumentShape,
    Field,
    Kind,
)

Row = Sequence[Any]
XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>\n'
XML_NAMESPACES = (
    'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
)
# Snapshots per format, shared by every document of that format; emptied when full. A customer
# invoice document holds one receiver per customer, repeated month after month in the same
# order: an LRU smaller than the customers missed every time (cProfile: 7,196 parses for
# 11,686 invoices of 1,991 receivers), a plain dict of this size keeps them all.
PARTY_CACHE = 4096
DETAILS_CACHE = 1024
TYPE_IDENTIFIERS = {"invoice": ("Invoice", 1), "credit": ("Credit", 2)}


def header_tuple(invoice: Row) -> tuple[Any, ...]:
    type_name, type_id = TYPE_IDENTIFIERS[invoice[s.H_TYPE]]
    language = invoice[s.H_LANGUAGE]
    return (
        invoice[s.H_NUMBER],
        invoice[s.H_DESCRIPTION],
        invoice[s.H_DATE],
        invoice[s.H_DUE],
        invoice[s.H_CURRENCY],
        invoice[s.H_TERMS],
        type_name,
        type_id,
        language,
        language_name(language),
    )


def party_tuple(raw: str | dict[str, Any], names: Sequence[str]) -> tuple[Any, ...]:
    """A sender or receiver snapshot (JSON text from the invoice row) in field order."""
    data = json.loads(raw) if isinstance(raw, str) else raw
    return tuple(data.get(name, "") for name in names)


def totals_tuple(excl: int, vat: int) -> tuple[int, int, int]:
    return excl, vat, excl + vat


def detail_tuples(attributes_json: str | None) -> list[Sequence[Any]]:
    """A subscription's attributes from the query's JSON array text."""
    return json.loads(attributes_json) if attributes_json else []


def _sorted(fields: Sequence[Field]) -> list[Field]:
    return sorted(fields, key=lambda f: f.name.lower())


class XmlWriter:
    """XML in the contract's element order; empty values as self-closing elements."""

    separator = ""

    def __init__(self, shape: DocumentShape) -> None:
        self.shape = shape
        self._customer = xml_renderer(shape.customer)
        self._subscription = xml_renderer(shape.subscription)
        self._line = xml_renderer(shape.line)
        self._header = _header_renderer("xml")
        self._totals = xml_renderer(TOTAL_FIELDS)
        self._detail = xml_renderer(DETAIL_FIELDS)
        self._sender = _party_renderer("xml", SENDER)
        self._receiver = _party_renderer("xml", RECEIVER)
        self._details = _cached(self._render_details, DETAILS_CACHE)

    def begin(self) -> str:
        wrapper = f"<{self.shape.xml_invoices_wrapper}>" if self.shape.xml_invoices_wrapper else ""
        return f"{XML_DECLARATION}<{self.shape.xml_root} {XML_NAMESPACES}>{wrapper}"

    def end(self) -> str:
        wrapper = f"</{self.shape.xml_invoices_wrapper}>" if self.shape.xml_invoices_wrapper else ""
        return f"{wrapper}</{self.shape.xml_root}>\n"

    def invoice_start(self, invoice: Row, first: bool) -> str:
        return (
            f"<Invoice><Header>{self._header(invoice)}</Header>"
            f"<Sender>{self._sender(invoice[s.H_SENDER])}</Sender>"
            f"<Receiver>{self._receiver(invoice[s.H_RECEIVER])}</Receiver><Customers>"
        )

    def invoice_end(self, invoice: Row, sales: tuple[int, int]) -> str:
        own = self._totals(totals_tuple(invoice[s.H_TOTAL_EXCL], invoice[s.H_TOTAL_VAT]))
        if self.shape.consolidated:
            sold = self._totals(totals_tuple(*sales))
            totals = (
                f"<Totals><TotalPurchases>{own}</TotalPurchases>"
                f"<TotalSales>{sold}</TotalSales></Totals>"
            )
        else:
            totals = f"<Totals>{own}</Totals>"
        return f"</Customers>{totals}</Invoice>"

    def customer_start(self, row: Row, first: bool) -> str:
        return f"<Customer>{self._customer(row)}<Subscriptions>"

    def customer_end(self) -> str:
        return "</Subscriptions></Customer>"

    def subscription_start(self, row: Row, first: bool) -> str:
        text = f"<Subscription>{self._subscription(row)}"
        if self.shape.subscription_details:
            text += self._details(row[s.ATTRIBUTES])
        return text + "<PriceLines>"

    def _render_details(self, attributes_json: str | None) -> str:
        details = "".join(
            f"<SubscriptionDetail>{self._detail(d)}</SubscriptionDetail>"
            for d in detail_tuples(attributes_json)
        )
        if not details:
            return "<SubscriptionDetails />"
        return f"<SubscriptionDetails>{details}</SubscriptionDetails>"

    def subscription_end(self, row: Row) -> str:
        return "</PriceLines></Subscription>"

    def line(self, row: Row, first: bool) -> str:
        return f"<PriceLine>{self._line(row)}</PriceLine>"


class JsonWriter:
    """JSON with keys in alphabetical order ignoring case at every level, as the public
    system's own examples; numbers written exactly from integer units."""

    separator = ","

    def __init__(self, shape: DocumentShape) -> None:
        self.shape = shape
        self._customer = json_renderer(_sorted(shape.customer))
        self._line = json_renderer(_sorted(shape.line))
        self._header = _header_renderer("json")
        self._totals = json_renderer(_sorted(TOTAL_FIELDS))
        self._detail = json_renderer(_sorted(DETAIL_FIELDS))
        self._sender = _party_renderer("json", SENDER)
        self._receiver = _party_renderer("json", RECEIVER)
        self._details = _cached(self._render_details, DETAILS_CACHE)
        # The subscription's keys fall before and after its nested lists in sorted order.
        keys = [*shape.subscription, Field("PriceLines", -1, Kind.TEXT)]
        if shape.subscription_details:
            keys.append(Field("SubscriptionDetails", -2, Kind.TEXT))
        ordered = _sorted(keys)
        split = next(i for i, f in enumerate(ordered) if f.index == -1)
        self._sub_before = json_renderer(ordered[:split])
        after = ordered[split + 1 :]
        self._details_after = any(f.index == -2 for f in after)
        details_at = next((i for i, f in enumerate(after) if f.index == -2), len(after))
        self._sub_mid = json_renderer(after[:details_at])
        self._sub_end = json_renderer(after[details_at + 1 :])
        self._has_mid, self._has_end = details_at > 0, details_at + 1 < len(after)

    def begin(self) -> str:
        return '{"Invoices":['

    def end(self) -> str:
        return "]}\n"

    def invoice_start(self, invoice: Row, first: bool) -> str:
        return ("" if first else ",") + '{"Customers":['

    def invoice_end(self, invoice: Row, sales: tuple[int, int]) -> str:
        own = self._totals(totals_tuple(invoice[s.H_TOTAL_EXCL], invoice[s.H_TOTAL_VAT]))
        totals = "{" + own + "}"
        if self.shape.consolidated:
            sold = self._totals(totals_tuple(*sales))
            totals = '{"TotalPurchases":{' + own + '},"TotalSales":{' + sold + "}}"
        return (
            '],"Header":{'
            + self._header(invoice)
            + '},"Receiver":{'
            + self._receiver(invoice[s.H_RECEIVER])
            + '},"Sender":{'
            + self._sender(invoice[s.H_SENDER])
            + '},"Totals":'
            + totals
            + "}"
        )

    def customer_start(self, row: Row, first: bool) -> str:
        return ("" if first else ",") + "{" + self._customer(row) + ',"Subscriptions":['

    def customer_end(self) -> str:
        return "]}"

    def subscription_start(self, row: Row, first: bool) -> str:
        return ("" if first else ",") + "{" + self._sub_before(row) + ',"PriceLines":['

    def subscription_end(self, row: Row) -> str:
        parts = []
        if self._has_mid:
            parts.append(self._sub_mid(row))
        if self._details_after:
            parts.append(self._details(row[s.ATTRIBUTES]))
        if self._has_end:
            parts.append(self._sub_end(row))
        return "]," + ",".join(parts) + "}" if parts else "]}"

    def line(self, row: Row, first: bool) -> str:
        return ("" if first else ",") + "{" + self._line(row) + "}"

    def _render_details(self, attributes_json: str | None) -> str:
        details = ",".join("{" + self._detail(d) + "}" for d in detail_tuples(attributes_json))
        return f'"SubscriptionDetails":[{details}]'


@lru_cache(maxsize=64)
def writer_for(shape: DocumentShape, fmt: str) -> XmlWriter | JsonWriter:
    """The writer of ``shape`` in ``fmt`` (``xml`` or ``json``): writers hold no state of a
    document, so one per shape serves every request, party caches included."""
    return XmlWriter(shape) if fmt == "xml" else JsonWriter(shape)


@lru_cache(maxsize=4)
def _party_renderer(fmt: str, names: tuple[str, ...]) -> Callable[[str], str]:
    """A sender's or receiver's snapshot text → its rendering in ``fmt``, each distinct text
    rendered once (the same in every document shape, so all shapes share one memo)."""
    fields = SENDER_FIELDS if names == SENDER else RECEIVER_FIELDS
    render = xml_renderer(fields) if fmt == "xml" else json_renderer(_sorted(fields))
    memo: dict[str, str] = {}
    found = memo.get

    def rendered(raw: str) -> str:
        text = found(raw)
        if text is None:
            if len(memo) >= PARTY_CACHE:
                memo.clear()
            text = memo[raw] = render(party_tuple(raw, names))
        return text

    return rendered


# The header fields that differ per invoice, read from the invoice row as it is; the others
# (currency, terms, type and language, with the names derived from them) repeat from invoice
# to invoice and are rendered once per combination: on a document of small invoices, building
# and rendering the whole header was a third of an invoice's own cost.
_HEADER_OWN = (
    Field("InvoiceID", s.H_NUMBER, Kind.TEXT),
    Field("Description", s.H_DESCRIPTION, Kind.TEXT),
    Field("Date", s.H_DATE, Kind.DATE),
    Field("ExpirationDate", s.H_DUE, Kind.DATE),
)
HEADER_SHARED_CACHE = 1024


@lru_cache(maxsize=2)
def _header_renderer(fmt: str) -> Callable[[Row], str]:
    """An invoice row → its header's fields, as ``HEADER_FIELDS`` rendered from
    ``header_tuple`` would be."""
    own_names = {f.name for f in _HEADER_OWN}
    ordered = list(HEADER_FIELDS) if fmt == "xml" else _sorted(HEADER_FIELDS)
    at = [i for i, f in enumerate(ordered) if f.name in own_names]
    if at != list(range(at[0], at[0] + len(at))):
        raise ValueError("the per-invoice header fields must be adjacent")
    own_order = {f.name: n for n, f in enumerate(ordered)}
    own_fields = sorted(_HEADER_OWN, key=lambda f: own_order[f.name])
    renderer = xml_renderer if fmt == "xml" else json_renderer
    own = renderer(own_fields)
    before, after = renderer(ordered[: at[0]]), renderer(ordered[at[-1] + 1 :])
    comma = "" if fmt == "xml" else ","
    head = comma if at[0] > 0 else ""
    tail = comma if at[-1] + 1 < len(ordered) else ""
    shared: dict[tuple[Any, ...], tuple[str, str]] = {}
    found = shared.get
    currency, terms, kind, language = s.H_CURRENCY, s.H_TERMS, s.H_TYPE, s.H_LANGUAGE

    def render(invoice: Row) -> str:
        key = (invoice[currency], invoice[terms], invoice[kind], invoice[language])
        parts = found(key)
        if parts is None:
            if len(shared) >= HEADER_SHARED_CACHE:
                shared.clear()
            values = header_tuple(invoice)
            parts = shared[key] = (before(values) + head, tail + after(values))
        return parts[0] + own(invoice) + parts[1]

    return render


def _cached(render: Callable[[Any], str], size: int) -> Callable[[Any], str]:
    """``render`` of a raw JSON text from the database, remembered for the ``size`` texts
    seen last: senders, receivers and attribute sets repeat across a document's invoices,
    and parsing one costs more than hashing it."""
    return lru_cache(maxsize=size)(render)
