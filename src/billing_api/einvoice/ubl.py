"""One invoice as a Peppol BIS Billing 3.0 UBL 2.1 document (``../shared/spec/einvoicing.md``).

Text is built like the export writers build theirs: escaped strings joined once, money from
integer units (1/10,000) with exact integer arithmetic. Mapping (docs/einvoicing.md):

- total incl. VAT ≥ 0: ``Invoice`` 380; negative: ``CreditNote`` 381 with every amount and
  quantity sign-flipped, so that its totals are positive;
- a line's quantity is ``Quantity × Duration`` (unit code from the duration type), its price
  the unit price (never negative: a negative price flips the quantity's sign instead), and the
  difference between ``quantity × price`` and the line's ``ExtendedPrice`` (the discount, and
  the cent the line's rounding moved) is a line allowance (or, if negative, a charge), so that
  the Peppol rule ``quantity × price + charges − allowances = line amount`` holds to 0.005;
- VAT categories from the line's tax zone: ``RC`` → AE, ``NON-EU`` → G, 0 % → Z, else S.

A party that lacks what the rules require raises ``Conflict`` naming the field and the party:
the answer is a problem, never an invalid document.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from billing_api.billing.rating import round_half_away
from billing_api.billing.vat import EXPORT_ZONE, REVERSE_CHARGE_ZONE
from billing_api.db import SCALE_FACTOR
from billing_api.einvoice import source as s
from billing_api.errors import Conflict
from billing_api.export.values import CACHE_SIZE, plain, xml_text

CUSTOMIZATION_ID = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
PROFILE_ID = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
NAMESPACES = (
    'xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2" '
    'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"'
)
ROOT_NAMESPACE = {
    "Invoice": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "CreditNote": "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2",
}
# UN/ECE recommendation 20 unit of the line quantity (Quantity × Duration), by duration type.
UNIT_CODES = {"Month": "MON", "Year": "ANN", "Day": "DAY", "OneTime": "C62"}
DEFAULT_UNIT = "C62"
# VAT category, exemption reason code and text per kind of zone.
EXEMPTIONS = {
    "AE": ("VATEX-EU-AE", "Reverse charge: VAT to be accounted for by the recipient"),
    "G": ("VATEX-EU-G", "Export outside the EU"),
}
PAYMENT_MEANS_SEPA = "58"
CENT = 100  # units per cent

# (field, label) a party must have, for every document and when the seller is paid by IBAN.
REQUIRED = (
    ("CompanyName", "company name"),
    ("CountryCode", "country code"),
    ("EndpointID", "electronic address (EndpointID)"),
    ("EndpointScheme", "electronic address scheme (EAS code)"),
)
SELLER_REQUIRED = (
    ("Address", "street address"),
    ("City", "city"),
    ("PostalCode", "postal code"),
    ("VATNumber", "VAT number"),
)
# Every field ``check_parties`` may ask for.
CHECKED = frozenset(name for name, _label in REQUIRED + SELLER_REQUIRED) | {
    "IBAN", "RegistrationNumber"}
# The Dutch rules (NL-R-004) ask a Dutch seller for a Dutch buyer's full address.
NL_BUYER_REQUIRED = (("Address", "street address"), ("City", "city"),
                     ("PostalCode", "postal code"))
# The Dutch rules (NL-R-003, NL-R-005) accept only these legal registration schemes.
NL_REGISTRATION_SCHEMES = ("0106", "0190")
_REQUIRED_NAMES = frozenset(name for name, _label in REQUIRED)
_SELLER_NAMES = _REQUIRED_NAMES | {name for name, _label in SELLER_REQUIRED}
_NL_BUYER_NAMES = frozenset(name for name, _label in NL_BUYER_REQUIRED)


@dataclass(frozen=True, slots=True)
class Category:
    code: str
    percent: int  # units

    @property
    def key(self) -> tuple[str, int]:
        return (self.code, self.percent)


def category(zone_code: str, percent: int) -> Category:
    """The line's VAT category (spec table): reverse charge, export, zero or standard."""
    if zone_code == REVERSE_CHARGE_ZONE:
        return Category("AE", 0)
    if zone_code == EXPORT_ZONE:
        return Category("G", 0)
    if percent == 0:
        return Category("Z", 0)
    return Category("S", percent)


