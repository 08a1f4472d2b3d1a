"""One invoice as a PDF: the human-readable twin of the UBL, from the same rows and totals.

fpdf2 (pure Python) draws it; a TTF with wide Unicode coverage is embedded (subset) so that
Greek, Cyrillic, Arabic or accented names render and ``pdftotext`` extracts them. The font is
the first found of: ``BILLING_API_PDF_FONT`` (a .ttf path), Debian's DejaVu Sans
(``fonts-dejavu-core``, installed by ``scripts/install-system-deps``), the DejaVu Sans that
matplotlib ships (when installed). Without any, the PDF uses the standard Helvetica, which
covers Latin-1 only: other characters print as ``?`` and a warning is logged once.
Characters the font lacks are replaced by ``?`` too (never a missing-glyph box or an error).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import MethodReturnValue, XPos, YPos

from billing_api.einvoice import source as s
from billing_api.einvoice import ubl
from billing_api.export.values import plain

log = logging.getLogger("billing_api.einvoice")

DEBIAN_FONTS = Path("/usr/share/fonts/truetype/dejavu")
FAMILY = "InvoiceSans"
LINE_HEIGHT = 4.2
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
LEGAL_NOTES = {
    "AE": "Reverse charge: VAT to be accounted for by the recipient (Article 196 / 199 "
    "Directive 2006/112/EC).",
    "G": "Export outside the EU: no EU VAT charged.",
}
# Lines table: (title, width in mm, alignment).
COLUMNS = (
    ("Description", 74, "L"),
    ("Period", 36, "L"),
    ("Quantity", 18, "R"),
    ("Unit price", 20, "R"),
    ("VAT", 12, "R"),
    ("Amount", 20, "R"),
)


@dataclass(frozen=True)
class FontFiles:
    regular: Path
    bold: Path
    charset: frozenset[int]


def _candidates() -> list[tuple[Path, Path]]:
    found: list[tuple[Path, Path]] = []
    configured = os.environ.get("BILLING_API_PDF_FONT", "").strip()
    if configured:
        path = Path(configured)
        bold = path.with_name(path.stem + "-Bold" + path.suffix)
        found.append((path, bold if bold.is_file() else path))
    found.append((DEBIAN_FONTS / "DejaVuSans.ttf", DEBIAN_FONTS / "DejaVuSans-Bold.ttf"))
    try:
        import matplotlib  # noqa: PLC0415 (optional: only its bundled font is used)

        ttf = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"
        found.append((ttf / "DejaVuSans.ttf", ttf / "DejaVuSans-Bold.ttf"))
    except ImportError:
        pass
    return found


@lru_cache(maxsize=1)
def font_files() -> FontFiles | None:
    """The Unicode font to embed, or None (Helvetica, Latin-1 only)."""
    from fontTools.ttLib import TTFont  # noqa: PLC0415 (fpdf2's dependency, needed here only)

    for regular, bold in _candidates():
        if regular.is_file() and bold.is_file():
            with TTFont(regular, lazy=True) as font:
                charset = frozenset(font.getBestCmap())
            return FontFiles(regular, bold, charset)
    log.warning(
        "no Unicode TrueType font found (install fonts-dejavu-core or set "
        "BILLING_API_PDF_FONT): PDFs use Helvetica and print non-Latin-1 text as '?'"
    )
    return None


def clean(text: str, charset: frozenset[int] | None) -> str:
    """Printable text the font can show: controls become spaces, missing glyphs ``?``."""
    text = _CONTROLS.sub(" ", text)
    if charset is None:
        return text.encode("latin-1", "replace").decode("latin-1")
    if all(ord(char) in charset for char in text):
        return text
    return "".join(char if ord(char) in charset or char == "\n" else "?" for char in text)


def money(units: int, currency: str = "") -> str:
    """``1234567800`` → ``"123,456.78"`` (two decimals, thousands separated)."""
    text = ubl.amount(units)
    sign = "-" if text.startswith("-") else ""
    whole, _, cents = text.lstrip("-").partition(".")
    grouped = f"{int(whole):,}"
    return f"{sign}{grouped}.{cents}" + (f" {currency}" if currency else "")


class _Document(FPDF):
    def __init__(self, title: str, number: str, font: FontFiles | None) -> None:
        super().__init__(format="A4", unit="mm")
        self._title_text = f"{title} {number}"
        self.charset = font.charset if font is not None else None
        if font is not None:
            self.add_font(FAMILY, "", str(font.regular))
            self.add_font(FAMILY, "B", str(font.bold))
            self.family = FAMILY
        else:
            self.family = "helvetica"
        self.set_auto_page_break(True, margin=18)
        self.set_margins(15, 15, 15)
        self.set_title(self.t(self._title_text))
        self.set_creator("billing-api")

    def t(self, text: Any) -> str:
        return clean(str(text), self.charset)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(self.family, "", 7)
        self.cell(0, 4, self.t(f"{self._title_text} - page {self.page_no()}/{{nb}}"),
                  align="C")


def render(inv: s.EInvoice) -> bytes:
    h = inv.header
    credit = h.total_incl < 0
    title = "Credit note" if credit else "Invoice"
    pdf = _Document(title, h.number, font_files())
    pdf.alias_nb_pages()
    pdf.add_page()
    f = pdf.family

    pdf.set_font(f, "B", 16)
    pdf.cell(0, 8, pdf.t(title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    top = pdf.get_y() + 2
    _party_block(pdf, 15, top, "From (seller)", inv.seller)
    _party_block(pdf, 110, top, "To (buyer)", inv.buyer)
    pdf.set_y(max(pdf.get_y(), top + 34) + 3)

    pdf.set_font(f, "", 9)
    meta = [
        ("Invoice number", h.number),
        ("Invoice date", ubl.iso(h.date)),
        ("Due date", ubl.iso(h.due)),
        ("Partner id", str(h.partner_id)),
        ("Buyer reference", str(inv.buyer.get("CustomerNumber") or "")),
        ("Currency", h.currency),
    ]
    for label, value in meta:
        pdf.set_font(f, "B", 9)
        pdf.cell(34, LINE_HEIGHT + 0.6, pdf.t(label))
        pdf.set_font(f, "", 9)
        pdf.multi_cell(0, LINE_HEIGHT + 0.6, pdf.t(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if h.description.strip():
        pdf.multi_cell(0, LINE_HEIGHT + 0.6, pdf.t(h.description), new_x=XPos.LMARGIN,
                       new_y=YPos.NEXT)
    pdf.ln(3)

    categories: dict[tuple[str, int], list[int]] = {}
    groups: dict[str, list[Sequence[Any]]] = {}
    for line in inv.lines:
        groups.setdefault(line[s.L_CHARGE_TYPE], []).append(line)
        cat = ubl.category(inv.zones.get(line[s.L_ZONE], ""), line[s.L_PERCENT])
        sums = categories.setdefault(cat.key, [0, 0])
        sums[0] += line[s.L_EXTENDED]
        sums[1] += line[s.L_VAT]
    for charge_type, lines in groups.items():
        _lines_table(pdf, charge_type, lines, inv.zones)

    _vat_breakdown(pdf, categories, h.currency)
    _totals(pdf, h)
    _payment(pdf, inv, credit)
    return bytes(pdf.output())


def _party_block(pdf: _Document, x: float, y: float, heading: str,
                 party: dict[str, Any]) -> None:
    f = pdf.family
    pdf.set_xy(x, y)
    pdf.set_font(f, "B", 8)
    pdf.cell(90, LINE_HEIGHT, pdf.t(heading), new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_font(f, "B", 10)
    pdf.multi_cell(88, LINE_HEIGHT + 0.8, pdf.t(party.get("CompanyName") or ""),
                   new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_font(f, "", 8.5)
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
            pdf.set_x(x)
            pdf.multi_cell(88, LINE_HEIGHT, pdf.t(row), new_x=XPos.LEFT, new_y=YPos.NEXT)


def _table_header(pdf: _Document) -> None:
    pdf.set_font(pdf.family, "B", 8)
    pdf.set_fill_color(230, 230, 230)
    for title, width, align in COLUMNS:
        pdf.cell(width, LINE_HEIGHT + 1, title, align=align, fill=True)
    pdf.ln(LINE_HEIGHT + 1)
    pdf.set_font(pdf.family, "", 8)


def _lines_table(pdf: _Document, charge_type: str, lines: list[Sequence[Any]],
                 zones: dict[int, str]) -> None:
    pdf.set_font(pdf.family, "B", 10)
    if pdf.will_page_break(3 * LINE_HEIGHT + 8):
        pdf.add_page()
    pdf.cell(0, LINE_HEIGHT + 2, pdf.t(charge_type), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _table_header(pdf)
    subtotal = 0
    desc_width = COLUMNS[0][1]
    for line in lines:
        description = pdf.t(line[s.L_DESCRIPTION] or line[s.L_SKU])
        sku = pdf.t(line[s.L_SKU])
        text = f"{description}\n{sku}" if sku.strip() else description
        wrapped = pdf.multi_cell(desc_width, LINE_HEIGHT, text, dry_run=True,
                                 output=MethodReturnValue.LINES)
        height = max(len(wrapped), 2) * LINE_HEIGHT
        if pdf.will_page_break(height):
            pdf.add_page()
            _table_header(pdf)
        x, y = pdf.get_x(), pdf.get_y()
        pdf.multi_cell(desc_width, LINE_HEIGHT, text, new_x=XPos.RIGHT, new_y=YPos.TOP)
        pdf.set_xy(x + desc_width, y)
        quantity, price = ubl.line_quantity(line, 1)
        cat = ubl.category(zones.get(line[s.L_ZONE], ""), line[s.L_PERCENT])
        values = (
            f"{ubl.iso(line[s.L_START])}\n{ubl.iso(line[s.L_END])}",
            ubl.decimal_text(quantity, 8),
            ubl.decimal_text(price, 4),
            f"{cat.code} {plain(line[s.L_PERCENT])}%",
            money(line[s.L_EXTENDED]),
        )
        for (_title, width, align), value in zip(COLUMNS[1:], values, strict=True):
            pdf.multi_cell(width, LINE_HEIGHT, value, align=align, new_x=XPos.RIGHT,
                           new_y=YPos.TOP)
        pdf.set_xy(pdf.l_margin, y + height)
        discount = ubl.line_adjustment(line, 1)
        if discount > 0:
            pdf.set_x(pdf.l_margin + 4)
            pdf.cell(0, LINE_HEIGHT, f"incl. discount {money(discount * ubl.CENT)}",
                     new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        subtotal += line[s.L_EXTENDED]
    pdf.set_font(pdf.family, "B", 8)
    pdf.cell(sum(width for _t, width, _a in COLUMNS[:-1]), LINE_HEIGHT + 1,
             pdf.t(f"Subtotal {charge_type}"), align="R")
    pdf.cell(COLUMNS[-1][1], LINE_HEIGHT + 1, money(subtotal), align="R",
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)


def _vat_breakdown(pdf: _Document, categories: dict[tuple[str, int], list[int]],
                   currency: str) -> None:
    if pdf.will_page_break(LINE_HEIGHT * (len(categories) + 4)):
        pdf.add_page()
    f = pdf.family
    pdf.set_font(f, "B", 10)
    pdf.cell(0, LINE_HEIGHT + 2, "VAT breakdown", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(f, "B", 8)
    for title, width in (("Category", 30), ("Rate", 20), ("Taxable", 40), ("VAT", 40)):
        pdf.cell(width, LINE_HEIGHT + 1, title, align="L" if width == 30 else "R")
    pdf.ln(LINE_HEIGHT + 1)
    pdf.set_font(f, "", 8)
    notes = []
    for (code, percent), (taxable, tax) in sorted(categories.items()):
        pdf.cell(30, LINE_HEIGHT, code)
        pdf.cell(20, LINE_HEIGHT, f"{plain(percent)}%", align="R")
        pdf.cell(40, LINE_HEIGHT, money(taxable, currency), align="R")
        pdf.cell(40, LINE_HEIGHT, money(tax, currency), align="R", new_x=XPos.LMARGIN,
                 new_y=YPos.NEXT)
        if code in LEGAL_NOTES:
            notes.append(LEGAL_NOTES[code])
    for note in notes:
        pdf.multi_cell(0, LINE_HEIGHT, note, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)


def _totals(pdf: _Document, h: s.Header) -> None:
    if pdf.will_page_break(LINE_HEIGHT * 5):
        pdf.add_page()
    f = pdf.family
    for label, units, bold in (
        ("Total excluding VAT", h.total_excl, False),
        ("VAT", h.total_vat, False),
        ("Total including VAT", h.total_incl, True),
    ):
        pdf.set_font(f, "B" if bold else "", 10 if bold else 9)
        pdf.cell(140, LINE_HEIGHT + 1.5, label, align="R")
        pdf.cell(40, LINE_HEIGHT + 1.5, money(units, h.currency), align="R",
                 new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)


def _payment(pdf: _Document, inv: s.EInvoice, credit: bool) -> None:
    h, seller = inv.header, inv.seller
    pdf.set_font(pdf.family, "B", 10)
    pdf.cell(0, LINE_HEIGHT + 2, "Payment", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(pdf.family, "", 9)
    if credit:
        text = f"Credit note: {money(-h.total_incl, h.currency)} is credited to the buyer."
    else:
        bic = f" (BIC {seller['BIC']})" if seller.get("BIC") else ""
        text = (
            f"Please pay {money(h.total_incl, h.currency)} by {ubl.iso(h.due)} "
            f"({h.terms_days} days) to IBAN {seller.get('IBAN') or ''}{bic}, "
            f"{seller.get('CompanyName') or ''}, quoting {h.number}."
        )
    pdf.multi_cell(0, LINE_HEIGHT + 0.6, pdf.t(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
