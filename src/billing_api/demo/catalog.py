"""The demo catalog: six vendors whose plans between them produce every charge type.

- Microsoft 365 Business Standard: rate-period pricing (NCE monthly and annual commitment).
- Microsoft 365 E3 (annual): a yearly billing cycle.
- VMware Cloud Director: vCPU and RAM with included amounts, storage billed by usage.
- Acronis Cyber Protect: a setup fee (One Time Fee) and backup storage usage.
- Veeam Backup for Microsoft 365: a cancellation fee.
- Telco Connect SIP trunk: telecom, reverse-charged when resold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy.orm import Session

from billing_api.catalog.models import (
    PlanCategory,
    PlanPeriod,
    RatePeriod,
    Resource,
    ResourceRate,
    ServicePlan,
    Vendor,
)

D = Decimal


@dataclass
class DemoRate:
    rate: ResourceRate
    default_amount: tuple[int, int]  # min, max seats/units a subscription takes
    usage: tuple[int, int] | None = None  # monthly consumption range, for usage-billed resources
    rate_periods: list[RatePeriod] = field(default_factory=list)


@dataclass
class DemoPlan:
    plan: ServicePlan
    period: PlanPeriod
    rates: list[DemoRate]


def _resource(
    session: Session, name: str, nl: str, unit: str, manufacturer: str, mp_number: str
) -> Resource:
    resource = Resource(
        name=name,
        names={"en": name, "nl": nl},
        manufacturer=manufacturer[:3].upper(),
        manufacturer_name=manufacturer,
        mp_number=mp_number,
        measure_unit=unit,
        measure_units={"en": unit, "nl": unit},
    )
    session.add(resource)
    return resource


def build_catalog(session: Session) -> list[DemoPlan]:
    """Insert the demo catalog and return its plans with their demo amount ranges."""
    categories = {
        name: PlanCategory(name=name)
        for name in ("Productivity", "Infrastructure", "Backup", "Telecom")
    }
    session.add_all(categories.values())
    plans: list[DemoPlan] = []

    def plan(
        vendor: Vendor,
        name: str,
        nl: str,
        category: str,
        *,
        yearly: bool = False,
        telecom: bool = False,
    ) -> tuple[ServicePlan, PlanPeriod]:
        p = ServicePlan(
            vendor=vendor,
            category=categories[category],
            name=name,
            names={"en": name, "nl": nl},
            is_telecom=telecom,
        )
        kind = "year" if yearly else "month"
        sku = name.upper().replace(" ", "-")[:20]
        period = PlanPeriod(
            plan=p,
            period=1,
            period_type=kind,
            billing_period=1,
            billing_period_type=kind,
            setup_sku=f"{sku}-SET",
            subscription_sku=f"{sku}-SUB",
            renewal_sku=f"{sku}-REN",
            transfer_sku=f"{sku}-TRF",
            cancellation_sku=f"{sku}-CAN",
        )
        session.add_all([p, period])
        return p, period

    def rate(p: ServicePlan, resource: Resource, sku: str, **prices: Decimal) -> ResourceRate:
        r = ResourceRate(
            plan=p,
            resource=resource,
            recurring_sku=f"{sku}-R",
            overuse_sku=f"{sku}-O",
            setup_sku=f"{sku}-S",
            cancellation_sku=f"{sku}-C",
            **prices,
        )
        session.add(r)
        return r

    microsoft, vmware, acronis, veeam, telco = (
        Vendor(name=n) for n in ("Microsoft", "VMware", "Acronis", "Veeam", "Telco Connect")
    )
    session.add_all([microsoft, vmware, acronis, veeam, telco])

    p, period = plan(
        microsoft,
        "Microsoft 365 Business Standard",
        "Microsoft 365 Business Standaard",
        "Productivity",
    )
    seat = _resource(
        session,
        "Business Standard licence",
        "Business Standaard licentie",
        "licence",
        "Microsoft",
        "CFQ7TTC0LDPB",
    )
    r = rate(p, seat, "M365BS", recurring_cost=D("10.20"), recurring_price=D("12.50"))
    monthly = RatePeriod(
        rate=r,
        term=1,
        term_type="month",
        billing_period=1,
        billing_period_type="month",
        recurring_cost=D("12.24"),
        recurring_price=D("15.00"),
        sku="CFQ7TTC0LDPB:0001:P1M",
    )
    annual = RatePeriod(
        rate=r,
        term=1,
        term_type="year",
        billing_period=1,
        billing_period_type="month",
        recurring_cost=D("10.20"),
        recurring_price=D("12.50"),
        sku="CFQ7TTC0LDPB:0001:P1Y",
    )
    session.add_all([monthly, annual])
    plans.append(DemoPlan(p, period, [DemoRate(r, (1, 40), rate_periods=[monthly, annual])]))

    p, period = plan(
        microsoft,
        "Microsoft 365 E3 (annual)",
        "Microsoft 365 E3 (jaarlijks)",
        "Productivity",
        yearly=True,
    )
    e3 = _resource(
        session,
        "Microsoft 365 E3 licence",
        "Microsoft 365 E3 licentie",
        "licence",
        "Microsoft",
        "CFQ7TTC0LFLZ",
    )
    plans.append(
        DemoPlan(
            p,
            period,
            [
                DemoRate(
                    rate(
                        p, e3, "M365E3", recurring_cost=D("30.6000"), recurring_price=D("36.0000")
                    ),
                    (5, 60),
                )
            ],
        )
    )

    p, period = plan(
        vmware, "VMware Cloud Director vDC", "VMware Cloud Director vDC", "Infrastructure"
    )
    vcpu = _resource(session, "vCPU", "vCPU", "vCPU", "VMware", "VCD-VCPU")
    ram = _resource(session, "RAM", "Werkgeheugen", "GB", "VMware", "VCD-RAM")
    disk = _resource(session, "Storage", "Opslag", "GB", "VMware", "VCD-STO")
    plans.append(
        DemoPlan(
            p,
            period,
            [
                DemoRate(
                    rate(
                        p,
                        vcpu,
                        "VCD-CPU",
                        included_value=D(2),
                        recurring_cost=D("9.95"),
                        recurring_price=D("14.95"),
                    ),
                    (2, 32),
                ),
                DemoRate(
                    rate(
                        p,
                        ram,
                        "VCD-RAM",
                        included_value=D(4),
                        recurring_cost=D("3.1250"),
                        recurring_price=D("4.50"),
                    ),
                    (4, 128),
                ),
                DemoRate(
                    rate(
                        p,
                        disk,
                        "VCD-STO",
                        included_value=D(100),
                        overuse_cost=D("0.0450"),
                        overuse_price=D("0.0700"),
                    ),
                    (0, 0),
                    usage=(50, 4000),
                ),
            ],
        )
    )

    p, period = plan(
        acronis, "Acronis Cyber Protect Cloud", "Acronis Cyber Protect Cloud", "Backup"
    )
    workload = _resource(
        session, "Protected workload", "Beschermde workload", "workload", "Acronis", "ACP-WL"
    )
    storage = _resource(session, "Backup storage", "Back-upopslag", "GB", "Acronis", "ACP-ST")
    plans.append(
        DemoPlan(
            p,
            period,
            [
                DemoRate(
                    rate(
                        p,
                        workload,
                        "ACP-WL",
                        recurring_cost=D("4.20"),
                        recurring_price=D("6.00"),
                        setup_cost=D("15.00"),
                        setup_price=D("25.00"),
                    ),
                    (1, 25),
                ),
                DemoRate(
                    rate(
                        p,
                        storage,
                        "ACP-ST",
                        included_value=D(250),
                        overuse_cost=D("0.0300"),
                        overuse_price=D("0.0500"),
                    ),
                    (0, 0),
                    usage=(100, 2500),
                ),
            ],
        )
    )

    p, period = plan(
        veeam, "Veeam Backup for Microsoft 365", "Veeam Backup voor Microsoft 365", "Backup"
    )
    user = _resource(session, "Protected user", "Beschermde gebruiker", "user", "Veeam", "V-VBO365")
    plans.append(
        DemoPlan(
            p,
            period,
            [
                DemoRate(
                    rate(
                        p,
                        user,
                        "VBO",
                        recurring_cost=D("1.95"),
                        recurring_price=D("2.95"),
                        cancellation_cost=D("25.00"),
                        cancellation_price=D("35.00"),
                    ),
                    (5, 200),
                )
            ],
        )
    )

    p, period = plan(telco, "SIP Trunk Business", "SIP Trunk Zakelijk", "Telecom", telecom=True)
    channel = _resource(session, "SIP channel", "SIP-kanaal", "channel", "Telco Connect", "TC-SIP")
    plans.append(
        DemoPlan(
            p,
            period,
            [
                DemoRate(
                    rate(
                        p,
                        channel,
                        "SIP",
                        recurring_cost=D("6.50"),
                        recurring_price=D("9.00"),
                        setup_cost=D("49.00"),
                        setup_price=D("75.00"),
                    ),
                    (2, 30),
                )
            ],
        )
    )

    session.flush()
    return plans
