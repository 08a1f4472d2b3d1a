"""The VAT numbers already stored, checked as an import checks them (``billing.vat_numbers``).

Data loaded before the check existed, or by hand, may hold placeholders (``n/a``, ``-``) or
another country's number. The billing run treats such a number as none (VAT charged, not
reverse-charged); this lists them so that they can be fixed before the next run. A partner's
(or the distributor's) own number decides its purchase invoices, so it is listed too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing_api.access.models import Company
from billing_api.billing.vat_numbers import check_vat_number
from billing_api.customers.models import Customer

# A company's own number has no environment or customer number: this stands in for them.
COMPANY_ROW = "-"
_FETCH_ROWS = 1000  # customers read per round trip: memory stays flat on large databases


@dataclass(frozen=True, slots=True)
class StoredVatNumber:
    partner: str
    environment: str
    customer_number: str
    name: str
    country_code: str
    vat_number: str
    problem: str  # "" when the number passes the check


def stored_vat_numbers(
    session: Session, partner_id: int | None = None
) -> Iterator[StoredVatNumber]:
    """Every non-empty stored VAT number with the check's verdict: the companies' own first
    (the distributor's only when no partner is given), then customers by partner, environment
    and customer number."""
    companies = select(Company).where(Company.vat_number != "").order_by(Company.kind, Company.id)
    if partner_id is not None:
        companies = companies.where(Company.id == partner_id)
    for company in session.scalars(companies):
        yield StoredVatNumber(
            company.name,
            COMPANY_ROW,
            COMPANY_ROW,
            company.name,
            company.country_code,
            company.vat_number,
            check_vat_number(company.vat_number, company.country_code).problem,
        )
    customers = (
        select(
            Company.name,
            Customer.environment,
            Customer.customer_number,
            Customer.company_name,
            Customer.country_code,
            Customer.vat_number,
        )
        .join(Company, Company.id == Customer.partner_id)
        .where(Customer.vat_number != "")
        .order_by(Company.name, Customer.environment, Customer.customer_number)
    )
    if partner_id is not None:
        customers = customers.where(Customer.partner_id == partner_id)
    rows = session.execute(customers, execution_options={"yield_per": _FETCH_ROWS})
    for partner, environment, number, name, country, vat_number in rows:
        problem = check_vat_number(vat_number, country).problem
        yield StoredVatNumber(partner, environment, number, name, country, vat_number, problem)
