"""``billing-api demo``: a deterministic demo world, billed for the last completed months.

One distributor, one partner with its Account Administrator, and per environment a set of
customers (the sandbox gets its own fictional set of the same shape) whose subscriptions,
amount changes, cancellations and usage produce every charge type. Customers and subscriptions
are written with bulk Core inserts so that a million-line database takes minutes.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker
from stdnum import luhn
from stdnum.gb import vat as gb_vat
from stdnum.iso7064 import mod_11_10

from billing_api.access.models import Company
from billing_api.access.passwords import generate_password
from billing_api.access.users import add_user
from billing_api.billing.models import TaxZone
from billing_api.billing.rating import add_months, month_end
from billing_api.billing.run import RunSummary, bill_partner
from billing_api.billing.vat import home_zone_code
from billing_api.customers.models import (
    Customer,
    Subscription,
    SubscriptionAttribute,
    SubscriptionChange,
    SubscriptionResource,
    UsageRecord,
)
from billing_api.db import transaction
from billing_api.demo.catalog import DemoPlan, build_catalog
from billing_api.environments import Environment
from billing_api.errors import Conflict

DISTRIBUTOR_NAME = "Cloud Distribution Europe BV"
PARTNER_NAME = "Northwind IT Services BV"
ADMIN_EMAIL = "admin@northwind.example"
INVOICE_DAY = 23
BATCH = 5000

# (country, city, postal code, VAT number prefix or "" for consumers, language)
PLACES = [
    ("NL", "Utrecht", "3511 AB", "NL", "nl"),
    ("NL", "Rotterdam", "3011 AA", "NL", "nl"),
    ("BE", "Antwerpen", "2000", "BE", "nl"),
    ("DE", "Köln", "50667", "DE", "de"),
    ("DE", "München", "80331", "", "de"),
    ("FR", "Lille", "59000", "FR", "fr"),
    ("GB", "London", "EC1A 1BB", "GB", "en"),
    ("US", "Boston", "02108", "", "en"),
]
NAMES = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Wonka",
    "Gekko",
    "Oceanic",
    "Duff",
    "Nakatomi",
]
SUFFIXES = ["BV", "NV", "GmbH", "SARL", "Ltd", "Inc", "& Co", "Groep"]


@dataclass
class DemoResult:
    partner_id: int
    admin_email: str
    admin_password: str
    runs: list[RunSummary]


Progress = Callable[[str], None]


def completed_periods(today: dt.date, months: int) -> list[str]:
    """The last ``months`` calendar months before ``today``'s month, oldest first."""
    first_of_this_month = today.replace(day=1)
    return [add_months(first_of_this_month, -k).strftime("%Y-%m") for k in range(months, 0, -1)]


def invoice_date(period: str, today: dt.date) -> dt.date:
    """The day the demo dates ``period``'s invoices: the 23rd of the following month, as the
    public system does, or ``today`` when that day is still to come (the newest month, before
    the 23rd), as a run that happened today would. No invoice is dated after today, so the
    API's default window (the three months up to today) holds the newest ones."""
    first = dt.date.fromisoformat(period + "-01")
    return min(add_months(first, 1).replace(day=INVOICE_DAY), today)


def build_demo(
    factory: sessionmaker[Session],
    *,
    customers: int = 40,
    months: int = 4,
    seed: int = 1,
    today: dt.date | None = None,
    progress: Progress | None = None,
    environments: Sequence[Environment] = tuple(Environment),
    bill: bool = True,
) -> DemoResult:
    """Fill an empty database and bill it. Raises ``Conflict`` when companies exist already.

    ``environments`` and ``bill=False`` are for benchmarks (``bench/``): fewer environments, or
    customers and subscriptions left unbilled for a timed billing run.
    """
    today = today or dt.date.today()
    say = progress or (lambda _message: None)
    periods = completed_periods(today, months)
    window_start = dt.date.fromisoformat(periods[0] + "-01")
    password = generate_password()
    with transaction(factory, writer=True) as session:
        if session.scalar(select(func.count()).select_from(Company)):
            raise Conflict(
                "the database is not empty: demo data goes into an empty database "
                "only (set BILLING_API_DATABASE_URL to a new file)",
                code="not_empty",
            )
        _distributor(session)
        partner = _partner(session)
        # Printed for whoever runs the demo: to be changed at the first portal login.
        add_user(session, partner, ADMIN_EMAIL, password, full_name="Nora Northwind",
                 must_change_password=True)
        plans = build_catalog(session)
        zones = {z.code: z.id for z in session.scalars(select(TaxZone))}
        for env, env_seed, label in (
            (Environment.PRODUCTION, seed, ""),
            (Environment.SANDBOX, seed + 1_000_003, "Example "),
        ):
            if env not in environments:
                continue
            say(f"creating {customers} {env.value} customers")
            _customers_and_subscriptions(
                session,
                partner.id,
                env,
                random.Random(env_seed),
                customers,
                plans,
                zones,
                window_start,
                periods,
                label,
            )
        partner_id = partner.id
    runs: list[RunSummary] = []
    for period in periods if bill else ():
        dated = invoice_date(period, today)
        for env in environments:
            say(f"billing {env.value} {period}")
            with transaction(factory, writer=True) as session:
                runs.append(bill_partner(session, partner_id, env, period, dated))
    return DemoResult(partner_id, ADMIN_EMAIL, password, runs)