# Prices, line amounts and VAT recur across a window's invoices: each text is made once
# (bounded like the export's own caches, ``export.values``).
_amount_cache: dict[int, str] = {}
_decimal_cache: dict[tuple[int, int], str] = {}


def _remember(cache: dict[Any, str], key: Any, text: str) -> str:
    if len(cache) >= CACHE_SIZE:
        cache.clear()
    cache[key] = text
    return text


def amount(units: int) -> str:
    """Units (1/10,000) as an amount with exactly two decimals (the rules allow no more)."""
    found = _amount_cache.get(units)
    if found is not None:
        return found
    cents = round_half_away(units, CENT)
    sign = "-" if cents < 0 else ""
    whole, rest = divmod(abs(cents), 100)
    return _remember(_amount_cache, units, f"{sign}{whole}.{rest:02d}")


def decimal_text(value: int, scale: int) -> str:
    """An exact decimal from an integer of 1/10^scale, trailing zeros dropped."""
    found = _decimal_cache.get((value, scale))
    if found is None:
        found = _remember(_decimal_cache, (value, scale), _decimal_text(value, scale))
    return found


def _decimal_text(value: int, scale: int) -> str:
    sign = "-" if value < 0 else ""
    whole, rest = divmod(abs(value), 10**scale)
    if rest == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}." + f"{rest:0{scale}d}".rstrip("0")


def iso(day: str) -> str:
    """``YYYYMMDD`` → ``YYYY-MM-DD``."""
    return f"{day[:4]}-{day[4:6]}-{day[6:]}"


def check_parties(inv: s.EInvoice) -> None:
    """Raise ``Conflict`` naming the first field a valid e-invoice needs and a party lacks."""
    seller_fields, seller_country = _facts(inv.seller)
    buyer_fields, buyer_country = _facts(inv.buyer)
    dutch_pair = seller_country == "NL" and buyer_country == "NL"
    # Reverse charge: the buyer's VAT number, or its legal registration (BR-AE-02).
    reverse_charge_gap = (
        "RegistrationNumber" not in buyer_fields and "VATNumber" not in buyer_fields and any(
            category(inv.zones.get(line[s.L_ZONE], ""), line[s.L_PERCENT]).code == "AE"
            for line in inv.lines
        )
    )
    # The common case, every field there, in set tests; the ordered walk below names the
    # first one missing.
    if (
        seller_fields >= _SELLER_NAMES
        and buyer_fields >= _REQUIRED_NAMES
        and (inv.header.total_incl < 0 or "IBAN" in seller_fields)
        and (not dutch_pair or buyer_fields >= _NL_BUYER_NAMES)
        and not reverse_charge_gap
    ):
        return
    seller_role, buyer_role = _roles(inv.header)
    needs = [(inv.seller, seller_role, f) for f in REQUIRED + SELLER_REQUIRED]
    needs += [(inv.buyer, buyer_role, f) for f in REQUIRED]
    if dutch_pair:
        needs += [(inv.buyer, buyer_role, f) for f in NL_BUYER_REQUIRED]
    if inv.header.total_incl >= 0:
        needs.append((inv.seller, seller_role, ("IBAN", "IBAN (payment account)")))
    if reverse_charge_gap:
        needs.append((inv.buyer, buyer_role, ("VATNumber", "VAT number (reverse charge)")))
    for party, role, (name, label) in needs:
        if name not in _facts(party)[0]:
            raise Conflict(
                f"invoice {inv.header.number} cannot be an e-invoice: the {role} "
                f"({party.get('CompanyName') or 'unnamed'}) has no {label}; add {name} to "
                "its data (import or portal) and ask again",
                code="einvoice_party_incomplete",
                field=f"{role}.{name}",
            )


def _country(party: dict[str, Any]) -> str:
    """The country the Peppol rules see: the VAT number's prefix, else the address's."""
    vat = str(party.get("VATNumber") or "").strip()
    return (vat[:2] if len(vat) >= 2 and vat[:2].isalpha() else
            str(party.get("CountryCode") or "")).upper()


# Renderings of a party, by the party dict's identity: ``source.Parties`` hands out one dict
# per party, and an invoice window repeats its parties (one seller, buyers several times).
_PARTY_CACHE = 1024  # entries; a window's buyers recur month after month
_facts_cache: dict[int, tuple[dict[str, Any], frozenset[str], str]] = {}
_party_cache: dict[tuple[int, bool], tuple[dict[str, Any], str]] = {}


