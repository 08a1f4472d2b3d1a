"""The fast invoice writers against a slow, obviously-correct reference, on random data.

Hypothesis draws invoices → customers → subscriptions → lines with hostile values; the rows
the database would return are fed through ``stream._merge`` with the real ``XmlWriter`` and
``JsonWriter``. The reference builds the same document from the nested data (not from the
rows) with lxml's ``Element``/``SubElement`` and with plain Python lists, using its own copy
of the contract's field lists, so a mistake in ``documents.py``, the writers or the merge
shows up as a difference.

How the reference renders values (the contract's rules, written independently):
- money: the exact decimal of the 1/10,000 units, at least two and at most four decimals;
  plain numbers: no trailing zeros; ints as themselves; dates as given (``YYYYMMDD``);
- ``None`` and ``""`` are empty: an empty element in XML; ``""`` for text and dates and
  ``null`` for numbers in JSON;
- control characters: XML 1.0 cannot carry characters outside its ``Char`` production (C0
  controls but tab, LF and CR; U+FFFE, U+FFFF), so the XML reference **drops** them, as the
  fast writer does; a CR is kept (lxml writes ``&#13;``). JSON carries every character, escaped.
XML is compared as canonical XML (C14N 2.0) after parsing, so quoting style and
``<a></a>``/``<a />`` do not matter but tags, order and text do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from billing_api.billing.countries import language_name
from billing_api.export import source as s
from billing_api.export import stream
from billing_api.export.documents import invoice_shape
from billing_api.export.stream import _merge
from billing_api.export.writers import JsonWriter, XmlWriter

XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>\n'
NAMESPACES = {"xsd": "http://www.w3.org/2001/XMLSchema",
              "xsi": "http://www.w3.org/2001/XMLSchema-instance"}
TEXT, INT, MONEY, PLAIN, DATE, BOOL = "text", "int", "money", "plain", "date", "bool"

# --- the contract's field lists, transcribed independently of export/documents.py ------------
CUSTOMER = [("AccountID", s.CUSTOMER_ID, INT), ("CustomerNumber", s.CUSTOMER_NUMBER, TEXT),
            ("CompanyName", s.CUSTOMER_NAME, TEXT), ("CostCenter", s.COST_CENTER, TEXT)]
SUBSCRIPTION = [
    ("SubscriptionID", s.SUBSCRIPTION_ID, INT), ("SubscriptionName", s.SUBSCRIPTION_NAME, TEXT),
    ("BillingModel", s.BILLING_MODEL, INT), ("PlanID", s.PLAN_ID, INT),
    ("PlanName", s.PLAN_NAME, TEXT), ("PlanCategoryName", s.PLAN_CATEGORY, TEXT),
    ("StartDate", s.SUBSCRIPTION_START, DATE)]
SUBSCRIPTION_V4 = [("SubscriptionPONumber", s.SUBSCRIPTION_PO, TEXT)]  # then the attributes
LINE_HEAD = [("LineId", s.LINE_ID, INT), ("UID", s.UID, TEXT),
             ("Description", s.DESCRIPTION, TEXT), ("SKU", s.SKU, TEXT),
             ("Quantity", s.QUANTITY, PLAIN), ("QuantityType", s.QUANTITY_TYPE, TEXT)]
PRICES = [("UnitPrice", s.UNIT_PRICE, MONEY), ("Discount", s.DISCOUNT, MONEY),
          ("ExtendedPrice", s.EXTENDED_PRICE, MONEY)]
CONSOLIDATED_PRICES = [
    ("PurchasePrice", s.UNIT_PRICE, MONEY), ("PurchaseDiscount", s.DISCOUNT, MONEY),
    ("PurchaseExtendedPrice", s.EXTENDED_PRICE, MONEY), ("SalesPrice", s.SALES_PRICE, MONEY),
    ("SalesDiscount", s.SALES_DISCOUNT, MONEY), ("SalesExtendedPrice", s.SALES_EXTENDED, MONEY)]
LINE_TAIL = [
    ("VAT", s.VAT, MONEY), ("TaxZoneID", s.TAX_ZONE_ID, INT),
    ("TaxPercentage", s.TAX_PERCENTAGE, PLAIN), ("StartDate", s.START_DATE, DATE),
    ("EndDate", s.END_DATE, DATE), ("Duration", s.DURATION, PLAIN),
    ("DurationType", s.DURATION_TYPE, TEXT), ("ConsumerCompanyName", s.CONSUMER_NAME, TEXT),
    ("ConsumerCompanyNumber", s.CONSUMER_NUMBER, TEXT)]
LINE_V4 = [("RatePeriodID", s.RATE_PERIOD_ID, INT), ("SubPONumber", s.SUB_PO_NUMBER, TEXT),
           ("ChargeType", s.CHARGE_TYPE, TEXT), ("BillingFrequency", s.BILLING_FREQUENCY, TEXT),
           ("InvoiceRowHash", s.ROW_HASH, TEXT)]
SENDER = ["AccountID", "CompanyName", "Address", "PostalCode", "City", "CountryCode", "Country",
          "Telephone", "Fax", "ChamberOfCommerce", "BankAccount", "IBAN", "BIC", "VATNumber",
          "Website", "Logo"]
RECEIVER = ["AccountID", "CustomerNumber", "CompanyName", "VATNumber", "ContactFirstName",
            "ContactMiddleName", "ContactLastName", "Address", "Zip", "City", "CountryCode",
            "Country", "Telephone", "Fax", "Email", "Type"]
SHAPES = [(e, v4) for e in ("invoices", "customerinvoices", "consolidatedinvoices")
          for v4 in (False, True)]


def xml_char(c: str) -> bool:
    """XML 1.0's ``Char`` production."""
    o = ord(c)
    return o in (0x9, 0xA, 0xD) or 0x20 <= o <= 0xD7FF or 0xE000 <= o <= 0xFFFD or o >= 0x10000


