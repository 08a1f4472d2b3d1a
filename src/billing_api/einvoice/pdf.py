"""One invoice as a PDF: the human-readable twin of the UBL, from the same rows and totals.

ReportLab's canvas draws it (measured against fpdf2 in docs/einvoicing.md: fpdf2 re-parses
and re-subsets the TrueType font with fontTools for every document, ReportLab parses it once
per process and subsets cheaply). A TrueType font is embedded (subset) so that text is
extractable (``pdftotext``) and non-Latin names render. The font is the first found of:
``BILLING_API_PDF_FONT`` (a .ttf path), Debian's
DejaVu Sans (``fonts-dejavu-core``, which ``scripts/install-system-deps`` installs), the
DejaVu Sans matplotlib ships (when installed), and last Bitstream Vera, which ReportLab itself
ships: so a fresh machine without root still renders, Latin text fully, and characters the
font lacks as ``?`` (a warning is logged once). Never a missing-glyph box or an error.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import reportlab
from reportlab import rl_config
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from billing_api.einvoice import source as s
from billing_api.einvoice import ubl
from billing_api.export.values import money as price_text
from billing_api.export.values import plain

log = logging.getLogger("billing_api.einvoice")

DEBIAN_FONTS = Path("/usr/share/fonts/truetype/dejavu")
REGULAR = "EInvoiceSans"
# Bold is the regular face filled and stroked (text render mode 2): one embedded font subset
# per document instead of two, which was a third of the rendering time.
FILL_AND_STROKE = 2
BOLD_STROKE = 0.3
MM = 72 / 25.4
PAGE_WIDTH, PAGE_HEIGHT = A4
LEFT, RIGHT, TOP, BOTTOM = 15 * MM, PAGE_WIDTH - 15 * MM, PAGE_HEIGHT - 15 * MM, 18 * MM
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
LEGAL_NOTES = {
    "AE": "Reverse charge: VAT to be accounted for by the recipient "
    "(Articles 196 and 199 of Directive 2006/112/EC).",
    "G": "Export outside the EU: no EU VAT charged.",
}
# Lines table: (title, width in mm, right-aligned).
COLUMNS = (
    ("Description", 70, False),
    ("Period", 24, False),
    ("Quantity", 22, True),
    ("Unit price", 22, True),
    ("VAT", 16, True),
    ("Amount", 26, True),
)


@dataclass(frozen=True)
class Font:
    regular: Path
    missing: re.Pattern[str]  # one character the font has no glyph for
    unicode: bool  # False: the Latin-only last resort


def _missing_pattern(charset: frozenset[int]) -> re.Pattern[str]:
    """A character class of everything outside ``charset`` (as ranges): one C-speed scan
    per text instead of a set look-up per character."""
    ranges: list[str] = []
    codes = sorted(code for code in charset if code > 0x1F and not 0xD800 <= code <= 0xDFFF)
    start = previous = codes[0]
    for code in [*codes[1:], -1]:
        if code != previous + 1:
            ranges.append(re.escape(chr(start)) + ("-" + re.escape(chr(previous))
                                                   if previous > start else ""))
            start = code
        previous = code
    return re.compile(f"[^{''.join(ranges)}]")


def _candidates() -> list[tuple[Path, bool]]:
    found: list[tuple[Path, bool]] = []
    configured = os.environ.get("BILLING_API_PDF_FONT", "").strip()
    if configured:
        found.append((Path(configured), True))
    found.append((DEBIAN_FONTS / "DejaVuSans.ttf", True))
    try:
        import matplotlib

        found.append((Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"
                      / "DejaVuSans.ttf", True))
    except ImportError:
        pass
    found.append((Path(reportlab.__file__).parent / "fonts" / "Vera.ttf", False))
    return found


rl_config.useA85 = 0  # binary streams: ASCII85 costs time and a quarter more bytes


@lru_cache(maxsize=1)
def font() -> Font:
    """The font to embed, registered with ReportLab once per process."""
    for regular, unicode in _candidates():
        if regular.is_file():
            face = TTFont(REGULAR, str(regular))
            pdfmetrics.registerFont(face)
            if not unicode:
                log.warning(
                    "no Unicode TrueType font found (install fonts-dejavu-core or set "
                    "BILLING_API_PDF_FONT): PDFs use Bitstream Vera, non-Latin text prints as ?"
                )
            return Font(regular, _missing_pattern(frozenset(face.face.charToGlyph)),
                        unicode)
    raise RuntimeError("no TrueType font found, not even ReportLab's own Vera.ttf")


def clean(text: str, missing: re.Pattern[str]) -> str:
    """One line of text the font can show: controls become spaces, missing glyphs ``?``."""
    return missing.sub("?", _CONTROLS.sub(" ", text))


def money(units: int, currency: str = "") -> str:
    """``1234567800`` → ``"123,456.78"`` (two decimals, thousands separated)."""
    text = ubl.amount(units)
    sign = "-" if text.startswith("-") else ""
    whole, _, cents = text.lstrip("-").partition(".")
    return f"{sign}{int(whole):,}.{cents}" + (f" {currency}" if currency else "")


class _Page:
    """A canvas with a text cursor that starts a new page when the next block won't fit."""

    def __init__(self, title: str, missing: re.Pattern[str]) -> None:
        self.buffer = io.BytesIO()
        self.canvas = Canvas(self.buffer, pagesize=A4, pageCompression=1, invariant=1,
                             initialFontName=REGULAR, initialFontSize=9)
        self.canvas.setTitle(title)
        self.canvas.setCreator("billing-api")
        self.canvas.setLineWidth(BOLD_STROKE)
        self.title = title
        self.missing = missing
        self.page = 1
        self.y = TOP
        self.on_new_page: Any = None  # redraws a table's header after a break

    def t(self, value: Any) -> str:
        return clean(str(value), self.missing)

    def wrap(self, text: str, size: float, width: float, bold: bool = False) -> list[str]:
        """Lines of at most ``width`` points; a word longer than that is cut."""
        name = REGULAR
        lines: list[str] = []
        for paragraph in str(text).split("\n"):
            current = ""
            for word in self.t(paragraph).split(" "):
                candidate = f"{current} {word}" if current else word
                if pdfmetrics.stringWidth(candidate, name, size) <= width:
                    current = candidate
                    continue
                if current:
                    lines.append(current)
                current = ""
                while pdfmetrics.stringWidth(word, name, size) > width:
                    cut = len(word) - 1
                    while cut > 1 and pdfmetrics.stringWidth(word[:cut], name, size) > width:
                        cut = max(1, cut * 3 // 4) if cut > 40 else cut - 1
                    lines.append(word[:cut])
                    word = word[cut:]
                current = word
            lines.append(current)
        return lines or [""]

    def need(self, height: float) -> None:
        if self.y - height < BOTTOM:
            self._footer()
            self.canvas.showPage()
            self.canvas.setLineWidth(BOLD_STROKE)
            self.page += 1
            self.y = TOP
            if self.on_new_page is not None:
                self.on_new_page()

    def _footer(self) -> None:
        self.canvas.setFont(REGULAR, 7)
        self.canvas.drawCentredString(PAGE_WIDTH / 2, 10 * MM,
                                      self.t(f"{self.title} - page {self.page}"))

    def text(self, x: float, value: str, size: float = 9, bold: bool = False,
             right: bool = False) -> None:
        self.canvas.setFont(REGULAR, size)
        mode = FILL_AND_STROKE if bold else None
        if right:
            self.canvas.drawRightString(x, self.y, self.t(value), mode=mode)
        else:
            self.canvas.drawString(x, self.y, self.t(value), mode=mode)

    def paragraph(self, x: float, width: float, value: str, size: float = 9,
                  bold: bool = False) -> None:
        leading = size * 1.3
        for line in self.wrap(value, size, width, bold):
            self.need(leading)
            self.text(x, line, size, bold)
            self.y -= leading

    def finish(self) -> bytes:
        self._footer()
        self.canvas.showPage()
        self.canvas.save()
        return self.buffer.getvalue()


def render(inv: s.EInvoice) -> bytes:
    h = inv.header
    credit = h.total_incl < 0
    title = "Credit note" if ubl.is_credit_note(inv) else "Invoice"  # as the UBL says
    page = _Page(f"{title} {h.number}", font().missing)

    page.y -= 4
    page.text(LEFT, title, 16, bold=True)
    page.y -= 22
    top = page.y
    page.y = top
    _party_block(page, LEFT, "From (seller)", inv.seller)
    seller_end = page.y
    page.y = top
    _party_block(page, LEFT + 92 * MM, "To (buyer)", inv.buyer)
    page.y = min(page.y, seller_end) - 8

    meta = [
        ("Invoice number", h.number),
        ("Invoice date", ubl.iso(h.date)),
        ("Due date", ubl.iso(h.due)),
        ("Partner id", str(h.partner_id)),
        ("Buyer reference", str(inv.buyer.get("CustomerNumber") or "")),
        ("Currency", h.currency),
    ]
    if credit and inv.corrects is not None:
        meta.append(("Corrects invoice", f"{inv.corrects[0]} of {ubl.iso(inv.corrects[1])}"))
    for label, value in meta:
        page.need(12)
        page.text(LEFT, label, 9, bold=True)
        page.paragraph(LEFT + 34 * MM, RIGHT - LEFT - 34 * MM, value)
    if h.description.strip():
        page.paragraph(LEFT, RIGHT - LEFT, h.description)
    page.y -= 8

    categories: dict[tuple[str, int], list[int]] = {}
    groups: dict[str, list[Sequence[Any]]] = {}
    for line in inv.lines:
        groups.setdefault(line[s.L_CHARGE_TYPE], []).append(line)
        cat = ubl.category(inv.zones.get(line[s.L_ZONE], ""), line[s.L_PERCENT])
        sums = categories.setdefault(cat.key, [0, 0])
        sums[0] += line[s.L_EXTENDED]
        sums[1] += line[s.L_VAT]
    for charge_type, lines in groups.items():
        _lines_table(page, charge_type, lines, inv.zones)

    _vat_breakdown(page, categories, h.currency)
    _totals(page, h)
    _payment(page, inv, credit)
    return page.finish()


def _party_block(page: _Page, x: float, heading: str, party: dict[str, Any]) -> None:
    width = 88 * MM
    page.text(x, heading, 8, bold=True)
    page.y -= 12
    for line in page.wrap(party.get("CompanyName") or "", 10, width, bold=True):
        page.text(x, line, 10, bold=True)
        page.y -= 12
    rows = [
        party.get("Address") or "",
        " ".join(str(part) for part in (party.get("PostalCode"), party.get("City")) if part),
        party.get("CountryCode") or "",
        f"VAT {party['VATNumber']}" if party.get("VATNumber") else "",
        f"Registration {party['RegistrationNumber']}" if party.get("RegistrationNumber") else "",
        f"Peppol {party.get('EndpointScheme')}:{party.get('EndpointID')}"
        if party.get("EndpointID")
        else "",
    ]
    for row in rows:
        if str(row).strip():
            for line in page.wrap(row, 8.5, width):
                page.text(x, line, 8.5)
                page.y -= 11


def _x_positions() -> list[float]:
    positions, x = [], LEFT
    for _title, width, _right in COLUMNS:
        positions.append(x)
        x += width * MM
    return positions


XS = _x_positions()


def _table_header(page: _Page) -> None:
    page.canvas.setFillGray(0.9)
    page.canvas.rect(LEFT, page.y - 3, RIGHT - LEFT, 12, stroke=0, fill=1)
    page.canvas.setFillGray(0)
    for (title, width, right), x in zip(COLUMNS, XS, strict=True):
        page.text(x + width * MM - 2 if right else x + 1, title, 8, bold=True, right=right)
    page.y -= 14


def _lines_table(page: _Page, charge_type: str, lines: list[Sequence[Any]],
                 zones: dict[int, str]) -> None:
    page.on_new_page = None
    page.need(60)
    page.text(LEFT, charge_type, 10, bold=True)
    page.y -= 14
    _table_header(page)
    page.on_new_page = lambda: _table_header(page)
    subtotal = 0
    leading = 10
    description_width = COLUMNS[0][1] * MM - 4
    for line in lines:
        text = line[s.L_DESCRIPTION] or line[s.L_SKU]
        wrapped = page.wrap(text, 8, description_width)
        described = len(wrapped)  # then the SKU, smaller
        if line[s.L_SKU].strip():
            wrapped += page.wrap(line[s.L_SKU], 7, description_width)
        quantity, price = ubl.line_quantity(line, 1)
        cat = ubl.category(zones.get(line[s.L_ZONE], ""), line[s.L_PERCENT])
        columns = (
            [ubl.iso(line[s.L_START]), ubl.iso(line[s.L_END])],
            [ubl.decimal_text(quantity, 8)],
            [price_text(price)],
            [f"{cat.code} {plain(line[s.L_PERCENT])}%"],
            [money(line[s.L_EXTENDED])],
        )
        discount = ubl.line_adjustment(line, 1)
        rows = max(len(wrapped), 2) + (1 if discount > 0 else 0)
        page.need(rows * leading + 2)
        top = page.y
        for n, part in enumerate(wrapped):
            page.y = top - n * leading
            page.text(XS[0] + 1, part, 8 if n < described else 7)
        for (_title, width, right), x, values in zip(COLUMNS[1:], XS[1:], columns, strict=True):
            for n, value in enumerate(values):
                page.y = top - n * leading
                page.text(x + width * MM - 2 if right else x + 1, value, 8, right=right)
        if discount > 0:
            page.y = top - (rows - 1) * leading
            page.text(XS[0] + 8, f"incl. discount {money(discount * ubl.CENT)}", 7)
        page.y = top - rows * leading - 2
        subtotal += line[s.L_EXTENDED]
    page.on_new_page = None
    page.need(14)
    page.text(XS[-1] - 4, f"Subtotal {charge_type}", 8, bold=True, right=True)
    page.text(RIGHT - 2, money(subtotal), 8, bold=True, right=True)
    page.y -= 18


def _vat_breakdown(page: _Page, categories: dict[tuple[str, int], list[int]],
                   currency: str) -> None:
    page.need(14 * (len(categories) + 3))
    page.text(LEFT, "VAT breakdown", 10, bold=True)
    page.y -= 14
    x_rate, x_taxable, x_vat = LEFT + 50 * MM, LEFT + 95 * MM, LEFT + 140 * MM
    page.text(LEFT, "Category", 8, bold=True)
    page.text(x_rate, "Rate", 8, bold=True, right=True)
    page.text(x_taxable, "Taxable", 8, bold=True, right=True)
    page.text(x_vat, "VAT", 8, bold=True, right=True)
    page.y -= 12
    notes = []
    for (code, percent), (taxable, tax) in sorted(categories.items()):
        page.need(12)
        page.text(LEFT, code, 8)
        page.text(x_rate, f"{plain(percent)}%", 8, right=True)
        page.text(x_taxable, money(taxable, currency), 8, right=True)
        page.text(x_vat, money(tax, currency), 8, right=True)
        page.y -= 12
        if code in LEGAL_NOTES:
            notes.append(LEGAL_NOTES[code])
    for note in notes:
        page.paragraph(LEFT, RIGHT - LEFT, note, 8)
    page.y -= 8


def _totals(page: _Page, h: s.Header) -> None:
    page.need(50)
    for label, units, bold in (
        ("Total excluding VAT", h.total_excl, False),
        ("VAT", h.total_vat, False),
        ("Total including VAT", h.total_incl, True),
    ):
        size = 10 if bold else 9
        page.text(RIGHT - 45 * MM, label, size, bold=bold, right=True)
        page.text(RIGHT, money(units, h.currency), size, bold=bold, right=True)
        page.y -= 14
    page.y -= 8


def _payment(page: _Page, inv: s.EInvoice, credit: bool) -> None:
    h, seller = inv.header, inv.seller
    page.need(40)
    page.text(LEFT, "Payment", 10, bold=True)
    page.y -= 14
    if credit:
        text = f"Credit note: {money(-h.total_incl, h.currency)} is credited to the buyer."
    else:
        bic = f" (BIC {seller['BIC']})" if seller.get("BIC") else ""
        text = (
            f"Please pay {money(h.total_incl, h.currency)} by {ubl.iso(h.due)} "
            f"({h.terms_days} days) to IBAN {seller.get('IBAN') or ''}{bic}, "
            f"{seller.get('CompanyName') or ''}, quoting {h.number}."
        )
    page.paragraph(LEFT, RIGHT - LEFT, text)
