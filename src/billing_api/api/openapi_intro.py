"""The introduction of the OpenAPI description: keys, the whitelist, versions, the date
rules, formats and errors, as a partner's developer reads them first.
"""

from __future__ import annotations

from billing_api.api.versions import VERSIONS

VERSION_NOTES = {
    "v1": "not served: every call answers 410 Gone",
    "v2": "all four documents; answers carry `Deprecation` and a `Link` to the current version",
    "v3": "same document shapes as v2",
    "v4": "adds `RatePeriodID`, `SubPONumber`, `ChargeType`, `BillingFrequency` and "
    "`InvoiceRowHash` on lines, `SubscriptionPONumber` and `SubscriptionDetails` on "
    "subscriptions, `ResourceRatePeriod` in subscriptiondetails",
}
INTRODUCTION = """\
Download your invoices as files, to automate your own invoicing and bookkeeping:
**purchase invoices** (what the distributor bills you, one per vendor), the matching **customer
invoices** (one per customer and vendor, at your sales prices), **consolidated invoices**
(purchase lines with their sales figures) and the **details of one subscription**.

## Access
1. The **Account Administrator** enables the Billing API under profile → *Your APIs*; nobody
   else can, and until then every call is refused (403).
2. **Whitelist at least one IP address** (IPv4 or IPv6, single address or CIDR range) under
   *Your APIs*. With an empty whitelist every call is refused, even with a valid key.
3. **Generate a key** there, for one environment: `production` (your real data) or `sandbox`
   (fictional example data of the same shape, for integration testing). A key only ever sees
   its own environment. The secret is shown once; keys can expire and can be revoked.
4. Send the key in the **`X-Api-Key` header** on every call (here: *Authorize*). Download links
   made by the portal's endpoint explorer carry a short-lived signed `token` instead; they obey
   the same rules.

Calls are limited to {rate} per minute per key; past that the answer is 429 with `Retry-After`.

## Versions
| version | status | |
| --- | --- | --- |
{versions}

A new version exists only for a breaking change; older versions keep their exact shape.

## Dates
`startDate` and `endDate` (`YYYYMMDD`; `YYYY-MM-DD` is accepted too) filter on the
**invoice date**, the day an invoice was issued, **inclusive at both ends**; not on the service
period its lines cover (October's usage is typically invoiced around 23 November). Both
missing: the three months up to today. Only `endDate`: from three months before it. Only
`startDate`: up to today. A malformed or impossible date, or an end before the start, is a 400
naming the parameter.

Every parameter is checked exactly as described here: an empty value, a date that is not a
real calendar date, a parameter the endpoint does not take (e.g. `startdate`) is a 400.

## Formats
**XML is the default** (no `Accept`, `*/*`, `application/xml` or `text/xml`); JSON with
`Accept: application/json`. `Accept` is read with its q-values (RFC 9110: the most specific
range decides, `application/json;q=0` refuses JSON). `format=xml|json` (lower case) in the
query wins over `Accept`; an `Accept` allowing neither is 406. XML is UTF-8 with a
declaration and writes empty values as empty elements; JSON keys are sorted ignoring case;
amounts are exact decimals; dates are `YYYYMMDD` text. Every document is one whole file
(`Content-Disposition: attachment`), and the same request over the same data returns the same
bytes.

## Errors
RFC 9457 problem details, negotiated exactly like documents (`application/problem+xml`, or
`application/problem+json` with `format=json` or an `Accept` preferring JSON;
`application/problem+json` and `application/problem+xml` may be named too): `status`, `title`,
a `detail` saying what to do, a stable `code` for programs, and `field` when one parameter is at
fault. When `Accept` allows neither format, or `format` is invalid, the problem is XML.
"""


def api_description(rate_limit_per_minute: int) -> str:
    versions = "\n".join(f"| `{v.name}` | {v.status} | {VERSION_NOTES.get(v.name, '')} |"
                         for v in VERSIONS.values())
    return INTRODUCTION.format(rate=rate_limit_per_minute, versions=versions)