def demo_vat_number(country: str, base: int) -> str:
    """A VAT number of ``country`` that passes the check (``billing.vat_numbers``), made from
    the 9-digit ``base`` with the country's own check digits: deterministic per seed, and
    cheap enough for a million-line demo (no trial and error through the validator)."""
    if country == "NL":  # 8 digits, a mod-11 check digit (10 is no digit: take the next)
        number = base // 10
        while (check := _weighted(f"{number:08d}", range(9, 1, -1)) % 11) == 10:
            number += 1
        return f"NL{number:08d}{check}B01"
    if country == "DE":  # 8 digits not starting with 0, an ISO 7064 mod 11,10 check digit
        digits = f"{10**7 + base % (9 * 10**7)}"
        return f"DE{digits}{mod_11_10.calc_check_digit(digits)}"
    if country == "FR":  # a SIREN (Luhn) and its two-digit key
        digits = f"{base // 10 % 10**8:08d}"
        siren = digits + luhn.calc_check_digit(digits)
        return f"FR{(12 + 3 * (int(siren) % 97)) % 97:02d}{siren}"
    if country == "BE":  # 0, 7 digits and 97 minus their remainder by 97
        digits7 = base % 10**7
        return f"BE0{digits7:07d}{97 - digits7 % 97:02d}"
    if country == "GB":  # 7 digits and two that make the weighted sum a multiple of 97
        digits = f"{10**6 + base % (9 * 10**6)}"
        return f"GB{digits}{-gb_vat.checksum(digits + '00') % 97:02d}"
    raise ValueError(f"no demo VAT numbers for {country!r}")


def _weighted(digits: str, weights: Iterable[int]) -> int:
    return sum(w * int(d) for w, d in zip(weights, digits, strict=False))


def _distributor(session: Session) -> Company:
    company = Company(
        kind="distributor",
        name=DISTRIBUTOR_NAME,
        address="Stationsplein 1",
        postal_code="1012 AB",
        city="Amsterdam",
        country_code="NL",
        telephone="+31 20 555 0100",
        fax="",
        email="billing@cloud-distribution.example",
        website="https://cloud-distribution.example",
        logo="https://cloud-distribution.example/logo.png",
        chamber_of_commerce="12345678",
        registration_scheme="0106",
        endpoint_id="12345678",
        endpoint_scheme="0106",
        vat_number="NL123456782B01",
        bank_account="123456789",
        iban="NL91ABNA0417164300",
        bic="ABNANL2A",
        invoice_prefix="CDE",
        terms_of_payment_days=30,
        language_code="en",
    )
    session.add(company)
    return company


def _partner(session: Session) -> Company:
    company = Company(
        kind="partner",
        name=PARTNER_NAME,
        address="Oudegracht 200",
        postal_code="3511 NR",
        city="Utrecht",
        country_code="NL",
        telephone="+31 30 555 0199",
        email="finance@northwind.example",
        website="https://northwind.example",
        chamber_of_commerce="87654321",
        registration_scheme="0106",
        endpoint_id="87654321",
        endpoint_scheme="0106",
        vat_number="NL987654329B01",
        bank_account="987654321",
        iban="NL44RABO0123456789",
        bic="RABONL2U",
        invoice_prefix="NW",
        terms_of_payment_days=14,
        language_code="nl",
        contact_first_name="Nora",
        contact_last_name="Northwind",
    )
    session.add(company)
    session.flush()
    return company