def fixed(units: int) -> tuple[str, str]:
    whole, fraction = f"{Decimal(units).scaleb(-4):f}".split(".")
    return whole, fraction  # exactly four fraction digits


def ref_money(units: int) -> str:
    whole, fraction = fixed(units)
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


def ref_plain(units: int) -> str:
    whole, fraction = fixed(units)
    return f"{whole}.{fraction.rstrip('0')}" if fraction.rstrip("0") else whole


def xml_value(value: Any, kind: str) -> str | None:
    if value is None or value == "":
        return None
    if kind == BOOL:
        return "true" if value else "false"
    text = {MONEY: ref_money, PLAIN: ref_plain}.get(kind, str)(value)
    return "".join(c for c in text if xml_char(c)) if kind == TEXT else text


def json_value(value: Any, kind: str) -> Any:
    """Numbers as ("num", their exact JSON text), to compare the text, not a float."""
    if value is None or value == "":
        return "" if kind in (TEXT, DATE) else None
    if kind in (TEXT, DATE):
        return value
    if kind == BOOL:
        return bool(value)
    return ("num", {MONEY: ref_money, PLAIN: ref_plain}.get(kind, str)(value))


class Obj(list[tuple[str, Any]]):
    """A JSON object as its ordered key/value pairs (so key order is compared too)."""


# --- the reference document: one tree, two renderings ----------------------------------------
# A node is a list of (name, value); a value is a Leaf, a node (an object), or a Repeated
# (a JSON array; in XML a wrapper element around repeated items).


@dataclass
class Leaf:
    value: Any
    kind: str


@dataclass
class Repeated:
    item: str
    nodes: list[Any]


def leaves(row: Any, fields: list[Any]) -> list[tuple[str, Leaf]]:
    return [(name, Leaf(row[index], kind)) for name, index, kind in fields]


def totals(excl: int, vat: int) -> list[tuple[str, Leaf]]:
    return [("TotalExcludingVAT", Leaf(excl, MONEY)), ("TotalVAT", Leaf(vat, MONEY)),
            ("TotalIncludingVAT", Leaf(excl + vat, MONEY))]