def _facts(party: dict[str, Any]) -> tuple[frozenset[str], str]:
    """(the checked fields the party has, its ``_country``), worked out once per party."""
    found = _facts_cache.get(id(party))
    if found is not None and found[0] is party:
        return found[1], found[2]
    fields = frozenset(name for name in CHECKED if present(party.get(name)))
    country = _country(party)
    if len(_facts_cache) >= _PARTY_CACHE:
        _facts_cache.clear()
    _facts_cache[id(party)] = (party, fields, country)
    return fields, country


def _present_fields(party: dict[str, Any]) -> frozenset[str]:
    return _facts(party)[0]


def present(value: Any) -> bool:
    """Something is left once XML-illegal characters and surrounding blanks are gone."""
    return bool(xml_text(str(value or "")).strip())


def _roles(header: s.Header) -> tuple[str, str]:
    if header.kind == "purchase":
        return "seller (distributor)", "buyer (partner)"
    return "seller (partner)", "buyer (customer)"


def render(inv: s.EInvoice, pdf: bytes | None = None) -> bytes:
    """The UBL document; ``pdf`` is embedded as an ``AdditionalDocumentReference``."""
    check_parties(inv)
    h = inv.header
    dutch = _facts(inv.seller)[1] == "NL"
    credit = is_credit_note(inv)
    sign = -1 if credit else 1
    root = "CreditNote" if credit else "Invoice"
    currency = xml_text(h.currency)
    cur = f' currencyID="{currency}"'

    lines: list[str] = []
    subtotals: dict[tuple[str, int], list[int]] = {}  # category → [taxable, tax]
    period_start = period_end = ""
    for number, line in enumerate(inv.lines, 1):
        cat = category(inv.zones.get(line[s.L_ZONE], ""), line[s.L_PERCENT])
        extended, vat = sign * line[s.L_EXTENDED], sign * line[s.L_VAT]
        totals = subtotals.setdefault(cat.key, [0, 0])
        totals[0] += extended
        totals[1] += vat
        start, end = line[s.L_START], line[s.L_END]
        period_start = start if not period_start or start < period_start else period_start
        period_end = end if not period_end or end > period_end else period_end
        lines.append(_line(root, number, line, cat, sign, cur))

    payment = "" if h.total_incl <= 0 else _payment_means(inv.seller, h.number)
    terms = (
        f"Payment within {h.terms_days} days, due {iso(h.due)}"
        if h.total_incl >= 0
        else "The amount is credited to the buyer"
    )
    tax_total, tax_sum = _tax_total(h, subtotals, cur)
    if tax_sum != sign * h.total_vat:
        raise Conflict(
            f"invoice {h.number}: its lines' VAT does not add up to its total VAT; this is "
            "a billing error, please report it",
            code="einvoice_inconsistent",
        )
    parts = [
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{ROOT_NAMESPACE[root]}" '
        f"{NAMESPACES}>",
        f"<cbc:CustomizationID>{CUSTOMIZATION_ID}</cbc:CustomizationID>",
        f"<cbc:ProfileID>{PROFILE_ID}</cbc:ProfileID>",
        f"<cbc:ID>{xml_text(h.number)}</cbc:ID>",
        f"<cbc:IssueDate>{iso(h.date)}</cbc:IssueDate>",
        "" if credit else f"<cbc:DueDate>{iso(h.due)}</cbc:DueDate>",
        f"<cbc:{root}TypeCode>{381 if credit else 380}</cbc:{root}TypeCode>",
        f"<cbc:Note>{xml_text(h.description)}</cbc:Note>" if h.description.strip() else "",
        f"<cbc:DocumentCurrencyCode>{currency}</cbc:DocumentCurrencyCode>",
        f"<cbc:BuyerReference>{xml_text(_buyer_reference(inv))}</cbc:BuyerReference>",
    ]
    if period_start:
        parts.append(
            f"<cac:InvoicePeriod><cbc:StartDate>{iso(period_start)}</cbc:StartDate>"
            f"<cbc:EndDate>{iso(period_end)}</cbc:EndDate></cac:InvoicePeriod>"
        )
    if credit and inv.corrects is not None:
        corrected, day = inv.corrects
        parts.append(
            "<cac:BillingReference><cac:InvoiceDocumentReference>"
            f"<cbc:ID>{xml_text(corrected)}</cbc:ID><cbc:IssueDate>{iso(day)}</cbc:IssueDate>"
            "</cac:InvoiceDocumentReference></cac:BillingReference>"
        )
    if pdf is not None:
        name = xml_text(f"{h.number}.pdf")
        parts.append(
            f"<cac:AdditionalDocumentReference><cbc:ID>{xml_text(h.number)}</cbc:ID>"
            "<cbc:DocumentDescription>Invoice as PDF</cbc:DocumentDescription>"
            "<cac:Attachment><cbc:EmbeddedDocumentBinaryObject mimeCode=\"application/pdf\" "
            f'filename="{name}">{base64.b64encode(pdf).decode("ascii")}'
            "</cbc:EmbeddedDocumentBinaryObject></cac:Attachment>"
            "</cac:AdditionalDocumentReference>"
        )
    excl, incl = amount(sign * h.total_excl), amount(sign * h.total_incl)
    parts += [
        f"<cac:AccountingSupplierParty>{_party(inv.seller, dutch)}"
        "</cac:AccountingSupplierParty>",
        f"<cac:AccountingCustomerParty>{_party(inv.buyer, dutch)}"
        "</cac:AccountingCustomerParty>",
        payment,
        f"<cac:PaymentTerms><cbc:Note>{terms}</cbc:Note></cac:PaymentTerms>",
        tax_total,
        "<cac:LegalMonetaryTotal>"
        f"<cbc:LineExtensionAmount{cur}>{excl}</cbc:LineExtensionAmount>"
        f"<cbc:TaxExclusiveAmount{cur}>{excl}</cbc:TaxExclusiveAmount>"
        f"<cbc:TaxInclusiveAmount{cur}>{incl}</cbc:TaxInclusiveAmount>"
        f"<cbc:PayableAmount{cur}>{incl}</cbc:PayableAmount>"
        "</cac:LegalMonetaryTotal>",
        *lines,
        f"</{root}>\n",
    ]
    return "".join(parts).encode()


