"""Render a field list in PostgreSQL's SQL, byte for byte as ``compiled.py`` does in Python.

An invoice's header, its sender and receiver snapshots and its totals are the same few dozen
values on every invoice; a document of small invoices (``customerinvoices``: 1.7 lines each)
spent most of its Python time parsing snapshot JSON and rendering them. Rendered by the
database instead, on its own core while the writer works on the previous batch, they arrive
as ready text (``source.invoice_query`` with a format, PostgreSQL only).

The expressions are SQL text built only from our constant field names (checked to be
identifiers), the SQL expressions the caller gives and fixed literals; never from data.
They follow the Python rules exactly (``tests/test_export_sqlrender.py`` compares both on
hostile values): empty text and dates are ``""``/``<A />``, NULL numbers ``null``/``<A />``;
XML drops the characters XML 1.0 forbids and escapes ``&<>"'`` and CR; JSON strings come
from ``to_json``, whose escapes equal the json module's ``encode_basestring``; money keeps
two to four decimals. ``%`` is never written (a pyformat driver would read it).

Cheap on the server matters as much (its core also runs the line query): parts are joined
with ``concat`` (a chain of ``||`` copies the text built so far at every step), and XML text
is escaped only when one regular expression finds a character to escape, as in Python
(escaping every value unconditionally cost three times the test).
"""

from __future__ import annotations

from collections.abc import Sequence

from billing_api.db import SCALE_FACTOR
from billing_api.export.documents import Field, Kind

# The characters XML 1.0 forbids (``values.drop_xml_illegal``; PostgreSQL text holds neither
# NUL nor surrogates), as an E'' literal for ``translate``, which deletes them in one pass.
_ILLEGAL_CODES = [*range(0x01, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF]
_XML_ILLEGAL = "E'" + "".join(f"\\u{c:04x}" for c in _ILLEGAL_CODES) + "'"
# What ``values.needs_xml_escape`` looks for: the escaped characters and the illegal ones.
_XML_SPECIAL = (
    "'[&<>\"''\\u000d\\u0001-\\u0008\\u000b\\u000c\\u000e-\\u001f\\ufffe\\uffff]'"
)
# (character, entity) as SQL; '&' first: the later replacements write ampersands of their own.
_XML_ENTITIES = (
    ("'&'", "'&amp;'"),
    ("'<'", "'&lt;'"),
    ("'>'", "'&gt;'"),
    ("'\"'", "'&quot;'"),
    ("''''", "'&apos;'"),
    ("chr(13)", "'&#13;'"),  # a literal CR would reach the reader as LF
)
_MAX_ARGUMENTS = 90  # PostgreSQL functions take at most 100


def literal(text: str) -> str:
    """A constant as an SQL string literal."""
    if "%" in text or "\\" in text:
        raise ValueError(f"cannot write {text!r} as a literal here")
    return "'" + text.replace("'", "''") + "'"


def concat(parts: Sequence[str]) -> str:
    """One text of the expressions, each copied once."""
    if len(parts) > _MAX_ARGUMENTS:
        step = _MAX_ARGUMENTS
        return concat([concat(parts[n : n + step]) for n in range(0, len(parts), step)])
    return f"concat({', '.join(parts)})"


def xml_escaped(value: str) -> str:
    """``values.xml_text`` of a text expression."""
    escaped = f"translate({value}, {_XML_ILLEGAL}, '')"
    for char, entity in _XML_ENTITIES:
        escaped = f"replace({escaped}, {char}, {entity})"
    return f"CASE WHEN {value} ~ {_XML_SPECIAL} THEN {escaped} ELSE {value} END"


def money(units: str) -> str:
    """``values.money`` of a bigint expression of 1/10,000 units."""
    digits = len(str(SCALE_FACTOR)) - 1
    digits_text = f"lpad(mod(abs({units}), {SCALE_FACTOR})::text, {digits}, '0')"
    fraction = f"rtrim(concat('.', {digits_text}), '0')"
    # At least two decimals: padded to three characters, never cut (rpad would cut ".0001").
    return (
        f"concat(CASE WHEN {units} < 0 THEN '-' END, (abs({units}) / {SCALE_FACTOR})::text,"
        f" rpad({fraction}, greatest(length({fraction}), 3), '0'))"
    )


def _check(fields: Sequence[Field]) -> None:
    for f in fields:
        if not f.name.isidentifier() or f.kind not in (Kind.TEXT, Kind.INT, Kind.MONEY, Kind.DATE):
            raise ValueError(f"cannot render field {f!r} in SQL")


def _present(kind: Kind, value: str) -> str:
    # As compiled.py: text and dates are empty when "" or NULL (NULL <> '' is not true);
    # numbers only when NULL.
    if kind in (Kind.TEXT, Kind.DATE):
        return f"{value} <> ''"
    return f"{value} IS NOT NULL"


def _value_text(kind: Kind, value: str, fmt: str) -> str:
    if kind == Kind.TEXT:
        return xml_escaped(value) if fmt == "xml" else f"to_json({value})::text"
    if kind == Kind.INT:
        return f"{value}::text"
    if kind == Kind.MONEY:
        return money(value)
    return value if fmt == "xml" else f"concat('\"', {value}, '\"')"  # a date: YYYYMMDD


def xml_fields(fields: Sequence[Field], values: Sequence[str]) -> str:
    """``compiled.xml_renderer(fields)`` of a row whose ``values[f.index]`` are SQL
    expressions: ``<A>a</A><B />…`` as one text expression."""
    _check(fields)
    parts = []
    for f in fields:
        v = values[f.index]
        parts.append(
            f"CASE WHEN {_present(f.kind, v)} "
            f"THEN concat('<{f.name}>', {_value_text(f.kind, v, 'xml')}, '</{f.name}>') "
            f"ELSE '<{f.name} />' END"
        )
    return concat(parts)


def json_fields(fields: Sequence[Field], values: Sequence[str]) -> str:
    """``compiled.json_renderer(fields)`` of such a row: ``"A":a,"B":null…``."""
    _check(fields)
    parts = []
    for n, f in enumerate(fields):
        v = values[f.index]
        empty = "'\"\"'" if f.kind in (Kind.TEXT, Kind.DATE) else "'null'"
        parts.append(literal(("," if n else "") + f'"{f.name}":'))
        parts.append(f"CASE WHEN {_present(f.kind, v)} THEN {_value_text(f.kind, v, 'json')} "
                     f"ELSE {empty} END")
    return concat(parts)
