"""Whether a VAT number is one, and the one form it is stored in.

Checked offline by format and check digits per country with python-stdnum. Whether a
well-formed number is actually registered is for VIES (online) to say; nothing here asks it.

Decisions:
- Empty (or only spaces) means "no number". Anything else must be a number of the customer's
  own country: placeholders such as ``n/a`` or ``-`` are refused, not read as "none".
- In the EU the number starts with the country's VAT prefix, which is its country code except
  for Greece (``EL``; ``GR`` is accepted and stored as ``EL``). A number given without its prefix
  gets it. Another EU country's number on a customer is refused, valid or not.
- The stored form is stdnum's compact form with the prefix: no spaces, dots or dashes, upper
  case (``de 136.695.976`` → ``DE136695976``; stdnum also restores the leading 0 of old
  Belgian numbers).
- Outside the EU the number has no effect on VAT (export zone). Where stdnum knows the
  country's format (GB, CH, NO, …) it is checked and stored compact, with the country code in
  front when that form is valid too; for other countries (US, …) anything with a digit in it
  is kept as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from stdnum.eu import vat as eu_vat
from stdnum.exceptions import (
    InvalidChecksum,
    InvalidComponent,
    InvalidFormat,
    InvalidLength,
    ValidationError,
)
from stdnum.util import clean, get_cc_module

# Separators people type inside numbers; stdnum's own compact() removes the same ones.
_SEPARATORS = " -./,:"
# What an EU VAT number looks like, for the message that refuses one.
EU_FORMATS = {
    "AT": "ATU + 8 digits",
    "BE": "BE + 10 digits",
    "BG": "BG + 9 or 10 digits",
    "CY": "CY + 8 digits + a letter",
    "CZ": "CZ + 8 to 10 digits",
    "DE": "DE + 9 digits",
    "DK": "DK + 8 digits",
    "EE": "EE + 9 digits",
    "EL": "EL + 9 digits",
    "ES": "ES + 9 characters",
    "FI": "FI + 8 digits",
    "FR": "FR + 2 characters + 9 digits",
    "HR": "HR + 11 digits",
    "HU": "HU + 8 digits",
    "IE": "IE + 8 or 9 characters",
    "IT": "IT + 11 digits",
    "LT": "LT + 9 or 12 digits",
    "LU": "LU + 8 digits",
    "LV": "LV + 11 digits",
    "MT": "MT + 8 digits",
    "NL": "NL + 9 digits + B + 2 digits",
    "PL": "PL + 10 digits",
    "PT": "PT + 9 digits",
    "RO": "RO + 2 to 10 digits",
    "SE": "SE + 12 digits",
    "SI": "SI + 8 digits",
    "SK": "SK + 10 digits",
}
_COMPACT = re.compile(r"[A-Z0-9]+")
_PREFIX_COUNTRY = {"EL": "GR"}
_COUNTRY_PREFIX = {"GR": "EL"}
# The member states by ISO code (billing.vat's EU_COUNTRIES is this set; a test keeps it so).
EU_VAT_COUNTRIES = frozenset(_PREFIX_COUNTRY.get(p, p) for p in EU_FORMATS)


@dataclass(frozen=True, slots=True)
class VatNumberCheck:
    """``number``: the form to store ("" for none); ``problem``: "" when the number is valid,
    else what is wrong and what to do about it (without repeating the number)."""

    number: str
    problem: str = ""

    @property
    def valid(self) -> bool:
        return not self.problem


def vat_prefix(country_code: str) -> str:
    """The prefix of an EU country's VAT numbers: its country code, ``EL`` for Greece."""
    code = country_code.upper()
    return _COUNTRY_PREFIX.get(code, code)


def check_vat_number(number: str, country_code: str) -> VatNumberCheck:
    """Check ``number`` as the VAT number of a customer (or company) in ``country_code``."""
    text = number.strip()
    if not text:
        return VatNumberCheck("")
    country = country_code.upper()
    # A stored number is compact already: stdnum's clean() is most of a check's cost.
    compact = text if _COMPACT.fullmatch(text) else clean(text, _SEPARATORS).upper()
    if not any(c.isalnum() for c in compact):
        return VatNumberCheck(
            text,
            f"is not a VAT number (no letters or digits): give a "
            f"{country} VAT number, {_none_hint(country)}",
        )
    foreign = _foreign_eu_prefix(compact, country)
    if foreign:
        other = _PREFIX_COUNTRY.get(foreign, foreign)
        what = "a valid" if eu_vat.is_valid(compact) else "the prefix of a"
        return VatNumberCheck(
            text,
            f"is {what} {other} VAT number, but "
            f"country_code is {country}: give the {country} number, "
            f"correct country_code, {_none_hint(country)}",
        )
    if country in EU_VAT_COUNTRIES:
        return _check_eu(text, compact, country)
    return _check_elsewhere(text, compact, country)


def is_valid_vat_number(number: str, country_code: str) -> bool:
    """True for a non-empty number that passes ``check_vat_number`` for ``country_code``."""
    return bool(number.strip()) and check_vat_number(number, country_code).valid


def _foreign_eu_prefix(compact: str, country: str) -> str:
    """The EU VAT prefix ``compact`` starts with when it is not ``country``'s own."""
    head = compact[:2]
    if head in (country, vat_prefix(country)) or not head.isalpha():
        return ""
    if head == "GR":  # Greece's ISO code, not a VAT prefix, but meant the same
        head = "EL"
    return head if _PREFIX_COUNTRY.get(head, head) in EU_VAT_COUNTRIES else ""


def _check_eu(text: str, compact: str, country: str) -> VatNumberCheck:
    prefix = vat_prefix(country)
    national = compact[2:] if compact[:2] in (prefix, country) else compact
    try:
        # What eu_vat.validate does, without cleaning the number once more.
        number = _country_module(country).validate(prefix + national)
        return VatNumberCheck(number if number.startswith(prefix) else prefix + number)
    except ValidationError as exc:
        return VatNumberCheck(
            text,
            f"is not a valid {country} VAT number: {_reason(exc)} "
            f"(expected {EU_FORMATS[prefix]}); correct it, {_none_hint(country)}",
        )


@cache
def _country_module(country: str) -> Any:
    return get_cc_module(country.lower(), "vat")


def _check_elsewhere(text: str, compact: str, country: str) -> VatNumberCheck:
    module = _country_module(country)
    if module is None:  # stdnum knows no format here: keep what has a digit in it
        if any(c.isdigit() for c in compact):
            return VatNumberCheck(text)
        return VatNumberCheck(
            text,
            f"has no digits, so it is no tax number: give the "
            f"{country} number, {_none_hint(country)}",
        )
    try:
        national = module.validate(compact)
    except ValidationError as exc:
        return VatNumberCheck(
            text,
            f"is not a valid {country} VAT number: {_reason(exc)}; "
            f"correct it, {_none_hint(country)}",
        )
    prefixed = national if national.startswith(country) else country + national
    return VatNumberCheck(prefixed if module.is_valid(prefixed) else national)


def _none_hint(country: str) -> str:
    charged = " (VAT is then charged)" if country in EU_VAT_COUNTRIES else ""
    return f"or leave it empty if there is none{charged}"


def _reason(exc: ValidationError) -> str:
    if isinstance(exc, InvalidChecksum):
        return "its check digits are wrong"
    if isinstance(exc, InvalidLength):
        return "it has the wrong length"
    if isinstance(exc, InvalidFormat | InvalidComponent):
        return "it has the wrong format"
    return "it is not valid"