def is_credit_note(inv: s.EInvoice) -> bool:
    """A negative total is a CreditNote, except where the Dutch rules (NL-R-001) want the
    corrected invoice named and none exists (its charges were billed before this system's
    data): then a negative Invoice, which the rules accept."""
    if inv.header.total_incl >= 0:
        return False
    return inv.corrects is not None or _facts(inv.seller)[1] != "NL"


def _buyer_reference(inv: s.EInvoice) -> str:
    reference = str(inv.buyer.get("CustomerNumber") or "").strip()
    return reference or str(inv.buyer.get("AccountID"))


def _party(party: dict[str, Any], dutch_seller: bool) -> str:
    found = _party_cache.get((id(party), dutch_seller))
    if found is not None and found[0] is party:
        return found[1]
    xml = _render_party(party, dutch_seller)
    if len(_party_cache) >= _PARTY_CACHE:
        _party_cache.clear()
    _party_cache[(id(party), dutch_seller)] = (party, xml)
    return xml


def _render_party(party: dict[str, Any], dutch_seller: bool) -> str:
    def text(name: str) -> str:
        return xml_text(str(party.get(name) or "").strip())

    name = text("CompanyName")
    vat = text("VATNumber")
    registration = text("RegistrationNumber")
    registration_scheme = text("RegistrationScheme")
    street, city, postal = text("Address"), text("City"), text("PostalCode")
    out = [
        f'<cac:Party><cbc:EndpointID schemeID="{text("EndpointScheme")}">'
        f"{text('EndpointID')}</cbc:EndpointID>",
        f"<cac:PartyName><cbc:Name>{name}</cbc:Name></cac:PartyName>",
        "<cac:PostalAddress>",
        f"<cbc:StreetName>{street}</cbc:StreetName>" if street else "",
        f"<cbc:CityName>{city}</cbc:CityName>" if city else "",
        f"<cbc:PostalZone>{postal}</cbc:PostalZone>" if postal else "",
        f"<cac:Country><cbc:IdentificationCode>{text('CountryCode').upper()}"
        "</cbc:IdentificationCode></cac:Country></cac:PostalAddress>",
    ]
    if vat:
        out.append(
            f"<cac:PartyTaxScheme><cbc:CompanyID>{vat}</cbc:CompanyID>"
            "<cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme></cac:PartyTaxScheme>"
        )
    out.append(f"<cac:PartyLegalEntity><cbc:RegistrationName>{name}</cbc:RegistrationName>")
    if dutch_seller and _facts(party)[1] == "NL" and registration_scheme not in (
        NL_REGISTRATION_SCHEMES
    ):
        registration = ""  # optional, but the Dutch rules refuse any other scheme
    if registration:
        scheme = f' schemeID="{registration_scheme}"' if registration_scheme else ""
        out.append(f"<cbc:CompanyID{scheme}>{registration}</cbc:CompanyID>")
    out.append("</cac:PartyLegalEntity>")
    email, phone = text("Email"), text("Telephone")
    if email or phone:
        out.append(
            "<cac:Contact>"
            + (f"<cbc:Telephone>{phone}</cbc:Telephone>" if phone else "")
            + (f"<cbc:ElectronicMail>{email}</cbc:ElectronicMail>" if email else "")
            + "</cac:Contact>"
        )
    out.append("</cac:Party>")
    return "".join(out)