def _customers_and_subscriptions(
    session: Session,
    partner_id: int,
    env: Environment,
    rng: random.Random,
    count: int,
    plans: list[DemoPlan],
    zones: dict[str, int],
    window_start: dt.date,
    periods: list[str],
    label: str,
) -> None:
    customer_rows = []
    for n in range(count):
        country, city, postal, vat_prefix, language = PLACES[n % len(PLACES)]
        own_use = n == 0  # the partner's own account: telecom it uses itself pays VAT
        name = (
            PARTNER_NAME
            if own_use
            else (f"{label}{rng.choice(NAMES)} {rng.choice(SUFFIXES)} {n + 1}")
        )
        customer_rows.append(
            {
                "partner_id": partner_id,
                "environment": env.value,
                "customer_number": f"{'SBX' if label else 'CUST'}-{n + 1:06d}",
                "company_name": name,
                "cost_center": rng.choice(["", "IT", "Sales", "HQ", "R&D"]),
                "address": f"{rng.choice(['Main', 'Market', 'Church', 'Station'])} Street "
                f"{rng.randint(1, 300)}",
                "postal_code": postal,
                "city": city,
                "country_code": "NL" if own_use else country,
                "vat_number": demo_vat_number(vat_prefix, rng.randint(10**8, 10**9 - 1))
                if vat_prefix
                else "",
                "tax_zone_id": zones[home_zone_code("NL" if own_use else country)],
                "contact_first_name": rng.choice(
                    ["Anna", "Ben", "Chloé", "Daan", "Émile", "Fatma"]
                ),
                "contact_middle_name": rng.choice(["", "", "van", "de"]),
                "contact_last_name": rng.choice(["Jansen", "Müller", "Dubois", "Smith", "Peeters"]),
                "email": f"billing{n + 1}@customer.example",
                "telephone": "+31 10 555 0000",
                "fax": "",
                "language_code": language,
                "is_partner_itself": own_use,
            }
            | peppol_ids(n, "NL" if own_use else country)
        )
    customer_ids = _insert_returning_ids(session, Customer, customer_rows)

    window_end = month_end(dt.date.fromisoformat(periods[-1] + "-01"))
    subs: list[dict[str, Any]] = []
    sub_plans: list[DemoPlan] = []
    for n, customer_id in enumerate(customer_ids):
        own_use = n == 0
        chosen = [plans[-1]] if own_use else rng.sample(plans, rng.randint(1, 3))
        for demo_plan in chosen:
            # A third start inside the billing window (Purchase Fees), the rest before it.
            if rng.random() < 0.33:
                start = window_start + dt.timedelta(
                    days=rng.randint(0, (window_end - window_start).days)
                )
            else:
                start = add_months(window_start, -rng.randint(1, 30)).replace(
                    day=rng.randint(1, 28)
                )
            subs.append(
                {
                    "partner_id": partner_id,
                    "environment": env.value,
                    "customer_id": customer_id,
                    "plan_id": demo_plan.plan.id,
                    "plan_period_id": demo_plan.period.id,
                    "name": f"{demo_plan.plan.name} for {customer_rows[n]['company_name']}",
                    "start_date": start,
                    "expiration_date": None,
                    "status": "active",
                    "cancelled_on": None,
                    "po_number": rng.choice(["", f"PO-{rng.randint(1000, 99999)}"]),
                }
            )
            sub_plans.append(demo_plan)
    # Some cancellations inside the window (refund Corrections, cancellation fees).
    for sub in subs:
        if rng.random() < 0.05:
            day = window_start + dt.timedelta(days=rng.randint(0, (window_end - window_start).days))
            if day > sub["start_date"]:
                sub["status"], sub["cancelled_on"] = "cancelled", day
    sub_ids = _insert_returning_ids(session, Subscription, subs)

    resources: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    usage: list[dict[str, Any]] = []
    attributes: list[dict[str, Any]] = []
    for sub_id, sub, demo_plan in zip(sub_ids, subs, sub_plans, strict=True):
        for demo_rate in demo_plan.rates:
            low, high = demo_rate.default_amount
            amount = Decimal(rng.randint(low, high))
            rate_period_id = (
                rng.choice(demo_rate.rate_periods).id if demo_rate.rate_periods else None
            )
            if demo_rate.usage is None and rng.random() < 0.15:
                # An upgrade or downgrade on some day inside the window: a pro-rata Correction.
                day = window_start + dt.timedelta(
                    days=rng.randint(1, (window_end - window_start).days)
                )
                if day > sub["start_date"] and sub["cancelled_on"] is None:
                    new = max(Decimal(low), amount + rng.choice([-3, -1, 1, 2, 5]))
                    if new != amount:
                        changes.append(
                            {
                                "subscription_id": sub_id,
                                "resource_rate_id": demo_rate.rate.id,
                                "effective_date": day,
                                "old_amount": amount,
                                "new_amount": new,
                                "billed_run_id": None,
                            }
                        )
                        amount = new
            resources.append(
                {
                    "subscription_id": sub_id,
                    "resource_rate_id": demo_rate.rate.id,
                    "rate_period_id": rate_period_id,
                    "amount": amount,
                    "sales_price": None,
                    "sales_discount": Decimal(0),
                }
            )
            if demo_rate.usage is not None:
                for period in periods:
                    if dt.date.fromisoformat(period + "-01") >= sub["start_date"].replace(day=1):
                        usage.append(
                            {
                                "subscription_id": sub_id,
                                "resource_rate_id": demo_rate.rate.id,
                                "period": period,
                                "quantity": Decimal(rng.randint(*demo_rate.usage)),
                            }
                        )
        if demo_plan.plan.category.name == "Infrastructure":
            attributes.append(
                {
                    "subscription_id": sub_id,
                    "attribute": "Datacenter",
                    "value": rng.choice(["AMS-1", "FRA-2"]),
                    "description": "Hosting location",
                    "noshow": False,
                }
            )
            attributes.append(
                {
                    "subscription_id": sub_id,
                    "attribute": "TenantId",
                    "value": f"vdc-{sub_id:08d}",
                    "description": "Internal id",
                    "noshow": True,
                }
            )
    for model, rows in (
        (SubscriptionResource, resources),
        (SubscriptionChange, changes),
        (UsageRecord, usage),
        (SubscriptionAttribute, attributes),
    ):
        for offset in range(0, len(rows), BATCH):
            session.execute(insert(model), rows[offset : offset + BATCH])


