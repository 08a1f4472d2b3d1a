"""Turning raw database values into document text without building a Python object per value.

On the export path money and quantities arrive as integers of 1/10,000 and dates as
``YYYYMMDD`` text (rendered by the database), so output needs only integer arithmetic and
table look-ups: no ``Decimal`` or ``date`` per value (see design.md, "the export path").

Amounts repeat across a document's lines (prices, zero discounts, durations, percentages),
so ``money`` and ``plain`` remember recent results in a small dict, emptied when it reaches
its bound so that memory stays flat: an integer look-up costs half of the arithmetic.
Texts are not cached: hashing a fresh string from the driver costs about what the regex
scan does (measured).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

from billing_api.db import SCALE_FACTOR

# Fraction digits for every value of the 4-decimal part, computed once:
# money keeps at least cents ("12.50", "12.345"), plain numbers drop trailing zeros ("3", "0.5").
_MONEY_FRACTIONS = [f".{f:04d}".rstrip("0").ljust(3, "0") for f in range(SCALE_FACTOR)]
_PLAIN_FRACTIONS = [f".{f:04d}".rstrip("0").rstrip(".") for f in range(SCALE_FACTOR)]


CACHE_SIZE = 4096  # entries per function; emptied when full
_money_cache: dict[int, str] = {}
_plain_cache: dict[int, str] = {}


def _remember(cache: dict[Any, str], key: Any, text: str) -> str:
    if len(cache) >= CACHE_SIZE:
        cache.clear()
    cache[key] = text
    return text


def money(units: int) -> str:
    """``245000`` → ``"24.50"``; exact, at least two decimals, at most four."""
    found = _money_cache.get(units)
    if found is not None:
        return found
    if units < 0:
        whole, fraction = divmod(-units, SCALE_FACTOR)
        return _remember(_money_cache, units, f"-{whole}{_MONEY_FRACTIONS[fraction]}")
    whole, fraction = divmod(units, SCALE_FACTOR)
    return _remember(_money_cache, units, f"{whole}{_MONEY_FRACTIONS[fraction]}")


def plain(units: int) -> str:
    """``30000`` → ``"3"``, ``5161`` → ``"0.5161"``: a quantity, duration or percentage."""
    found = _plain_cache.get(units)
    if found is not None:
        return found
    if units < 0:
        whole, fraction = divmod(-units, SCALE_FACTOR)
        return _remember(_plain_cache, units, f"-{whole}{_PLAIN_FRACTIONS[fraction]}")
    whole, fraction = divmod(units, SCALE_FACTOR)
    return _remember(_plain_cache, units, f"{whole}{_PLAIN_FRACTIONS[fraction]}")


# Characters XML 1.0 forbids (C0 controls but tab, LF, CR; lone surrogates; U+FFFE/U+FFFF):
# they are removed, as no escape can represent them.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_XML_SPECIAL = re.compile("[&<>\"'\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# A literal CR would reach the reader as LF (XML end-of-line handling), so it is a reference.
_XML_ENTITIES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;", "\r": "&#13;"}
)


def xml_text(value: str) -> str:
    """Escape markup characters and drop XML-illegal ones; the common clean string is returned
    as it is after one regex scan."""
    if needs_xml_escape(value) is None:
        return value
    return xml_escape(value)


# The two halves of ``xml_text``, for the compiled renderers to inline the common case.
needs_xml_escape = _XML_SPECIAL.search


def xml_escape(value: str) -> str:
    return drop_xml_illegal(value).translate(_XML_ENTITIES)


def drop_xml_illegal(value: str) -> str:
    """``value`` without the characters XML 1.0 forbids (for text that is not XML-escaped
    here but must say the same as its XML twin, e.g. a JSON problem document)."""
    return _XML_ILLEGAL.sub("", value)


# The caches' look-ups, for the compiled renderers to try before calling (never "" inside).
cached_money = _money_cache.get
cached_plain = _plain_cache.get


# A JSON string literal (quotes included), UTF-8 kept, controls escaped: the C function of
# the json module itself, bound directly because a wrapper's call was a tenth of the export.
json_text: Callable[[str], str] = encode_basestring


def bool_text(value: Any) -> str:
    """``true``/``false`` from a boolean, or from SQLite's 0/1 in a JSON array."""
    return "true" if value in (True, 1, "1", "true") else "false"
