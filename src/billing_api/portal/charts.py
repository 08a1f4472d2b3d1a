"""Charts drawn on the server as inline SVG: a pure function of the figures, no JavaScript,
no outside asset, no ``style`` attribute (the portal's CSP allows only its own stylesheet:
colours are SVG presentation attributes, which a CSP does not govern).

Each bar carries its exact amount (``data-value``) and a ``<title>`` read out by screen
readers and shown on hover; the page puts a table with the same figures next to it. Only
coordinates are computed (in ``Decimal`` too, rounded to 0.1 px): amounts are never rounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from markupsafe import Markup, escape

PURCHASES, SALES, MARGIN = "purchases", "sales", "margin"
COLOURS = {PURCHASES: "#c2410c", SALES: "#1f4e8c", MARGIN: "#0b6b2e"}
LABELS = {PURCHASES: "Purchases", SALES: "Sales", MARGIN: "Margin"}
CENT = Decimal("0.01")
PX = Decimal("0.1")


@dataclass(frozen=True)
class Group:
    """One group of bars: a month or a vendor, with an amount per series."""

    label: str
    values: dict[str, Decimal]


def money(value: Decimal) -> str:
    """An amount as people read it: thousands separated, cents always, more decimals only
    when the amount has them (never rounded)."""
    shown = value.quantize(CENT) if value == value.quantize(CENT) else value.normalize()
    return f"{shown:,f}"


def _px(value: Decimal) -> str:
    return str(value.quantize(PX, rounding=ROUND_HALF_UP))


def _scale(groups: Sequence[Group], series: Sequence[str]) -> tuple[Decimal, Decimal]:
    values = [g.values.get(s, Decimal(0)) for g in groups for s in series]
    low, high = min([Decimal(0), *values]), max([Decimal(0), *values])
    if low == high:
        high = low + 1  # nothing to draw: an empty axis rather than a division by zero
    return low, high


def _bar(series: str, label: str, value: Decimal, currency: str, x: Decimal, y: Decimal,
         width: Decimal, height: Decimal) -> str:
    title = f"{LABELS[series]} {label}: {money(value)} {currency}"
    return (f'<rect class="bar bar-{series}" x="{_px(x)}" y="{_px(y)}" width="{_px(width)}" '
            f'height="{_px(height)}" fill="{COLOURS[series]}" data-series="{series}" '
            f'data-label="{escape(label)}" data-value="{value}">'
            f"<title>{escape(title)}</title></rect>")


def _legend(series: Sequence[str], x: int, y: int) -> list[str]:
    parts = []
    for n, name in enumerate(series):
        left = x + n * 110
        parts.append(f'<rect x="{left}" y="{y}" width="12" height="12" fill="{COLOURS[name]}"/>'
                     f'<text x="{left + 16}" y="{y + 11}" font-size="12">{LABELS[name]}</text>')
    return parts


def bar_chart(chart_id: str, title: str, description: str, groups: Sequence[Group],
              currency: str, series: Sequence[str] = (PURCHASES, SALES, MARGIN)) -> Markup:
    """Vertical grouped bars, one group per entry of ``groups``, a zero line, the extreme
    amounts on the axis. ``chart_id`` names the ``<title>``/``<desc>`` for ``aria-labelledby``."""
    width, height = 760, 300
    left, right, top, bottom = 90, 10, 30, 50
    plot_w, plot_h = Decimal(width - left - right), Decimal(height - top - bottom)
    low, high = _scale(groups, series)
    per_unit = plot_h / (high - low)
    zero_y = top + (high * per_unit)
    slot = plot_w / max(len(groups), 1)
    bar_w = slot * Decimal("0.8") / len(series)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
        f'font-family="system-ui, sans-serif">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(description)}</desc>',
        *_legend(series, left, 6),
        f'<text x="{left - 6}" y="{top + 4}" font-size="11" text-anchor="end">'
        f"{escape(money(high))}</text>",
        f'<text x="{left - 6}" y="{top + int(plot_h) + 4}" font-size="11" text-anchor="end">'
        f"{escape(money(low))}</text>",
        f'<text x="{width - right}" y="17" font-size="12" text-anchor="end">'
        f"{escape(currency)}, excluding VAT</text>",
    ]
    for n, group in enumerate(groups):
        start = left + slot * n + slot * Decimal("0.1")
        for k, name in enumerate(series):
            value = group.values.get(name, Decimal(0))
            bar_h = abs(value) * per_unit
            y = zero_y - bar_h if value >= 0 else zero_y
            parts.append(_bar(name, group.label, value, currency, start + bar_w * k, y, bar_w,
                              bar_h))
        centre = left + slot * n + slot / 2
        parts.append(f'<text x="{_px(centre)}" y="{height - bottom + 16}" font-size="11" '
                     f'text-anchor="middle">{escape(_short(group.label))}</text>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{_px(zero_y)}" '
                 f'y2="{_px(zero_y)}" stroke="#5b6472" stroke-width="1"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above is escaped


def _short(label: str, limit: int = 14) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"