def invoice_node(invoice: dict[str, Any], consolidated: bool, v4: bool) -> list[Any]:
    row = invoice["header"]
    name, code = {"invoice": ("Invoice", 1), "credit": ("Credit", 2)}[row[s.H_TYPE]]
    header = [("InvoiceID", row[s.H_NUMBER], TEXT), ("Description", row[s.H_DESCRIPTION], TEXT),
              ("Date", row[s.H_DATE], DATE), ("ExpirationDate", row[s.H_DUE], DATE),
              ("Currency", row[s.H_CURRENCY], TEXT), ("TermsOfPaymentDays", row[s.H_TERMS], INT),
              ("Type", name, TEXT), ("TypeIdentifier", code, INT),
              ("LanguageCode", row[s.H_LANGUAGE], TEXT),
              ("Language", language_name(row[s.H_LANGUAGE]), TEXT)]

    def party(data: dict[str, Any], names: list[str]) -> list[tuple[str, Leaf]]:
        return [(n, Leaf(data.get(n), INT if n == "AccountID" else TEXT)) for n in names]

    customer_fields = [*CUSTOMER[:3], ("CustomerCostCenter" if consolidated else "CostCenter",
                                       s.COST_CENTER, TEXT)]
    line_fields = [*LINE_HEAD, *(CONSOLIDATED_PRICES if consolidated else PRICES), *LINE_TAIL,
                   *(LINE_V4 if v4 else [])]
    customers = []
    for customer in invoice["customers"]:
        subscriptions = []
        for sub in customer["subscriptions"]:
            node = leaves(sub["row"], SUBSCRIPTION + (SUBSCRIPTION_V4 if v4 else []))
            if v4:
                details = [[(n, Leaf(v, k)) for n, v, k in a] for a in sub["attributes"]]
                node.append(("SubscriptionDetails", Repeated("SubscriptionDetail", details)))
            lines = [leaves(line, line_fields) for line in sub["lines"]]
            subscriptions.append([*node, ("PriceLines", Repeated("PriceLine", lines))])
        customers.append([*leaves(customer["row"], customer_fields),
                          ("Subscriptions", Repeated("Subscription", subscriptions))])
    sold = [line for c in invoice["customers"] for sub in c["subscriptions"]
            for line in sub["lines"] if line[s.SALES_EXTENDED] is not None]
    purchases = totals(row[s.H_TOTAL_EXCL], row[s.H_TOTAL_VAT])
    sales = totals(sum(line[s.SALES_EXTENDED] for line in sold),
                   sum(line[s.SALES_VAT] for line in sold))
    return [("Header", [(n, Leaf(v, k)) for n, v, k in header]),
            ("Sender", party(invoice["sender"], SENDER)),
            ("Receiver", party(invoice["receiver"], RECEIVER)),
            ("Customers", Repeated("Customer", customers)),
            ("Totals", [("TotalPurchases", purchases), ("TotalSales", sales)]
             if consolidated else purchases)]


def reference_tree(invoices: list[dict[str, Any]], endpoint: str, v4: bool) -> Repeated:
    consolidated = endpoint == "consolidatedinvoices"
    # An invoice without lines is not written.
    return Repeated("Invoice", [invoice_node(i, consolidated, v4) for i in invoices
                                if i["customers"]])


def reference_xml(invoices: list[dict[str, Any]], endpoint: str, v4: bool) -> etree._Element:
    def render(parent: etree._Element, name: str, value: Any) -> None:
        element = etree.SubElement(parent, name)
        if isinstance(value, Leaf):
            element.text = xml_value(value.value, value.kind)
        elif isinstance(value, Repeated):
            for node in value.nodes:
                render(element, value.item, node)
        else:
            for inner_name, inner in value:
                render(element, inner_name, inner)

    documents = reference_tree(invoices, endpoint, v4)
    consolidated = endpoint == "consolidatedinvoices"
    root = etree.Element("ConsolidatedInvoice" if consolidated else "InvoiceResponse",
                         nsmap=NAMESPACES)  # type: ignore[arg-type]
    if consolidated:
        render(root, "Invoices", documents)
    else:  # InvoiceResponse holds its Invoice elements directly
        for node in documents.nodes:
            render(root, "Invoice", node)
    return root


def reference_json(invoices: list[dict[str, Any]], endpoint: str, v4: bool) -> Obj:
    def render(value: Any) -> Any:
        if isinstance(value, Leaf):
            return json_value(value.value, value.kind)
        if isinstance(value, Repeated):
            return [render(node) for node in value.nodes]
        # The contract's key order: alphabetical ignoring case.
        return Obj(sorted(((n, render(v)) for n, v in value), key=lambda kv: kv[0].lower()))

    return Obj([("Invoices", render(reference_tree(invoices, endpoint, v4)))])