def _payment_means(seller: dict[str, Any], number: str) -> str:
    before, after = _seller_account(seller)
    return f"{before}{xml_text(number)}{after}"


_account_cache: dict[int, tuple[dict[str, Any], tuple[str, str]]] = {}


def _seller_account(seller: dict[str, Any]) -> tuple[str, str]:
    """The payment means around its ``PaymentID``: the seller's part, made once per seller."""
    found = _account_cache.get(id(seller))
    if found is not None and found[0] is seller:
        return found[1]
    iban = xml_text("".join(str(seller.get("IBAN") or "").split()).upper())
    bic = xml_text(str(seller.get("BIC") or "").strip())
    branch = (
        f"<cac:FinancialInstitutionBranch><cbc:ID>{bic}</cbc:ID></cac:FinancialInstitutionBranch>"
        if bic
        else ""
    )
    parts = (
        f'<cac:PaymentMeans><cbc:PaymentMeansCode name="SEPA credit transfer">'
        f"{PAYMENT_MEANS_SEPA}</cbc:PaymentMeansCode><cbc:PaymentID>",
        f"</cbc:PaymentID><cac:PayeeFinancialAccount><cbc:ID>{iban}</cbc:ID>"
        f"<cbc:Name>{xml_text(str(seller.get('CompanyName') or ''))}</cbc:Name>{branch}"
        "</cac:PayeeFinancialAccount></cac:PaymentMeans>",
    )
    if len(_account_cache) >= _PARTY_CACHE:
        _account_cache.clear()
    _account_cache[id(seller)] = (seller, parts)
    return parts


# A handful of categories per window: each element is written once.
_tax_category_cache: dict[tuple[str, int, str], str] = {}


def _tax_category(cat: Category, element: str) -> str:
    key = (cat.code, cat.percent, element)
    found = _tax_category_cache.get(key)
    if found is None:
        found = _tax_category_cache[key] = _render_tax_category(cat, element)
    return found


def _render_tax_category(cat: Category, element: str) -> str:
    reason = ""
    if cat.code in EXEMPTIONS:
        code, text = EXEMPTIONS[cat.code]
        reason = (
            f"<cbc:TaxExemptionReasonCode>{code}</cbc:TaxExemptionReasonCode>"
            f"<cbc:TaxExemptionReason>{text}</cbc:TaxExemptionReason>"
            if element == "TaxCategory"
            else ""
        )
    return (
        f"<cac:{element}><cbc:ID>{cat.code}</cbc:ID><cbc:Percent>{plain(cat.percent)}"
        f"</cbc:Percent>{reason}<cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>"
        f"</cac:{element}>"
    )


def _tax_total(
    h: s.Header, subtotals: dict[tuple[str, int], list[int]], cur: str
) -> tuple[str, int]:
    parts = []
    total = 0
    for (code, percent), (taxable, tax) in sorted(subtotals.items()):
        # EN 16931 BR-CO-17: the summed line VAT within 1.00 of taxable × rate.
        exact = taxable * percent  # units × percent units: 100 × 10^4 per unit of VAT
        if abs(exact - tax * 100 * SCALE_FACTOR) > SCALE_FACTOR * SCALE_FACTOR * 100:
            raise Conflict(
                f"invoice {h.number}: its {code} {plain(percent)} % VAT differs from the "
                "taxable amount × rate by more than 1.00 (EN 16931 BR-CO-17); this is a "
                "billing error, please report it",
                code="einvoice_vat_rounding",
            )
        total += tax
        parts.append(
            f"<cac:TaxSubtotal><cbc:TaxableAmount{cur}>{amount(taxable)}</cbc:TaxableAmount>"
            f"<cbc:TaxAmount{cur}>{amount(tax)}</cbc:TaxAmount>"
            f"{_tax_category(Category(code, percent), 'TaxCategory')}</cac:TaxSubtotal>"
        )
    return (
        f"<cac:TaxTotal><cbc:TaxAmount{cur}>{amount(total)}</cbc:TaxAmount>{''.join(parts)}"
        "</cac:TaxTotal>",
        total,
    )


