"""English country and language names for the documents' ``Country`` and ``Language`` fields."""

from __future__ import annotations

COUNTRY_NAMES = {
    "AT": "Austria",
    "BE": "Belgium",
    "BG": "Bulgaria",
    "CY": "Cyprus",
    "CZ": "Czechia",
    "DE": "Germany",
    "DK": "Denmark",
    "EE": "Estonia",
    "ES": "Spain",
    "FI": "Finland",
    "FR": "France",
    "GR": "Greece",
    "HR": "Croatia",
    "HU": "Hungary",
    "IE": "Ireland",
    "IT": "Italy",
    "LT": "Lithuania",
    "LU": "Luxembourg",
    "LV": "Latvia",
    "MT": "Malta",
    "NL": "Netherlands",
    "PL": "Poland",
    "PT": "Portugal",
    "RO": "Romania",
    "SE": "Sweden",
    "SI": "Slovenia",
    "SK": "Slovakia",
    "GB": "United Kingdom",
    "US": "United States",
    "CH": "Switzerland",
    "NO": "Norway",
    "CA": "Canada",
    "AU": "Australia",
}

LANGUAGE_NAMES = {
    "en": "English",
    "nl": "Dutch",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "pl": "Polish",
    "sv": "Swedish",
    "da": "Danish",
    "pt": "Portuguese",
}


def country_name(code: str) -> str:
    """The English name, or the code itself for a country this table does not know."""
    return COUNTRY_NAMES.get(code.upper(), code.upper())


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code.lower(), code)