def as_decimals(value: Any) -> Any:
    """The reference as ``json.loads(..., parse_float=Decimal)`` would return it."""
    if isinstance(value, Obj):
        return {key: as_decimals(inner) for key, inner in value}
    if isinstance(value, list):
        return [as_decimals(inner) for inner in value]
    if isinstance(value, tuple):  # ("num", text)
        return Decimal(value[1])
    return value


# --- random rows ---------------------------------------------------------------------------

HOSTILE = ["&<>\"'", "]]>", "\x00\x01\x08\x0b\x0c\x1f", "a\tb\nc\rd", "\r\n", "\ufffe\uffff",
           "café Ünal 😀 €", "  ", "a\x7f\x85\u2028b", "\x01"]
# No lone surrogates: no database stores them (UTF-8 cannot encode them).
CHARACTERS = st.characters(exclude_categories=("Cs",))
TEXTS = st.one_of(st.none(), st.just(""), st.sampled_from(HOSTILE), st.text(CHARACTERS, max_size=8))
WORDS = st.one_of(st.sampled_from(HOSTILE), st.text(CHARACTERS, max_size=4))
BIG = st.integers(-(2**63), 2**63 - 1)
NUMBERS = st.one_of(st.none(), BIG, st.integers(-(10**7), 10**7))
BY_KIND = {TEXT: TEXTS, INT: st.one_of(st.none(), BIG), MONEY: NUMBERS, PLAIN: NUMBERS,
           DATE: st.one_of(st.none(), st.just(""), st.integers(0, 10**8 - 1).map("{:08d}".format))}
LINE_FIELDS = [*LINE_HEAD, *PRICES, *LINE_TAIL, *LINE_V4]
SUB_FIELDS = [f for f in SUBSCRIPTION + SUBSCRIPTION_V4 if f[1] != s.SUBSCRIPTION_ID]


@st.composite
def documents(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[Any], list[Any]]:
    """Nested invoices (for the reference) and the header and line rows the queries return."""
    invoices: list[dict[str, Any]] = []
    headers: list[Any] = []
    rows: list[Any] = []

    def fill(row: list[Any], fields: list[Any]) -> None:
        for _, index, kind in fields:
            row[index] = draw(BY_KIND[kind])

    seen_customers: dict[int, list[Any]] = {}
    seen_subscriptions: dict[int, tuple[list[Any], list[Any]]] = {}

    for invoice_id in range(draw(st.integers(0, 2))):
        parties = {
            key: {n: draw(BY_KIND[INT if n == "AccountID" else TEXT]) for n in names
                  if draw(st.booleans()) or n == "AccountID"}
            for key, names in (("sender", SENDER), ("receiver", RECEIVER))
        }
        header = [invoice_id, draw(TEXTS), draw(TEXTS), draw(BY_KIND[DATE]), draw(BY_KIND[DATE]),
                  draw(TEXTS), draw(BIG), draw(st.sampled_from(["invoice", "credit"])),
                  draw(st.sampled_from(["en", "nl", "DE", "xx", "", "<&>"])),
                  *[draw(st.sampled_from([json.dumps(p), json.dumps(p, ensure_ascii=False)]))
                    for p in parties.values()],  # the snapshots arrive as JSON text
                  draw(BIG), draw(BIG)]
        headers.append(header)
        invoice: dict[str, Any] = {"header": header, **parties, "customers": []}
        # Ids from small ranges, so customers and subscriptions recur across invoices, as in
        # the database; one id names one content in a document (the stream renders it once),
        # and consecutive customers and subscriptions differ.
        customer_ids = draw(st.lists(st.integers(0, 3), max_size=2, unique=True))
        for customer_id in customer_ids:
            if customer_id not in seen_customers:
                fresh = [None] * 41
                fill(fresh, CUSTOMER)
                fresh[s.CUSTOMER_ID] = customer_id
                seen_customers[customer_id] = fresh
            customer_row = seen_customers[customer_id]
            customer: dict[str, Any] = {"row": customer_row, "subscriptions": []}
            for sub_id in draw(st.lists(st.integers(0, 3), min_size=1, max_size=2, unique=True)):
                if sub_id not in seen_subscriptions:
                    fresh = [None] * 41
                    fill(fresh, SUB_FIELDS)
                    fresh[s.SUBSCRIPTION_ID] = sub_id
                    # PostgreSQL gives noshow as a JSON boolean, SQLite as 0 or 1.
                    drawn = draw(st.lists(st.tuples(
                        WORDS, WORDS, WORDS, st.sampled_from([True, False, 0, 1])), max_size=2))
                    fresh[s.ATTRIBUTES] = (json.dumps(drawn) if drawn
                                           else draw(st.sampled_from([None, "[]"])))
                    seen_subscriptions[sub_id] = (fresh, drawn)
                sub_row, attributes = seen_subscriptions[sub_id]
                sub: dict[str, Any] = {"row": sub_row, "lines": [], "attributes": [
                    list(zip(("Attribute", "AttributeValue", "AttributeDescription", "noshow"),
                             a, (TEXT, TEXT, TEXT, BOOL), strict=True)) for a in attributes]}
                for _ in range(draw(st.integers(1, 2))):
                    row = [None] * 41
                    fill(row, LINE_FIELDS)
                    if draw(st.booleans()):  # a customer line matched: all four sales figures
                        for index in (s.SALES_PRICE, s.SALES_DISCOUNT, s.SALES_EXTENDED,
                                      s.SALES_VAT):
                            row[index] = draw(BIG)
                    for _, index, _ in CUSTOMER:
                        row[index] = customer_row[index]
                    for index in (s.SUBSCRIPTION_ID, s.ATTRIBUTES, *[f[1] for f in SUB_FIELDS]):
                        row[index] = sub_row[index]
                    row[s.INVOICE_ID] = invoice_id
                    rows.append(row)
                    sub["lines"].append(row)
                customer["subscriptions"].append(sub)
            invoice["customers"].append(customer)
        invoices.append(invoice)
    return invoices, headers, rows