def line_quantity(line: Sequence[Any], sign: int) -> tuple[int, int]:
    """(quantity in 1/10^8, price in units ≥ 0) for the UBL line."""
    quantity = line[s.L_QUANTITY] * line[s.L_DURATION] * sign
    price = line[s.L_UNIT_PRICE]
    if price < 0:
        return -quantity, -price
    return quantity, price


def line_adjustment(line: Sequence[Any], sign: int) -> int:
    """quantity × price − line amount, in cents: > 0 an allowance, < 0 a charge."""
    quantity, price = line_quantity(line, sign)
    # quantity (1/10^8) × price (1/10^4) is in 1/10^12; a cent is 10^10 of those.
    gross = quantity * price
    return round_half_away(gross - sign * line[s.L_EXTENDED] * 10**8, 10**10)


def _line(root: str, number: int, line: Sequence[Any], cat: Category, sign: int, cur: str) -> str:
    quantity, price = line_quantity(line, sign)
    # line_adjustment, with the quantity and price already at hand
    adjustment = round_half_away(quantity * price - sign * line[s.L_EXTENDED] * 10**8, 10**10)
    unit = UNIT_CODES.get(line[s.L_DURATION_TYPE], DEFAULT_UNIT)
    quantity_element = "CreditedQuantity" if root == "CreditNote" else "InvoicedQuantity"
    # The rules want a non-blank name: the description, else the SKU.
    description = next((text for text in (line[s.L_DESCRIPTION], line[s.L_SKU]) if present(text)),
                       "Item")
    allowance = ""
    if adjustment:
        is_charge = adjustment < 0
        reason = "Rounding" if is_charge else "Discount"
        allowance = (
            f"<cac:AllowanceCharge><cbc:ChargeIndicator>{'true' if is_charge else 'false'}"
            f"</cbc:ChargeIndicator><cbc:AllowanceChargeReason>{reason}"
            f"</cbc:AllowanceChargeReason><cbc:Amount{cur}>{amount(abs(adjustment) * CENT)}"
            "</cbc:Amount></cac:AllowanceCharge>"
        )
    note = f"{line[s.L_CHARGE_TYPE]}, subscription {line[s.L_SUBSCRIPTION]}"
    consumer = line[s.L_CONSUMER].strip()
    if consumer:
        note += f", {consumer}"
    return (
        f"<cac:{root}Line><cbc:ID>{number}</cbc:ID><cbc:Note>{xml_text(note)}</cbc:Note>"
        f'<cbc:{quantity_element} unitCode="{unit}">{decimal_text(quantity, 8)}'
        f"</cbc:{quantity_element}>"
        f"<cbc:LineExtensionAmount{cur}>{amount(sign * line[s.L_EXTENDED])}"
        "</cbc:LineExtensionAmount>"
        f"<cac:InvoicePeriod><cbc:StartDate>{iso(line[s.L_START])}</cbc:StartDate>"
        f"<cbc:EndDate>{iso(line[s.L_END])}</cbc:EndDate></cac:InvoicePeriod>"
        f"{allowance}"
        f"<cac:Item><cbc:Name>{xml_text(description.strip())}</cbc:Name>"
        f"{_sku(line[s.L_SKU])}{_tax_category(cat, 'ClassifiedTaxCategory')}"
        f"</cac:Item><cac:Price><cbc:PriceAmount{cur}>{decimal_text(price, 4)}</cbc:PriceAmount>"
        f"</cac:Price></cac:{root}Line>"
    )


def _sku(sku: str) -> str:
    if not sku.strip():
        return ""
    return (
        f"<cac:SellersItemIdentification><cbc:ID>{xml_text(sku.strip())}</cbc:ID>"
        "</cac:SellersItemIdentification>"
    )
