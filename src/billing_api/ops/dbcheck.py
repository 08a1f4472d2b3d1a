"""``billing-api db check``: is this database (a restored backup, say) whole and current?

Read-only. It checks what a restore can get wrong: storage integrity (SQLite's
``PRAGMA integrity_check`` and ``foreign_key_check``; on PostgreSQL every table is read
whole by the row counts, which fails on a damaged page), the schema revision against this
release's newest, every billing run complete (its invoices and lines are all there) and every
invoice-number sequence gap-free (a sender's count of invoices equals its last number).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, func, select

from billing_api import migrate
from billing_api.billing.models import BillingRun, Invoice, InvoiceSequence, PriceLine
from billing_api.db import Base


@dataclass
class CheckReport:
    counts: dict[str, int] = field(default_factory=dict)
    results: list[tuple[str, str]] = field(default_factory=list)  # (check, "ok" or a problem)

    @property
    def ok(self) -> bool:
        return all(result == "ok" for _, result in self.results)


def check_database(engine: Engine) -> CheckReport:
    report = CheckReport()
    current, head = migrate.current_revision(engine), migrate.head_revision(engine)
    report.results.append(("schema revision", "ok" if current == head else
                           f"at {current or 'no schema'}, this release needs {head}: "
                           "run `billing-api db upgrade`"))
    if current is None:
        return report
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            report.results.append(("integrity", _sqlite_integrity(conn)))
        existing = set(conn.dialect.get_table_names(conn))
        for table in Base.metadata.sorted_tables:
            if table.name in existing:
                report.counts[table.name] = int(
                    conn.execute(select(func.count()).select_from(table)).scalar_one())
        if current == head:
            report.results.append(("billing runs complete", _runs_complete(conn)))
            report.results.append(("invoice numbers gap-free", _numbers_gap_free(conn)))
    return report


def _sqlite_integrity(conn: Connection) -> str:
    rows = [r[0] for r in conn.exec_driver_sql("PRAGMA integrity_check").all()]
    if rows != ["ok"]:
        return "; ".join(str(r) for r in rows[:5])
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    return "ok" if not broken else f"{len(broken)} rows point at missing rows (foreign keys)"


def _runs_complete(conn: Connection) -> str:
    invoices = (select(Invoice.billing_run_id, func.count().label("n"))
                .group_by(Invoice.billing_run_id).subquery())
    lines = (select(Invoice.billing_run_id, func.count().label("n"))
             .join(PriceLine, PriceLine.invoice_id == Invoice.id)
             .group_by(Invoice.billing_run_id).subquery())
    bad = conn.execute(
        select(BillingRun.id, BillingRun.period, BillingRun.environment)
        .outerjoin(invoices, invoices.c.billing_run_id == BillingRun.id)
        .outerjoin(lines, lines.c.billing_run_id == BillingRun.id)
        .where((func.coalesce(invoices.c.n, 0) != BillingRun.invoice_count)
               | (func.coalesce(lines.c.n, 0) != BillingRun.line_count))
        .order_by(BillingRun.id)).all()
    if not bad:
        return "ok"
    shown = ", ".join(f"run {i} ({p} {e})" for i, p, e in bad[:5])
    return f"{len(bad)} run(s) without all their invoices or lines: {shown}"


def _numbers_gap_free(conn: Connection) -> str:
    issued = (select(Invoice.sender_company_id, Invoice.environment, func.count().label("n"))
              .group_by(Invoice.sender_company_id, Invoice.environment).subquery())
    bad = conn.execute(
        select(InvoiceSequence.sender_company_id, InvoiceSequence.environment,
               InvoiceSequence.last_number, func.coalesce(issued.c.n, 0))
        .outerjoin(issued, (issued.c.sender_company_id == InvoiceSequence.sender_company_id)
                   & (issued.c.environment == InvoiceSequence.environment))
        .where(func.coalesce(issued.c.n, 0) != InvoiceSequence.last_number)).all()
    if not bad:
        return "ok"
    return "; ".join(f"sender {s} {e}: last number {last}, {n} invoices"
                     for s, e, last, n in bad[:5])
