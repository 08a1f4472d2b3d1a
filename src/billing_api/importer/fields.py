"""Field types of import rows: exact decimals, dates, codes, and strings sized by their columns.

Every parser raises ``PydanticCustomError`` so that the message reads as written here, with
no "Value error, " prefix, and accepts strings (CSV cells) as well as JSON values.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, StringConstraints
from pydantic_core import PydanticCustomError
from sqlalchemy import String, inspect

from billing_api.db import SCALE, SCALE_FACTOR, Base

PeriodType = Literal["month", "year"]
EnvironmentName = Literal["production", "sandbox"]

MAX_UNITS = 2**63 - 1  # ScaledDecimal stores 1/10,000 units in a BIGINT
_PLAIN_DECIMAL = re.compile(r"[+-]?\d+(\.\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SCHEME = re.compile(r"(?:[0-9]{4})?")
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_COUNTRY = re.compile(r"[A-Z]{2}")
_LANGUAGE = re.compile(r"[a-z]{2}(-[A-Z]{2})?")
_CURRENCY = re.compile(r"[A-Z]{3}")
# One line of text: no C0 or C1 controls, DEL, lone surrogates or non-characters (XML refuses
# them, PostgreSQL refuses NUL).
_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# Characters that break a line or that cannot be seen: line and paragraph separators, bidi
# controls (a right-to-left override makes a name display other than it is stored) and
# zero-width characters, a byte-order mark among them.
_INVISIBLE = re.compile("[\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                        "\u200b-\u200d\u2060\u180e\ufeff]")
FIRST_YEAR, LAST_YEAR = 1900, 2999


class ExponentNumber:
    """A JSON number written with an exponent (``1e3``): kept as text and refused by parsers."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def parse_json_float(text: str) -> Decimal | ExponentNumber:
    """``parse_float`` for ``json.loads``: the number's own digits, never a binary float."""
    if "e" in text or "E" in text:
        return ExponentNumber(text)
    return Decimal(text)


def _error(kind: str, message: str, context: dict[str, Any] | None = None) -> PydanticCustomError:
    return PydanticCustomError(kind, message, context)


def _plain(text: str) -> str:
    try:
        number = Decimal(text)
    except ArithmeticError:
        return "?"
    return f"{number:f}" if number.is_finite() and abs(number.adjusted()) < 30 else "?"


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise _error("decimal_type", "must be a decimal number, not true/false")
    if isinstance(value, float):
        raise _error("decimal_type", "must be an exact decimal (a string or Decimal), not a float")
    if isinstance(value, ExponentNumber):
        raise _error("decimal_exponent", "is written with an exponent, as floats are: write "
                     "the number out ({plain})", {"plain": _plain(value.text)})
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if not _PLAIN_DECIMAL.fullmatch(text):
            raise _error("decimal_parsing", "must be a decimal number such as 12.50 (a dot as "
                         "decimal separator, no exponent, no thousands separator)")
        number = Decimal(text)
    else:
        raise _error("decimal_type", "must be a decimal number")
    if not number.is_finite():
        raise _error("decimal_finite", "must be a finite number")
    # Exact checks on the digits themselves: Decimal arithmetic would round at 28 digits.
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    if exponent < -SCALE and any(digits[exponent + SCALE:]):
        raise _error("decimal_places", f"has more than {SCALE} decimal places"
                     + (" (it looks like a float rounding error)" if exponent < -10 else ""))
    if number.adjusted() > 15 or abs(number) * SCALE_FACTOR > MAX_UNITS:
        raise _error("decimal_size", "is too large to store")
    return number


def _non_negative(value: Any) -> Decimal:
    number = _decimal(value)
    if number < 0:
        raise _error("decimal_negative", "must not be negative")
    return number + 0  # normalises -0 to 0


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        day = value
    elif not isinstance(value, str) or not _DATE.fullmatch(value.strip()):
        raise _error("date_format", "must be a date of the form YYYY-MM-DD")
    else:
        try:
            day = dt.date.fromisoformat(value.strip())
        except ValueError:
            raise _error("date_value", "is not a calendar date (YYYY-MM-DD)") from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise _error("date_range", f"must be between {FIRST_YEAR} and {LAST_YEAR}")
    return day


