"""Properties of the billing run on random subscriptions (hypothesis, real database)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.billing.models import Invoice, PriceLine
from billing_api.billing.rating import extended_price
from billing_api.billing.run import bill_partner
from billing_api.customers.models import SubscriptionChange

from . import factories as f

prices = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("5000"), places=4)
amounts = st.integers(min_value=0, max_value=500).map(Decimal)
days = st.dates(min_value=dt.date(2024, 1, 1), max_value=dt.date(2026, 10, 31))
subscription_specs = st.lists(
    st.tuples(
        prices,
        prices,
        amounts,
        days,
        st.sampled_from(["month", "year"]),
        st.sampled_from(["NL", "BE", "DE", "US"]),
        st.booleans(),
        st.none() | st.tuples(st.integers(1, 30), amounts),
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=subscription_specs)
def test_stored_totals_equal_the_sums_of_their_lines(
    factory: sessionmaker[Session],
    specs: list[tuple],  # type: ignore[type-arg]
) -> None:
    with factory() as session:  # rolled back at the end: each example starts empty
        f.distributor(session)
        partner = f.partner(session)
        vendor = f.vendor(session)
        for cost, price, amount, start, cycle, country, telecom, change in specs:
            _, period, rate = f.plan(
                session,
                vendor,
                telecom=telecom,
                billing_period_type=cycle,
                recurring_cost=cost,
                recurring_price=price,
            )
            vat_number = "BE0123456749" if country == "BE" else ""  # a valid one: reverse charge
            customer = f.customer(session, partner, country_code=country, vat_number=vat_number)
            sub, sr = f.subscription(session, customer, period, rate, amount=amount, start=start)
            if change is not None:
                day, new = change
                effective = dt.date(2026, 10, day)
                if effective > start:
                    session.add(
                        SubscriptionChange(
                            subscription_id=sub.id,
                            resource_rate_id=rate.id,
                            effective_date=effective,
                            old_amount=amount,
                            new_amount=new,
                        )
                    )
                    sr.amount = new
        session.flush()
        summary = bill_partner(session, partner.id, "production", "2026-10", dt.date(2026, 11, 23))

        sums = dict(
            (row.invoice_id, row)
            for row in session.execute(
                select(
                    PriceLine.invoice_id,
                    func.sum(PriceLine.extended_price).label("excl"),
                    func.sum(PriceLine.vat).label("vat"),
                    func.count().label("n"),
                ).group_by(PriceLine.invoice_id)
            )
        )
        invoices = list(session.scalars(select(Invoice)))
        assert summary.invoices == len(invoices)
        for invoice in invoices:
            row = sums[invoice.id]
            # SQL sums the stored integer units; the column type turns them back into Decimal.
            assert invoice.total_excluding_vat == row.excl
            assert invoice.total_vat == row.vat
            assert invoice.total_including_vat == invoice.total_excluding_vat + invoice.total_vat
            assert invoice.type == ("credit" if invoice.total_including_vat < 0 else "invoice")
        for line in session.scalars(select(PriceLine)):
            assert line.extended_price == extended_price(
                line.quantity, line.unit_price, line.discount, line.duration
            )
            assert line.extended_price == line.extended_price.quantize(Decimal("0.01"))
        session.rollback()
