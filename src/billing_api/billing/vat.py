"""Which VAT zone and rate apply to a line, from who sells to whom and what.

Rules (in this order):
1. Telecom services bought to resell (a purchase line for a customer who is not the partner
   itself) are reverse-charged.
2. A buyer outside the EU: no EU VAT (export zone, 0 %).
3. A cross-border sale inside the EU to a buyer with a valid VAT number of its own country
   (format and check digits, see ``vat_numbers``) is reverse-charged. The seller is whoever
   sends the invoice: the distributor on a purchase invoice, the partner on a customer invoice.
4. Otherwise the buyer's country rate: the seller's own on a domestic sale, the destination's
   on a cross-border sale to a consumer (the EU's one-stop-shop rule for electronic services).
   A number that fails the check counts as none (the import refuses such numbers; old data
   may still hold them, see ``billing-api customers check-vat``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from billing_api.billing.vat_numbers import is_valid_vat_number

EU_COUNTRIES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
    ]
)
REVERSE_CHARGE_ZONE = "RC"
EXPORT_ZONE = "NON-EU"

# Standard VAT rates per EU country, in percent (the tax_zones table is seeded from this).
EU_STANDARD_RATES: dict[str, Decimal] = {
    code: Decimal(rate)
    for code, rate in {
        "AT": "20",
        "BE": "21",
        "BG": "20",
        "CY": "19",
        "CZ": "21",
        "DE": "19",
        "DK": "25",
        "EE": "24",
        "ES": "21",
        "FI": "25.5",
        "FR": "20",
        "GR": "24",
        "HR": "25",
        "HU": "27",
        "IE": "23",
        "IT": "22",
        "LT": "21",
        "LU": "17",
        "LV": "21",
        "MT": "18",
        "NL": "21",
        "PL": "23",
        "PT": "23",
        "RO": "21",
        "SE": "25",
        "SI": "22",
        "SK": "23",
    }.items()
}


@dataclass(frozen=True, slots=True)
class Sale:
    seller_country: str
    buyer_country: str
    buyer_vat_number: str
    is_telecom: bool
    buyer_resells: bool


def zone_code_for(sale: Sale) -> str:
    """The tax zone code of a line: a country code, ``RC`` or ``NON-EU``."""
    if sale.is_telecom and sale.buyer_resells:
        return REVERSE_CHARGE_ZONE
    if sale.buyer_country not in EU_COUNTRIES:
        return EXPORT_ZONE
    if sale.buyer_country != sale.seller_country and _valid(
        sale.buyer_vat_number, sale.buyer_country
    ):
        return REVERSE_CHARGE_ZONE
    return sale.buyer_country


def ignored_vat_number(sale: Sale) -> bool:
    """True when the buyer has a VAT number that fails the check, so the rules read it as none."""
    return bool(sale.buyer_vat_number.strip()) and not _valid(
        sale.buyer_vat_number, sale.buyer_country
    )


@lru_cache(maxsize=1024)
def _valid(number: str, country_code: str) -> bool:
    # The run asks zone_code_for and ignored_vat_number about the same sale in a row: checking
    # a number costs about 20 µs, once per customer is enough.
    return is_valid_vat_number(number, country_code)


def home_zone_code(country_code: str) -> str:
    """The zone a customer in ``country_code`` belongs to when nothing is reverse-charged."""
    return country_code if country_code in EU_COUNTRIES else EXPORT_ZONE