def _month(value: Any) -> str:
    match = _MONTH.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None or not 1 <= int(match[2]) <= 12:
        raise _error("month_format", "must be a month of the form YYYY-MM")
    if not FIRST_YEAR <= int(match[1]) <= LAST_YEAR:
        raise _error("month_range", f"must be between {FIRST_YEAR} and {LAST_YEAR}")
    return match[0]


def _code(pattern: re.Pattern[str], kind: str, message: str) -> PlainValidator:
    def parse(value: Any) -> str:
        text = value.strip().upper() if isinstance(value, str) else None
        if text is None or not pattern.fullmatch(text):
            raise _error(kind, message)
        return text

    return PlainValidator(parse)


def _iban(value: Any) -> str:
    text = "".join(value.split()).upper() if isinstance(value, str) else None
    if text == "":
        return text
    if text is None or not _IBAN.fullmatch(text):
        raise _error("iban", "must be an IBAN such as NL91ABNA0417164300")
    digits = "".join(str(int(char, 36)) for char in text[4:] + text[:4])
    if int(digits) % 97 != 1:
        raise _error("iban", "has a wrong check digit (ISO 13616)")
    return text


Money = Annotated[Decimal, PlainValidator(_non_negative)]
Quantity = Money
# Peppol code lists: EAS (electronic address) and ICD (legal registration) schemes are four
# digits (0106, 0208, 9944, ...); empty means not known.
SchemeCode = Annotated[str, _code(
    _SCHEME, "scheme_code", "must be a four-digit scheme such as 0106")]
Iban = Annotated[str, PlainValidator(_iban)]
Date = Annotated[dt.date, PlainValidator(_date)]
Month = Annotated[str, PlainValidator(_month)]
CountryCode = Annotated[str, _code(
    _COUNTRY, "country_code", "must be a two-letter country code such as NL")]
def _language(value: Any) -> str:
    text = value.strip() if isinstance(value, str) else ""
    language, dash, region = text.partition("-")
    text = language.lower() + dash + region.upper()
    if not _LANGUAGE.fullmatch(text):
        raise _error("language_code", "must be a language code such as en or nl-BE")
    return text


LanguageCode = Annotated[str, PlainValidator(_language)]
CurrencyCode = Annotated[str, _code(
    _CURRENCY, "currency_code", "must be a three-letter currency code such as EUR")]
NameText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Names = dict[LanguageCode, NameText]
Count = Annotated[int, Field(ge=1, le=120)]


def check_text(value: str) -> str:
    """``value`` in Unicode normal form C; raise when it is not one line of visible text."""
    bad = _BAD_CHARS.search(value)
    if bad is not None:
        raise _error("text_control", f"contains the control character U+{ord(bad[0]):04X}; "
                     "fields are one line of printable text")
    if value.isascii():  # the common case: nothing invisible, nothing to compose
        return value
    invisible = _INVISIBLE.search(value)
    if invisible is not None:
        char = invisible[0]
        raise _error("text_invisible", f"contains U+{ord(char):04X} "
                     f"{unicodedata.name(char, 'a format character')}, which breaks the line "
                     "or cannot be seen; remove it")
    return unicodedata.normalize("NFC", value)


def column_length(model: type[Base], name: str) -> int:
    column_type = inspect(model).columns[name].type
    assert isinstance(column_type, String) and column_type.length is not None
    return column_type.length


def text(model: type[Base], name: str, *, required: bool = False) -> Any:
    """A ``Field`` for a string column: its length limit and, unless required, its default."""
    length = column_length(model, name)
    if required:
        return Field(min_length=1, max_length=length)
    default = inspect(model).columns[name].default
    value = getattr(default, "arg", "") if default is not None and default.is_scalar else ""
    return Field(value, max_length=length)