# Per country: the bank code and BIC of the demo IBAN, and the BBAN's digit count after it.
_BANKS = {
    "NL": ("INGB", "INGBNL2A", 10),
    "BE": ("", "GEBABEBB", 12),
    "DE": ("", "COBADEFF", 18),
    "FR": ("", "BNPAFRPP", 23),
    "GB": ("BARC", "BARCGB22", 14),
}


def peppol_ids(n: int, country: str) -> dict[str, Any]:
    """Customer ``n``'s electronic address, registration and bank account: valid by the
    schemes' own check digits, derived from ``n`` alone (no draw from the demo's random
    sequence, so everything else the demo makes stays as it was)."""
    ids = {"endpoint_id": "", "endpoint_scheme": "", "registration_number": "",
           "registration_scheme": "", "iban": "", "bic": ""}
    if country == "NL":  # Chamber of Commerce (KvK) number, its own EAS and ICD 0106
        kvk = f"{50_000_000 + n:08d}"
        ids |= {"endpoint_id": kvk, "endpoint_scheme": "0106", "registration_number": kvk,
                "registration_scheme": "0106"}
    elif country == "BE":  # enterprise number: the last two digits are 97 - (first 8 mod 97)
        number = f"0{4_000_000 + n % 10**6:07d}"
        enterprise = f"{number}{97 - int(number) % 97:02d}"
        ids |= {"endpoint_id": enterprise, "endpoint_scheme": "0208",
                "registration_number": enterprise, "registration_scheme": "0208"}
    elif country == "FR":  # SIRET (SIREN + establishment number); the SIREN registers
        siren = f"{300_000_000 + n:09d}"
        ids |= {"endpoint_id": f"{siren}00012", "endpoint_scheme": "0009",
                "registration_number": siren, "registration_scheme": "0002"}
    else:  # a GS1 location number (GLN), EAS 0088, with its mod-10 check digit
        body = f"871234{n % 10**6:06d}"
        check = (10 - sum(int(d) * (3 if i % 2 == 0 else 1)
                          for i, d in enumerate(reversed(body))) % 10) % 10
        ids |= {"endpoint_id": f"{body}{check}", "endpoint_scheme": "0088"}
    if country in _BANKS:
        bank, bic, digits = _BANKS[country]
        bban = f"{bank}{n + 1:0{digits}d}"
        numeric = "".join(str(int(char, 36)) for char in f"{bban}{country}00")
        ids |= {"iban": f"{country}{98 - int(numeric) % 97:02d}{bban}", "bic": bic}
    return ids


def _insert_returning_ids(session: Session, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    ids: list[int] = []
    for start in range(0, len(rows), BATCH):
        ids.extend(
            session.scalars(
                insert(model).returning(model.id, sort_by_parameter_order=True),
                rows[start : start + BATCH],
            ).all()
        )
    return ids
