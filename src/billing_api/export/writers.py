"""XML and JSON writers for invoice documents: each method returns the text of one step.

The stream (``export/stream.py``) calls ``begin``, then per invoice ``invoice_start``,
``customer_start``, ``subscription_start``, ``line`` …, the matching ends, and ``end``. Field
lists are compiled once per writer into tuples of (index, formatter, tags), so a line costs a
loop over its fields and a join, with no per-value objects beyond the output strings.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from billing_api.billing.countries import language_name
from billing_api.export import source as s
from billing_api.export.documents import (
    DETAIL,
    HEADER,
    INTEGER_HEADER_FIELDS,
    RECEIVER,
    SENDER,
    TOTALS,
    DocumentShape,
    Field,
    Kind,
)
from billing_api.export.values import json_text, money, plain, xml_text

Row = Sequence[Any]
XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>\n'
XML_NAMESPACES = (
    'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
)
TYPE_IDENTIFIERS = {"invoice": ("Invoice", 1), "credit": ("Credit", 2)}


def _bool_text(value: Any) -> str:
    return "true" if value in (True, 1, "1", "true") else "false"


_XML_FORMAT: dict[Kind, Callable[[Any], str]] = {
    Kind.TEXT: xml_text,
    Kind.INT: str,
    Kind.MONEY: money,
    Kind.PLAIN: plain,
    Kind.DATE: str,
    Kind.BOOL: _bool_text,
}
_JSON_FORMAT: dict[Kind, Callable[[Any], str]] = {
    Kind.TEXT: json_text,
    Kind.INT: str,
    Kind.MONEY: money,
    Kind.PLAIN: plain,
    Kind.DATE: lambda v: f'"{v}"',
    Kind.BOOL: _bool_text,
}
_JSON_EMPTY = {Kind.TEXT: '""', Kind.DATE: '""'}  # other kinds: null


def header_values(invoice: Row) -> list[tuple[str, Any, Kind]]:
    type_name, type_id = TYPE_IDENTIFIERS[invoice[s.H_TYPE]]
    values = (
        invoice[s.H_NUMBER],
        invoice[s.H_DESCRIPTION],
        invoice[s.H_DATE],
        invoice[s.H_DUE],
        invoice[s.H_CURRENCY],
        invoice[s.H_TERMS],
        type_name,
        type_id,
        invoice[s.H_LANGUAGE],
        language_name(invoice[s.H_LANGUAGE]),
    )
    return [(name, value, _party_kind(name)) for name, value in zip(HEADER, values, strict=True)]


def party_values(party: dict[str, Any] | str, names: Sequence[str]) -> list[tuple[str, Any, Kind]]:
    data = json.loads(party) if isinstance(party, str) else party
    return [(name, data.get(name, ""), _party_kind(name)) for name in names]


def _party_kind(name: str) -> Kind:
    return Kind.INT if name in INTEGER_HEADER_FIELDS else Kind.TEXT


def totals_values(excl: int, vat: int) -> list[tuple[str, Any, Kind]]:
    return list(zip(TOTALS, (excl, vat, excl + vat), (Kind.MONEY,) * 3, strict=True))


def detail_rows(attributes_json: str | None) -> list[list[tuple[str, Any, Kind]]]:
    """A subscription's attributes from the query's JSON array text."""
    if not attributes_json:
        return []
    kinds = (Kind.TEXT, Kind.TEXT, Kind.TEXT, Kind.BOOL)
    return [list(zip(DETAIL, item, kinds, strict=True)) for item in json.loads(attributes_json)]


class XmlWriter:
    def __init__(self, shape: DocumentShape) -> None:
        self.shape = shape
        self._customer = self._compile(shape.customer)
        self._subscription = self._compile(shape.subscription)
        self._line = self._compile(shape.line)

    @staticmethod
    def _compile(
        fields: Sequence[Field],
    ) -> tuple[tuple[int, Callable[[Any], str], str, str, str], ...]:
        return tuple(
            (f.index, _XML_FORMAT[f.kind], f"<{f.name}>", f"</{f.name}>", f"<{f.name} />")
            for f in fields
        )

    @staticmethod
    def _render(compiled: Any, row: Row) -> str:
        parts = []
        for index, fmt, open_tag, close_tag, empty_tag in compiled:
            value = row[index]
            if value is None or value == "":
                parts.append(empty_tag)
            else:
                parts.append(f"{open_tag}{fmt(value)}{close_tag}")
        return "".join(parts)

    @staticmethod
    def _element(name: str, values: list[tuple[str, Any, Kind]]) -> str:
        inner = "".join(
            f"<{n} />" if v is None or v == "" else f"<{n}>{_XML_FORMAT[k](v)}</{n}>"
            for n, v, k in values
        )
        return f"<{name}>{inner}</{name}>"

    def begin(self) -> str:
        wrapper = f"<{self.shape.xml_invoices_wrapper}>" if self.shape.xml_invoices_wrapper else ""
        return f"{XML_DECLARATION}<{self.shape.xml_root} {XML_NAMESPACES}>{wrapper}"

    def end(self) -> str:
        wrapper = f"</{self.shape.xml_invoices_wrapper}>" if self.shape.xml_invoices_wrapper else ""
        return f"{wrapper}</{self.shape.xml_root}>\n"

    def invoice_start(self, invoice: Row, first: bool) -> str:
        return (
            "<Invoice>"
            + self._element("Header", header_values(invoice))
            + self._element("Sender", party_values(invoice[s.H_SENDER], SENDER))
            + self._element("Receiver", party_values(invoice[s.H_RECEIVER], RECEIVER))
            + "<Customers>"
        )

    def invoice_end(self, invoice: Row, sales: tuple[int, int]) -> str:
        if self.shape.consolidated:
            totals = (
                "<Totals>"
                + self._element(
                    "TotalPurchases", totals_values(invoice[s.H_TOTAL_EXCL], invoice[s.H_TOTAL_VAT])
                )
                + self._element("TotalSales", totals_values(*sales))
                + "</Totals>"
            )
        else:
            totals = self._element(
                "Totals", totals_values(invoice[s.H_TOTAL_EXCL], invoice[s.H_TOTAL_VAT])
            )
        return f"</Customers>{totals}</Invoice>"

    def customer_start(self, row: Row, first: bool) -> str:
        return f"<Customer>{self._render(self._customer, row)}<Subscriptions>"

    def customer_end(self) -> str:
        return "</Subscriptions></Customer>"

    def subscription_start(self, row: Row, first: bool) -> str:
        text = f"<Subscription>{self._render(self._subscription, row)}"
        if self.shape.subscription_details:
            details = "".join(
                self._element("SubscriptionDetail", d) for d in detail_rows(row[s.ATTRIBUTES])
            )
            text += (
                f"<SubscriptionDetails>{details}</SubscriptionDetails>"
                if details
                else "<SubscriptionDetails />"
            )
        return text + "<PriceLines>"

    def subscription_end(self, row: Row) -> str:
        return "</PriceLines></Subscription>"

    def line(self, row: Row, first: bool) -> str:
        return f"<PriceLine>{self._render(self._line, row)}</PriceLine>"


def _sorted(fields: Sequence[Field]) -> list[Field]:
    return sorted(fields, key=lambda f: f.name.lower())


class JsonWriter:
    """JSON with keys in alphabetical order ignoring case at every level, as the public
    system's own examples; numbers written exactly from integer units."""

    def __init__(self, shape: DocumentShape) -> None:
        self.shape = shape
        self._customer = self._compile(_sorted(shape.customer))
        self._line = self._compile(_sorted(shape.line))
        # Subscription keys around the nested lists, in sorted order.
        keys = [*shape.subscription, Field("PriceLines", -1, Kind.TEXT)]
        if shape.subscription_details:
            keys.append(Field("SubscriptionDetails", -2, Kind.TEXT))
        ordered = _sorted(keys)
        split = next(i for i, f in enumerate(ordered) if f.index == -1)
        self._sub_before = self._compile(ordered[:split])
        self._sub_after = tuple(f for f in ordered[split + 1 :])

    @staticmethod
    def _compile(fields: Sequence[Field]) -> tuple[tuple[int, Callable[[Any], str], str, str], ...]:
        return tuple(
            (f.index, _JSON_FORMAT[f.kind], f'"{f.name}":', _JSON_EMPTY.get(f.kind, "null"))
            for f in fields
        )

    @staticmethod
    def _render(compiled: Any, row: Row) -> str:
        parts = []
        for index, fmt, key, empty in compiled:
            value = row[index]
            parts.append(key + (empty if value is None or value == "" else fmt(value)))
        return ",".join(parts)

    @staticmethod
    def _object(values: list[tuple[str, Any, Kind]]) -> str:
        items = sorted(values, key=lambda v: v[0].lower())
        return (
            "{"
            + ",".join(
                f'"{n}":'
                + (_JSON_EMPTY.get(k, "null") if v is None or v == "" else _JSON_FORMAT[k](v))
                for n, v, k in items
            )
            + "}"
        )

    def begin(self) -> str:
        return '{"Invoices":['

    def end(self) -> str:
        return "]}\n"

    def invoice_start(self, invoice: Row, first: bool) -> str:
        return ("" if first else ",") + '{"Customers":['

    def invoice_end(self, invoice: Row, sales: tuple[int, int]) -> str:
        totals = self._object(totals_values(invoice[s.H_TOTAL_EXCL], invoice[s.H_TOTAL_VAT]))
        if self.shape.consolidated:
            totals = (
                '{"TotalPurchases":'
                + totals
                + ',"TotalSales":'
                + self._object(totals_values(*sales))
                + "}"
            )
        return (
            '],"Header":'
            + self._object(header_values(invoice))
            + ',"Receiver":'
            + self._object(party_values(invoice[s.H_RECEIVER], RECEIVER))
            + ',"Sender":'
            + self._object(party_values(invoice[s.H_SENDER], SENDER))
            + ',"Totals":'
            + totals
            + "}"
        )

    def customer_start(self, row: Row, first: bool) -> str:
        return (
            ("" if first else ",") + "{" + self._render(self._customer, row) + ',"Subscriptions":['
        )

    def customer_end(self) -> str:
        return "]}"

    def subscription_start(self, row: Row, first: bool) -> str:
        return (
            ("" if first else ",") + "{" + self._render(self._sub_before, row) + ',"PriceLines":['
        )

    def subscription_end(self, row: Row) -> str:
        parts = []
        for f in self._sub_after:
            if f.index == -2:
                details = ",".join(self._object(d) for d in detail_rows(row[s.ATTRIBUTES]))
                parts.append(f'"SubscriptionDetails":[{details}]')
            else:
                value = row[f.index]
                parts.append(
                    f'"{f.name}":'
                    + (
                        _JSON_EMPTY.get(f.kind, "null")
                        if value is None or value == ""
                        else _JSON_FORMAT[f.kind](value)
                    )
                )
        return "]," + ",".join(parts) + "}" if parts else "]}"

    def line(self, row: Row, first: bool) -> str:
        return ("" if first else ",") + "{" + self._render(self._line, row) + "}"