# --- the tests -----------------------------------------------------------------------------

EXAMPLES = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
Data = tuple[list[dict[str, Any]], list[Any], list[Any]]


def fast(writer: XmlWriter | JsonWriter, data: Data) -> bytes:
    _, headers, rows = data
    return b"".join(_merge(writer, writer.shape, iter(headers), iter(rows)))


def canonical(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n2")


def number(text: str) -> tuple[str, str]:
    return ("num", text)


@pytest.mark.parametrize(("endpoint", "v4"), SHAPES)
@EXAMPLES
@given(data=documents())
def test_writers_equal_the_reference(endpoint: str, v4: bool, data: Data) -> None:
    shape = invoice_shape(endpoint, v4)
    body = fast(XmlWriter(shape), data)
    assert body.startswith(XML_DECLARATION) and body.endswith(b">\n")
    parsed = etree.fromstring(body)
    assert parsed.nsmap == NAMESPACES
    reference = etree.tostring(reference_xml(data[0], endpoint, v4), xml_declaration=True,
                               encoding="utf-8")
    assert canonical(parsed) == canonical(etree.fromstring(reference))

    body = fast(JsonWriter(shape), data)
    expected = reference_json(data[0], endpoint, v4)
    assert json.loads(body, parse_float=Decimal) == as_decimals(expected)
    # Key order and the exact text of every number too.
    assert json.loads(body, object_pairs_hook=Obj, parse_float=number,
                      parse_int=number) == expected


@EXAMPLES
@given(data=documents())
def test_a_full_memo_is_emptied_and_the_document_is_unchanged(data: Data) -> None:
    # With room for one customer and one subscription, every recurring id is rendered again.
    shape = invoice_shape("customerinvoices", True)
    for writer in (XmlWriter(shape), JsonWriter(shape)):
        whole = fast(writer, data)
        with patch.object(stream, "MEMO_SIZE", 1):
            assert fast(writer, data) == whole


def test_the_reference_formats_numbers_as_the_contract_says() -> None:
    assert [ref_money(u) for u in (0, 80000, 5000, 1234, -29300, 1, 123450)] == [
        "0.00", "8.00", "0.50", "0.1234", "-2.93", "0.0001", "12.345"]
    assert [ref_plain(u) for u in (0, 30000, 5000, 5161, -10000, 255000)] == [
        "0", "3", "0.5", "0.5161", "-1", "25.5"]
    assert xml_value("a\x01b\rc\ufffe", TEXT) == "ab\rc"
